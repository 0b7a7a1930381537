// Loading a logical dump into a new, empty SQLite database: tables first, then rows in big transactions,
// then indexes, views and triggers (so indexes are built once and triggers never fire on restored rows).
// Fed buffer by buffer; a record split across buffers waits for the next one.

import { isUtf8 } from 'node:buffer';
import type Database from 'better-sqlite3';
import { BackupdError } from '../errors.js';
import { quoteIdent, rowidName, rowidOf, STAT_TABLES } from './sqlite-dump.js';
import {
  DUMP_MAGIC,
  DUMP_MAGIC_V1,
  DUMP_MAGIC_V2,
  DUMP_VERSION,
  type DumpMeta,
  REC_END,
  REC_JSON_ROWS,
  REC_META,
  REC_OBJECT,
  REC_ROW,
  REC_SQLITE_ROW,
  REC_TABLE,
  REC_TABLE_END,
  type SqlValue,
  VAL_BLOB,
  VAL_INT,
  VAL_NULL,
  VAL_REAL,
  VAL_TEXT,
} from './sqlite-format.js';
import { JsonRows, RawText } from './sqlite-json-rows.js';
import { decodeRecord, type SqliteRow, sqliteRowAt } from './sqlite-record.js';

/** Thrown inside the parser when the buffer ends mid-record: wait for more bytes. */
const NEED_MORE = Symbol('need more');

class Reader {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  need(bytes: number): void {
    if (this.pos + bytes > this.buf.length) throw NEED_MORE;
  }
  byte(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }
  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }
  text(): string {
    const length = this.u32();
    this.need(length);
    const v = this.buf.toString('utf8', this.pos, this.pos + length);
    this.pos += length;
    return v;
  }
  value(): SqlValue | RawText {
    const tag = this.byte();
    switch (tag) {
      case VAL_NULL:
        return null;
      case VAL_INT: {
        this.need(8);
        const v = this.buf.readBigInt64LE(this.pos);
        this.pos += 8;
        return v;
      }
      case VAL_REAL: {
        this.need(8);
        const v = this.buf.readDoubleLE(this.pos);
        this.pos += 8;
        return v;
      }
      case VAL_TEXT: {
        // TEXT is its bytes as they were, which need not be valid UTF-8 (RawText keeps them).
        const length = this.u32();
        this.need(length);
        const bytes = this.buf.subarray(this.pos, this.pos + length);
        this.pos += length;
        return isUtf8(bytes) ? bytes.toString('utf8') : new RawText(Buffer.from(bytes));
      }
      case VAL_BLOB: {
        const length = this.u32();
        this.need(length);
        const v = Buffer.from(this.buf.subarray(this.pos, this.pos + length));
        this.pos += length;
        return v;
      }
      default:
        throw corrupt(`unknown value tag ${tag}`);
    }
  }
}

/**
 * A 'J' record's bytes as UTF-8. Dumps written before December 2026 held a UTF-16 database's records in
 * its UTF-16 (text cast to bytes is in the database's encoding): a zero byte among the first two, which
 * UTF-8 JSON never holds (NUL is written \u0000), tells them apart, little- or big-endian.
 */
function utf8Json(record: Buffer): Buffer {
  if (record.length < 2 || (record[0] !== 0 && record[1] !== 0)) return record;
  const even = record.subarray(0, record.length & ~1);
  const little = record[1] === 0 ? even : Buffer.from(even).swap16();
  return Buffer.from(little.toString('utf16le'), 'utf8');
}

function corrupt(what: string): BackupdError {
  return new BackupdError('SOURCE_FAILED', `the SQLite dump is not valid: ${what}`);
}

interface Obj {
  type: string;
  name: string;
  sql: string;
}

interface TableState {
  name: string;
  /** The columns the dump names (generated ones left out), and whether each row's rowid comes before them. */
  columns: string[];
  hasRowid: boolean;
  width: number;
  /** How 'S' rows' records map onto the columns: worked out from the restored table at its first 'S' row. */
  records?: RecordShape;
  /**
   * Inserts one row; `insertMany` inserts `batchRows` rows per statement (far fewer calls into SQLite).
   * Undefined when the rows are passed over (statistics of a kind this SQLite does not keep).
   */
  insert: Database.Statement | undefined;
  insertMany: Database.Statement | undefined;
  batchRows: number;
  /** Values of rows read but not yet inserted, row after row. */
  pending: (SqlValue | RawText)[];
  /** `INSERT INTO <table> (<columns>) VALUES ` */
  head: string;
  /** Statements for rows with TEXT that is not valid UTF-8, by which values are such TEXT ('0'/'1' each). */
  rawTextInserts: Map<string, Database.Statement>;
  rows: number;
}

