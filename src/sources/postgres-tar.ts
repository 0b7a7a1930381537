// Writing a tar (POSIX pax/ustar, as GNU tar and pg_basebackup read it) straight into the pipeline's batch
// slots (SourceFile.fill), from files read at offsets: the data-directory snapshot's base.tar, tablespace
// tars and pg_wal.tar (postgres-files.ts). Each file of at least `align` bytes starts at a multiple of
// `align` in the tar (a pax comment before its header pads it there), so fixed blocks of `align` cut it at
// its own page boundaries and an unchanged block of a relation file dedupes whatever moved before it.
// A file that ends early while it is read (VACUUM truncating a relation) is padded with zeros up to the
// size its header gave, as pg_basebackup does; the WAL replayed on the restored copy's first start redoes
// the truncation.

import type { FileHandle } from 'node:fs/promises';
import { BackupdError, messageOf } from '../errors.js';
import { type FillFeed, type FillRegion, regionFeed } from './source.js';

const BLOCK = 512;

/** One entry of a tar. A file's handle is read from offset 0 for `size` bytes and closed by the writer. */
export type TarEntry =
  | { kind: 'dir'; name: string; mode: number; mtime: number }
  | { kind: 'file'; name: string; mode: number; mtime: number; size: number; handle: FileHandle }
  | { kind: 'bytes'; name: string; mode: number; mtime: number; data: Buffer };

/** What a tar writer saw, for the reading's log: files that ended before the size their header gave. */
export interface TarReport {
  shortFiles: string[];
}

type Piece = { bytes: Uint8Array } | { handle: FileHandle; name: string; size: number };

/**
 * The tar of `entries` as SourceFile.fill: the entries are asked for only when the pipeline first fills.
 * Regions are filled whole but the last. Fails SOURCE_FAILED when a file cannot be read.
 */
export function tarFill(
  entries: () => AsyncIterable<TarEntry>,
  align: number,
  report: TarReport,
): (memory: SharedArrayBuffer) => FillFeed {
  return (memory) => {
    async function* pieces(): AsyncGenerator<Piece> {
      let position = 0;
      for await (const entry of entries()) {
        const size = entry.kind === 'file' ? entry.size : entry.kind === 'bytes' ? entry.data.length : 0;
        const type = entry.kind === 'dir' ? '5' : '0';
        const name = entry.kind === 'dir' && !entry.name.endsWith('/') ? `${entry.name}/` : entry.name;
        const headers = entryHeaders(
          name,
          type,
          size,
          entry.mode,
          entry.mtime,
          size >= align ? position : undefined,
          align,
        );
        position += headers.length;
        yield { bytes: headers };
        if (entry.kind === 'file') yield { handle: entry.handle, name: entry.name, size };
        else if (entry.kind === 'bytes') yield { bytes: entry.data };
        const pad = (BLOCK - (size % BLOCK)) % BLOCK;
        if (pad > 0) yield { bytes: new Uint8Array(pad) };
        position += size + pad;
      }
      yield { bytes: new Uint8Array(2 * BLOCK) }; // the end of the archive
    }

    async function* filled(next: () => Promise<FillRegion>): AsyncGenerator<number> {
      let region: { offset: number; room: number; used: number } | undefined;
      for await (const piece of pieces()) {
        const length = 'bytes' in piece ? piece.bytes.length : piece.size;
        let ended = false; // the file ended before `size`: the rest is zeros
        try {
          for (let done = 0; done < length; ) {
            region ??= { ...(await next()), used: 0 };
            const n = Math.min(length - done, region.room - region.used);
            const view = new Uint8Array(memory, region.offset + region.used, n);
            if ('bytes' in piece) view.set(piece.bytes.subarray(done, done + n));
            else {
              const read = ended ? 0 : await readFull(piece.handle, piece.name, view, done);
              if (read < n) {
                view.fill(0, read);
                if (!ended) report.shortFiles.push(piece.name);
                ended = true;
              }
            }
            region.used += n;
            done += n;
            if (region.used === region.room) {
              yield region.used;
              region = undefined;
            }
          }
        } finally {
          if ('handle' in piece) await piece.handle.close();
        }
      }
      if (region !== undefined && region.used > 0) yield region.used;
    }

    return regionFeed(filled);
  };
}

/** Read `view.length` bytes at `position`, fewer only where the file ends. */
async function readFull(handle: FileHandle, name: string, view: Uint8Array, position: number): Promise<number> {
  let count = 0;
  while (count < view.length) {
    const { bytesRead } = await handle
      .read(view, count, view.length - count, position + count)
      .catch((error: unknown) => {
        throw new BackupdError('SOURCE_FAILED', `reading ${name} from the data directory failed: ${messageOf(error)}`, {
          cause: error,
        });
      });
    if (bytesRead === 0) break;
    count += bytesRead;
  }
  return count;
}

/**
 * The header blocks of one entry at tar offset `at`: a pax header first when the name is too long for
 * ustar or when `at` is given and the entry's data must start at a multiple of `align` (a comment pads it).
 */
export function entryHeaders(
  name: string,
  type: '0' | '5',
  size: number,
  mode: number,
  mtime: number,
  at: number | undefined,
  align: number,
): Uint8Array {
  const records: string[] = [];
  if (Buffer.byteLength(name) > 100) records.push(paxRecord('path', name));
  let paxBytes = records.reduce((sum, r) => sum + Buffer.byteLength(r), 0);
  if (at !== undefined) {
    // data starts at at + 512 (pax header) + pax data (whole blocks) + 512 (the entry's header)
    let data = ((-(at + 2 * BLOCK) % align) + align) % align;
    if (data === 0 && records.length === 0) return ustarHeader(name, type, size, mode, mtime);
    while (data < paxBytes + 16) data += align;
    records.push(commentRecord(data - paxBytes));
    paxBytes = data;
  }
  const parts = [ustarHeader(name, type, size, mode, mtime)];
  if (records.length > 0) {
    const body = Buffer.from(records.join(''));
    const padded = Buffer.alloc(Math.ceil(body.length / BLOCK) * BLOCK);
    body.copy(padded);
    parts.unshift(ustarHeader('././@PaxHeader', 'x', body.length, 0o644, mtime), padded);
  }
  return Buffer.concat(parts);
}

/** A pax record "<length> key=value\n", its length counting itself. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let length = Buffer.byteLength(body);
  while (String(length).length + Buffer.byteLength(body) !== length)
    length = String(length).length + Buffer.byteLength(body);
  return `${length}${body}`;
}

/** A pax comment record of exactly `length` bytes (readers ignore comments). */
function commentRecord(length: number): string {
  const digits = String(length).length;
  return `${length} comment=${'-'.repeat(length - digits - 10)}\n`;
}

function ustarHeader(name: string, type: '0' | '5' | 'x', size: number, mode: number, mtime: number): Buffer {
  const header = Buffer.alloc(BLOCK);
  const text = (value: string, at: number, length: number) => header.write(value, at, length, 'utf8');
  const octal = (value: number, at: number, length: number) =>
    text(
      `${Math.floor(value)
        .toString(8)
        .padStart(length - 1, '0')}\0`,
      at,
      length,
    );
  text(Buffer.from(name).subarray(0, 100).toString('utf8'), 0, 100);
  octal(mode & 0o7777, 100, 8);
  octal(0, 108, 8);
  octal(0, 116, 8);
  octal(size, 124, 12);
  octal(Math.max(0, mtime), 136, 12);
  text('        ', 148, 8);
  text(type, 156, 1);
  text('ustar\u000000', 257, 8);
  let sum = 0;
  for (const byte of header) sum += byte;
  text(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8);
  return header;
}
