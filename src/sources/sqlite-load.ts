// Loading a logical dump into a new, empty SQLite database. The schema goes in as the source's
// sqlite_schema rows, written as they were (PRAGMA writable_schema, each with a new empty b-tree of its
// kind), so SQLite parses them as it parses any database's schema: every schema the source's SQLite
// accepted loads, double-quoted string literals and virtual tables included (docs/SOURCES.md). Tables and
// their automatic indexes first, then the rows in big transactions with foreign keys off, then indexes
// (built once, by REINDEX), views and triggers (so triggers never fire on restored rows).
// Fed buffer by buffer; a record split across buffers waits for the next one.

import { isUtf8 } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import type Database from 'better-sqlite3';
import { BackupdError, messageOf } from '../errors.js';
import {
  BTREE_INDEX,
  BTREE_NONE,
  BTREE_TABLE,
  DUMP_MAGIC,
  DUMP_VERSION,
  type DumpMeta,
  RawText,
  REC_END,
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
import { quoteIdent, rowidName, rowidOf } from './sqlite-names.js';
import { decodeRecord, type SqliteRow, sqliteRowAt } from './sqlite-record.js';

/** Thrown inside the parser when the buffer ends mid-record: wait for more bytes. */
const NEED_MORE = Symbol('need more');

class Reader {
  pos = 0;
  constructor(
    readonly buf: Buffer,
    /** TEXT is UTF-16 (the database's encoding): kept as its bytes. Set once the meta record is read. */
    public utf16: boolean,
  ) {}

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
        return !this.utf16 && isUtf8(bytes) ? bytes.toString('utf8') : new RawText(Buffer.from(bytes));
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

function corrupt(what: string): BackupdError {
  return new BackupdError('SOURCE_FAILED', `the SQLite dump is not valid: ${what}`);
}

/** One row of the source's sqlite_schema ('O' record), and where it goes in the restored one. */
interface SchemaObject {
  type: string;
  name: string;
  tblName: string;
  btree: number;
  sql: string | null;
  /** Its rowid in the restored sqlite_schema: its place in the source's, so objects keep their order. */
  position: number;
}

interface TableState {
  name: string;
  /** The columns the dump names (generated ones left out), and whether each row's rowid comes before them. */
  columns: string[];
  hasRowid: boolean;
  /** The names inserted: the rowid's when hasRowid, then the columns. */
  names: string[];
  width: number;
  /** How 'S' rows' records map onto the columns: worked out from the restored table at its first 'S' row. */
  records?: RecordShape;
  /** Inserts one row; `insertMany` inserts `batchRows` rows per statement (far fewer calls into SQLite). */
  insert: Database.Statement;
  insertMany: Database.Statement;
  batchRows: number;
  /** Values of rows read but not yet inserted, row after row. */
  pending: (SqlValue | RawText)[];
  /**
   * Statements for rows inserted alone: rows with RawText values, and rows whose records predate columns
   * added since (fewer values), by which values are RawText ('0'/'1' each; the mask's length is the row's).
   */
  aloneInserts: Map<string, Database.Statement>;
  rows: number;
}

interface RecordShape {
  /** The INTEGER PRIMARY KEY column, whose value is the rowid (its record holds NULL); -1 when there is none. */
  alias: number;
  /** Per value of a record: true for a stored generated column's (computed again on insert, so left out). */
  generated: boolean[] | undefined;
}

export class DumpLoader {
  private pending: Buffer = Buffer.alloc(0);
  private started = false;
  private finished = false;
  private readonly objects: SchemaObject[] = [];
  /** Whether the tables and their automatic indexes are in sqlite_schema yet (at the first table's rows). */
  private tablesPlaced = false;
  private table: TableState | undefined;
  private tablesDone = 0;
  private rowsInTransaction = 0;
  private meta: DumpMeta | undefined;
  private utf16 = false;
  /** A record's values before the stored generated ones are taken out (tables that have them). */
  private scratch: (SqlValue | RawText)[] = [];

  /** `db`: a new, empty database of the loader's own (it writes sqlite_schema directly). */
  constructor(private readonly db: Database.Database) {
    // Writing sqlite_schema and the shadow tables of virtual tables needs SQLite's defensive mode off,
    // which better-sqlite3 turns on; nothing but this loader uses the connection.
    db.unsafeMode(true);
    // Rows go in as they were, orphans included, whatever order their tables come in (as .dump's output).
    db.pragma('foreign_keys = OFF');
  }

  /** Feed the next bytes of the dump. */
  push(bytes: Buffer): void {
    if (this.finished) {
      if (bytes.length > 0) throw corrupt('data after the end marker');
      return;
    }
    this.pending = this.pending.length === 0 ? bytes : Buffer.concat([this.pending, bytes]);
    const reader = new Reader(this.pending, this.utf16);
    let consumed = 0;
    try {
      if (!this.started) {
        reader.need(DUMP_MAGIC.length);
        const magic = this.pending.subarray(0, DUMP_MAGIC.length);
        if (!magic.equals(DUMP_MAGIC)) {
          const version = /^BKDSQL(\d+)\n$/.exec(magic.toString('latin1'))?.[1];
          if (version && Number(version) > DUMP_VERSION) {
            throw new BackupdError(
              'UNSUPPORTED_FORMAT',
              `the SQLite dump is version ${version}, written by a newer backupd (this one reads version ${DUMP_VERSION}): restore it with that version or a later one`,
            );
          }
          throw corrupt(`it does not start with BKDSQL${DUMP_VERSION}`);
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

  /** After the last push: check the end marker, then indexes (built now), views and triggers, and commit. */
  finish(): void {
    if (!this.finished || this.pending.length > 0) throw corrupt('it ends before its end marker (truncated)');
    if (this.db.inTransaction) this.db.exec('COMMIT');
    const later = this.objects.filter((o) => !isPlacedFirst(o));
    this.place(later);
    this.db.exec('BEGIN');
    for (const index of later) {
      if (index.btree === BTREE_INDEX) this.db.exec(`REINDEX main.${quoteIdent(index.name)}`);
    }
    this.db.exec('COMMIT');
  }

  /**
   * Writes `objects` into sqlite_schema as the source had them, each with a new empty b-tree of its kind
   * (taken from a placeholder table made for it), then has SQLite read the schema again.
   */
  private place(objects: SchemaObject[]): void {
    if (objects.length === 0) return;
    const taken = new Set(this.objects.map((o) => o.name.toLowerCase()));
    let prefix: string;
    do prefix = `backupd_root_${randomBytes(6).toString('hex')}_`;
    while ([...taken].some((name) => name.startsWith(prefix)));
    try {
      this.db.exec('BEGIN');
      const rootOf = this.db.prepare('SELECT rootpage FROM sqlite_schema WHERE name = ?').pluck();
      const roots = objects.map((o, i) => {
        if (o.btree === BTREE_NONE) return 0;
        const name = quoteIdent(`${prefix}${i}`);
        // A rowid table's b-tree for a rowid table; an index b-tree for an index or a WITHOUT ROWID table.
        this.db.exec(
          o.btree === BTREE_TABLE ? `CREATE TABLE ${name}(x)` : `CREATE TABLE ${name}(x PRIMARY KEY) WITHOUT ROWID`,
        );
        return rootOf.get(`${prefix}${i}`) as number;
      });
      this.db.pragma('writable_schema = ON');
      this.db.prepare('DELETE FROM sqlite_schema WHERE substr(name, 1, ?) = ?').run(prefix.length, prefix);
      const insert = this.db.prepare(
        'INSERT INTO sqlite_schema (rowid, type, name, tbl_name, rootpage, sql) VALUES (?, ?, ?, ?, ?, ?)',
      );
      for (const [i, o] of objects.entries()) insert.run(o.position, o.type, o.name, o.tblName, roots[i], o.sql);
      this.db.exec('COMMIT');
      this.db.pragma('writable_schema = RESET'); // off, and the schema is read again from the file
    } catch (error) {
      if (this.db.inTransaction) this.db.exec('ROLLBACK');
      throw new BackupdError('SOURCE_FAILED', `the SQLite schema of the dump cannot be restored: ${messageOf(error)}`, {
        cause: error,
      });
    }
  }

  private record(r: Reader): void {
    const kind = r.byte();
    switch (kind) {
      case REC_META: {
        this.applyMeta(JSON.parse(r.text()) as DumpMeta);
        r.utf16 = this.utf16;
        return;
      }
      case REC_OBJECT: {
        const type = r.text();
        const name = r.text();
        const tblName = r.text();
        const btree = r.byte();
        const sql = r.byte() === 1 ? r.text() : null;
        if (btree !== BTREE_NONE && btree !== BTREE_TABLE && btree !== BTREE_INDEX) {
          throw corrupt(`object ${name} has an unknown b-tree kind ${btree}`);
        }
        if (this.tablesPlaced) throw corrupt(`schema object ${name} after the first table's rows`);
        this.objects.push({ type, name, tblName, btree, sql, position: this.objects.length + 1 });
        return;
      }
      case REC_TABLE: {
        const name = r.text();
        const hasRowid = r.byte() === 1;
        const n = r.u32();
        const columns: string[] = [];
        for (let i = 0; i < n; i++) columns.push(r.text());
        this.placeTables();
        if (!this.db.inTransaction) this.db.exec('BEGIN');
        // The rowid goes in under the name the dump read it by: the first no column (generated ones too) has taken.
        const rowid = hasRowid ? rowidName(this.columnsOf(name)) : undefined;
        if (hasRowid && !rowid) throw corrupt(`table ${name} has a rowid but its columns take every name for it`);
        const names = [...(rowid ? [rowid] : []), ...columns.map(quoteIdent)];
        const row = `(${names.map(() => '?').join(', ')})`;
        const head = `INSERT INTO ${quoteIdent(name)} (${names.join(', ')}) VALUES `;
        const batchRows = Math.max(1, Math.min(64, Math.floor(32_000 / names.length)));
        try {
          this.table = {
            name,
            columns,
            hasRowid,
            names,
            width: names.length,
            aloneInserts: new Map(),
            insert: this.db.prepare(head + row),
            insertMany: this.db.prepare(head + Array(batchRows).fill(row).join(', ')),
            batchRows,
            pending: [],
            rows: 0,
          };
        } catch (error) {
          throw corrupt(`table ${name} cannot take its rows: ${messageOf(error)}`);
        }
        // Restoring AUTOINCREMENT tables filled sqlite_sequence already; the dump's rows replace them.
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
        if (raw) this.insertAlone(table, table.pending.length - start);
        else this.rowRead(table);
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
        this.placeTables();
        this.finished = true;
        return;
      }
      default:
        throw corrupt(`unknown record type ${kind}`);
    }
  }

  /** Tables and their automatic indexes into sqlite_schema, once, before the first rows. */
  private placeTables(): void {
    if (this.tablesPlaced) return;
    this.tablesPlaced = true;
    this.place(this.objects.filter(isPlacedFirst));
  }

  /** An 'S' row: its record's values, the rowid where the table keeps it; short records go in alone. */
  private sqliteRow(table: TableState, row: SqliteRow, buf: Buffer): void {
    table.records ??= this.recordShape(table);
    const shape = table.records;
    const pending = table.pending;
    const start = pending.length;
    if (table.hasRowid) pending.push(row.rowid);
    let rawTexts: number;
    if (shape.generated) {
      const values = this.scratch;
      values.length = 0;
      [, rawTexts] = decodeRecord(buf, row.record, row.end, values, this.utf16);
      if (values.length > shape.generated.length) {
        throw corrupt(
          `table ${table.name}: a row holds ${values.length} values, for ${shape.generated.length} columns`,
        );
      }
      for (let i = 0; i < values.length; i++) if (!shape.generated[i]) pending.push(values[i]!);
    } else {
      let values: number;
      [values, rawTexts] = decodeRecord(buf, row.record, row.end, pending, this.utf16);
      if (values > table.columns.length) {
        throw corrupt(`table ${table.name}: a row holds ${values} values, for ${table.columns.length} columns`);
      }
    }
    if (shape.alias >= 0 && start + shape.alias < pending.length) {
      const at = start + shape.alias;
      if (pending[at] !== null) throw corrupt(`table ${table.name}: a row's record holds its INTEGER PRIMARY KEY`);
      pending[at] = row.rowid;
    }
    const width = pending.length - start;
    // A record written before ALTER TABLE ADD COLUMN holds fewer values: its row goes in naming only the
    // columns it has, so the others take their defaults, as SQLite reads them for the short record.
    if (rawTexts > 0 || width < table.width) this.insertAlone(table, width);
    else this.rowRead(table);
  }

  /** How the restored table's rows are stored: see RecordShape. */
  private recordShape(table: TableState): RecordShape {
    const info = this.db.prepare(`PRAGMA table_xinfo(${quoteIdent(table.name)})`).all() as {
      name: string;
      type: string;
      pk: number;
      hidden: number;
    }[];
    const rowid = rowidOf(this.db, table.name, info);
    const inserted = info.filter((c) => c.hidden === 0).map((c) => c.name);
    if (inserted.join('\0') !== table.columns.join('\0')) {
      throw corrupt(`table ${table.name}: its rows are records, but its columns are not the ones they were taken from`);
    }
    if ((rowid.kind === 'hidden') !== table.hasRowid) {
      throw corrupt(`table ${table.name}: its rows are records, but it does not keep its rowid as they say`);
    }
    const stored = info.filter((c) => c.hidden !== 2); // a record holds every column but virtual generated ones
    const generated = stored.some((c) => c.hidden !== 0) ? stored.map((c) => c.hidden !== 0) : undefined;
    const alias = rowid.kind === 'alias' ? table.columns.indexOf(rowid.column) : -1;
    if (rowid.kind === 'alias' && alias < 0)
      throw corrupt(`table ${table.name}: its rowid column ${rowid.column} is not among its columns`);
    return { alias, generated };
  }

  /**
   * The last row of `pending`, `width` values, goes in on its own: it holds RawText (bound as bytes and
   * cast to TEXT, so they keep their bytes), or it is short (it names only its first `width` columns).
   * The rows before it go in first.
   */
  private insertAlone(table: TableState, width: number): void {
    const row = table.pending.splice(table.pending.length - width);
    this.insertPending(table);
    const mask = row.map((v) => (v instanceof RawText ? '1' : '0')).join('');
    let statement = table.aloneInserts.get(mask);
    if (!statement) {
      const values = row.map((v) => (v instanceof RawText ? 'CAST(? AS TEXT)' : '?'));
      statement = this.db.prepare(
        `INSERT INTO ${quoteIdent(table.name)} (${table.names.slice(0, width).join(', ')}) VALUES (${values.join(', ')})`,
      );
      table.aloneInserts.set(mask, statement);
    }
    statement.run(row.map((v) => (v instanceof RawText ? v.bytes : v)));
    table.rows++;
    this.counted(1);
  }

  /** A row's values are in `pending`: insert a batch when one is full, commit now and then. */
  private rowRead(table: TableState): void {
    table.rows++;
    if (table.pending.length === table.batchRows * table.width) {
      table.insertMany.run(table.pending);
      table.pending = [];
    }
    this.counted(1);
  }

  /** Rows read but not yet inserted (fewer than a batch) go in one by one. */
  private insertPending(table: TableState): void {
    const { pending, width, insert } = table;
    for (let i = 0; i < pending.length; i += width) insert.run(pending.slice(i, i + width));
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
    // Settings that must precede the first table; the rest are restored as they were. Zeros are SQLite's
    // defaults and are not written, so an empty database (a zero-byte file) stays empty.
    this.db.pragma(`page_size = ${Number(meta.pageSize)}`);
    this.db.pragma(`auto_vacuum = ${Number(meta.autoVacuum)}`);
    if (!/^UTF-(8|16le|16be)$/i.test(meta.encoding)) throw corrupt(`unknown encoding ${meta.encoding}`);
    this.db.pragma(`encoding = '${meta.encoding}'`);
    this.utf16 = meta.encoding !== 'UTF-8';
    if (Number(meta.userVersion) !== 0) this.db.pragma(`user_version = ${Number(meta.userVersion)}`);
    if (Number(meta.applicationId) !== 0) this.db.pragma(`application_id = ${Number(meta.applicationId)}`);
  }
}

/** Tables (virtual ones and SQLite's own included) and automatic indexes go in before the rows; the rest after. */
function isPlacedFirst(o: SchemaObject): boolean {
  return o.type === 'table' || (o.type === 'index' && o.sql === null);
}
