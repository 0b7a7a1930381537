// What the mariadb source asks the server: its version, its databases (system schemas left out) with
// their sizes and default character sets, and, when the operator asks for grants, the accounts a
// database's objects run as or that hold privileges on it.

import { BackupdError, isBackupdError, messageOf } from '../errors.js';
import type { MariadbClient } from './mariadb-client.js';
import { quoteString } from './mariadb-client.js';

/** Schemas of the server itself, never backed up as databases. */
export const SYSTEM_SCHEMAS = ['mysql', 'information_schema', 'performance_schema', 'sys'];

export interface MariadbDatabase {
  name: string;
  /** Data and index bytes as the server reports them (InnoDB's are estimates). */
  sizeBytes: number;
  charset: string;
  collation: string;
  /** The database's own comment (CREATE DATABASE ... COMMENT), '' when none. */
  comment: string;
}

/** One account a database needs on a restore target, with its privileges on that database. */
export interface MariadbAccount {
  user: string;
  host: string;
  /** Database-level privileges (`GRANT ... ON db.*`), e.g. ['SELECT', 'INSERT']. */
  databasePrivileges: string[];
  /** Whether the database-level privileges were given WITH GRANT OPTION. */
  grantOption: boolean;
  /** Table-level privileges (`GRANT ... ON db.table`). */
  tablePrivileges: { table: string; privileges: string[] }[];
}

const NOT_SYSTEM = `s.SCHEMA_NAME NOT IN (${SYSTEM_SCHEMAS.map((s) => `'${s}'`).join(', ')})`;

export class MariadbCatalog {
  constructor(private readonly client: MariadbClient) {}

  async serverVersion(signal?: AbortSignal): Promise<string> {
    const rows = await this.client.query('SELECT VERSION();', 'reading the server version', { signal });
    return rows[0]?.[0] ?? 'unknown';
  }

  /** The server's host name and data directory, as it reports them. */
  async serverHost(signal?: AbortSignal): Promise<{ hostname: string; datadir: string }> {
    const rows = await this.client.query('SELECT @@hostname, @@datadir;', 'reading the server host', { signal });
    return { hostname: rows[0]?.[0] ?? '', datadir: rows[0]?.[1] ?? '' };
  }

  /** Every database but the system schemas. */
  async databases(signal?: AbortSignal): Promise<MariadbDatabase[]> {
    return this.select('', 'listing databases', signal);
  }

  /** One database, or undefined when the server has none of that name (system schemas count as none). */
  async database(name: string, signal?: AbortSignal): Promise<MariadbDatabase | undefined> {
    const found = await this.select(` AND s.SCHEMA_NAME = ${quoteString(name)}`, `looking up database ${name}`, signal);
    return found.find((d) => d.name === name);
  }

  private async select(where: string, what: string, signal?: AbortSignal): Promise<MariadbDatabase[]> {
    const rows = await this.client.query(
      `SELECT s.SCHEMA_NAME, COALESCE(SUM(t.DATA_LENGTH + t.INDEX_LENGTH), 0), s.DEFAULT_CHARACTER_SET_NAME,
         s.DEFAULT_COLLATION_NAME, COALESCE(s.SCHEMA_COMMENT, '')
       FROM information_schema.SCHEMATA s LEFT JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = s.SCHEMA_NAME
       WHERE ${NOT_SYSTEM}${where}
       GROUP BY s.SCHEMA_NAME, s.DEFAULT_CHARACTER_SET_NAME, s.DEFAULT_COLLATION_NAME, s.SCHEMA_COMMENT ORDER BY s.SCHEMA_NAME;`,
      what,
      { signal },
    );
    return rows.map(([name, size, charset, collation, comment]) => ({
      name: name!,
      sizeBytes: Number(size),
      charset: charset!,
      collation: collation!,
      comment: comment ?? '',
    }));
  }

