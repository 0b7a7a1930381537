// Restoring a logical backup (globals.json + dump.sql) into a NEW database: create the roles it uses that
// the server lacks, load the dump into a database with a temporary name, and only when all of it loaded
// rename that database to the target. On any failure the temporary database and the roles this restore
// created are dropped again: nothing is left at the target, and a crash leaves only a database whose
// name says what it is (backupd-restoring-...).

import { randomBytes } from 'node:crypto';
import { BackupdError, messageOf } from '../errors.js';
import { assertSegment } from '../layout.js';
import {
  type DatabaseInfo,
  type DatabaseProperties,
  type PgCatalog,
  quoteIdent,
  quoteLiteral,
  type RoleInfo,
} from './postgres-catalog.js';
import { DUMP_FILE, type DumpGlobals, GLOBALS_FILE, GLOBALS_FORMAT } from './postgres-dump.js';
import { checkedInput, type PgTools } from './postgres-tools.js';
import { expectFile, parseVersioned, readSmall } from './restore-file.js';
import type { RestoreFile, RestoreResult } from './source.js';

/** PostgreSQL's NAMEDATALEN - 1. */
const MAX_NAME_BYTES = 63;
/** The last comment pg_dump writes into a plain dump (followed only by blank lines and \unrestrict). */
const DUMP_END = '-- PostgreSQL database dump complete';
/** globals.json is small; anything this large is not ours. */
const MAX_GLOBALS_BYTES = 64 << 20;

export interface DumpRestoreOptions {
  tools: PgTools;
  catalog: PgCatalog;
  target: string;
  /** How a person reaches a database, without secrets: `postgresql://user@host:port/<name>`. */
  locationOf: (database: string) => string;
  signal?: AbortSignal;
}

/** A database name a restore may create: a safe path segment that fits PostgreSQL's name length. */
export function checkTargetName(target: string): string {
  assertSegment('target database', target);
  if (Buffer.byteLength(target) > MAX_NAME_BYTES) {
    throw new BackupdError('INVALID_ARGUMENT', `target database "${target}" is longer than ${MAX_NAME_BYTES} bytes`);
  }
  return target;
}

export async function restoreDump(
  files: AsyncIterable<RestoreFile>,
  options: DumpRestoreOptions,
): Promise<RestoreResult> {
  const { catalog, tools, signal } = options;
  const target = checkTargetName(options.target);
  await refuseExisting(catalog, target, signal);

  const temp = `backupd-restoring-${randomBytes(6).toString('hex')}`;
  const createdRoles: string[] = [];
  let createdDatabase = false;
  try {
    const iterator = files[Symbol.asyncIterator]();
    const globals = parseGlobals(
      await readSmall(await expectFile(iterator, GLOBALS_FILE, 'PostgreSQL'), MAX_GLOBALS_BYTES),
    );

    const names = globals.roles.map((r) => r.name);
    const existing = await catalog.existingRoles(names, signal);
    const missing = globals.roles.filter((r) => !existing.has(r.name));
    // Marked before the statements run: a cancelled psql may have committed them (DROP ... IF EXISTS undoes).
    if (missing.length > 0) {
      createdRoles.push(...missing.map((r) => r.name));
      // One transaction: either every missing role is created or none is.
      await catalog.exec(rolesSql(missing, globals, existing), `creating roles for database ${target}`, { signal });
    }
    createdDatabase = true;
    await catalog.exec(createDatabaseSql(temp, globals.database, globals.properties), `creating database ${target}`, {
      signal,
    });

    const dump = await expectFile(iterator, DUMP_FILE, 'PostgreSQL');
    await tools.run(
      'psql',
      ['-X', '-w', '-q', '-v', 'ON_ERROR_STOP=1', '--single-transaction', '-d', temp, '-f', '-'],
      {
        input: checkedInput(dump, (tail) =>
          tail.includes(DUMP_END) ? undefined : 'lacks the end marker pg_dump writes (a truncated dump)',
        ),
        stdout: 'ignore',
        signal,
        what: `loading the dump into database ${target}`,
      },
    );
    const extra = await iterator.next();
    if (!extra.done)
      throw new BackupdError('SOURCE_FAILED', `unexpected file "${extra.value.name}" in a PostgreSQL backup`);

    // Its ACL, comment and settings once the dump is in (a setting such as default_transaction_read_only
    // would get in the load's way), before it has its name.
    await catalog.exec(
      propertiesSql(temp, globals.database.owner, globals.properties),
      `setting the properties of database ${target}`,
      {
        signal,
      },
    );
    await refuseExisting(catalog, target, signal, 'was created while restoring');
    await catalog
      .exec(`ALTER DATABASE ${quoteIdent(temp)} RENAME TO ${quoteIdent(target)};`, `naming database ${target}`, {
        signal,
      })
      .catch((error: unknown) => {
        if (/already exists/.test(messageOf(error))) {
          throw new BackupdError(
            'ALREADY_EXISTS',
            `database ${target} was created while restoring: restore into a new name`,
          );
        }
        throw error;
      });
    createdDatabase = false;
    const note =
      createdRoles.length > 0
        ? `Created role(s) ${createdRoles.join(', ')} that the database uses, without passwords: set one (ALTER ROLE ... PASSWORD) for any that should log in.`
        : undefined;
    return { location: options.locationOf(target), ...(note ? { note } : {}) };
  } catch (error) {
    throw await undo(error, catalog, createdDatabase ? temp : undefined, createdRoles);
  }
}