interface RecordShape {
  /** The INTEGER PRIMARY KEY column, whose value is the rowid (its record holds NULL); -1 when there is none. */
  alias: number;
  /** Each column's default: what SQLite reads for columns a record predates (ALTER TABLE ADD COLUMN). */
  defaults: SqlValue[];
}

export class DumpLoader {
  private pending: Buffer = Buffer.alloc(0);
  private started = false;
  private finished = false;
  private readonly deferred: Obj[] = [];
  private table: TableState | undefined;
  private tablesDone = 0;
  private rowsInTransaction = 0;
  private meta: DumpMeta | undefined;

  constructor(private readonly db: Database.Database) {}

  /** Feed the next bytes of the dump. */
  push(bytes: Buffer): void {
    if (this.finished) {
      if (bytes.length > 0) throw corrupt('data after the end marker');
      return;
    }
    this.pending = this.pending.length === 0 ? bytes : Buffer.concat([this.pending, bytes]);
    const reader = new Reader(this.pending);
    let consumed = 0;
    try {
      if (!this.started) {
        reader.need(DUMP_MAGIC.length);
        const magic = this.pending.subarray(0, DUMP_MAGIC.length);
        if (!magic.equals(DUMP_MAGIC) && !magic.equals(DUMP_MAGIC_V2) && !magic.equals(DUMP_MAGIC_V1)) {
          const version = /^BKDSQL(\d)\n$/.exec(magic.toString('latin1'))?.[1];
          if (version && Number(version) > DUMP_VERSION) {
            throw new BackupdError(
              'UNSUPPORTED_FORMAT',
              `the SQLite dump is version ${version}, written by a newer backupd (this one reads versions 1 to ${DUMP_VERSION}): restore it with that version or a later one`,
            );
          }
          throw corrupt('it does not start with BKDSQL3 (or BKDSQL2, BKDSQL1)');
        }
        reader.pos = DUMP_MAGIC.length;
        consumed = reader.pos;
        this.started = true;
      }
      while (reader.pos < this.pending.length && !this.finished) {
        this.record(reader);
        consumed = reader.pos;
      }
    } catch (error) {
      if (error !== NEED_MORE) throw error;
    }
    this.pending = this.pending.subarray(consumed);
    if (this.pending.length > 0 && this.pending.buffer.byteLength > this.pending.length * 4) {
      this.pending = Buffer.from(this.pending);
    }
  }

  /** After the last push: check the end marker, build indexes, views and triggers, commit. */
  finish(): void {
    if (!this.finished || this.pending.length > 0) throw corrupt('it ends before its end marker (truncated)');
    if (this.db.inTransaction) this.db.exec('COMMIT');
    this.db.exec('BEGIN');
    for (const type of ['index', 'view', 'trigger']) {
      for (const obj of this.deferred) if (obj.type === type) this.db.exec(obj.sql);
    }
    this.db.exec('COMMIT');
  }

