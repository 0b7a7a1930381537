// Reading the rows a logical dump holds as SQLite stores them ('S' rows, written by sqlite-pages.ts): a
// varint payload length, a varint rowid, then the record, SQLite's encoding of a row's values: a header of
// serial types, one per value, then the values. https://sqlite.org/fileformat.html#record_format
// Anything that is not a well-formed record is an error, never a guess.

import { isUtf8 } from 'node:buffer';
import { BackupdError } from '../errors.js';
import { RawText, type SqlValue } from './sqlite-format.js';
import { readVarint, varintSize } from './sqlite-varint.js';

const TWO_63 = 2n ** 63n;
const TWO_64 = 2n ** 64n;

/** Where an 'S' row's parts lie: its rowid, then its record from `record` to `end`. */
export interface SqliteRow {
  rowid: bigint;
  record: number;
  end: number;
}

/**
 * The bounds of the 'S' row whose payload length starts at buf[at] (after the 'S'); undefined when the row
 * runs past `limit` (the rest is in the next buffer).
 */
export function sqliteRowAt(buf: Buffer, at: number, limit: number): SqliteRow | undefined {
  const length = readVarint(buf, at, limit);
  if (length < 0) return undefined;
  // The rowid: a signed 64-bit integer in up to nine bytes; up to seven (49 bits) are exact as a number.
  const from = at + varintSize(buf, at, limit);
  const size = varintSize(buf, from, limit);
  if (size < 0) return undefined;
  const p = from + size - 1;
  let rowid: bigint;
  if (p - from < 7) {
    let value = 0;
    for (let q = from; q <= p; q++) value = value * 128 + (buf[q]! & 0x7f);
    rowid = BigInt(value);
  } else {
    let value = 0n;
    for (let q = from; q <= p; q++)
      value = q - from === 8 ? (value << 8n) | BigInt(buf[q]!) : (value << 7n) | BigInt(buf[q]! & 0x7f);
    rowid = value >= TWO_63 ? value - TWO_64 : value;
  }
  const record = p + 1;
  if (record + length > limit) return undefined;
  return { rowid, record, end: record + length };
}

/**
 * Checks that buf[start, end) is a well-formed record of at most `maxValues` values, without decoding the
 * values: the dump does this for every row it copies (sqlite-pages.ts), so a corrupt row fails its backup
 * rather than its restore. Returns undefined when it is, else what is wrong.
 */
export function recordProblem(buf: Uint8Array, start: number, end: number, maxValues: number): string | undefined {
  const headerSize = readVarint(buf, start, end);
  if (headerSize < 1 || start + headerSize > end) return 'its header runs past the record';
  let at = start + varintSize(buf, start, end);
  const headerEnd = start + headerSize;
  let body = headerEnd;
  let values = 0;
  while (at < headerEnd) {
    const type = readVarint(buf, at, headerEnd);
    if (type < 0) return 'a serial type runs past the header';
    at += varintSize(buf, at, headerEnd);
    if (++values > maxValues) return `it holds more than the table's ${maxValues} stored columns`;
    if (type >= 12) body += (type - 12) >>> 1;
    else if (type === 10 || type === 11) return `serial type ${type} is reserved`;
    else body += SIZES[type]!;
  }
  if (at !== headerEnd) return 'its last serial type runs past the header';
  if (body !== end)
    return body > end ? 'a value runs past the record' : `it holds ${end - body} bytes after its last value`;
  return undefined;
}

/**
 * Appends the values of the record at buf[start, end) to `into`, as the loader binds them: INTEGERs as
 * bigint, REALs as number, TEXT as string, BLOBs as Buffer. TEXT is RawText (its bytes) when they are not
 * valid UTF-8, and always when `utf16` (a UTF-16 database's TEXT, kept byte for byte).
 * Returns how many values it held and how many were RawText, as [values, rawTexts].
 */
export function decodeRecord(
  buf: Buffer,
  start: number,
  end: number,
  into: (SqlValue | RawText)[],
  utf16 = false,
): [number, number] {
  const headerSize = readVarint(buf, start, end);
  if (headerSize < 1 || start + headerSize > end) throw malformed('its header runs past the record');
  let at = start + varintSize(buf, start, end);
  const headerEnd = start + headerSize;
  let body = headerEnd;
  let values = 0;
  let rawTexts = 0;
  while (at < headerEnd) {
    const type = readVarint(buf, at, headerEnd);
    if (type < 0) throw malformed('a serial type runs past the header');
    at += varintSize(buf, at, headerEnd);
    values++;
    if (type >= 12) {
      const length = (type - 12) >>> 1;
      if (body + length > end) throw malformed('a value runs past the record');
      if ((type & 1) === 0) into.push(Buffer.from(buf.subarray(body, body + length)));
      else if (utf16) {
        into.push(new RawText(Buffer.from(buf.subarray(body, body + length))));
        rawTexts++;
      } else {
        const text = buf.toString('utf8', body, body + length);
        // Invalid bytes decode to U+FFFD: only then is it worth checking the bytes themselves.
        if (text.includes('\uFFFD') && !isUtf8(buf.subarray(body, body + length))) {
          into.push(new RawText(Buffer.from(buf.subarray(body, body + length))));
          rawTexts++;
        } else into.push(text);
      }
      body += length;
      continue;
    }
    const size = SIZES[type]!;
    if (size < 0) throw malformed(`serial type ${type} is reserved`);
    if (body + size > end) throw malformed('a value runs past the record');
    switch (type) {
      case 0:
        into.push(null);
        break;
      case 1:
        into.push(BigInt(buf.readInt8(body)));
        break;
      case 2:
        into.push(BigInt(buf.readInt16BE(body)));
        break;
      case 3:
        into.push(BigInt(buf.readIntBE(body, 3)));
        break;
      case 4:
        into.push(BigInt(buf.readInt32BE(body)));
        break;
      case 5:
        into.push(BigInt(buf.readIntBE(body, 6)));
        break;
      case 6:
        into.push(buf.readBigInt64BE(body));
        break;
      case 7:
        into.push(buf.readDoubleBE(body));
        break;
      case 8:
        into.push(0n);
        break;
      default: // 9
        into.push(1n);
    }
    body += size;
  }
  if (at !== headerEnd) throw malformed('its last serial type runs past the header');
  if (body !== end) throw malformed(`it holds ${end - body} bytes after its last value`);
  return [values, rawTexts];
}

/** Bytes of the value of serial types 0 to 11; -1 for the reserved 10 and 11. */
const SIZES = [0, 1, 2, 3, 4, 6, 8, 8, 0, 0, -1, -1];

function malformed(what: string): BackupdError {
  return new BackupdError('SOURCE_FAILED', `the SQLite dump is not valid: a row's record is malformed: ${what}`);
}
