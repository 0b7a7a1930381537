// What the postgres source asks the server's catalogs, through psql: the server version, the databases
// and their sizes, a database's encoding, locale and owner, and the roles a database uses (its owners
// and grantees), so a backup carries what its restore needs to give every object its owner back.

import { BackupdError } from '../errors.js';
import type { PgTools } from './postgres-tools.js';

/** Catalog queries and DDL are small; past this something is stuck (a lock), not slow. */
const QUERY_TIMEOUT_MS = 5 * 60_000;

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** A string literal; standard_conforming_strings is on in every supported server (default since 9.1). */
export function quoteLiteral(value: string): string {
  if (value.includes('\0')) throw new BackupdError('INVALID_ARGUMENT', 'a PostgreSQL string cannot hold NUL');
  return `'${value.replace(/'/g, "''")}'`;
}

export interface ServerVersion {
  /** e.g. '15.18 (Debian 15.18-0+deb12u1)' */
  version: string;
  /** e.g. 150018 */
  num: number;
}

export interface DatabaseInfo {
  name: string;
  owner: string;
  encoding: string;
  collate: string;
  ctype: string;
  /** 'c' (libc), 'i' (ICU) or 'b' (builtin, PostgreSQL 17+). */
  localeProvider: string;
  /** The ICU or builtin locale, when the provider is not libc. */
  locale?: string;
  icuRules?: string;
}

/** A role a database uses, with the attributes to create it again (never its password). */
export interface RoleInfo {
  name: string;
  superuser: boolean;
  inherit: boolean;
  createRole: boolean;
  createDb: boolean;
  login: boolean;
  replication: boolean;
  bypassRls: boolean;
  connectionLimit: number;
  /** VALID UNTIL as JSON writes a timestamptz (ISO 8601 whatever the DateStyle, or 'infinity'), null when unset. */
  validUntil: string | null;
  /** The role's own settings (ALTER ROLE ... SET), as `name=value` entries, null when none. */
  settings: string[] | null;
}

/**
 * What lives on the database itself rather than in it, which pg_dump writes only with --create: who may
 * connect (its ACL), its comment, connection limit and settings (ALTER DATABASE ... SET, and ALTER ROLE ...
 * IN DATABASE ... SET).
 */
export interface DatabaseProperties {
  /** null: the default ACL (the owner, and PUBLIC may connect and create temp tables). */
  acl: { grantee: string; privilege: string; grantable: boolean }[] | null;
  comment: string | null;
  connectionLimit: number;
  /** `name=value` entries, as pg_db_role_setting keeps them; null when none. */
  settings: string[] | null;
  roleSettings: { role: string; settings: string[] }[];
}

/** `member` is a member of `role`; both are roles the database uses. */
export interface RoleMembership {
  role: string;
  member: string;
  admin: boolean;
}

