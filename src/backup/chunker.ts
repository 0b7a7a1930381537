// Cutting a file's byte stream into chunks. Two chunkers, chosen per stream kind (docs/FORMAT.md):
// - 'cdc': FastCDC-style content-defined chunking with a gear hash and normalized chunking, so an insert or
//   a changed row moves only the chunk boundaries near it (logical dumps).
// - 'fixed': fixed-size blocks aligned to the file start, for raw page files whose pages change in place.
// Both are streaming: memory is bounded by the maximum chunk size plus one input buffer.

import { createHash } from 'node:crypto';
import { BackupdError } from '../errors.js';

export type ChunkerParams =
  | { kind: 'cdc'; gear: 'backupd-gear-v1'; min: number; avg: number; max: number }
  | { kind: 'fixed'; blockSize: number };

/** 16 KiB average, chosen from measurements (docs/FORMAT.md): it finds most unchanged rows after scattered updates. */
export const DEFAULT_CDC: ChunkerParams = {
  kind: 'cdc',
  gear: 'backupd-gear-v1',
  min: 4 << 10,
  avg: 16 << 10,
  max: 64 << 10,
};

/** The gear table: 256 fixed 32-bit values derived from SHA-256, part of the format (changing it breaks dedupe). */
const GEAR = (() => {
  const table = new Int32Array(256);
  for (let i = 0; i < 256; i++) table[i] = createHash('sha256').update(`backupd-gear-v1/${i}`).digest().readInt32LE(0);
  return table;
})();

/** A mask of `bits` one-bits at the top of a 32-bit word: with a left-shifting gear hash the top bits mix the most bytes. */
function topMask(bits: number): number {
  return (0xffffffff << (32 - bits)) | 0;
}

export function validateChunker(params: ChunkerParams): ChunkerParams {
  if (params.kind === 'fixed') {
    if (!Number.isInteger(params.blockSize) || params.blockSize < 512 || params.blockSize > 16 << 20) {
      throw new BackupdError('UNSUPPORTED_FORMAT', `fixed chunker block size ${params.blockSize} is out of range`);
    }
    return params;
  }
  const { min, avg, max } = params;
  const bits = Math.log2(avg);
  if (
    params.gear !== 'backupd-gear-v1' ||
    !Number.isInteger(bits) ||
    bits < 8 ||
    bits > 26 ||
    !(min < avg && avg < max)
  ) {
    throw new BackupdError('UNSUPPORTED_FORMAT', `cdc chunker parameters ${JSON.stringify(params)} are not supported`);
  }
  return params;
}

/**
 * Find the end of the next chunk in `data` (starting at 0), or -1 when more data is needed to decide.
 * `final` says no more data follows, so whatever is left is the last chunk.
 */
function nextCut(params: ChunkerParams, data: Uint8Array, final: boolean): number {
  const length = data.length;
  if (params.kind === 'fixed') {
    if (length >= params.blockSize) return params.blockSize;
    return final && length > 0 ? length : -1;
  }
  const { min, avg, max } = params;
  if (length <= min) return final && length > 0 ? length : -1;
  const bits = Math.log2(avg);
  const maskHard = topMask(bits + 2); // before the average: harder to cut
  const maskEasy = topMask(bits - 2); // after the average: easier to cut
  const normal = Math.min(avg, length);
  const end = Math.min(max, length);
  let hash = 0;
  let i = min;
  for (; i < normal; i++) {
    hash = ((hash << 1) + GEAR[data[i]!]!) | 0;
    if ((hash & maskHard) === 0) return i + 1;
  }
  for (; i < end; i++) {
    hash = ((hash << 1) + GEAR[data[i]!]!) | 0;
    if ((hash & maskEasy) === 0) return i + 1;
  }
  if (end === max) return max;
  return final ? length : -1;
}

/**
 * Split an async stream of buffers into chunks, yielded in groups (all the chunks completed by one input
 * buffer) so a caller pays its per-step cost once per group, not per chunk. Yielded buffers may share
 * memory with each other but are never modified afterwards.
 */
export async function* chunkStream(
  params: ChunkerParams,
  input: AsyncIterable<Buffer | Uint8Array>,
): AsyncGenerator<Buffer[]> {
  let pending: Buffer = Buffer.alloc(0);
  for await (const piece of input) {
    pending =
      pending.length === 0
        ? Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength)
        : Buffer.concat([pending, piece]);
    const group: Buffer[] = [];
    for (;;) {
      const cut = nextCut(params, pending, false);
      if (cut < 0) break;
      group.push(pending.subarray(0, cut));
      pending = pending.subarray(cut);
    }
    if (group.length > 0) yield group;
    // Keep leftovers small: copy them out so the large input buffer can be released.
    if (pending.length > 0 && pending.buffer.byteLength > pending.length * 4) pending = Buffer.from(pending);
  }
  const group: Buffer[] = [];
  for (;;) {
    const cut = nextCut(params, pending, true);
    if (cut < 0) break;
    group.push(pending.subarray(0, cut));
    pending = pending.subarray(cut);
  }
  if (group.length > 0) yield group;
}
