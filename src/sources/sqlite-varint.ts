// SQLite's varints (https://sqlite.org/fileformat.html, "Varint"): 1 to 9 bytes, big-endian; each of the
// first eight gives 7 bits and has its high bit set when another byte follows; a ninth gives all 8 bits.
// Read where the dump copies rows from the file's pages (sqlite-pages.ts) and where they are decoded again
// (sqlite-record.ts).

/** How many bytes the varint at buf[at] takes; -1 when it runs past `end`. */
export function varintSize(buf: Uint8Array, at: number, end: number): number {
  for (let k = 0; k < 9; k++) {
    if (at + k >= end) return -1;
    if (k === 8 || buf[at + k]! < 0x80) return k + 1;
  }
  return -1;
}

/**
 * The varint at buf[at] as a number; -1 when it runs past `end`. Values of 2^53 and more are not exact:
 * payload lengths and serial types never reach them (rowids are read as bigint, sqlite-record.ts).
 */
export function readVarint(buf: Uint8Array, at: number, end: number): number {
  let value = 0;
  for (let k = 0; k < 9; k++) {
    if (at + k >= end) return -1;
    const b = buf[at + k]!;
    if (k === 8) return value * 256 + b;
    value = value * 128 + (b & 0x7f);
    if (b < 0x80) return value;
  }
  return -1;
}
