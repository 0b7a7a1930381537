// Running MariaDB's client tools (mariadb, mariadb-dump) for the mariadb source: the same child-process
// machinery as PostgreSQL's tools (postgres-tools.ts: abort, stderr kept, stdout through a pipe thread),
// with MariaDB's connection arguments and its error messages mapped to typed errors. Queries run through
// the `mariadb` client in batch mode; its tab-separated output is read back here.

import { BackupdError } from '../errors.js';
import { connectionArgs, connectionEnv, type MariadbConfig } from './mariadb-config.js';
import { PgTools, type RunOptions, type ToolDialect, type ToolStream } from './postgres-tools.js';

/** Catalog queries and DDL are small; past this something is stuck (a metadata lock), not slow. */
const QUERY_TIMEOUT_MS = 5 * 60_000;
/** The largest statement a restore sends (a dump's multi-row INSERT, a BLOB); the server's own limit also applies. */
export const MAX_PACKET = '1G';

/** How MariaDB's (and MySQL's) client tools fail, most specific first. */
export const MARIADB_DIALECT: ToolDialect = {
  product: 'MariaDB',
  install: 'install the MariaDB client tools: apt-get install mariadb-client',
  classes: [
    {
      code: 'PERMISSION_DENIED',
      pattern:
        /Access denied|command denied to user|insecure transport are prohibited|you need (at least one of )?the .* privilege|Plugin .* could not be loaded|account is locked/i,
    },
    { code: 'NOT_FOUND', pattern: /Unknown database/i },
    {
      code: 'UNAVAILABLE',
      pattern:
        /Can't connect to (local )?(MySQL )?server|Lost connection to (MySQL )?server|server has gone away|Too many connections|Unknown (MySQL )?server host|Connection refused|Server shutdown in progress|Can't create TCP\/IP socket/i,
    },
  ],
};

/**
 * The first statement of every query() and exec() session: a known sql_mode (quoteString's escapes work,
 * no ANSI_QUOTES) and utf8mb4 names, whatever the server's defaults.
 */
const SESSION_SQL = "SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION', NAMES utf8mb4;\n";

export class MariadbClient {
  constructor(private readonly config: MariadbConfig) {}

  /** The tools with the connection environment of now (a password file is read again at each call). */
  private tools(): PgTools {
    return new PgTools(this.config.binDir, connectionEnv(this.config), MARIADB_DIALECT);
  }

  /**
   * Run `sql` (one query) and return its rows, each a list of column values (NULL as the text 'NULL': ask
   * for COALESCE where it matters). Throws the tool's failure typed (MARIADB_DIALECT).
   */
  async query(
    sql: string,
    what: string,
    options: { database?: string; signal?: AbortSignal } = {},
  ): Promise<string[][]> {
    const out = await this.tools().run(
      'mariadb',
      [...this.clientArgs(), '--skip-column-names', ...dbArg(options.database)],
      { input: SESSION_SQL + sql, signal: options.signal, timeoutMs: QUERY_TIMEOUT_MS, what },
    );
    return out
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => line.split('\t').map(unescapeBatch));
  }

  /** Run statements (stdin), discarding their output. */
  async exec(sql: string, what: string, options: { database?: string; signal?: AbortSignal } = {}): Promise<void> {
    await this.tools().run('mariadb', [...this.clientArgs(), ...dbArg(options.database)], {
      input: SESSION_SQL + sql,
      stdout: 'ignore',
      signal: options.signal,
      timeoutMs: QUERY_TIMEOUT_MS,
      what,
    });
  }

  /** Run a local tool of the MariaDB packages that does not connect (mbstream, mariadb-backup --prepare). */
  runLocal(tool: string, args: string[], options: RunOptions): Promise<string> {
    return this.tools().run(tool, args, options);
  }

  /** Run the `mariadb` client to completion (the args follow the connection's and --batch). */
  load(args: string[], options: RunOptions): Promise<string> {
    return this.tools().run('mariadb', [...this.clientArgs(), ...args], options);
  }

  /** The `mariadb` client's arguments: the connection's, its connect timeout, batch mode. */
  private clientArgs(): string[] {
    return [...connectionArgs(this.config), `--connect-timeout=${this.config.connectTimeoutSeconds}`, '--batch'];
  }

  /** Start a tool whose stdout is the product (mariadb-dump); see PgTools.stream. */
  stream(tool: string, args: string[], options: Omit<RunOptions, 'input' | 'stdout' | 'timeoutMs'>): ToolStream {
    return this.tools().stream(tool, [...connectionArgs(this.config), ...args], options);
  }
}

function dbArg(database: string | undefined): string[] {
  return database === undefined ? [] : [`--database=${database}`];
}

/** A value of the client's batch output: tab, newline, NUL and backslash come escaped. */
function unescapeBatch(value: string): string {
  return value.replace(/\\([\\tn0])/g, (_m, c: string) =>
    c === 't' ? '\t' : c === 'n' ? '\n' : c === '0' ? '\0' : '\\',
  );
}

/** An identifier in backticks (MariaDB's quoting: a backtick inside is doubled). */
export function quoteName(name: string): string {
  if (name.includes('\0')) throw new BackupdError('INVALID_ARGUMENT', 'a MariaDB name cannot hold NUL');
  return `\`${name.replace(/`/g, '``')}\``;
}

/**
 * A string literal for SQL run by query() and exec(), whose sessions start with SESSION_SQL (so backslash
 * escapes hold whatever the server's default sql_mode).
 */
export function quoteString(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'").replace(/\0/g, '\\0')}'`;
}
