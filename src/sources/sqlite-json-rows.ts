// Turning rows that SQLite rendered as JSON into the dump's row records. Reading a table value by value
// through better-sqlite3 costs about 0.25 µs per value in JavaScript objects (15 s for the 5.4 M rows of the
// 1 GiB benchmark database); asking SQLite for a batch of rows as `json_array(...)` lines and decoding those
// bytes here writes the same records in about half the time. docs/FORMAT.md ("How the dump is produced").
//
// The JSON is SQLite's own, so only its shapes are accepted: one array per row, rows separated by '\n';
// values are strings, numbers, null, or {"b":"<HEX>"} for a BLOB (sqlite-dump.ts wraps BLOBs so). A number
// with '.', 'e' or 'E' is a REAL: SQLite writes every REAL so, and with 17 significant digits, which read
// back to the same double. Anything else is a malformed batch and an error, never a guess.

import { BackupdError } from '../errors.js';
import type { DumpEncoder } from './sqlite-dump-encoder.js';
import { REC_ROW, VAL_BLOB, VAL_INT, VAL_NULL, VAL_REAL, VAL_TEXT } from './sqlite-format.js';

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN = 0x5b;
const CLOSE = 0x5d;
const NEWLINE = 0x0a;
const BRACE = 0x7b;
const BLOB_PREFIX = Buffer.from('{"b":"');
/** Integers of up to 15 characters (sign included) are exact as doubles; longer ones go through BigInt. */
const SAFE_DIGITS = 15;

/** Appends the rows of `json` (each with `width` values) to `enc` as row records; returns how many. */
export function appendJsonRows(json: Buffer, width: number, enc: DumpEncoder): number {
  const rows = new JsonRowReader(json, enc);
  try {
    return rows.readAll(width);
  } finally {
    rows.flush();
  }
}

/** Reads JSON bytes at `at` and writes records straight into the encoder's buffer at `to`. */
class JsonRowReader {
  private at = 0;
  private out: Buffer;
  private to: number;

  constructor(
    private readonly json: Buffer,
    private readonly enc: DumpEncoder,
  ) {
    this.out = enc.reserve(0);
    this.to = enc.size;
  }

  /** Hands what was written back to the encoder. */
  flush(): void {
    this.enc.advance(this.to - this.enc.size);
  }

  private room(bytes: number): void {
    if (this.to + bytes <= this.out.length) return;
    this.flush();
    this.out = this.enc.reserve(bytes);
  }

  readAll(width: number): number {
    const json = this.json;
    let rows = 0;
    while (this.at < json.length) {
      if (json[this.at] !== OPEN) throw malformed(this.at, 'a row must start with "["');
      this.at++;
      this.room(1);
      this.out[this.to++] = REC_ROW;
      for (let column = 0; column < width; column++) {
        this.value();
        if (json[this.at] !== (column === width - 1 ? CLOSE : COMMA))
          throw malformed(this.at, `row ${rows + 1} must have ${width} values`);
        this.at++;
      }
      if (this.at < json.length && json[this.at++] !== NEWLINE)
        throw malformed(this.at - 1, 'rows must be separated by newlines');
      rows++;
    }
    return rows;
  }

  private value(): void {
    const json = this.json;
    const first = json[this.at];
    if (first === QUOTE) this.text();
    else if (first === BRACE) this.blob();
    else if (
      first === 0x6e /* n */ &&
      json[this.at + 1] === 0x75 &&
      json[this.at + 2] === 0x6c &&
      json[this.at + 3] === 0x6c
    ) {
      this.room(1);
      this.out[this.to++] = VAL_NULL;
      this.at += 4;
    } else this.number();
  }

  /** A string's bytes, unescaped, as TEXT. */
  private text(): void {
    const json = this.json;
    const start = this.at + 1;
    let end = start;
    for (let c = json[end]; c !== QUOTE && c !== BACKSLASH; c = json[end]) {
      if (c === undefined) throw malformed(start, 'a string is not closed');
      end++;
    }
    if (json[end] === BACKSLASH) {
      this.escapedText(start, closingQuote(json, end));
      return;
    }
    const length = end - start;
    this.room(5 + length);
    const out = this.out;
    let to = this.to;
    out[to] = VAL_TEXT;
    out[to + 1] = length;
    out[to + 2] = length >>> 8;
    out[to + 3] = length >>> 16;
    out[to + 4] = length >>> 24;
    to += 5;
    if (length < 32) for (let i = start; i < end; i++) out[to++] = json[i]!;
    else to += json.copy(out, to, start, end);
    this.to = to;
    this.at = end + 1;
  }

  /** A string with escapes, from `start` to its closing quote at `close`. Escapes only ever shorten it. */
  private escapedText(start: number, close: number): void {
    const json = this.json;
    this.room(5 + close - start);
    const out = this.out;
    out[this.to] = VAL_TEXT;
    const lengthAt = this.to + 1;
    let to = lengthAt + 4;
    for (let from = start; from < close; ) {
      const c = json[from++]!;
      if (c !== BACKSLASH) {
        out[to++] = c;
        continue;
      }
      const e = json[from++];
      if (e === 0x6e) out[to++] = 0x0a;
      else if (e === 0x74) out[to++] = 0x09;
      else if (e === 0x72) out[to++] = 0x0d;
      else if (e === 0x62) out[to++] = 0x08;
      else if (e === 0x66) out[to++] = 0x0c;
      else if (e === 0x75) {
        let code = hex4(json, from);
        from += 4;
        if (code >= 0xd800 && code < 0xdc00 && json[from] === BACKSLASH && json[from + 1] === 0x75) {
          const low = hex4(json, from + 2);
          if (low >= 0xdc00 && low < 0xe000) {
            code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
            from += 6;
          }
        }
        to += out.write(String.fromCodePoint(code), to, 'utf8');
      } else if (e !== undefined) out[to++] = e; // \" \\ \/
    }
    out.writeUInt32LE(to - lengthAt - 4, lengthAt);
    this.to = to;
    this.at = close + 1;
  }

