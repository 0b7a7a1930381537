// The byte-level writer of the logical dump (sqlite-format.ts): appends records into ~1 MiB buffers that the
// dump (sqlite-dump.ts) hands over one at a time.

import { type SqlValue, VAL_BLOB, VAL_INT, VAL_NULL, VAL_REAL, VAL_TEXT } from './sqlite-format.js';

/** Size at which a buffer is handed over. */
export const SLICE = 1 << 20;
/** Room for a slice plus the batch of rows that crosses it (sqlite-dump.ts keeps batches near 512 KiB). */
const CAPACITY = 2 * SLICE;

export class DumpEncoder {
  private buf = Buffer.allocUnsafe(CAPACITY);
  private pos = 0;

  /**
   * `reuse`: take() returns a view of the encoder's own buffer, valid only until the next write (for a
   * caller that copies it at once); otherwise a buffer of its own each time.
   */
  constructor(private readonly reuse = false) {}

  get size(): number {
    return this.pos;
  }

  /** The buffer written so far (its first `size` bytes), valid until the next write or take(). */
  get bytes(): Buffer {
    return this.buf;
  }

  take(): Buffer {
    const out = this.buf.subarray(0, this.pos);
    if (!this.reuse) this.buf = Buffer.allocUnsafe(CAPACITY);
    this.pos = 0;
    return out;
  }

  /** Makes room for `bytes` more and returns the buffer to write them into, at `pos`. */
  private reserve(bytes: number): Buffer {
    if (this.pos + bytes > this.buf.length) {
      const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + bytes));
      this.buf.copy(bigger, 0, 0, this.pos);
      this.buf = bigger;
    }
    return this.buf;
  }

  byte(value: number): void {
    this.reserve(1)[this.pos++] = value;
  }

  u32(value: number): void {
    this.reserve(4).writeUInt32LE(value, this.pos);
    this.pos += 4;
  }

  raw(bytes: Uint8Array): void {
    this.reserve(bytes.length).set(bytes, this.pos);
    this.pos += bytes.length;
  }

  /** Appends from[start, end), with no view made of it. */
  copy(from: Buffer, start: number, end: number): void {
    const buf = this.reserve(end - start);
    this.pos += from.copy(buf, this.pos, start, end);
  }

  text(value: string): void {
    const buf = this.reserve(5 + value.length * 3);
    const written = buf.write(value, this.pos + 4, 'utf8');
    buf.writeUInt32LE(written, this.pos);
    this.pos += 4 + written;
  }

  value(value: SqlValue): void {
    if (value === null) this.byte(VAL_NULL);
    else if (typeof value === 'bigint') {
      const buf = this.reserve(9);
      buf[this.pos] = VAL_INT;
      buf.writeBigInt64LE(value, this.pos + 1);
      this.pos += 9;
    } else if (typeof value === 'number') {
      const buf = this.reserve(9);
      buf[this.pos] = VAL_REAL;
      buf.writeDoubleLE(value, this.pos + 1);
      this.pos += 9;
    } else if (typeof value === 'string') {
      this.byte(VAL_TEXT);
      this.text(value);
    } else {
      this.byte(VAL_BLOB);
      this.u32(value.length);
      this.raw(value);
    }
  }
}
