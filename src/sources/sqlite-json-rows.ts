// Reading the rows that a logical dump holds as JSON lines ('J' records, docs/FORMAT.md): each line is one
// row as SQLite's json_array() wrote it while dumping (sqlite-dump.ts). Reading a table value by value
// through better-sqlite3 costs about 0.25 µs per value in JavaScript objects; letting SQLite render a batch
// of rows as JSON and storing those bytes as they are makes the dump about half as costly (docs/FORMAT.md,
// "How the dump is produced"). The loader (sqlite-load.ts) turns the lines back into values here.
//
// The JSON is SQLite's own, so only its shapes are accepted: one array per row, rows separated by '\n';
// values are strings, numbers, null, or {"b":"<HEX>"} for a BLOB (sqlite-dump.ts wraps BLOBs so). A number
// with '.', 'e' or 'E' is a REAL: SQLite writes every REAL so, and with 17 significant digits, which read
// back to the same double. Anything else is a malformed record and an error, never a guess. TEXT that is
// not valid UTF-8 (SQLite keeps whatever bytes it was given) comes back as RawText, its bytes unchanged.

import { isUtf8 } from 'node:buffer';
import { BackupdError } from '../errors.js';
import type { SqlValue } from './sqlite-format.js';

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN = 0x5b;
const CLOSE = 0x5d;
const NEWLINE = 0x0a;
const BRACE = 0x7b;
const BLOB_PREFIX = Buffer.from('{"b":"');
/** Numbers of up to 15 digits are exact as doubles; longer INTEGERs go through BigInt. */
const SAFE_DIGITS = 15;
const POWERS_OF_TEN = Array.from({ length: SAFE_DIGITS + 1 }, (_, k) => 10 ** k);

/**
 * TEXT whose bytes are not valid UTF-8, kept as they are: a JS string would replace them with U+FFFD (SQLite
 * stores whatever bytes it is given as TEXT, and json_array() writes them as they are). The loader inserts
 * the bytes cast to TEXT.
 */
export class RawText {
  constructor(readonly bytes: Buffer) {}
}

/** The rows of one 'J' record, each `width` values, read one at a time. */
export class JsonRows {
  private at = 0;
  private rows = 0;
  /** Where a string with escapes is unescaped before it becomes a JS string. */
  private scratch = Buffer.allocUnsafe(4096);
  /**
   * The record is not valid UTF-8 as a whole (checked once, in native code), so each string is checked
   * and one that is not valid becomes a RawText.
   */
  private readonly mixed: boolean;
  /** How many RawText values next() has given so far. */
  rawTexts = 0;

  constructor(
    private readonly json: Buffer,
    private readonly width: number,
  ) {
    this.mixed = !isUtf8(json);
  }

  /** Appends the next row's values to `into`; false when there are no more rows. */
  next(into: (SqlValue | RawText)[]): boolean {
    const json = this.json;
    if (this.at >= json.length) return false;
    if (this.rows > 0 && json[this.at++] !== NEWLINE)
      throw malformed(this.at - 1, 'rows must be separated by newlines');
    if (json[this.at] !== OPEN) throw malformed(this.at, 'a row must start with "["');
    this.at++;
    for (let column = 0; column < this.width; column++) {
      into.push(this.value());
      if (json[this.at] !== (column === this.width - 1 ? CLOSE : COMMA))
        throw malformed(this.at, `row ${this.rows + 1} must have ${this.width} values`);
      this.at++;
    }
    this.rows++;
    return true;
  }

  private value(): SqlValue | RawText {
    const json = this.json;
    const first = json[this.at];
    if (first === QUOTE) return this.text();
    if (first === BRACE) return this.blob();
    if (
      first === 0x6e /* n */ &&
      json[this.at + 1] === 0x75 &&
      json[this.at + 2] === 0x6c &&
      json[this.at + 3] === 0x6c
    ) {
      this.at += 4;
      return null;
    }
    return this.number();
  }

  private text(): string | RawText {
    const json = this.json;
    const start = this.at + 1;
    let end = start;
    for (let c = json[end]; c !== QUOTE && c !== BACKSLASH; c = json[end]) {
      if (c === undefined) throw malformed(start, 'a string is not closed');
      end++;
    }
    if (json[end] === QUOTE) {
      this.at = end + 1;
      return this.decoded(json, start, end);
    }
    const close = closingQuote(json, end);
    // Escapes only ever shorten a string, so its raw length is room enough.
    if (this.scratch.length < close - start) this.scratch = Buffer.allocUnsafe(2 * (close - start));
    const length = unescapeInto(json, start, close, this.scratch);
    this.at = close + 1;
    return this.decoded(this.scratch, 0, length);
  }

