// The fingerprint of a SQLite database (recipe 'sqlite-sha3-query', docs/FORMAT.md): per table with rows of
// its own, the row count and the digest the sqlite3 shell's sha3_query() gives for one query over the table,
// so a third party checks it with `sqlite3` alone. Computed by the dump's worker from the private copy it
// dumped, and by verify from the restored file.

import { createHash, type Hash } from 'node:crypto';
import type Database from 'better-sqlite3';
import type { Fingerprint, TableFingerprint } from './fingerprint.js';
import { quoteIdent, rowidName } from './sqlite-dump.js';

export const SQLITE_RECIPE = 'sqlite-sha3-query';

/** The query whose sha3_query() digest is a table's: docs/FORMAT.md spells it. */
export function fingerprintQuery(table: string, columns: string[], rowid: string | undefined): string {
  const q = quoteIdent(table);
  if (rowid) return `SELECT ${rowid}, * FROM ${q} ORDER BY ${rowid}`;
  return `SELECT * FROM ${q} ORDER BY ${columns.map(quoteIdent).join(', ')}`;
}

/** The fingerprint of the database `db` has open (read inside one transaction). */
export function fingerprintSqlite(db: Database.Database): Fingerprint {
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
    const utf8 = String(db.pragma('encoding', { simple: true })).toUpperCase() === 'UTF-8';
    const withoutRowid = new Set(
      db.prepare("SELECT name FROM pragma_table_list WHERE schema = 'main' AND wr = 1").pluck().all() as string[],
    );
    const tables = schema
      .filter((o) => o.type === 'table' && (o.rootpage ?? 0) > 0)
      .map((o) => o.name)
      .sort();
    const fingerprints = tables.map((name) => fingerprintTable(db, name, withoutRowid.has(name), utf8));
    let foreignKeyViolations = 0;
    for (const _ of db.prepare('PRAGMA foreign_key_check').iterate()) foreignKeyViolations++;
    return { recipe: SQLITE_RECIPE, tables: fingerprints, objects, foreignKeyViolations };
  } finally {
    if (began && db.inTransaction) db.exec('COMMIT');
  }
}

function fingerprintTable(
  db: Database.Database,
  table: string,
  withoutRowid: boolean,
  utf8: boolean,
): TableFingerprint {
  const info = db.prepare(`PRAGMA table_xinfo(${quoteIdent(table)})`).all() as { name: string; hidden: number }[];
  // `*` of an ordinary table is every column, generated ones too, in declaration order.
  const columns = info.filter((c) => c.hidden !== 1).map((c) => c.name);
  const rowid = withoutRowid ? undefined : rowidName(columns);
  const query = fingerprintQuery(table, columns, rowid);
  const digest = new Sha3Query(query);
  // TEXT and BLOB are read as their bytes behind a first byte that tells them apart (1 TEXT, 0 BLOB), as the
  // dump reads them: better-sqlite3 would decode TEXT into a JS string and lose bytes that are not UTF-8.
  const value = (c: string) =>
    `CASE typeof(${c}) WHEN 'text' THEN unhex('01' || hex(${c})) WHEN 'blob' THEN unhex('00' || hex(${c})) ELSE ${c} END`;
  const selected = [...(rowid ? [rowid] : []), ...columns.map(quoteIdent)];
  const order = rowid ? rowid : columns.map(quoteIdent).join(', ');
  const statement = db.prepare(`SELECT ${selected.map(value).join(', ')} FROM ${quoteIdent(table)} ORDER BY ${order}`);
  let rows = 0;
  for (const row of statement.raw(true).safeIntegers(true).iterate() as IterableIterator<unknown[]>) {
    digest.row();
    for (const v of row) {
      if (v === null) digest.null();
      else if (typeof v === 'bigint') digest.integer(v);
      else if (typeof v === 'number') digest.real(v);
      else if (Buffer.isBuffer(v)) {
        const bytes = v.subarray(1);
        if (v[0] === 1) digest.text(utf8 ? bytes : utf16ToUtf8(bytes, db));
        else digest.blob(bytes);
      }
    }
    rows++;
  }
  return { name: table, rows, digest: digest.hex() };
}

/** sqlite3_column_text() of a UTF-16 database converts to UTF-8: so does the recipe. */
function utf16ToUtf8(bytes: Buffer, db: Database.Database): Buffer {
  const le = String(db.pragma('encoding', { simple: true })).toUpperCase() !== 'UTF-16BE';
  return Buffer.from(new TextDecoder(le ? 'utf-16le' : 'utf-16be').decode(bytes), 'utf8');
}

/** The SHA3-256 the sqlite3 shell's sha3_query(SQL) computes (ext/misc/shathree.c), fed value by value. */
class Sha3Query {
  private readonly hash: Hash = createHash('sha3-256');
  private readonly buffer = Buffer.allocUnsafe(64 << 10);
  private used = 0;

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
  hex(): string {
    this.flush();
    return this.hash.digest('hex');
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
