// Producing the logical dump of a SQLite database: schema objects, then every table's rows in rowid
// (or primary key) order, all inside one read transaction so the dump is one consistent point in time.
// Work is done in slices of about 1 MiB so the event loop keeps turning while a large database is read.

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
} from './sqlite-format.js';

interface SchemaRow {
  type: string;
  name: string;
  tbl_name: string;
  sql: string | null;
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * The dump as a sequence of ~1 MiB buffers. The caller must consume it to the end or call return(). With
 * `reuseBuffers` each buffer is valid only until the next one is asked for (no allocation per buffer).
 */
export function* dumpDatabase(db: Database.Database, reuseBuffers = false): Generator<Buffer> {
  const enc = new DumpEncoder(reuseBuffers);
  db.exec('BEGIN');
  try {
    // The first read pins the snapshot every later read sees.
    const objects = db
      .prepare('SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY rowid')
      .all() as SchemaRow[];
    const pragma = (name: string) => db.pragma(name, { simple: true }) as number | string;
    const meta: DumpMeta = {
      sqliteVersion: String((db.prepare('SELECT sqlite_version() AS v').get() as { v: string }).v),
      pageSize: Number(pragma('page_size')),
      encoding: String(pragma('encoding')),
      autoVacuum: Number(pragma('auto_vacuum')),
      userVersion: Number(pragma('user_version')),
      applicationId: Number(pragma('application_id')),
    };
    enc.raw(DUMP_MAGIC);
    enc.byte(REC_META);
    enc.text(JSON.stringify(meta));
    const tables: string[] = [];
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
    }
    if (objects.some((o) => o.name === 'sqlite_sequence')) tables.push('sqlite_sequence');
    for (const table of tables) {
      yield* dumpTable(db, table, enc);
    }
    enc.byte(REC_END);
    enc.u32(tables.length);
    yield enc.take();
    db.exec('COMMIT');
  } finally {
    if (db.inTransaction) db.exec('ROLLBACK');
  }
}

function* dumpTable(db: Database.Database, table: string, enc: DumpEncoder): Generator<Buffer> {
  const q = quoteIdent(table);
  const columns = (db.prepare(`PRAGMA table_xinfo(${q})`).all() as { name: string; hidden: number }[])
    .filter((c) => c.hidden === 0) // generated columns (hidden 2, 3) are computed again on restore
    .map((c) => c.name);
  // sqlite_sequence is filled by SQLite itself while rows are restored; its rowids carry no meaning.
  const rowid = table === 'sqlite_sequence' ? 'none' : rowidOf(db, table);
  const selected = [...(rowid === 'hidden' ? ['rowid'] : []), ...columns.map(quoteIdent)];
  enc.byte(REC_TABLE);
  enc.text(table);
  enc.byte(rowid === 'hidden' ? 1 : 0);
  enc.u32(columns.length);
  for (const column of columns) enc.text(column);
  const rows =
    rowid === 'none' ? yield* rowsByValue(db, table, selected, enc) : yield* rowsAsJson(db, table, selected, enc);
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
  const statement = db.prepare(`SELECT ${selected.join(', ')} FROM ${quoteIdent(table)}`);
  let rows = 0;
  for (const row of statement.raw(true).safeIntegers(true).iterate() as IterableIterator<SqlValue[]>) {
    enc.byte(REC_ROW);
    for (let i = 0; i < row.length; i++) enc.value(row[i]!);
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
 * Every row in rowid order, a range of rowids at a time rendered by SQLite as JSON lines and stored as they
 * are in 'J' records (read back by sqlite-json-rows.ts). Ranges are aligned to their size, so the same rows
 * make the same records from one backup to the next. A column that turns out to hold BLOBs (json_array
 * refuses them) is asked for as {"b":"<hex>"} from then on. The records are UTF-8 in any database.
 */
function* rowsAsJson(
  db: Database.Database,
  table: string,
  selected: string[],
  enc: DumpEncoder,
): Generator<Buffer, number> {
  const q = quoteIdent(table);
  const firstFrom = db
    .prepare(`SELECT rowid FROM ${q} WHERE rowid >= ? ORDER BY rowid LIMIT 1`)
    .pluck()
    .safeIntegers(true);
  const blobColumns = new Set<number>();
  // The records are UTF-8 whatever the database's encoding: text cast to bytes is in that encoding, so a
  // UTF-16 database's lines come as a string and are encoded here.
  const utf8 = db.pragma('encoding', { simple: true }) === 'UTF-8';
  const batchStatement = () => {
    const values = selected.map((c, i) =>
      blobColumns.has(i) ? `iif(typeof(${c}) = 'blob', json_object('b', hex(${c})), ${c})` : c,
    );
    const lines = `group_concat(json_array(${values.join(', ')}), char(10))`;
    return db
      .prepare(`SELECT ${utf8 ? `CAST(${lines} AS BLOB)` : lines}, count(*) FROM ${q} WHERE rowid BETWEEN ? AND ?`)
      .raw(true);
  };
  let batch = batchStatement();
  let span = 256n;
  let rows = 0;
  for (let from = MIN_ROWID; ; ) {
    const first = firstFrom.get(from) as bigint | undefined;
    if (first === undefined) break;
    const aligned = first - (((first % span) + span) % span);
    const lo = aligned > from ? aligned : from;
    const hi = aligned > MAX_ROWID - span + 1n ? MAX_ROWID : aligned + span - 1n;
    let json: Buffer | string | null;
    let count: number;
    try {
      [json, count] = batch.get(lo, hi) as [Buffer | string | null, number];
      if (typeof json === 'string') json = Buffer.from(json, 'utf8');
    } catch (error) {
      if (!(error instanceof Error && /JSON cannot hold BLOB/.test(error.message))) throw error;
      const found = blobColumnsIn(db, q, selected, lo, hi).filter((i) => !blobColumns.has(i));
      if (found.length === 0) throw error;
      for (const i of found) blobColumns.add(i);
      batch = batchStatement();
      continue;
    }
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

function blobColumnsIn(db: Database.Database, q: string, selected: string[], lo: bigint, hi: bigint): number[] {
  const found = db
    .prepare(
      `SELECT ${selected.map((c) => `max(typeof(${c}) = 'blob')`).join(', ')} FROM ${q} WHERE rowid BETWEEN ? AND ?`,
    )
    .raw(true)
    .get(lo, hi) as number[];
  return found.flatMap((hasBlob, i) => (hasBlob ? [i] : []));
}

/**
 * How a table keeps its rowid: 'none' (WITHOUT ROWID), 'alias' (an INTEGER PRIMARY KEY column is the rowid),
 * or 'hidden' (the rowid is not a column, and the dump must keep it apart).
 */
function rowidOf(db: Database.Database, table: string): 'none' | 'alias' | 'hidden' {
  const list = db.prepare('SELECT wr FROM pragma_table_list WHERE name = ? AND schema = ?').get(table, 'main') as
    | { wr: number }
    | undefined;
  if (!list || list.wr === 1) return 'none';
  // With an INTEGER PRIMARY KEY alias, "SELECT rowid" reports the alias's own name.
  const name = db.prepare(`SELECT rowid FROM ${quoteIdent(table)} LIMIT 0`).columns()[0]?.name;
  return name === 'rowid' ? 'hidden' : 'alias';
}