  /** bytes[start, end) as a string, or as RawText when they are not valid UTF-8. */
  private decoded(bytes: Buffer, start: number, end: number): string | RawText {
    if (this.mixed && !isUtf8(bytes.subarray(start, end))) {
      this.rawTexts++;
      return new RawText(Buffer.from(bytes.subarray(start, end)));
    }
    return bytes.toString('utf8', start, end);
  }

  /** {"b":"<HEX>"}: a BLOB, as sqlite-dump.ts asks SQLite to write one. */
  private blob(): Buffer {
    const json = this.json;
    const at = this.at;
    if (json.compare(BLOB_PREFIX, 0, BLOB_PREFIX.length, at, at + BLOB_PREFIX.length) !== 0)
      throw malformed(at, 'an object must be a BLOB as {"b":"<hex>"}');
    const start = at + BLOB_PREFIX.length;
    const end = json.indexOf(QUOTE, start);
    if (end < 0 || (end - start) % 2 !== 0 || json[end + 1] !== 0x7d) throw malformed(at, 'a BLOB is not closed');
    const out = Buffer.allocUnsafe((end - start) / 2);
    for (let i = 0; i < out.length; i++) {
      const high = hexDigit(json[start + 2 * i]);
      const low = hexDigit(json[start + 2 * i + 1]);
      if (high < 0 || low < 0) throw malformed(start + 2 * i, 'a BLOB must be hex digits');
      out[i] = high * 16 + low;
    }
    this.at = end + 2;
    return out;
  }

  /** An INTEGER (a bigint, as the loader binds INTEGERs) or a REAL (a number). */
  private number(): bigint | number {
    const json = this.json;
    const at = this.at;
    const negative = json[at] === 0x2d;
    const start = negative ? at + 1 : at;
    // The digits as one integer (exact while there are at most 15 of them), through a '.' if there is one.
    let mantissa = 0;
    let end = start;
    let c = json[end];
    while (c !== undefined && c >= 0x30 && c <= 0x39) {
      mantissa = mantissa * 10 + c - 0x30;
      c = json[++end];
    }
    if (end === start) throw malformed(at, 'a value is missing');
    if (c === COMMA || c === CLOSE) {
      this.at = end;
      if (end - start <= SAFE_DIGITS) return BigInt(negative ? -mantissa : mantissa);
      return BigInt(json.toString('latin1', at, end));
    }
    let fraction = 0;
    if (c === 0x2e) {
      const point = end;
      c = json[++end];
      while (c !== undefined && c >= 0x30 && c <= 0x39) {
        mantissa = mantissa * 10 + c - 0x30;
        c = json[++end];
      }
      fraction = end - point - 1;
    }
    // With at most 15 digits and no exponent, the digits and the power of ten are both exact doubles, so
    // one division gives the correctly rounded value, as Number() would (the fast path of every strtod).
    if ((c === COMMA || c === CLOSE) && end - start - 1 <= SAFE_DIGITS) {
      this.at = end;
      return (negative ? -mantissa : mantissa) / POWERS_OF_TEN[fraction]!;
    }
    for (; c !== COMMA && c !== CLOSE; c = json[++end]) {
      const allowed =
        c !== undefined && ((c >= 0x30 && c <= 0x39) || c === 0x65 || c === 0x45 || c === 0x2b || c === 0x2d);
      if (!allowed) throw malformed(end, 'a number has a stray character');
    }
    this.at = end;
    const value = Number(json.toString('latin1', at, end));
    if (Number.isNaN(value)) throw malformed(at, 'a REAL is not a number');
    return value;
  }
}

/** Writes the unescaped bytes of json[from, close) to `out`; returns how many. */
function unescapeInto(json: Buffer, from: number, close: number, out: Buffer): number {
  let to = 0;
  while (from < close) {
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
  return to;
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
  return new BackupdError('SOURCE_FAILED', `the SQLite dump is not valid: its JSON rows break at byte ${at}: ${why}`);
}