async function refuseExisting(catalog: PgCatalog, target: string, signal?: AbortSignal, how = 'already exists') {
  if (await catalog.database(target, signal)) {
    throw new BackupdError('ALREADY_EXISTS', `database ${target} ${how}: restore into a new name`);
  }
}

/** Drop what a failed restore created; the restore's own error is what the caller sees. */
async function undo(
  error: unknown,
  catalog: PgCatalog,
  database: string | undefined,
  roles: string[],
): Promise<unknown> {
  const problems: string[] = [];
  // No signal: a cancelled restore must still clean up.
  if (database !== undefined) {
    await catalog
      .exec(`DROP DATABASE IF EXISTS ${quoteIdent(database)} WITH (FORCE);`, `dropping database ${database}`)
      .catch((e: unknown) => problems.push(messageOf(e)));
  }
  if (roles.length > 0) {
    await catalog
      .exec(`DROP ROLE IF EXISTS ${roles.map(quoteIdent).join(', ')};`, 'dropping the roles the restore created')
      .catch((e: unknown) => problems.push(messageOf(e)));
  }
  if (problems.length === 0) return error;
  const code = error instanceof BackupdError ? error.code : 'SOURCE_FAILED';
  return new BackupdError(code, `${messageOf(error)}; cleaning up also failed: ${problems.join('; ')}`, {
    cause: error,
  });
}

function parseGlobals(text: string): DumpGlobals {
  const globals = parseVersioned<DumpGlobals>(text, GLOBALS_FILE, GLOBALS_FORMAT);
  if (
    !Array.isArray(globals.roles) ||
    !Array.isArray(globals.memberships) ||
    typeof globals.database?.name !== 'string' ||
    typeof globals.properties !== 'object' ||
    globals.properties === null ||
    !Array.isArray(globals.properties.roleSettings)
  ) {
    throw new BackupdError('SOURCE_FAILED', `${GLOBALS_FILE} lacks its database or roles`);
  }
  return globals;
}

/** CREATE ROLE for each missing role (attributes as they were, no password), then their memberships. */
function rolesSql(missing: RoleInfo[], globals: DumpGlobals, existing: Set<string>): string {
  const flag = (on: boolean, name: string) => (on ? name : `NO${name}`);
  const lines = ['BEGIN;'];
  for (const r of missing) {
    const attributes = [
      flag(r.superuser, 'SUPERUSER'),
      flag(r.inherit, 'INHERIT'),
      flag(r.createRole, 'CREATEROLE'),
      flag(r.createDb, 'CREATEDB'),
      flag(r.login, 'LOGIN'),
      flag(r.replication, 'REPLICATION'),
      flag(r.bypassRls, 'BYPASSRLS'),
      `CONNECTION LIMIT ${Number(r.connectionLimit)}`,
    ];
    if (r.validUntil !== null) attributes.push(`VALID UNTIL ${quoteLiteral(r.validUntil)}`);
    lines.push(`CREATE ROLE ${quoteIdent(r.name)} WITH ${attributes.join(' ')};`);
    for (const entry of r.settings ?? []) lines.push(`ALTER ROLE ${quoteIdent(r.name)} ${settingSql(entry)};`);
  }
  // Memberships that involve a created role; those among roles the server had are left as they are.
  const created = new Set(missing.map((r) => r.name));
  for (const m of globals.memberships) {
    if (!created.has(m.role) && !created.has(m.member)) continue;
    if (!(created.has(m.role) || existing.has(m.role)) || !(created.has(m.member) || existing.has(m.member))) continue;
    lines.push(`GRANT ${quoteIdent(m.role)} TO ${quoteIdent(m.member)}${m.admin ? ' WITH ADMIN OPTION' : ''};`);
  }
  lines.push('COMMIT;');
  return `${lines.join('\n')}\n`;
}

/**
 * The new database with the source database's encoding, locale and owner, from template0 (empty). When the
 * source database's ACL is not the default, PUBLIC's CONNECT and TEMPORARY go at once: the database is never
 * more open, not even while it loads, than the one backed up.
 */
