// The logical dump of a SQLite database ("bkdsql v4"), a byte stream of records that is deterministic for
// the same data and row-aligned, so a changed row changes only bytes near it (good for chunk reuse).
// Written by sqlite-dump.ts, read by sqlite-load.ts; specified in docs/FORMAT.md.
//
//   stream  = "BKDSQL4\n" record*
//   record  = 'M' text(json meta)
//           | 'O' text(type) text(name) text(tbl_name) u8(btree) u8(hasSql) [text(sql)]   (a sqlite_schema row)
//           | 'T' text(table) u8(hasRowid) u32(n) text(column)*n
//           | 'S' varint(len) varint(rowid) record   (a row as the file stores it: sqlite-pages.ts, sqlite-record.ts)
//           | 'R' value*  (n values, rowid first if hasRowid: WITHOUT ROWID tables)
//           | 'E' u32(rows) | 'Z' u32(tables)
//   value   = 0x00 null | 0x01 i64 | 0x02 f64 | 0x03 u32(len) bytes | 0x04 u32(len) bytes   (little-endian)
//
// TEXT is always its bytes in the database's encoding, as SQLite stores them. The varints of 'S' rows are
// SQLite's (big-endian, 7 bits a byte, the ninth 8). Only this version is read.

export const DUMP_VERSION = 4;
export const DUMP_MAGIC = Buffer.from(`BKDSQL${DUMP_VERSION}\n`);

export const REC_META = 0x4d; // 'M'
export const REC_OBJECT = 0x4f; // 'O'
export const REC_TABLE = 0x54; // 'T'
export const REC_ROW = 0x52; // 'R'
export const REC_SQLITE_ROW = 0x53; // 'S'
export const REC_TABLE_END = 0x45; // 'E'
export const REC_END = 0x5a; // 'Z'

export const VAL_NULL = 0;
export const VAL_INT = 1;
export const VAL_REAL = 2;
export const VAL_TEXT = 3;
export const VAL_BLOB = 4;

/** What b-tree a sqlite_schema row owns ('O' records): none (views, triggers, virtual tables), a table's, an index's. */
export const BTREE_NONE = 0;
export const BTREE_TABLE = 1;
export const BTREE_INDEX = 2;

export interface DumpMeta {
  sqliteVersion: string;
  pageSize: number;
  encoding: string;
  autoVacuum: number;
  userVersion: number;
  applicationId: number;
  /** 'wal' when the database is in WAL mode, which the file keeps; else a rollback-journal mode. */
  journalMode: string;
}

export type SqlValue = null | bigint | number | string | Buffer;

/**
 * TEXT kept as its bytes: a UTF-8 database's TEXT that is not valid UTF-8 (SQLite keeps whatever bytes it
 * is given), and every TEXT of a UTF-16 database (a JS string would lose lone surrogates, and SQLite's own
 * UTF-8 conversion turns U+FFFE and U+FFFF into U+FFFD). The loader inserts the bytes cast to TEXT, which
 * SQLite stores as they are in the database's encoding.
 */
export class RawText {
  constructor(readonly bytes: Buffer) {}
}

/** File name of the dump inside a restore point. */
export const DUMP_FILE = 'database.bkdsql';
/** File name of the raw database file inside a snapshot. */
export const SNAPSHOT_FILE = 'database.sqlite';
