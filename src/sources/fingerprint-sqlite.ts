// The fingerprint of a SQLite database (recipe 'sqlite-sha3-query', docs/FORMAT.md): per table with rows of
// its own, the row count and the digest the sqlite3 shell's sha3_query() gives for one query over the table,
// so a third party checks it with `sqlite3` alone. A logical backup computes it from the records the dump
// copies from the pages (RecordFingerprints: no value crosses into JavaScript, which would cost 2-3 s per
// million rows), the rest (WITHOUT ROWID tables, rows older than an ADD COLUMN, UTF-16 databases) by SQL;
// snapshots and verify read the file by SQL (fingerprintSqlite).

import { createHash, type Hash } from 'node:crypto';
import type Database from 'better-sqlite3';
import type { Fingerprint, TableFingerprint } from './fingerprint.js';
import { quoteIdent, rowidName, rowidOf } from './sqlite-names.js';
import { readVarint, varintSize } from './sqlite-varint.js';

export const SQLITE_RECIPE = 'sqlite-sha3-query';

/** The query whose sha3_query() digest is a table's (docs/FORMAT.md): `columns` are all but VIRTUAL generated ones. */
export function fingerprintQuery(table: string, columns: string[], rowid: string | undefined): string {
  const list = columns.map(quoteIdent).join(', ');
  if (rowid) return `SELECT ${rowid}, ${list} FROM ${quoteIdent(table)} ORDER BY ${rowid}`;
  return `SELECT ${list} FROM ${quoteIdent(table)} ORDER BY ${list}`;
}

interface ColumnInfo {
  name: string;
  type: string;
  pk: number;
  hidden: number;
}

/** The columns the recipe selects: every one but VIRTUAL generated ones (hidden 2) and virtual tables' hidden ones. */
function recipeColumns(db: Database.Database, table: string): ColumnInfo[] {
  const info = db.prepare(`PRAGMA table_xinfo(${quoteIdent(table)})`).all() as ColumnInfo[];
  return info.filter((c) => c.hidden === 0 || c.hidden === 3);
}

/** The fingerprint of the database `db` has open (read inside one transaction), every table by SQL. */
export function fingerprintSqlite(db: Database.Database): Fingerprint {
  const fingerprints = new RecordFingerprints(db);
  return fingerprints.finish();
}

/**
 * A fingerprint gathered while the dump copies rowid tables' records from the pages (`table` gives the
 * hook for one), the other tables read by SQL in `finish`, which must run on the same unchanged database.
 */
export class RecordFingerprints {
  private readonly fromRecords = new Map<string, TableFingerprint>();
  private readonly utf8: boolean;

  constructor(private readonly db: Database.Database) {
    this.utf8 = String(db.pragma('encoding', { simple: true })).toUpperCase() === 'UTF-8';
  }

  /**
   * The hook for the rowid table `name` whose 'S' rows the dump copies: call it with the dump's buffer and
   * the offset just after each 'S', then `end()` after the table. Undefined when SQL must read the table.
   */
  table(name: string): { row(buf: Buffer, at: number, limit: number): void; end(): void } | undefined {
    if (!this.utf8) return undefined;
    const columns = recipeColumns(this.db, name);
    const rowid = rowidName(
      (this.db.prepare(`PRAGMA table_xinfo(${quoteIdent(name)})`).all() as ColumnInfo[]).map((c) => c.name),
    );
    if (!rowid) return undefined;
    const digest = new Sha3Query(
      fingerprintQuery(
        name,
        columns.map((c) => c.name),
        rowid,
      ),
    );
    const real = columns.map((c) => affinity(c.type) === 'REAL');
    const kept = rowidOf(
      this.db,
      name,
      this.db.prepare(`PRAGMA table_xinfo(${quoteIdent(name)})`).all() as ColumnInfo[],
    );
    const alias = kept.kind === 'alias' ? columns.findIndex((c) => c.name === kept.column) : -1;
    let rows = 0;
    let usable = true;
    return {
      row: (buf, at, limit) => {
        if (!usable) return;
        if (!digest.storedRow(buf, at, limit, real, alias)) usable = false;
        rows++;
      },
      end: () => {
        if (usable) this.fromRecords.set(name, { name, rows, digest: digest.hex() });
      },
    };
  }

