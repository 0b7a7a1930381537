// The logical dump of a SQLite database ("bkdsql v3"), a byte stream of records that is deterministic for
// the same data and row-aligned, so a changed row changes only bytes near it (good for chunk reuse).
// Written by sqlite-dump.ts, read by sqlite-load.ts; specified in docs/FORMAT.md.
//
//   stream  = "BKDSQL3\n" record*
//   record  = 'M' text(json meta) | 'O' text(type) text(name) text(tbl_name) text(sql)
//           | 'T' text(table) u8(hasRowid) u32(n) text(column)*n | 'R' value*  (n values, rowid first if hasRowid)
//           | 'J' u32(len) json-lines   (rows as SQLite's json_array() wrote them, sqlite-json-rows.ts)
//           | 'S' varint(len) varint(rowid) record   (a row as the file stores it: sqlite-pages.ts, sqlite-record.ts)
//           | 'E' u32(rows) | 'Z' u32(tables)
//   value   = 0x00 null | 0x01 i64 | 0x02 f64 | 0x03 u32(len) utf8 | 0x04 u32(len) bytes   (little-endian)
//
// Version 2 ("BKDSQL2\n") is the same without 'S' records, version 1 ("BKDSQL1\n") without 'J' ones either;
// the loader reads all three. The varints of 'S' rows are SQLite's (big-endian, 7 bits a byte, the ninth 8).

export const DUMP_VERSION = 3;
export const DUMP_MAGIC = Buffer.from(`BKDSQL${DUMP_VERSION}\n`);
export const DUMP_MAGIC_V2 = Buffer.from('BKDSQL2\n');
export const DUMP_MAGIC_V1 = Buffer.from('BKDSQL1\n');

export const REC_META = 0x4d; // 'M'
export const REC_OBJECT = 0x4f; // 'O'
export const REC_TABLE = 0x54; // 'T'
export const REC_ROW = 0x52; // 'R'
export const REC_JSON_ROWS = 0x4a; // 'J'
export const REC_SQLITE_ROW = 0x53; // 'S'
export const REC_TABLE_END = 0x45; // 'E'
export const REC_END = 0x5a; // 'Z'

export const VAL_NULL = 0;
export const VAL_INT = 1;
export const VAL_REAL = 2;
export const VAL_TEXT = 3;
export const VAL_BLOB = 4;

export interface DumpMeta {
  sqliteVersion: string;
  pageSize: number;
  encoding: string;
  autoVacuum: number;
  userVersion: number;
  applicationId: number;
  /** 'wal' when the database is in WAL mode, which the file keeps; absent in dumps before December 2026. */
  journalMode?: string;
}

export type SqlValue = null | bigint | number | string | Buffer;

/** File name of the dump inside a restore point. */
export const DUMP_FILE = 'database.bkdsql';
/** File name of the raw database file inside a snapshot. */
export const SNAPSHOT_FILE = 'database.sqlite';
