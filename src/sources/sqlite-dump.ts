// Producing the logical dump of a SQLite database: every row of sqlite_schema, then every table's rows in
// rowid (or primary key) order, all inside one read transaction so the dump is one consistent point in time.
// The database read is a private copy (sqlite.ts), so its file holds still while its pages are read.
// Work is done in slices of about 1 MiB so the event loop keeps turning while a large database is read.

import { fstatSync, statSync } from 'node:fs';
import type Database from 'better-sqlite3';
import { BackupdError, messageOf } from '../errors.js';
import type { RecordFingerprints } from './fingerprint-sqlite.js';
import { DumpEncoder, SLICE } from './sqlite-dump-encoder.js';
import {
  BTREE_INDEX,
  BTREE_NONE,
  BTREE_TABLE,
  DUMP_MAGIC,
  type DumpMeta,
  REC_END,
  REC_META,
  REC_OBJECT,
  REC_ROW,
  REC_TABLE,
  REC_TABLE_END,
  type SqlValue,
  VAL_BLOB,
  VAL_TEXT,
} from './sqlite-format.js';
import { quoteIdent, rowidOf } from './sqlite-names.js';
import { PageFile, rowsFromPages } from './sqlite-pages.js';

interface SchemaRow {
  type: string;
  name: string;
  tbl_name: string;
  sql: string | null;
  rootpage: number | null;
}

export interface DumpOptions {
  /** take() gives views of one reused buffer, each valid only until the next one is asked for. */
  reuseBuffers?: boolean;
  /** The journal mode to record, when `db` is a copy of the database whose mode it keeps (sqlite.ts). */
  journalMode?: string;
  /** Fed the records of rowid tables as they are copied (fingerprint-sqlite.ts). */
  fingerprints?: RecordFingerprints;
}

/**
 * The dump as a sequence of ~1 MiB buffers. The caller must consume it to the end or call return(). `file`
 * is a descriptor of the database file `db` has open, in a rollback-journal mode and written by nobody
 * while the dump runs (a private copy): the rows of rowid tables are copied from its pages as they are
 * ('S' rows), each checked to be a well-formed record.
 */
export function* dumpDatabase(db: Database.Database, file: number, options: DumpOptions = {}): Generator<Buffer> {
  const enc = new DumpEncoder(options.reuseBuffers);
  db.exec('BEGIN');
  try {
    // The first read pins the snapshot every later read sees.
    const objects = db
      .prepare('SELECT type, name, tbl_name, sql, rootpage FROM sqlite_schema ORDER BY rowid')
      .all() as SchemaRow[];
    const pragma = (name: string) => db.pragma(name, { simple: true }) as number | string;
    const meta: DumpMeta = {
      sqliteVersion: String((db.prepare('SELECT sqlite_version() AS v').get() as { v: string }).v),
      pageSize: Number(pragma('page_size')),
      encoding: String(pragma('encoding')),
      autoVacuum: Number(pragma('auto_vacuum')),
      userVersion: Number(pragma('user_version')),
      applicationId: Number(pragma('application_id')),
      journalMode: options.journalMode ?? String(pragma('journal_mode')),
    };
    const pages = objects.length === 0 ? undefined : pageFileOf(db, file, meta);
    enc.raw(DUMP_MAGIC);
    enc.byte(REC_META);
    enc.text(JSON.stringify(meta));
    const withoutRowid = new Set(
      db.prepare("SELECT name FROM pragma_table_list WHERE schema = 'main' AND wr = 1").pluck().all() as string[],
    );
    const tables: { name: string; root: number; rowid: boolean }[] = [];
    for (const object of objects) {
      const root = object.rootpage ?? 0;
      const btree =
        root <= 0 ? BTREE_NONE : object.type === 'index' || withoutRowid.has(object.name) ? BTREE_INDEX : BTREE_TABLE;
      enc.byte(REC_OBJECT);
      enc.text(object.type);
      enc.text(object.name);
      enc.text(object.tbl_name);
      enc.byte(btree);
      enc.byte(object.sql === null ? 0 : 1);
      if (object.sql !== null) enc.text(object.sql);
      if (object.type === 'table' && btree !== BTREE_NONE) {
        tables.push({ name: object.name, root, rowid: btree === BTREE_TABLE });
      }
    }
    // AUTOINCREMENT counters go last: loading the other tables' rows moves them.
    tables.sort((a, b) => Number(a.name === 'sqlite_sequence') - Number(b.name === 'sqlite_sequence'));
    for (const table of tables) {
      try {
        const hook = table.rowid ? options.fingerprints?.table(table.name) : undefined;
        yield* dumpTable(
          db,
          table.name,
          enc,
          table.rowid ? { file: pages!, root: table.root, onRow: hook?.row } : undefined,
        );
        hook?.end();
      } catch (error) {
        if (error instanceof BackupdError) throw error;
        throw new BackupdError('SOURCE_FAILED', `reading table "${table.name}" failed: ${messageOf(error)}`, {
          cause: error,
        });
      }
    }
    enc.byte(REC_END);
    enc.u32(tables.length);
    yield enc.take();
    db.exec('COMMIT');
  } finally {
    if (db.inTransaction) db.exec('ROLLBACK');
  }
}

