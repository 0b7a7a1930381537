// Producing the logical dump of a SQLite database: schema objects, then every table's rows in rowid
// (or primary key) order, all inside one read transaction so the dump is one consistent point in time.
// Work is done in slices of about 1 MiB so the event loop keeps turning while a large database is read.

import { fstatSync, statSync } from 'node:fs';
import type Database from 'better-sqlite3';
import { BackupdError } from '../errors.js';
import { DumpEncoder, SLICE } from './sqlite-dump-encoder.js';
import {
  DUMP_MAGIC,
  type DumpMeta,
  REC_END,
  REC_JSON_ROWS,
  REC_META,
  REC_OBJECT,
  REC_ROW,
  REC_TABLE,
  REC_TABLE_END,
  type SqlValue,
  VAL_BLOB,
  VAL_TEXT,
} from './sqlite-format.js';
import { PageFile, rowsFromPages } from './sqlite-pages.js';

interface SchemaRow {
  type: string;
  name: string;
  tbl_name: string;
  sql: string | null;
  rootpage: number | null;
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * The dump as a sequence of ~1 MiB buffers. The caller must consume it to the end or call return(). With
 * `reuseBuffers` each buffer is valid only until the next one is asked for (no allocation per buffer).
 * `file`, a descriptor of the database file that is never closed while `db` is open (closing one drops
 * this process's locks on the file), lets the rows of a database in a rollback-journal mode be copied from
 * its pages as they are ('S' rows) instead of rendered by SQL.
 */
export function* dumpDatabase(db: Database.Database, reuseBuffers = false, file?: number): Generator<Buffer> {
  const enc = new DumpEncoder(reuseBuffers);
  db.exec('BEGIN');
  try {
    // The first read pins the snapshot every later read sees.
    const objects = db
      .prepare('SELECT type, name, tbl_name, sql, rootpage FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY rowid')
      .all() as SchemaRow[];
    const pragma = (name: string) => db.pragma(name, { simple: true }) as number | string;
    const meta: DumpMeta = {
      sqliteVersion: String((db.prepare('SELECT sqlite_version() AS v').get() as { v: string }).v),
      pageSize: Number(pragma('page_size')),
      encoding: String(pragma('encoding')),
      autoVacuum: Number(pragma('auto_vacuum')),
      userVersion: Number(pragma('user_version')),
      applicationId: Number(pragma('application_id')),
      journalMode: String(pragma('journal_mode')),
    };
    const pages = file === undefined ? undefined : pageFileOf(db, file, meta);
    enc.raw(DUMP_MAGIC);
    enc.byte(REC_META);
    enc.text(JSON.stringify(meta));
    const tables: string[] = [];
    const roots = new Map<string, number>();
    for (const object of objects) {
      if (object.name.startsWith('sqlite_')) continue; // internal tables are created by SQLite itself
      if (object.type === 'table' && /^\s*CREATE\s+VIRTUAL\s+TABLE/i.test(object.sql ?? '')) {
        throw new BackupdError(
          'UNSUPPORTED',
          `table "${object.name}" is a virtual table, which a logical backup cannot hold yet: use a snapshot task for this database`,
        );
      }
      enc.byte(REC_OBJECT);
      enc.text(object.type);
      enc.text(object.name);
      enc.text(object.tbl_name);
      enc.text(object.sql ?? '');
      if (object.type === 'table') tables.push(object.name);
      if (object.type === 'table' && object.rootpage) roots.set(object.name, object.rootpage);
    }
    // SQLite's own tables that hold data: AUTOINCREMENT counters and the planner's statistics (ANALYZE).
    for (const own of ['sqlite_sequence', ...STAT_TABLES]) if (objects.some((o) => o.name === own)) tables.push(own);
    for (const table of tables) {
      const root = roots.get(table);
      yield* dumpTable(db, table, enc, pages && root ? { file: pages, root } : undefined);
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
 * The pages of the database `db` has open, read through `fd`, when they can be read as they lie: the
 * database is in a rollback-journal mode (the transaction's SHARED lock keeps writers off the file; a WAL
 * database's checkpoints write it under readers), UTF-8 (the loader reads 'S' rows' TEXT as UTF-8), and
 * `fd` is the same file as the one `db` opened, with the page size `db` reports. Undefined otherwise: the
 * rows are then rendered by SQL.
 */
function pageFileOf(db: Database.Database, fd: number, meta: DumpMeta): PageFile | undefined {
  if (meta.journalMode?.toLowerCase() === 'wal' || meta.encoding !== 'UTF-8') return undefined;
  const path = db.name;
  const [ours, theirs] = [fstatSync(fd), statSync(path)];
  if (ours.ino !== theirs.ino || ours.dev !== theirs.dev) return undefined;
  const pages = new PageFile(fd, Number(db.pragma('page_count', { simple: true })));
  return pages.pageSize === meta.pageSize ? pages : undefined;
}

function* dumpTable(
  db: Database.Database,
  table: string,
  enc: DumpEncoder,
  pages?: { file: PageFile; root: number },
): Generator<Buffer> {
  const q = quoteIdent(table);
  const info = db.prepare(`PRAGMA table_xinfo(${q})`).all() as {
    name: string;
    type: string;
    pk: number;
    hidden: number;
  }[];
  const shown = info.filter((c) => c.hidden === 0); // generated columns (hidden 2, 3) are computed again on restore
  const columns = shown.map((c) => c.name);
  // SQLite's own tables (sqlite_sequence, statistics) are dumped without their rowids, which carry no meaning.
  const rowid = table.startsWith('sqlite_') ? { kind: 'none' as const } : rowidOf(db, table, info);
  const selected = [...(rowid.kind === 'hidden' ? [rowid.name] : []), ...columns.map(quoteIdent)];
  enc.byte(REC_TABLE);
  enc.text(table);
  enc.byte(rowid.kind === 'hidden' ? 1 : 0);
  enc.u32(columns.length);
  for (const column of columns) enc.text(column);
  // A rowid table's rows as the file stores them, unless it has generated columns (the records hold stored
  // ones, which the dump leaves out, and not virtual ones: the loader would have to tell them apart).
  if (pages && rowid.kind !== 'none' && info.every((c) => c.hidden === 0)) {
    const rows = yield* rowsFromPages(pages.file, table, pages.root, enc);
    enc.byte(REC_TABLE_END);
    enc.u32(rows % 2 ** 32);
    return;
  }
  let batch: Database.Statement | undefined;
  if (rowid.kind !== 'none') {
    // Which selected values may be BLOBs: any column but the rowid's, except in a STRICT table, whose
    // columns of other types refuse BLOBs.
    const strict = isStrict(db, table);
    const mayBeBlob = [
      ...(rowid.kind === 'hidden' ? [false] : []),
      ...shown.map((c) =>
        rowid.kind === 'alias' && c.name === rowid.column ? false : !strict || /^(BLOB|ANY)$/i.test(c.type),
      ),
    ];
    batch = jsonLinesStatement(db, table, rowid.name, selected, mayBeBlob);
  }
  // Tables without a rowid to read in ranges, or too wide for json_array(), go value by value.
  const rows =
    rowid.kind === 'none' || !batch
      ? yield* rowsByValue(db, table, selected, enc)
      : yield* rowsAsJson(db, table, rowid.name, batch, enc);
  enc.byte(REC_TABLE_END);
  enc.u32(rows % 2 ** 32);
}

/** Every row, value by value through better-sqlite3: for tables without a rowid to read in ranges. */
function* rowsByValue(
  db: Database.Database,
  table: string,
  selected: string[],
  enc: DumpEncoder,
): Generator<Buffer, number> {
  // better-sqlite3 reads TEXT as a JS string, which replaces bytes that are not valid UTF-8 (SQLite keeps
  // whatever bytes it was given). In a UTF-8 database TEXT and BLOBs are therefore read as bytes, behind
  // a first byte that tells them apart (1 TEXT, 0 BLOB), and TEXT is written as its bytes as they are.
  const bytes = db.pragma('encoding', { simple: true }) === 'UTF-8';
  const values = bytes
    ? selected.map(
        (c) =>
          `CASE typeof(${c}) WHEN 'text' THEN unhex('01' || hex(${c})) WHEN 'blob' THEN unhex('00' || hex(${c})) ELSE ${c} END`,
      )
    : selected;
  const statement = db.prepare(`SELECT ${values.join(', ')} FROM ${quoteIdent(table)}`);
  let rows = 0;
  for (const row of statement.raw(true).safeIntegers(true).iterate() as IterableIterator<SqlValue[]>) {
    enc.byte(REC_ROW);
    for (let i = 0; i < row.length; i++) {
      const value = row[i]!;
      if (bytes && Buffer.isBuffer(value)) {
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

const MAX_ROWID = 2n ** 63n - 1n;
const MIN_ROWID = -(2n ** 63n);
/** Rowid ranges grow and shrink between these sizes to keep a batch's JSON near BATCH_BYTES. */
const MIN_SPAN = 1n;
const MAX_SPAN = 1n << 16n;
const BATCH_BYTES = 512 << 10;

/**
 * The statement that renders the rows of a range of rowids as JSON lines, one json_array() per row;
 * undefined when the table is wider than SQLite lets a function's arguments be (1,000 here). Values that
 * may be BLOBs (`mayBeBlob`) are written as {"b":"<hex>"} when they are: json_array() cannot be given a BLOB
 * as it is, because it reads a BLOB that happens to be valid JSONB as JSON (x'00' became null) and refuses
 * the others. The test is `v >= x''`, true for BLOBs only (they sort after every other value) and cheaper
 * than typeof(v) = 'blob' (about 10% of the dump's CPU against 25-35%, measured on the benchmark
 * database). The lines are UTF-8 in any database: text cast to bytes is in the database's encoding, so a
 * UTF-16 database's lines come as a string, encoded by rowsAsJson.
 */
function jsonLinesStatement(
  db: Database.Database,
  table: string,
  rowid: string,
  selected: string[],
  mayBeBlob: boolean[],
): Database.Statement | undefined {
  const values = selected.map((c, i) => (mayBeBlob[i] ? `iif(${c} >= x'', json_object('b', hex(${c})), ${c})` : c));
  const utf8 = db.pragma('encoding', { simple: true }) === 'UTF-8';
  const lines = `group_concat(json_array(${values.join(', ')}), char(10))`;
  try {
    return db
      .prepare(
        `SELECT ${utf8 ? `CAST(${lines} AS BLOB)` : lines}, count(*) FROM ${quoteIdent(table)} WHERE ${rowid} BETWEEN ? AND ?`,
      )
      .raw(true);
  } catch (error) {
    if (error instanceof Error && /too many arguments/.test(error.message)) return undefined;
    throw error;
  }
}

/**
 * Every row in rowid order, a range of rowids at a time rendered by SQLite as JSON lines (`batch`, from
 * jsonLinesStatement) and stored as they are in 'J' records (read back by sqlite-json-rows.ts). Ranges are
 * aligned to their size, so the same rows make the same records from one backup to the next.
 */
function* rowsAsJson(
  db: Database.Database,
  table: string,
  rowid: string,
  batch: Database.Statement,
  enc: DumpEncoder,
): Generator<Buffer, number> {
  const firstFrom = db
    .prepare(`SELECT ${rowid} FROM ${quoteIdent(table)} WHERE ${rowid} >= ? ORDER BY ${rowid} LIMIT 1`)
    .pluck()
    .safeIntegers(true);
  let span = 256n;
  let rows = 0;
  for (let from = MIN_ROWID; ; ) {
    const first = firstFrom.get(from) as bigint | undefined;
    if (first === undefined) break;
    const aligned = first - (((first % span) + span) % span);
    const lo = aligned > from ? aligned : from;
    const hi = aligned > MAX_ROWID - span + 1n ? MAX_ROWID : aligned + span - 1n;
    const [lines, count] = batch.get(lo, hi) as [Buffer | string | null, number];
    const json = typeof lines === 'string' ? Buffer.from(lines, 'utf8') : lines;
    if (json) {
      enc.byte(REC_JSON_ROWS);
      enc.u32(json.length);
      enc.raw(json);
      rows += count;
      if (json.length < BATCH_BYTES / 4 && span < MAX_SPAN) span *= 2n;
      else if (json.length > BATCH_BYTES * 2 && span > MIN_SPAN) span /= 2n;
    }
    if (enc.size >= SLICE) yield enc.take();
    if (hi === MAX_ROWID) break;
    from = hi + 1n;
  }
  return rows;
}

function isStrict(db: Database.Database, table: string): boolean {
  const list = db.prepare('SELECT strict FROM pragma_table_list WHERE name = ? AND schema = ?').get(table, 'main') as
    | { strict: number }
    | undefined;
  return list?.strict === 1;
}

/** SQLite's tables of planner statistics that ANALYZE fills (sqlite_stat4 only in builds that keep it). */
export const STAT_TABLES = ['sqlite_stat1', 'sqlite_stat4'];

/** The names SQLite gives a rowid table's rowid, unless a column has taken them. */
export const ROWID_NAMES = ['rowid', '_rowid_', 'oid'];

/** The first name of the rowid that no column of `columns` (generated ones too) has taken; undefined when all are. */
export function rowidName(columns: string[]): string | undefined {
  const taken = new Set(columns.map((c) => c.toLowerCase()));
  return ROWID_NAMES.find((name) => !taken.has(name));
}

/**
 * How a table keeps its rowid: 'none' (WITHOUT ROWID, or a rowid no name reaches because columns took all
 * three), 'alias' (an INTEGER PRIMARY KEY column is the rowid: `column`), or 'hidden' (the rowid is not a
 * column, and the dump must keep it apart). `name` is how SQL reaches it.
 */
export function rowidOf(
  db: Database.Database,
  table: string,
  info: { name: string; type: string; pk: number }[],
): { kind: 'none' } | { kind: 'alias'; name: string; column: string } | { kind: 'hidden'; name: string } {
  const list = db.prepare('SELECT wr FROM pragma_table_list WHERE name = ? AND schema = ?').get(table, 'main') as
    | { wr: number }
    | undefined;
  const name = rowidName(info.map((c) => c.name));
  if (!list || list.wr === 1 || !name) return { kind: 'none' };
  // Selecting the rowid reports the name of its INTEGER PRIMARY KEY alias, and "rowid" when it has none,
  // unless the alias is itself named rowid.
  const reported = db.prepare(`SELECT ${name} FROM ${quoteIdent(table)} LIMIT 0`).columns()[0]!.name;
  const keys = info.filter((c) => c.pk > 0);
  const aliasNamedRowid =
    keys.length === 1 && keys[0]!.name.toLowerCase() === 'rowid' && keys[0]!.type.toUpperCase() === 'INTEGER';
  return reported.toLowerCase() !== 'rowid' || aliasNamedRowid
    ? { kind: 'alias', name, column: reported }
    : { kind: 'hidden', name };
}