// Every catalog that names an owner or a grantee in a database's dump (pg_dump emits ALTER ... OWNER TO,
// GRANT ... TO, ALTER DEFAULT PRIVILEGES FOR ROLE, CREATE POLICY ... TO, CREATE USER MAPPING FOR).
const USED_ROLES = `
WITH acl(items) AS (
  SELECT relacl FROM pg_class UNION ALL SELECT attacl FROM pg_attribute WHERE attacl IS NOT NULL
  UNION ALL SELECT nspacl FROM pg_namespace UNION ALL SELECT proacl FROM pg_proc
  UNION ALL SELECT typacl FROM pg_type UNION ALL SELECT lanacl FROM pg_language
  UNION ALL SELECT fdwacl FROM pg_foreign_data_wrapper UNION ALL SELECT srvacl FROM pg_foreign_server
  UNION ALL SELECT lomacl FROM pg_largeobject_metadata UNION ALL SELECT defaclacl FROM pg_default_acl
  UNION ALL SELECT datacl FROM pg_database WHERE datname = current_database()
), used(id) AS (
  SELECT datdba FROM pg_database WHERE datname = current_database()
  UNION SELECT nspowner FROM pg_namespace UNION SELECT relowner FROM pg_class
  UNION SELECT proowner FROM pg_proc UNION SELECT typowner FROM pg_type
  UNION SELECT oprowner FROM pg_operator UNION SELECT collowner FROM pg_collation
  UNION SELECT conowner FROM pg_conversion UNION SELECT opcowner FROM pg_opclass
  UNION SELECT opfowner FROM pg_opfamily UNION SELECT cfgowner FROM pg_ts_config
  UNION SELECT dictowner FROM pg_ts_dict UNION SELECT extowner FROM pg_extension
  UNION SELECT lanowner FROM pg_language UNION SELECT fdwowner FROM pg_foreign_data_wrapper
  UNION SELECT srvowner FROM pg_foreign_server UNION SELECT umuser FROM pg_user_mapping
  UNION SELECT evtowner FROM pg_event_trigger UNION SELECT pubowner FROM pg_publication
  UNION SELECT stxowner FROM pg_statistic_ext UNION SELECT lomowner FROM pg_largeobject_metadata
  UNION SELECT defaclrole FROM pg_default_acl UNION SELECT unnest(polroles) FROM pg_policy
  UNION SELECT (aclexplode(items)).grantee FROM acl WHERE items IS NOT NULL
  UNION SELECT (aclexplode(items)).grantor FROM acl WHERE items IS NOT NULL
  UNION SELECT setrole FROM pg_db_role_setting
    WHERE setrole <> 0 AND setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
), roles AS (
  SELECT r.* FROM pg_roles r WHERE r.oid IN (SELECT id FROM used) AND r.rolname !~ '^pg_'
)
SELECT json_build_object(
  'roles', coalesce((SELECT json_agg(json_build_object(
    'name', rolname, 'superuser', rolsuper, 'inherit', rolinherit, 'createRole', rolcreaterole,
    'createDb', rolcreatedb, 'login', rolcanlogin, 'replication', rolreplication, 'bypassRls', rolbypassrls,
    'connectionLimit', rolconnlimit, 'validUntil', rolvaliduntil, 'settings', rolconfig)
    ORDER BY rolname) FROM roles), '[]'),
  'memberships', coalesce((SELECT json_agg(json_build_object(
    'role', g.rolname, 'member', m.rolname, 'admin', a.admin_option) ORDER BY g.rolname, m.rolname)
    FROM pg_auth_members a JOIN roles g ON g.oid = a.roleid JOIN roles m ON m.oid = a.member), '[]'),
  'properties', (SELECT json_build_object(
    'acl', CASE WHEN d.datacl IS NOT NULL THEN (SELECT coalesce(json_agg(json_build_object(
      'grantee', CASE WHEN a.grantee = 0 THEN '' ELSE pg_get_userbyid(a.grantee) END,
      'privilege', a.privilege_type, 'grantable', a.is_grantable)
      ORDER BY a.grantee, a.privilege_type), '[]') FROM aclexplode(d.datacl) a) END,
    'comment', shobj_description(d.oid, 'pg_database'),
    'connectionLimit', d.datconnlimit,
    'settings', (SELECT setconfig FROM pg_db_role_setting WHERE setdatabase = d.oid AND setrole = 0),
    'roleSettings', (SELECT coalesce(json_agg(json_build_object('role', pg_get_userbyid(setrole),
      'settings', setconfig) ORDER BY setrole), '[]') FROM pg_db_role_setting
      WHERE setdatabase = d.oid AND setrole <> 0))
    FROM pg_database d WHERE d.datname = current_database()))`;

/** What a database needs from outside itself: the roles it uses and its own properties. */
export interface DatabaseOutside {
  roles: RoleInfo[];
  memberships: RoleMembership[];
  properties: DatabaseProperties;
}

/** The databases of a server, as PgCatalog.databases lists them. */
type DatabaseListing = { name: string; sizeBytes?: number }[];

/** psql as a query and DDL runner on one source. */
export class PgCatalog {
  constructor(
    private readonly tools: PgTools,
    private readonly maintenanceDatabase: string,
  ) {}

  /** One query whose result is one JSON value (or no row: undefined), run in `database`. */
  async json<T>(sql: string, what: string, options: { database?: string; signal?: AbortSignal } = {}): Promise<T> {
    const out = await this.tools.run(
      'psql',
      ['-X', '-w', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', options.database ?? this.maintenanceDatabase],
      {
        input: sql,
        what,
        signal: options.signal,
        timeoutMs: QUERY_TIMEOUT_MS,
        env: { PGCLIENTENCODING: 'UTF8' },
      },
    );
    const text = out.trim();
    if (text === '') return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new BackupdError(
        'SOURCE_FAILED',
        `${what}: psql answered something that is not JSON: ${text.slice(0, 200)}`,
      );
    }
  }

  /** Run statements one by one (each in its own transaction: CREATE DATABASE cannot be in one). */
  async exec(sql: string, what: string, options: { database?: string; signal?: AbortSignal } = {}): Promise<void> {
    await this.tools.run(
      'psql',
      ['-X', '-w', '-q', '-v', 'ON_ERROR_STOP=1', '-d', options.database ?? this.maintenanceDatabase],
      { input: sql, what, signal: options.signal, timeoutMs: QUERY_TIMEOUT_MS, stdout: 'ignore' },
    );
  }