  private record(r: Reader): void {
    const kind = r.byte();
    switch (kind) {
      case REC_META:
        this.applyMeta(JSON.parse(r.text()) as DumpMeta);
        return;
      case REC_OBJECT: {
        const type = r.text();
        const name = r.text();
        r.text(); // tbl_name: implied by the sql
        const sql = r.text();
        if (type === 'table') this.db.exec(sql);
        else this.deferred.push({ type, name, sql });
        return;
      }
      case REC_TABLE: {
        const name = r.text();
        const hasRowid = r.byte() === 1;
        const n = r.u32();
        const columns: string[] = [];
        for (let i = 0; i < n; i++) columns.push(r.text());
        if (!this.db.inTransaction) this.db.exec('BEGIN');
        if (STAT_TABLES.includes(name)) {
          // Planner statistics: "ANALYZE sqlite_schema" creates their tables without analyzing any table (as
          // SQLite's own .dump does), and the dump's rows replace what is there. A SQLite built without
          // sqlite_stat4 gets none: statistics only guide the planner, so their rows are then passed over.
          this.db.exec('ANALYZE sqlite_schema');
          if (this.columnsOf(name).length === 0) {
            this.table = {
              name,
              columns,
              hasRowid,
              width: columns.length,
              head: '',
              rawTextInserts: new Map(),
              insert: undefined,
              insertMany: undefined,
              batchRows: 1,
              pending: [],
              rows: 0,
            };
            return;
          }
          this.db.exec(`DELETE FROM ${quoteIdent(name)}`);
        }
        // The rowid goes in under the name the dump read it by: the first no column (generated ones too) has taken.
        const rowid = hasRowid ? rowidName(this.columnsOf(name)) : undefined;
        if (hasRowid && !rowid) throw corrupt(`table ${name} has a rowid but its columns take every name for it`);
        const names = [...(rowid ? [rowid] : []), ...columns.map(quoteIdent)];
        const row = `(${names.map(() => '?').join(', ')})`;
        const head = `INSERT INTO ${quoteIdent(name)} (${names.join(', ')}) VALUES `;
        const batchRows = Math.max(1, Math.min(64, Math.floor(32_000 / names.length)));
        this.table = {
          name,
          columns,
          hasRowid,
          width: names.length,
          head,
          rawTextInserts: new Map(),
          insert: this.db.prepare(head + row),
          insertMany: this.db.prepare(head + Array(batchRows).fill(row).join(', ')),
          batchRows,
          pending: [],
          rows: 0,
        };
        // Restoring AUTOINCREMENT tables filled sqlite_sequence already; the dump's values replace them.
        if (name === 'sqlite_sequence') this.db.exec('DELETE FROM sqlite_sequence');
        return;
      }
      case REC_ROW: {
        const table = this.table;
        if (!table) throw corrupt('a row outside a table');
        const start = table.pending.length;
        try {
          for (let i = 0; i < table.width; i++) table.pending.push(r.value());
        } catch (error) {
          table.pending.length = start; // a row split across buffers is read again from its start
          throw error;
        }
        let raw = false;
        for (let i = start; i < table.pending.length && !raw; i++) raw = table.pending[i] instanceof RawText;
        if (raw) this.insertRawTextRow(table);
        else this.rowRead(table);
        return;
      }
      case REC_JSON_ROWS: {
        const table = this.table;
        if (!table) throw corrupt('rows outside a table');
        const length = r.u32();
        r.need(length);
        const rows = new JsonRows(utf8Json(r.buf.subarray(r.pos, r.pos + length)), table.width);
        r.pos += length;
        for (let raw = 0; rows.next(table.pending); raw = rows.rawTexts) {
          if (rows.rawTexts > raw) this.insertRawTextRow(table);
          else this.rowRead(table);
        }
        return;
      }
      case REC_SQLITE_ROW: {
        const table = this.table;
        if (!table) throw corrupt('a row outside a table');
        const row = sqliteRowAt(r.buf, r.pos, r.buf.length);
        if (!row) throw NEED_MORE;
        r.pos = row.end;
        this.sqliteRow(table, row, r.buf);
        return;
      }
      case REC_TABLE_END: {
        const rows = r.u32();
        if (this.table) this.insertPending(this.table);
        if (!this.table || rows !== this.table.rows % 2 ** 32) {
          throw corrupt(`table ${this.table?.name}: ${this.table?.rows} rows read, ${rows} written`);
        }
        this.table = undefined;
        this.tablesDone++;
        return;
      }
      case REC_END: {
        const tables = r.u32();
        if (tables !== this.tablesDone) throw corrupt(`${this.tablesDone} tables read, ${tables} written`);
        this.finished = true;
        return;
      }
      default:
        throw corrupt(`unknown record type ${kind}`);
    }
  }

  /** An 'S' row: its record's values, the rowid where the table keeps it, defaults for columns added since. */
  private sqliteRow(table: TableState, row: SqliteRow, buf: Buffer): void {
    table.records ??= this.recordShape(table);
    const shape = table.records;
    const pending = table.pending;
    const start = pending.length;
    if (table.hasRowid) pending.push(row.rowid);
    const [values, rawTexts] = decodeRecord(buf, row.record, row.end, pending);
    if (values > table.columns.length) {
      throw corrupt(`table ${table.name}: a row holds ${values} values, for ${table.columns.length} columns`);
    }
    for (let i = values; i < table.columns.length; i++) pending.push(shape.defaults[i]!);
    if (shape.alias >= 0) {
      const at = start + shape.alias;
      if (pending[at] !== null) throw corrupt(`table ${table.name}: a row's record holds its INTEGER PRIMARY KEY`);
      pending[at] = row.rowid;
    }
    if (rawTexts > 0) this.insertRawTextRow(table);
    else this.rowRead(table);
  }