  /** {"b":"<HEX>"}: a BLOB, as sqlite-dump.ts asks SQLite to write one. */
  private blob(): void {
    const json = this.json;
    const at = this.at;
    if (json.compare(BLOB_PREFIX, 0, BLOB_PREFIX.length, at, at + BLOB_PREFIX.length) !== 0)
      throw malformed(at, 'an object must be a BLOB as {"b":"<hex>"}');
    const start = at + BLOB_PREFIX.length;
    const end = json.indexOf(QUOTE, start);
    if (end < 0 || (end - start) % 2 !== 0 || json[end + 1] !== 0x7d) throw malformed(at, 'a BLOB is not closed');
    const length = (end - start) / 2;
    this.room(5 + length);
    const out = this.out;
    out[this.to] = VAL_BLOB;
    out.writeUInt32LE(length, this.to + 1);
    const to = this.to + 5;
    for (let i = 0; i < length; i++) {
      const high = hexDigit(json[start + 2 * i]);
      const low = hexDigit(json[start + 2 * i + 1]);
      if (high < 0 || low < 0) throw malformed(start + 2 * i, 'a BLOB must be hex digits');
      out[to + i] = high * 16 + low;
    }
    this.to = to + length;
    this.at = end + 2;
  }

  private number(): void {
    const json = this.json;
    const at = this.at;
    const negative = json[at] === 0x2d;
    // Digits, read as an integer as long as they are few enough to be exact; the count after a '.'.
    let mantissa = 0;
    let digits = 0;
    let fraction = -1;
    let exponent = false;
    let end = negative ? at + 1 : at;
    for (let c = json[end]; c !== COMMA && c !== CLOSE && c !== undefined; c = json[++end]) {
      const digit = c - 0x30;
      if (digit >= 0 && digit <= 9) {
        mantissa = mantissa * 10 + digit;
        digits++;
        if (fraction >= 0) fraction++;
      } else if (c === 0x2e && fraction < 0) fraction = 0;
      else if (c === 0x65 || c === 0x45) exponent = true;
      else if (!exponent || (c !== 0x2b && c !== 0x2d)) throw malformed(end, 'a number has a stray character');
    }
    if (digits === 0) throw malformed(at, 'a value is missing');
    this.room(9);
    const out = this.out;
    if (fraction < 0 && !exponent) {
      if (digits <= SAFE_DIGITS) writeInteger(out, this.to, negative ? -mantissa : mantissa);
      else {
        out[this.to] = VAL_INT;
        out.writeBigInt64LE(BigInt(json.toString('latin1', at, end)), this.to + 1);
      }
    } else {
      // With at most 15 digits and no exponent, the digits and the power of ten are both exact doubles, so
      // one division gives the correctly rounded value, as Number() would (the fast path of every strtod).
      const value =
        !exponent && digits <= SAFE_DIGITS
          ? (negative ? -mantissa : mantissa) / POWERS_OF_TEN[fraction]!
          : Number(json.toString('latin1', at, end));
      if (Number.isNaN(value)) throw malformed(at, 'a REAL is not a number');
      out[this.to] = VAL_REAL;
      out.writeDoubleLE(value, this.to + 1);
    }
    this.to += 9;
    this.at = end;
  }
}

const POWERS_OF_TEN = Array.from({ length: SAFE_DIGITS + 1 }, (_, k) => 10 ** k);

/** An INTEGER value record for a safe integer: tag, then the 64-bit two's complement, little-endian. */
function writeInteger(out: Buffer, to: number, value: number): void {
  const high = Math.floor(value / 0x1_0000_0000);
  const low = value - high * 0x1_0000_0000;
  out[to] = VAL_INT;
  out[to + 1] = low;
  out[to + 2] = low >>> 8;
  out[to + 3] = low >>> 16;
  out[to + 4] = low >>> 24;
  out[to + 5] = high;
  out[to + 6] = high >> 8;
  out[to + 7] = high >> 16;
  out[to + 8] = high >> 24;
}

function closingQuote(json: Buffer, from: number): number {
  for (let at = from; at < json.length; at++) {
    const c = json[at];
    if (c === BACKSLASH) at++;
    else if (c === QUOTE) return at;
  }
  throw malformed(from, 'a string is not closed');
}

function hex4(json: Buffer, at: number): number {
  let code = 0;
  for (let i = 0; i < 4; i++) {
    const digit = hexDigit(json[at + i]);
    if (digit < 0) throw malformed(at, 'a \\u escape needs four hex digits');
    code = code * 16 + digit;
  }
  return code;
}

function hexDigit(c: number | undefined): number {
  if (c === undefined) return -1;
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

function malformed(at: number, why: string): BackupdError {
  return new BackupdError('SOURCE_FAILED', `SQLite's JSON rows could not be read at byte ${at}: ${why}`);
}