function createDatabaseSql(name: string, db: DatabaseInfo, properties: DatabaseProperties): string {
  const parts = [
    `CREATE DATABASE ${quoteIdent(name)} WITH TEMPLATE template0`,
    `ENCODING ${quoteLiteral(db.encoding)}`,
    `LC_COLLATE ${quoteLiteral(db.collate)}`,
    `LC_CTYPE ${quoteLiteral(db.ctype)}`,
  ];
  if (db.localeProvider === 'i') {
    parts.push('LOCALE_PROVIDER icu');
    if (db.locale !== undefined) parts.push(`ICU_LOCALE ${quoteLiteral(db.locale)}`);
    if (db.icuRules !== undefined) parts.push(`ICU_RULES ${quoteLiteral(db.icuRules)}`);
  } else if (db.localeProvider === 'b') {
    parts.push('LOCALE_PROVIDER builtin');
    if (db.locale !== undefined) parts.push(`BUILTIN_LOCALE ${quoteLiteral(db.locale)}`);
  }
  parts.push(`OWNER ${quoteIdent(db.owner)}`);
  const revoke = properties.acl === null ? '' : `REVOKE ALL ON DATABASE ${quoteIdent(name)} FROM PUBLIC;\n`;
  return `${parts.join(' ')};\n${revoke}`;
}

/**
 * The database's ACL as it was (every grant again; grantors become the owner), its comment, connection
 * limit, settings, and its roles' settings in it: one transaction.
 */
function propertiesSql(name: string, owner: string, properties: DatabaseProperties): string {
  const db = `DATABASE ${quoteIdent(name)}`;
  const lines = ['BEGIN;'];
  if (properties.acl !== null) {
    lines.push(`REVOKE ALL ON ${db} FROM PUBLIC, ${quoteIdent(owner)};`);
    for (const item of properties.acl) {
      const grantee = item.grantee === '' ? 'PUBLIC' : quoteIdent(item.grantee);
      if (!/^[A-Z ]+$/.test(item.privilege)) {
        throw new BackupdError('SOURCE_FAILED', `${GLOBALS_FILE} names an unknown privilege "${item.privilege}"`);
      }
      lines.push(`GRANT ${item.privilege} ON ${db} TO ${grantee}${item.grantable ? ' WITH GRANT OPTION' : ''};`);
    }
  }
  if (properties.comment !== null) lines.push(`COMMENT ON ${db} IS ${quoteLiteral(properties.comment)};`);
  if (properties.connectionLimit !== -1) {
    lines.push(`ALTER ${db} WITH CONNECTION LIMIT ${Number(properties.connectionLimit)};`);
  }
  for (const entry of properties.settings ?? []) lines.push(`ALTER ${db} ${settingSql(entry)};`);
  for (const { role, settings } of properties.roleSettings) {
    for (const entry of settings) lines.push(`ALTER ROLE ${quoteIdent(role)} IN ${db} ${settingSql(entry)};`);
  }
  lines.push('COMMIT;');
  return `${lines.join('\n')}\n`;
}

/** Settings whose value is a list of names, each quoted on its own (as pg_dump's variable_is_guc_list_quote). */
const LIST_SETTINGS = new Set([
  'local_preload_libraries',
  'search_path',
  'session_preload_libraries',
  'shared_preload_libraries',
  'temp_tablespaces',
  'unix_socket_directories',
]);

/** `SET name TO value` for one `name=value` entry of pg_db_role_setting (or rolconfig). */
export function settingSql(entry: string): string {
  const eq = entry.indexOf('=');
  if (eq <= 0) throw new BackupdError('SOURCE_FAILED', `${GLOBALS_FILE} holds a setting without a name: "${entry}"`);
  const name = entry.slice(0, eq);
  const value = entry.slice(eq + 1);
  const values = LIST_SETTINGS.has(name.toLowerCase()) ? splitSettingList(value) : [value];
  return `SET ${quoteIdent(name)} TO ${values.length === 0 ? "''" : values.map(quoteLiteral).join(', ')}`;
}

/** A list setting's names as PostgreSQL's SplitGUCList reads them: comma-separated, "" quotes and doubles. */
export function splitSettingList(value: string): string[] {
  const names: string[] = [];
  let i = 0;
  const space = () => {
    while (i < value.length && /\s/.test(value[i]!)) i++;
  };
  space();
  if (i >= value.length) return names;
  for (;;) {
    let name = '';
    if (value[i] === '"') {
      i++;
      while (i < value.length) {
        if (value[i] === '"') {
          if (value[i + 1] !== '"') {
            i++;
            break;
          }
          i++;
        }
        name += value[i++];
      }
    } else {
      while (i < value.length && value[i] !== ',' && !/\s/.test(value[i]!)) name += value[i++];
    }
    names.push(name);
    space();
    if (value[i] !== ',') break;
    i++;
    space();
  }
  return names;
}