  /** The whole fingerprint: tables the records gave, the others by SQL, schema objects, foreign keys. */
  finish(): Fingerprint {
    const db = this.db;
    const began = !db.inTransaction;
    if (began) db.exec('BEGIN');
    try {
      const schema = db.prepare('SELECT type, name, rootpage FROM sqlite_schema').all() as {
        type: string;
        name: string;
        rootpage: number | null;
      }[];
      const objects: Record<string, number> = {};
      for (const object of schema) objects[object.type] = (objects[object.type] ?? 0) + 1;
      const tables = schema
        .filter((o) => o.type === 'table' && (o.rootpage ?? 0) > 0)
        .map((o) => o.name)
        .sort();
      const fingerprints = tables.map(
        (name) => this.fromRecords.get(name) ?? fingerprintTable(db, name, this.isWithoutRowid(name), this.utf8),
      );
      // The check reads every row of every table with a foreign key (about 1 s per million rows): none, none.
      const keys = db
        .prepare("SELECT count(*) FROM sqlite_schema s, pragma_foreign_key_list(s.name) WHERE s.type = 'table'")
        .pluck()
        .get() as number;
      let foreignKeyViolations = 0;
      if (keys > 0) for (const _ of db.prepare('PRAGMA foreign_key_check').iterate()) foreignKeyViolations++;
      return { recipe: SQLITE_RECIPE, tables: fingerprints, objects, foreignKeyViolations };
    } finally {
      if (began && db.inTransaction) db.exec('COMMIT');
    }
  }

  private isWithoutRowid(name: string): boolean {
    const row = this.db.prepare("SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?").get(name) as
      | { wr: number }
      | undefined;
    return row?.wr === 1;
  }
}

/** A declared type's affinity, by SQLite's rules (https://sqlite.org/datatype3.html, 3.1). */
function affinity(declared: string): 'INTEGER' | 'TEXT' | 'BLOB' | 'REAL' | 'NUMERIC' {
  const t = declared.toUpperCase();
  if (t.includes('INT')) return 'INTEGER';
  if (t.includes('CHAR') || t.includes('CLOB') || t.includes('TEXT')) return 'TEXT';
  if (t.includes('BLOB') || t === '') return 'BLOB';
  if (t.includes('REAL') || t.includes('FLOA') || t.includes('DOUB')) return 'REAL';
  return 'NUMERIC';
}

function fingerprintTable(
  db: Database.Database,
  table: string,
  withoutRowid: boolean,
  utf8: boolean,
): TableFingerprint {
  const columns = recipeColumns(db, table).map((c) => c.name);
  const all = (db.prepare(`PRAGMA table_xinfo(${quoteIdent(table)})`).all() as ColumnInfo[]).map((c) => c.name);
  const rowid = withoutRowid ? undefined : rowidName(all);
  const query = fingerprintQuery(table, columns, rowid);
  const digest = new Sha3Query(query);
  // TEXT and BLOB are read as their bytes behind a first byte that tells them apart (1 TEXT, 0 BLOB), as the
  // dump reads them: better-sqlite3 would decode TEXT into a JS string and lose bytes that are not UTF-8.
  const value = (c: string) =>
    `CASE typeof(${c}) WHEN 'text' THEN unhex('01' || hex(${c})) WHEN 'blob' THEN unhex('00' || hex(${c})) ELSE ${c} END`;
  const selected = [...(rowid ? [rowid] : []), ...columns.map(quoteIdent)];
  const order = rowid ? rowid : columns.map(quoteIdent).join(', ');
  const statement = db.prepare(`SELECT ${selected.map(value).join(', ')} FROM ${quoteIdent(table)} ORDER BY ${order}`);
  // sqlite3_column_text() of a UTF-16 database converts to UTF-8: so does the recipe. (Asked before the rows:
  // the connection answers nothing else while a statement iterates.)
  const decoder = utf8
    ? undefined
    : new TextDecoder(
        String(db.pragma('encoding', { simple: true })).toUpperCase() === 'UTF-16BE' ? 'utf-16be' : 'utf-16le',
      );
  let rows = 0;
  for (const row of statement.raw(true).safeIntegers(true).iterate() as IterableIterator<unknown[]>) {
    digest.row();
    for (const v of row) {
      if (v === null) digest.null();
      else if (typeof v === 'bigint') digest.integer(v);
      else if (typeof v === 'number') digest.real(v);
      else if (Buffer.isBuffer(v)) {
        const bytes = v.subarray(1);
        if (v[0] === 1) digest.text(decoder ? Buffer.from(decoder.decode(bytes), 'utf8') : bytes);
        else digest.blob(bytes);
      }
    }
    rows++;
  }
  return { name: table, rows, digest: digest.hex() };
}

