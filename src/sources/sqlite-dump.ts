// Producing the logical dump of a SQLite database: schema objects, then every table's rows in rowid
// (or primary key) order, all inside one read transaction so the dump is one consistent point in time.
// Work is done in slices of about 1 MiB so the event loop keeps turning while a large database is read.

import type Database from 'better-sqlite3';
import { BackupdError } from '../errors.js';
import {
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
  VAL_INT,
  VAL_NULL,
  VAL_REAL,
  VAL_TEXT,
} from './sqlite-format.js';

const SLICE = 1 << 20;

/** Appends records into ~1 MiB buffers; `take()` hands over a full one. */
class Encoder {
  private buf = Buffer.allocUnsafe(SLICE + (64 << 10));
  private pos = 0;

  get size(): number {
    return this.pos;
  }

  take(): Buffer {
    const out = this.buf.subarray(0, this.pos);
    this.buf = Buffer.allocUnsafe(SLICE + (64 << 10));
    this.pos = 0;
    return out;
  }

  private reserve(bytes: number): void {
    if (this.pos + bytes <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + bytes));
    this.buf.copy(bigger, 0, 0, this.pos);
    this.buf = bigger;
  }

  byte(value: number): void {
    this.reserve(1);
    this.buf[this.pos++] = value;
  }

  u32(value: number): void {
    this.reserve(4);
    this.buf.writeUInt32LE(value, this.pos);
    this.pos += 4;
  }

  raw(bytes: Buffer): void {
    this.reserve(bytes.length);
    bytes.copy(this.buf, this.pos);
    this.pos += bytes.length;
  }

  text(value: string): void {
    this.reserve(5 + value.length * 3);
    const written = this.buf.write(value, this.pos + 4, 'utf8');
    this.buf.writeUInt32LE(written, this.pos);
    this.pos += 4 + written;
  }

  value(value: SqlValue): void {
    if (value === null) {
      this.byte(VAL_NULL);
    } else if (typeof value === 'bigint') {
      this.reserve(9);
      this.buf[this.pos] = VAL_INT;
      this.buf.writeBigInt64LE(value, this.pos + 1);
      this.pos += 9;
    } else if (typeof value === 'number') {
      this.reserve(9);
      this.buf[this.pos] = VAL_REAL;
      this.buf.writeDoubleLE(value, this.pos + 1);
      this.pos += 9;
    } else if (typeof value === 'string') {
      this.byte(VAL_TEXT);
      this.text(value);
    } else {
      this.byte(VAL_BLOB);
      this.u32(value.length);
      this.raw(value);
    }
  }
}

interface SchemaRow {
  type: string;
  name: string;
  tbl_name: string;
  sql: string | null;
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** The dump as a sequence of ~1 MiB buffers. The caller must consume it to the end or call return(). */
export function* dumpDatabase(db: Database.Database): Generator<Buffer> {
  const enc = new Encoder();
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

function* dumpTable(db: Database.Database, table: string, enc: Encoder): Generator<Buffer> {
  const q = quoteIdent(table);
  const columns = (db.prepare(`PRAGMA table_xinfo(${q})`).all() as { name: string; hidden: number }[])
    .filter((c) => c.hidden === 0) // generated columns (hidden 2, 3) are computed again on restore
    .map((c) => c.name);
  // sqlite_sequence is filled by SQLite itself while rows are restored; its rowids carry no meaning.
  const hasRowid = table !== 'sqlite_sequence' && tableHasHiddenRowid(db, table);
  const selected = [...(hasRowid ? ['rowid'] : []), ...columns.map(quoteIdent)];
  enc.byte(REC_TABLE);
  enc.text(table);
  enc.byte(hasRowid ? 1 : 0);
  enc.u32(columns.length);
  for (const column of columns) enc.text(column);
  const statement = db.prepare(`SELECT ${selected.join(', ')} FROM ${q}${hasRowid ? ' ORDER BY rowid' : ''}`);
  let rows = 0;
  for (const row of statement.raw(true).safeIntegers(true).iterate() as IterableIterator<SqlValue[]>) {
    enc.byte(REC_ROW);
    for (let i = 0; i < row.length; i++) enc.value(row[i]!);
    rows++;
    if (enc.size >= SLICE) yield enc.take();
  }
  enc.byte(REC_TABLE_END);
  enc.u32(rows % 2 ** 32);
}

/** True for a rowid table whose rowid is not an INTEGER PRIMARY KEY column (then it must be kept apart). */
function tableHasHiddenRowid(db: Database.Database, table: string): boolean {
  const list = db.prepare('SELECT wr FROM pragma_table_list WHERE name = ? AND schema = ?').get(table, 'main') as
    | { wr: number }
    | undefined;
  if (!list || list.wr === 1) return false;
  // With an INTEGER PRIMARY KEY alias, "SELECT rowid" reports the alias's own name.
  const name = db.prepare(`SELECT rowid FROM ${quoteIdent(table)} LIMIT 0`).columns()[0]?.name;
  return name === 'rowid';
}
