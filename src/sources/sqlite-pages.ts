// Reading a rowid table's rows straight from the database file's b-tree pages, as SQLite stores them: each
// row is its rowid and its record (SQLite's own encoding of the row's values), copied as they lie. This is
// what the logical dump stores for most tables ('S' rows, docs/FORMAT.md): it skips rendering every value
// as text, which was most of the dump's CPU (docs/BENCHMARKS.md). The file must hold still while it is
// read: the dump reads a private copy that nothing else opens (sqlite.ts), in a rollback-journal mode, so
// every page is in the file. Layout from https://sqlite.org/fileformat.html.

import { readSync } from 'node:fs';
import { BackupdError } from '../errors.js';
import { type DumpEncoder, SLICE } from './sqlite-dump-encoder.js';
import { REC_SQLITE_ROW } from './sqlite-format.js';
import { recordProblem } from './sqlite-record.js';
import { readVarint, varintSize } from './sqlite-varint.js';

const INTERIOR_TABLE = 0x05;
const LEAF_TABLE = 0x0d;
/** Pages are read this many bytes at a time (or a page, if larger): tables' pages lie in runs, interleaved. */
const BLOCK_BYTES = 64 << 10;
/** Blocks kept: enough that the runs of a table's pages are read about once (1 MiB). */
const BLOCKS_KEPT = 16;

/** The pages of one database file, read through a descriptor and kept a few blocks at a time. */
export class PageFile {
  readonly pageSize: number;
  /** Bytes of a page that hold b-tree content: the page less the bytes reserved at its end (header byte 20). */
  readonly usable: number;
  private readonly blockBytes: number;
  /** Cached blocks by block number: where in `pool` each lies, and its bytes. */
  private readonly blocks = new Map<number, { slot: number; view: Buffer }>();
  /** The memory of the cached blocks, BLOCKS_KEPT blocks of blockBytes. */
  private readonly pool: Buffer;

  /**
   * `pageCount` is the database's size in pages as its own connection reports it (PRAGMA page_count), read
   * inside the same transaction.
   */
  constructor(
    private readonly fd: number,
    readonly pageCount: number,
  ) {
    const header = Buffer.alloc(100);
    if (readSync(fd, header, 0, 100, 0) !== 100 || header.toString('latin1', 0, 16) !== 'SQLite format 3\0') {
      throw malformed('its header is not a SQLite 3 header');
    }
    const size = header.readUInt16BE(16);
    this.pageSize = size === 1 ? 65536 : size;
    this.usable = this.pageSize - header[20]!;
    if (this.pageSize < 512 || (this.pageSize & (this.pageSize - 1)) !== 0 || this.usable < 480) {
      throw malformed(`its page size ${this.pageSize} (${header[20]} reserved) is not one SQLite writes`);
    }
    this.blockBytes = Math.max(BLOCK_BYTES, this.pageSize);
    this.pool = Buffer.allocUnsafeSlow(BLOCKS_KEPT * this.blockBytes);
  }

  /**
   * Page `no` (1-based), as a view of a cached block: valid until the next call may evict that block and
   * read another into its memory (after BLOCKS_KEPT other blocks). A caller that reads other pages while it
   * still needs this one copies it first (rowsFromPages does, for a leaf with overflowing cells).
   */
  page(no: number): Buffer {
    if (!Number.isInteger(no) || no < 1 || no > this.pageCount) {
      throw malformed(`a pointer leads to page ${no}, outside its ${this.pageCount} pages`);
    }
    const offset = (no - 1) * this.pageSize;
    const index = Math.floor(offset / this.blockBytes);
    let block = this.blocks.get(index);
    if (!block) {
      // The oldest block's memory is read into again: a dump allocates nothing per block.
      let slot = this.blocks.size;
      if (slot >= BLOCKS_KEPT) {
        const [oldest, old] = this.blocks.entries().next().value!;
        this.blocks.delete(oldest);
        slot = old.slot;
      }
      const want = Math.min(this.blockBytes, this.pageCount * this.pageSize - index * this.blockBytes);
      const view = this.pool.subarray(slot * this.blockBytes, slot * this.blockBytes + want);
      let read = 0;
      while (read < want) {
        const n = readSync(this.fd, view, read, want - read, index * this.blockBytes + read);
        if (n === 0) throw malformed(`the file ends before page ${no}`);
        read += n;
      }
      block = { slot, view };
      this.blocks.set(index, block);
    }
    const at = offset - index * this.blockBytes;
    return block.view.subarray(at, at + this.pageSize);
  }
}

/**
 * Every row of the rowid table whose b-tree starts at page `root`, in rowid order, appended to `enc` as 'S'
 * rows: 'S', the cell's payload length and rowid as the varints SQLite wrote, then the whole payload (the
 * record, its overflow pages joined). Each record is checked to be well formed, with at most `columns`
 * values (the table's stored columns), so a corrupt row fails the backup, naming the table. Yields a slice
 * whenever the encoder holds one; returns the row count.
 */
