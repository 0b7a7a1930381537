// A logical backup of one MariaDB database: two files. `globals.json` holds what lives outside the
// database but its restore needs (its default character set and collation, the server version, and,
// when the operator asks, the accounts its objects run as or that hold privileges on it, with those
// privileges but never a password); `dump.sql` is mariadb-dump's output, uncompressed so the pipeline's
// chunks dedupe between backups, streamed as mariadb-dump writes it.

import { Readable } from 'node:stream';
import type { MariadbAccount, MariadbDatabase } from './mariadb-catalog.js';
import type { MariadbClient } from './mariadb-client.js';
import type { SourceFile, SourceReading } from './source.js';

export const GLOBALS_FILE = 'globals.json';
export const DUMP_FILE = 'dump.sql';
export const GLOBALS_FORMAT = 1;
/** The last comment mariadb-dump writes (`-- Dump completed`, dated unless --skip-dump-date). */
export const DUMP_END = '-- Dump completed';
/** The same chunk size as PostgreSQL dumps, for the same reasons (postgres-dump.ts). */
export const DUMP_CHUNK_BYTES = 64 << 10;

/** The content of globals.json. */
export interface DumpGlobals {
  format: number;
  serverVersion: string;
  database: MariadbDatabase;
  /** Present when the source's `grants` is on: the accounts the restore creates (if missing) and grants. */
  accounts?: MariadbAccount[];
}

/** mariadb-dump's arguments for one database (after the connection's). */
export function dumpArgs(database: string): string[] {
  return [
    // One consistent snapshot of every InnoDB table (a REPEATABLE READ transaction, no lock held on
    // writers); MyISAM and other non-transactional tables are read as they are at that moment each.
    '--single-transaction',
    '--routines',
    '--triggers',
    '--events',
    // BLOBs and binary strings as hex: the dump is text whatever they hold (NUL bytes, invalid UTF-8).
    '--hex-blob',
    '--default-character-set=utf8mb4',
    // No date in the last line: an unchanged database dumps to the same bytes, to the end.
    '--skip-dump-date',
    // Tablespaces are not the database's (and listing them needs the PROCESS privilege).
    '--no-tablespaces',
    // Each table's rows in primary key order: a table that did not change dumps to the same bytes.
    '--order-by-primary',
    // Without --databases: no CREATE DATABASE / USE, so the dump loads into whatever database a restore names.
    '--',
    database,
  ];
}

export interface DumpOptions {
  client: MariadbClient;
  database: MariadbDatabase;
  serverVersion: string;
  accounts?: MariadbAccount[];
  signal?: AbortSignal;
}

/** Read `database` as a logical backup: globals.json, then dump.sql (mariadb-dump starts when it is reached). */
export function readDump(options: DumpOptions): SourceReading {
  const { client, database, signal } = options;
  const globals: DumpGlobals = {
    format: GLOBALS_FORMAT,
    serverVersion: options.serverVersion,
    database,
    ...(options.accounts ? { accounts: options.accounts } : {}),
  };
  let dump: { kill(): void } | undefined;
  let closed = false;
  async function* files(): AsyncGenerator<SourceFile> {
    yield {
      name: GLOBALS_FILE,
      chunking: { kind: 'cdc' },
      stream: Readable.from([Buffer.from(`${JSON.stringify(globals, null, 2)}\n`)], { objectMode: false }),
    };
    if (closed) return;
    const started = client.stream('mariadb-dump', dumpArgs(database.name), {
      what: `mariadb-dump of database ${database.name}`,
      signal,
    });
    dump = started;
    yield {
      name: DUMP_FILE,
      chunking: { kind: 'cdc', avgBytes: DUMP_CHUNK_BYTES },
      stream: started.stream,
      fill: started.fill,
    };
  }
  return {
    engineVersion: `MariaDB ${options.serverVersion}`,
    files: files(),
    close: async () => {
      closed = true;
      dump?.kill();
    },
  };
}