  /** How the restored table's rows are stored: see RecordShape. */
  private recordShape(table: TableState): RecordShape {
    const info = this.db.prepare(`PRAGMA table_xinfo(${quoteIdent(table.name)})`).all() as {
      name: string;
      type: string;
      pk: number;
      hidden: number;
      dflt_value: string | null;
    }[];
    const rowid = rowidOf(this.db, table.name, info);
    const stored = info.filter((c) => c.hidden === 0).map((c) => c.name);
    if (stored.length !== info.length || stored.join('\0') !== table.columns.join('\0')) {
      throw corrupt(`table ${table.name}: its rows are records, but its columns are not the ones they were taken from`);
    }
    if (rowid.kind === 'none' || (rowid.kind === 'hidden') !== table.hasRowid) {
      throw corrupt(`table ${table.name}: its rows are records, but it does not keep its rowid as they say`);
    }
    const defaults = info.map((c): SqlValue => {
      if (c.dflt_value === null) return null;
      try {
        return this.db.prepare(`SELECT ${c.dflt_value}`).pluck().safeIntegers(true).get() as SqlValue;
      } catch (error) {
        throw corrupt(`table ${table.name}: the default of column ${c.name} cannot be read back: ${String(error)}`);
      }
    });
    const alias = rowid.kind === 'alias' ? table.columns.indexOf(rowid.column) : -1;
    if (rowid.kind === 'alias' && alias < 0)
      throw corrupt(`table ${table.name}: its rowid column ${rowid.column} is not among its columns`);
    return { alias, defaults };
  }

  /**
   * The row at the end of `pending` holds TEXT that is not valid UTF-8 (RawText): it goes in on its own,
   * those values bound as bytes and cast to TEXT, so they keep their bytes (rare: legacy data stored in
   * another encoding). The rows before it go in first.
   */
  private insertRawTextRow(table: TableState): void {
    const row = table.pending.splice(table.pending.length - table.width);
    this.insertPending(table);
    if (!table.insert) {
      table.rows++; // a table whose rows are passed over
      return;
    }
    const mask = row.map((v) => (v instanceof RawText ? '1' : '0')).join('');
    let statement = table.rawTextInserts.get(mask);
    if (!statement) {
      const values = row.map((v) => (v instanceof RawText ? 'CAST(? AS TEXT)' : '?'));
      statement = this.db.prepare(`${table.head}(${values.join(', ')})`);
      table.rawTextInserts.set(mask, statement);
    }
    statement.run(row.map((v) => (v instanceof RawText ? v.bytes : v)));
    table.rows++;
    this.counted(1);
  }

  /** A row's values are in `pending`: insert a batch when one is full, commit now and then. */
  private rowRead(table: TableState): void {
    table.rows++;
    if (table.pending.length === table.batchRows * table.width) {
      table.insertMany?.run(table.pending);
      table.pending = [];
    }
    this.counted(1);
  }

  /** Rows read but not yet inserted (fewer than a batch) go in one by one. */
  private insertPending(table: TableState): void {
    const { pending, width, insert } = table;
    for (let i = 0; insert && i < pending.length; i += width) insert.run(pending.slice(i, i + width));
    table.pending = [];
  }

  /** `rows` more rows are in: commit in large batches (one huge transaction would grow the cache without bound). */
  private counted(rows: number): void {
    this.rowsInTransaction += rows;
    if (this.rowsInTransaction >= 200_000) {
      this.db.exec('COMMIT');
      this.db.exec('BEGIN');
      this.rowsInTransaction = 0;
    }
  }

  /** Every column of a table created from the dump, generated ones too. */
  private columnsOf(table: string): string[] {
    return (this.db.prepare(`PRAGMA table_xinfo(${quoteIdent(table)})`).all() as { name: string }[]).map((c) => c.name);
  }

  /**
   * The journal mode the restored file should keep once loaded: WAL when the original was in WAL mode (the
   * file itself records it), else the default rollback journal.
   */
  get journalMode(): 'WAL' | 'DELETE' {
    return this.meta?.journalMode?.toLowerCase() === 'wal' ? 'WAL' : 'DELETE';
  }

  private applyMeta(meta: DumpMeta): void {
    this.meta = meta;
    // Settings that must precede the first table; the rest are restored as they were.
    this.db.pragma(`page_size = ${Number(meta.pageSize)}`);
    this.db.pragma(`auto_vacuum = ${Number(meta.autoVacuum)}`);
    if (/^UTF-(8|16le|16be)$/i.test(meta.encoding)) this.db.pragma(`encoding = '${meta.encoding}'`);
    this.db.pragma(`user_version = ${Number(meta.userVersion)}`);
    this.db.pragma(`application_id = ${Number(meta.applicationId)}`);
  }
}