export function* rowsFromPages(
  file: PageFile,
  table: string,
  root: number,
  columns: number,
  enc: DumpEncoder,
  /** Called with each checked row: the encoder's bytes, the offset after its 'S', and where the row ends. */
  onRow?: (buf: Buffer, at: number, limit: number) => void,
): Generator<Buffer, number> {
  const usable = file.usable;
  const maxLocal = usable - 35;
  const minLocal = Math.floor(((usable - 12) * 32) / 255) - 23;
  const leafCopy = Buffer.allocUnsafe(file.pageSize);
  let rows = 0;
  let visited = 0;
  const stack = [root];
  while (stack.length > 0) {
    const no = stack.pop()!;
    if (++visited > file.pageCount) throw malformed(`the b-tree of table "${table}" has a loop`);
    let page = file.page(no);
    const h = no === 1 ? 100 : 0;
    const type = page[h];
    const cells = page.readUInt16BE(h + 3);
    const pointers = h + (type === INTERIOR_TABLE ? 12 : 8);
    if (pointers + 2 * cells > usable) throw malformed(`page ${no} of table "${table}" claims ${cells} cells`);
    if (type === INTERIOR_TABLE) {
      // Children in key order: each cell's left child, then the right-most pointer; the stack takes them last first.
      stack.push(page.readUInt32BE(h + 8));
      for (let i = cells - 1; i >= 0; i--) {
        const cell = page.readUInt16BE(pointers + 2 * i);
        if (cell + 4 > usable) throw malformed(`a cell of page ${no} of table "${table}" lies outside it`);
        stack.push(page.readUInt32BE(cell));
      }
      if (stack.length > file.pageCount) throw malformed(`the b-tree of table "${table}" has a loop`);
      continue;
    }
    if (type !== LEAF_TABLE) throw malformed(`page ${no} in table "${table}" is not a table page (type ${type})`);
    for (let i = 0; i < cells; i++) {
      const cell = page.readUInt16BE(pointers + 2 * i);
      // The payload's length, then the rowid, both varints, copied as they are.
      const length = readVarint(page, cell, usable);
      const lengthSize = varintSize(page, cell, usable);
      const rowidSize = lengthSize < 0 ? -1 : varintSize(page, cell + lengthSize, usable);
      if (length < 0 || rowidSize < 0) throw malformed(`a cell of page ${no} of table "${table}" lies outside it`);
      const at = cell + lengthSize + rowidSize;
      // A row cannot be larger than the file: a bad length must not become a loop that fills memory.
      if (length > file.pageCount * usable) {
        throw malformed(`a cell of page ${no} of table "${table}" claims ${length} bytes, more than the file holds`);
      }
      let local = length;
      if (length > maxLocal) {
        local = minLocal + ((length - minLocal) % (usable - 4));
        if (local > maxLocal) local = minLocal;
      }
      const end = at + local;
      if (end + (local < length ? 4 : 0) > usable) {
        throw malformed(`a cell of page ${no} of table "${table}" lies outside it`);
      }
      enc.byte(REC_SQLITE_ROW);
      const row = enc.size;
      const record = enc.size + (at - cell);
      enc.copy(page, cell, end);
      if (local < length) {
        // Reading the overflow pages may reuse this page's memory: the rest of the leaf is read from a copy.
        if (page !== leafCopy) {
          page.copy(leafCopy, 0, 0, file.pageSize);
          page = leafCopy;
        }
        copyOverflow(file, table, page.readUInt32BE(end), length - local, enc);
      }
      const problem = recordProblem(enc.bytes, record, enc.size, columns);
      if (problem) throw malformed(`a row of table "${table}" (cell ${i} of page ${no}) is corrupt: ${problem}`);
      onRow?.(enc.bytes, row, enc.size);
    }
    rows += cells;
    if (enc.size >= SLICE) yield enc.take();
  }
  return rows;
}

/** The rest of a payload, `left` bytes, from the chain of overflow pages that starts at page `next`. */
function copyOverflow(file: PageFile, table: string, next: number, left: number, enc: DumpEncoder): void {
  const room = file.usable - 4;
  while (left > 0) {
    if (next === 0) throw malformed(`an overflow chain of table "${table}" ends ${left} bytes early`);
    const page = file.page(next);
    const take = Math.min(left, room);
    enc.copy(page, 4, 4 + take);
    left -= take;
    next = page.readUInt32BE(0);
  }
}

function malformed(what: string): BackupdError {
  return new BackupdError('SOURCE_FAILED', `the SQLite database file is malformed: ${what}`);
}