/**
 * The pages of the database `db` has open, read through `fd`: the same file (device and inode), in a
 * rollback-journal mode (a WAL database's newest pages may be in its WAL), with the page size `db` reports.
 */
function pageFileOf(db: Database.Database, fd: number, meta: DumpMeta): PageFile {
  const [ours, theirs] = [fstatSync(fd), statSync(db.name)];
  if (ours.ino !== theirs.ino || ours.dev !== theirs.dev) {
    throw new BackupdError('INTERNAL', `the dump's descriptor is not the file ${db.name}`);
  }
  if (String(db.pragma('journal_mode', { simple: true })).toLowerCase() === 'wal') {
    throw new BackupdError('INTERNAL', `the dump reads the pages of ${db.name}, which is in WAL mode`);
  }
  const pages = new PageFile(fd, Number(db.pragma('page_count', { simple: true })));
  if (pages.pageSize !== meta.pageSize) {
    throw new BackupdError(
      'SOURCE_FAILED',
      `the SQLite database file is malformed: its header's page size ${pages.pageSize} is not ${meta.pageSize}`,
    );
  }
  return pages;
}

function* dumpTable(
  db: Database.Database,
  table: string,
  enc: DumpEncoder,
  pages?: { file: PageFile; root: number; onRow?: (buf: Buffer, at: number, limit: number) => void },
): Generator<Buffer> {
  const q = quoteIdent(table);
  const info = db.prepare(`PRAGMA table_xinfo(${q})`).all() as {
    name: string;
    type: string;
    pk: number;
    hidden: number;
  }[];
  // Generated columns (hidden 2 virtual, 3 stored) are computed again on restore.
  const columns = info.filter((c) => c.hidden === 0).map((c) => c.name);
  const rowid = pages ? rowidOf(db, table, info) : { kind: 'none' as const };
  enc.byte(REC_TABLE);
  enc.text(table);
  enc.byte(rowid.kind === 'hidden' ? 1 : 0);
  enc.u32(columns.length);
  for (const column of columns) enc.text(column);
  const rows = pages
    ? // A record holds every column but the virtual generated ones.
      yield* rowsFromPages(pages.file, table, pages.root, info.filter((c) => c.hidden !== 2).length, enc, pages.onRow)
    : yield* rowsByValue(db, table, columns.map(quoteIdent), enc);
  enc.byte(REC_TABLE_END);
  enc.u32(rows % 2 ** 32);
}

/** Every row of a WITHOUT ROWID table, in primary key order, value by value through better-sqlite3. */
function* rowsByValue(
  db: Database.Database,
  table: string,
  selected: string[],
  enc: DumpEncoder,
): Generator<Buffer, number> {
  // better-sqlite3 reads TEXT as a JS string, which would replace bytes that are not valid UTF-8 (SQLite
  // keeps whatever bytes it was given) and lone UTF-16 surrogates. TEXT and BLOBs are therefore read as
  // bytes (TEXT in the database's encoding), behind a first byte that tells them apart (1 TEXT, 0 BLOB).
  const values = selected.map(
    (c) =>
      `CASE typeof(${c}) WHEN 'text' THEN unhex('01' || hex(${c})) WHEN 'blob' THEN unhex('00' || hex(${c})) ELSE ${c} END`,
  );
  const statement = db.prepare(`SELECT ${values.join(', ')} FROM ${quoteIdent(table)}`);
  let rows = 0;
  for (const row of statement.raw(true).safeIntegers(true).iterate() as IterableIterator<SqlValue[]>) {
    enc.byte(REC_ROW);
    for (let i = 0; i < row.length; i++) {
      const value = row[i]!;
      if (Buffer.isBuffer(value)) {
        enc.byte(value[0] === 1 ? VAL_TEXT : VAL_BLOB);
        enc.u32(value.length - 1);
        enc.raw(value.subarray(1));
      } else enc.value(value);
    }
    rows++;
    if (enc.size >= SLICE) yield enc.take();
  }
  return rows;
}