/** The SHA3-256 the sqlite3 shell's sha3_query(SQL) computes (ext/misc/shathree.c), fed value by value. */
class Sha3Query {
  private readonly hash: Hash = createHash('sha3-256');
  private readonly buffer = Buffer.allocUnsafe(64 << 10);
  private used = 0;
  /** The current stored row's rowid, 8 big-endian bytes (two's complement). */
  private readonly rowidBytes = Buffer.alloc(8);

  constructor(sql: string) {
    const text = Buffer.from(sql, 'utf8');
    this.put(Buffer.from(`S${text.length}:`));
    this.put(text);
  }
  row(): void {
    this.byte(0x52); // 'R'
  }
  null(): void {
    this.byte(0x4e); // 'N'
  }
  integer(v: bigint): void {
    this.room(9);
    this.buffer[this.used] = 0x49; // 'I'
    this.buffer.writeBigInt64BE(BigInt.asIntN(64, v), this.used + 1);
    this.used += 9;
  }
  real(v: number): void {
    this.room(9);
    this.buffer[this.used] = 0x46; // 'F'
    this.buffer.writeDoubleBE(v, this.used + 1);
    this.used += 9;
  }
  text(bytes: Buffer): void {
    this.put(Buffer.from(`T${bytes.length}:`));
    this.put(bytes);
  }
  blob(bytes: Buffer): void {
    this.put(Buffer.from(`B${bytes.length}:`));
    this.put(bytes);
  }
  /**
   * The dump's 'S' row whose payload length starts at buf[at] (sqlite-record.ts: a varint length, a varint
   * rowid, then the record, SQLite's record format), as sha3_query hashes `SELECT rowid, <columns>`: false
   * (nothing hashed) when the row runs past `limit` or its record is not what the columns read as it is
   * (fewer values: rows older than an ADD COLUMN, which read the column's default), so SQL must read the table.
   * `real[i]`: column i has REAL affinity (an integral REAL is stored as an INTEGER and read back as a REAL);
   * `alias`: the INTEGER PRIMARY KEY column, stored as NULL and read as the rowid (-1: none).
   * Every value is copied byte by byte, without a BigInt or an object per row: this runs for every row of a
   * backup, and Buffer.copy's and BigInt's per-call costs were most of the fingerprint's (docs/BENCHMARKS-HISTORY.md).
   */
  storedRow(buf: Buffer, at: number, limit: number, real: boolean[], alias: number): boolean {
    const length = readVarint(buf, at, limit);
    if (length < 0) return false;
    const from = at + varintSize(buf, at, limit);
    const size = varintSize(buf, from, limit);
    if (size < 0) return false;
    const start = from + size;
    const end = start + length;
    if (end > limit) return false;
    const headerEnd = start + readVarint(buf, start, end);
    let p = start + varintSize(buf, start, end);
    let count = 0;
    for (let q = p; q < headerEnd; q += varintSize(buf, q, headerEnd)) count++;
    if (count !== real.length) return false;
    this.rowidOf(buf, from, size);
    this.room(10);
    this.buffer[this.used++] = 0x52; // 'R'
    this.rowid();
    const out = this.buffer;
    let body = headerEnd;
    for (let column = 0; p < headerEnd; column++) {
      let type = buf[p]!;
      if (type < 0x80) p++;
      else {
        type = readVarint(buf, p, headerEnd);
        p += varintSize(buf, p, headerEnd);
      }
      if (type >= 12) {
        const n = (type - 12) >>> 1;
        this.prefix(type % 2 === 1 ? 0x54 : 0x42, n); // 'T' or 'B'
        if (n <= 64 && this.used + n <= out.length) {
          const u = this.used;
          for (let k = 0; k < n; k++) out[u + k] = buf[body + k]!;
          this.used = u + n;
        } else if (n <= out.length - this.used) {
          buf.copy(out, this.used, body, body + n);
          this.used += n;
        } else this.put(buf.subarray(body, body + n));
        body += n;
      } else if (type === 0) {
        if (column === alias) {
          this.room(9);
          this.rowid();
        } else this.byte(0x4e); // 'N'
      } else if (type === 7) {
        this.room(9);
        const o = this.used;
        out[o] = 0x46; // 'F': the record's big-endian IEEE 754 bytes are the hash's
        for (let k = 0; k < 8; k++) out[o + 1 + k] = buf[body + k]!;
        this.used += 9;
        body += 8;
      } else if (type <= 9) {
        const n = type >= 8 ? 0 : INT_SIZES[type]!;
        if (real[column]) this.real(type === 8 ? 0 : type === 9 ? 1 : intAt(buf, body, n));
        else {
          this.room(9);
          const o = this.used;
          out[o] = 0x49; // 'I', then the value sign-extended to 8 big-endian bytes
          const fill = n > 0 && buf[body]! >= 0x80 ? 0xff : 0;
          for (let k = 1; k < 9 - n; k++) out[o + k] = fill;
          for (let k = 0; k < n; k++) out[o + 9 - n + k] = buf[body + k]!;
          if (type === 9) out[o + 8] = 1;
          this.used += 9;
        }
        body += n;
      } else return false; // 10 and 11 are reserved: the dump rejects such a record before this sees it
    }
    return true;
  }
  hex(): string {
    this.flush();
    return this.hash.digest('hex');
  }