  /**
   * The accounts `database` needs: the definers of its views, routines, triggers and events, and every
   * account with database- or table-level privileges on it (read from the mysql schema: the backup user
   * needs SELECT on it). Definers whose account no longer exists are kept too: their objects need them.
   */
  /**
   * Throws PERMISSION_DENIED when this user cannot read the stored routines of `database`: mariadb-dump
   * --routines then leaves them out without a word (the user does not even see that they exist), and a
   * backup would silently lose them. MariaDB keeps routines in mysql.proc; a server without that table
   * (MySQL 8's data dictionary) is not checked here.
   */
  async checkRoutinesReadable(database: string, signal?: AbortSignal): Promise<void> {
    try {
      await this.client.query(
        `SELECT COUNT(*) FROM mysql.proc WHERE db = ${quoteString(database)};`,
        `checking that the routines of database ${database} can be read`,
        { signal },
      );
    } catch (error) {
      const message = messageOf(error);
      if (/mysql.*proc.* doesn't exist/i.test(message)) return;
      if (isBackupdError(error, 'PERMISSION_DENIED')) {
        throw new BackupdError(
          'PERMISSION_DENIED',
          `the backup user may not read mysql.proc, so mariadb-dump would leave the procedures and functions of ` +
            `database ${database} out without an error: GRANT SELECT ON mysql.proc to it (${message})`,
          { cause: error },
        );
      }
      throw error;
    }
  }

  /** The accounts (user, host) the server has, of those asked for. */
  async existingAccounts(accounts: { user: string; host: string }[], signal?: AbortSignal): Promise<Set<string>> {
    if (accounts.length === 0) return new Set();
    const rows = await this.client.query(
      `SELECT User, Host FROM mysql.user WHERE ${accounts
        .map((a) => `(User = ${quoteString(a.user)} AND Host = ${quoteString(a.host)})`)
        .join(' OR ')};`,
      'looking up accounts',
      { signal },
    );
    return new Set(rows.map(([user, host]) => accountKey({ user: user!, host: host! })));
  }

  async accounts(database: string, signal?: AbortSignal): Promise<MariadbAccount[]> {
    const db = quoteString(database);
    const definers = await this.client.query(
      `SELECT DEFINER FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ${db}
       UNION SELECT DEFINER FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ${db}
       UNION SELECT DEFINER FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ${db}
       UNION SELECT DEFINER FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ${db};`,
      `reading the definers of database ${database}`,
      { signal },
    );
    // mysql.db's privilege columns are 'Y'/'N'; the column name minus '_priv' is the privilege's name.
    const columns = await this.client.query(
      `SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'mysql' AND TABLE_NAME = 'db'
       AND COLUMN_NAME LIKE '%\\_priv' ORDER BY ORDINAL_POSITION;`,
      'reading the privilege columns',
      { signal },
    );
    const privColumns = columns.map(([c]) => c!);
    const dbRows = await this.client.query(
      `SELECT User, Host, ${privColumns.map((c) => `\`${c}\``).join(', ')} FROM mysql.db WHERE Db = ${db};`,
      `reading the privileges on database ${database}`,
      { signal },
    );
    const tableRows = await this.client.query(
      `SELECT User, Host, Table_name, Table_priv FROM mysql.tables_priv WHERE Db = ${db} AND Table_priv <> '';`,
      `reading the table privileges in database ${database}`,
      { signal },
    );

    const accounts = new Map<string, MariadbAccount>();
    const account = (user: string, host: string): MariadbAccount => {
      const key = accountKey({ user, host });
      let found = accounts.get(key);
      if (!found) {
        found = { user, host, databasePrivileges: [], grantOption: false, tablePrivileges: [] };
        accounts.set(key, found);
      }
      return found;
    };
    for (const [definer] of definers) {
      const at = definer!.lastIndexOf('@');
      if (at > 0) account(definer!.slice(0, at), definer!.slice(at + 1));
    }
    for (const [user, host, ...flags] of dbRows) {
      const a = account(user!, host!);
      flags.forEach((flag, i) => {
        if (flag !== 'Y') return;
        const name = privColumns[i]!.replace(/_priv$/, '')
          .replace(/_/g, ' ')
          .toUpperCase();
        if (name === 'GRANT') a.grantOption = true;
        else a.databasePrivileges.push(privilegeName(name));
      });
    }
    for (const [user, host, table, privileges] of tableRows) {
      account(user!, host!).tablePrivileges.push({
        table: table!,
        privileges: privileges!.split(',').map((p) => TABLE_PRIVILEGE[p.toUpperCase()] ?? p.toUpperCase()),
      });
    }
    return [...accounts.values()].sort((a, b) => `${a.user}@${a.host}`.localeCompare(`${b.user}@${b.host}`));
  }
}

/** mysql.tables_priv's set members that GRANT spells otherwise. */
const TABLE_PRIVILEGE: Record<string, string> = {
  GRANT: 'GRANT OPTION',
  'DELETE VERSIONING ROWS': 'DELETE HISTORY',
};

/** mysql.db's column names as GRANT spells the privileges. */
function privilegeName(fromColumn: string): string {
  const spelled: Record<string, string> = {
    'CREATE TMP TABLE': 'CREATE TEMPORARY TABLES',
    'LOCK TABLES': 'LOCK TABLES',
    'SHOW VIEW': 'SHOW VIEW',
    'DELETE HISTORY': 'DELETE HISTORY',
  };
  return spelled[fromColumn] ?? fromColumn;
}

/** An account as one comparable string. */
export function accountKey(account: { user: string; host: string }): string {
  return JSON.stringify([account.user, account.host]);
}