  serverVersion(signal?: AbortSignal): Promise<ServerVersion> {
    return this.json<ServerVersion>(
      `SELECT json_build_object('version', current_setting('server_version'),
        'num', current_setting('server_version_num')::int)`,
      'reading the PostgreSQL server version',
      { signal },
    );
  }

  /**
   * Every non-template database that allows connections, with its size when this user may see it. Calls
   * without a signal while one such listing runs share its answer: the agent asks for a source's databases
   * and for the ones it leaves out at once, and that is one psql, not two.
   */
  databases(signal?: AbortSignal): Promise<DatabaseListing> {
    if (signal) return this.listDatabases(signal);
    this.listing ??= this.listDatabases().finally(() => {
      this.listing = undefined;
    });
    return this.listing;
  }

  private listing: Promise<DatabaseListing> | undefined;

  private async listDatabases(signal?: AbortSignal): Promise<DatabaseListing> {
    const rows = await this.json<{ name: string; size: number | null }[]>(
      `SELECT coalesce(json_agg(json_build_object('name', datname, 'size',
          CASE WHEN has_database_privilege(oid, 'CONNECT') THEN pg_database_size(oid) END) ORDER BY datname), '[]')
        FROM pg_database WHERE NOT datistemplate AND datallowconn`,
      'listing PostgreSQL databases',
      { signal },
    );
    return rows.map((r) => (r.size === null ? { name: r.name } : { name: r.name, sizeBytes: Number(r.size) }));
  }

  /** A database's encoding, locale and owner; undefined when there is no such database. */
  async database(
    name: string,
    signal?: AbortSignal,
  ): Promise<(DatabaseInfo & { allowConnections: boolean }) | undefined> {
    const found = await this.json<
      { name: string; owner: string; encoding: string; row: Record<string, unknown> } | undefined
    >(
      `SELECT json_build_object('name', datname, 'owner', pg_get_userbyid(datdba),
          'encoding', pg_encoding_to_char(encoding), 'row', to_jsonb(d) - 'datacl')
        FROM pg_database d WHERE datname = ${quoteLiteral(name)}`,
      `reading database ${name}`,
      { signal },
    );
    if (!found) return undefined;
    // Column names differ between server versions (daticulocale in 15-16, datlocale from 17): read them
    // from the row as JSON instead of naming them in SQL.
    const row = found.row;
    const text = (key: string) => (typeof row[key] === 'string' && row[key] !== '' ? (row[key] as string) : undefined);
    const info: DatabaseInfo & { allowConnections: boolean } = {
      name: found.name,
      owner: found.owner,
      encoding: found.encoding,
      collate: text('datcollate') ?? 'C',
      ctype: text('datctype') ?? 'C',
      localeProvider: text('datlocprovider') ?? 'c',
      allowConnections: row.datallowconn !== false && row.datistemplate !== true,
    };
    const locale = text('datlocale') ?? text('daticulocale');
    if (locale !== undefined) info.locale = locale;
    const rules = text('daticurules');
    if (rules !== undefined) info.icuRules = rules;
    return info;
  }

  /**
   * The roles `database` uses (owners, grantees, policy roles, roles with settings in it) and the memberships
   * among them, and the database's own properties (ACL, comment, settings), in one psql.
   */
  rolesUsed(database: string, signal?: AbortSignal): Promise<DatabaseOutside> {
    return this.json(USED_ROLES, `reading the roles database ${database} uses`, { database, signal });
  }

  /**
   * The unlogged tables (and sequences) of `database`, as `schema.name`: PostgreSQL writes no WAL for them,
   * so a snapshot (pg_basebackup) holds none of their rows and they come back empty.
   */
  unloggedRelations(database: string, signal?: AbortSignal): Promise<string[]> {
    return this.json<string[]>(
      `SELECT coalesce(json_agg(format('%s.%s', n.nspname, c.relname) ORDER BY n.nspname, c.relname), '[]')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relpersistence = 'u' AND c.relkind IN ('r', 'p', 'S')`,
      `listing the unlogged tables of database ${database}`,
      { database, signal },
    );
  }

  /** Which of `names` exist as roles on this server. */
  async existingRoles(names: string[], signal?: AbortSignal): Promise<Set<string>> {
    if (names.length === 0) return new Set();
    const found = await this.json<string[]>(
      `SELECT coalesce(json_agg(rolname), '[]') FROM pg_roles
        WHERE rolname IN (${names.map(quoteLiteral).join(', ')})`,
      'reading existing roles',
      { signal },
    );
    return new Set(found);
  }
}