  /** Reads the rowid varint of `size` bytes at buf[at] into rowidBytes. */
  private rowidOf(buf: Buffer, at: number, size: number): void {
    const r = this.rowidBytes;
    if (size <= 7) {
      // up to 49 bits: exact as a number
      let value = 0;
      for (let q = at; q < at + size; q++) value = value * 128 + (buf[q]! & 0x7f);
      const high = Math.floor(value / 0x100000000);
      const low = value - high * 0x100000000;
      r[0] = 0;
      r[1] = high >>> 16;
      r[2] = (high >>> 8) & 0xff;
      r[3] = high & 0xff;
      r[4] = low >>> 24;
      r[5] = (low >>> 16) & 0xff;
      r[6] = (low >>> 8) & 0xff;
      r[7] = low & 0xff;
      return;
    }
    let value = 0n;
    for (let q = at; q < at + size; q++)
      value = q - at === 8 ? (value << 8n) | BigInt(buf[q]!) : (value << 7n) | BigInt(buf[q]! & 0x7f);
    r.writeBigUInt64BE(BigInt.asUintN(64, value));
  }
  /** 'I' and the current stored row's rowid; room for 9 bytes made by the caller. */
  private rowid(): void {
    const out = this.buffer;
    const o = this.used;
    out[o] = 0x49; // 'I'
    for (let k = 0; k < 8; k++) out[o + 1 + k] = this.rowidBytes[k]!;
    this.used += 9;
  }
  /** `kind` ('T' or 'B'), the length in decimal digits, ':' — without a string per value. */
  private prefix(kind: number, length: number): void {
    this.room(12);
    const out = this.buffer;
    let u = this.used;
    out[u++] = kind;
    // a length is below 2^31 (SQLite's limit is 2^31 - 1): integer division by `| 0`
    const digits = length < 10 ? 1 : length < 100 ? 2 : length < 1000 ? 3 : length < 10000 ? 4 : String(length).length;
    for (let i = digits - 1, n = length; i >= 0; i--) {
      const q = (n / 10) | 0;
      out[u + i] = 0x30 + n - q * 10;
      n = q;
    }
    u += digits;
    out[u++] = 0x3a; // ':'
    this.used = u;
  }
  private byte(b: number): void {
    this.room(1);
    this.buffer[this.used++] = b;
  }
  private put(bytes: Buffer): void {
    if (bytes.length > this.buffer.length) {
      this.flush();
      this.hash.update(bytes);
      return;
    }
    this.room(bytes.length);
    bytes.copy(this.buffer, this.used);
    this.used += bytes.length;
  }
  private room(n: number): void {
    if (this.used + n > this.buffer.length) this.flush();
  }
  private flush(): void {
    if (this.used > 0) this.hash.update(this.buffer.subarray(0, this.used));
    this.used = 0;
  }
}

/** Bytes of the INTEGER serial types 1 to 6. */
const INT_SIZES = [0, 1, 2, 3, 4, 6, 8];

/** The signed big-endian integer of `size` bytes at buf[at], as a REAL column reads it (rounded to a double). */
function intAt(buf: Buffer, at: number, size: number): number {
  if (size === 8) return Number(buf.readBigInt64BE(at));
  return buf.readIntBE(at, size);
}
