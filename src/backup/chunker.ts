// Cutting a file's byte stream into chunks. Two chunkers, chosen per stream kind (docs/FORMAT.md):
// - 'cdc': FastCDC-style content-defined chunking with a gear hash and normalized chunking, so an insert or
//   a changed row moves only the chunk boundaries near it (logical dumps).
// - 'fixed': fixed-size blocks aligned to the file start, for raw page files whose pages change in place.
// Both are streaming: memory is bounded by the maximum chunk size plus one input buffer.

import { createHash } from 'node:crypto';
import { BackupdError } from '../errors.js';
import type { FillFeed } from '../sources/source.js';
import { type BatchSlots, copyIntoSlot, type Slot } from './batch-slots.js';
import { type GearCut, gearCutter } from './gear-wasm.js';

export type ChunkerParams =
  | { kind: 'cdc'; gear: 'backupd-gear-v1'; min: number; avg: number; max: number }
  | { kind: 'fixed'; blockSize: number };

/** CDC around an average of `avg` bytes (a power of two): chunks of a quarter of that to four times it. */
export function cdcChunker(avg: number): ChunkerParams {
  return { kind: 'cdc', gear: 'backupd-gear-v1', min: avg / 4, avg, max: avg * 4 };
}

/** 16 KiB average, chosen from measurements (docs/FORMAT.md): it finds most unchanged rows after scattered updates. */
export const DEFAULT_CDC: ChunkerParams = cdcChunker(16 << 10);

/** The gear table: 256 fixed 32-bit values derived from SHA-256, part of the format (changing it breaks dedupe). */
export const GEAR = (() => {
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

/** Where the current chunk stands between input pieces. */
interface CutState {
  /** The current chunk's bytes from earlier pieces (views into them, or copies of small leftovers). */
  parts: Uint8Array[];
  /** How many bytes the current chunk has so far (the sum of `parts`). */
  length: number;
  /** The gear hash over the current chunk's bytes from `min` on. */
  hash: number;
}

/** A chunk made of its bytes from earlier pieces and `tail`, as a Buffer (copied only when it spans pieces). */
function joinChunk(state: CutState, tail: Uint8Array): Buffer {
  if (state.parts.length === 0) return Buffer.from(tail.buffer, tail.byteOffset, tail.byteLength);
  return Buffer.concat([...state.parts, tail]);
}

/**
 * Cut `piece` into the chunks it completes, continuing the chunk in `state` and leaving the rest of
 * `piece` there. Each byte is hashed once, whatever the piece sizes: the scan resumes where the last
 * piece ended, so the cuts are the same for any split of the stream.
 */
function cutPiece(params: ChunkerParams, state: CutState, piece: Uint8Array, out: Buffer[]): void {
  const n = piece.length;
  let start = 0; // where the current chunk's bytes in this piece begin
  let i = 0;
  if (params.kind === 'fixed') {
    const size = params.blockSize;
    while (state.length + (n - start) >= size) {
      const end = start + (size - state.length);
      out.push(joinChunk(state, piece.subarray(start, end)));
      state.parts = [];
      state.length = 0;
      start = end;
    }
    i = n;
  } else {
    const { min, avg, max } = params;
    const bits = Math.log2(avg);
    const maskHard = topMask(bits + 2); // before the average: harder to cut
    const maskEasy = topMask(bits - 2); // after the average: easier to cut
    const gear = GEAR;
    let hash = state.hash;
    while (i < n) {
      // `offset` turns an index in this piece into a position in the current chunk.
      const offset = state.length - start;
      if (i + offset < min) {
        i = Math.min(n, min - offset); // the first `min` bytes of a chunk are never a cut point
        continue;
      }
      let cut = -1;
      if (i + offset < avg) {
        const stop = Math.min(n, avg - offset);
        // Four bytes a round, then one (unrolled: about 30% faster in V8 on a pg_dump stream).
        for (; i + 4 <= stop; i += 4) {
          hash = ((hash << 1) + gear[piece[i]!]!) | 0;
          if ((hash & maskHard) === 0) {
            cut = i + 1;
            break;
          }
          hash = ((hash << 1) + gear[piece[i + 1]!]!) | 0;
          if ((hash & maskHard) === 0) {
            cut = i + 2;
            break;
          }
          hash = ((hash << 1) + gear[piece[i + 2]!]!) | 0;
          if ((hash & maskHard) === 0) {
            cut = i + 3;
            break;
          }
          hash = ((hash << 1) + gear[piece[i + 3]!]!) | 0;
          if ((hash & maskHard) === 0) {
            cut = i + 4;
            break;
          }
        }
        for (; cut < 0 && i < stop; i++) {
          hash = ((hash << 1) + gear[piece[i]!]!) | 0;
          if ((hash & maskHard) === 0) cut = i + 1;
        }
      }
      if (cut < 0 && i + offset >= avg) {
        const stop = Math.min(n, max - offset);
        for (; i + 4 <= stop; i += 4) {
          hash = ((hash << 1) + gear[piece[i]!]!) | 0;
          if ((hash & maskEasy) === 0) {
            cut = i + 1;
            break;
          }
          hash = ((hash << 1) + gear[piece[i + 1]!]!) | 0;
          if ((hash & maskEasy) === 0) {
            cut = i + 2;
            break;
          }
          hash = ((hash << 1) + gear[piece[i + 2]!]!) | 0;
          if ((hash & maskEasy) === 0) {
            cut = i + 3;
            break;
          }
          hash = ((hash << 1) + gear[piece[i + 3]!]!) | 0;
          if ((hash & maskEasy) === 0) {
            cut = i + 4;
            break;
          }
        }
        for (; cut < 0 && i < stop; i++) {
          hash = ((hash << 1) + gear[piece[i]!]!) | 0;
          if ((hash & maskEasy) === 0) cut = i + 1;
        }
        if (cut < 0 && i + offset === max) cut = i;
      }
      if (cut < 0) break; // the piece ended before a cut
      out.push(joinChunk(state, piece.subarray(start, cut)));
      state.parts = [];
      state.length = 0;
      hash = 0;
      start = cut;
      i = cut;
    }
    state.hash = hash;
  }
  if (start < n) {
    let rest = piece.subarray(start);
    // Keep small leftovers as copies so a large input buffer can be released.
    if (rest.buffer.byteLength > rest.length * 4) rest = Uint8Array.prototype.slice.call(rest);
    state.parts.push(rest);
    state.length += rest.length;
  }
}

/**
 * Split an async stream of buffers into chunks, yielded in groups (all the chunks completed by one input
 * buffer) so a caller pays its per-step cost once per group, not per chunk. Yielded buffers may share
 * memory with the input buffers and each other, so the input's buffers must not be reused; they are never
 * modified afterwards.
 */
export async function* chunkStream(
  params: ChunkerParams,
  input: AsyncIterable<Buffer | Uint8Array>,
): AsyncGenerator<Buffer[]> {
  const state: CutState = { parts: [], length: 0, hash: 0 };
  for await (const piece of input) {
    // One view type for every piece keeps the hash loop monomorphic.
    const view = new Uint8Array(piece.buffer, piece.byteOffset, piece.byteLength);
    const group: Buffer[] = [];
    cutPiece(params, state, view, group);
    if (group.length > 0) yield group;
  }
  if (state.length > 0) yield [joinChunk({ parts: state.parts.slice(0, -1), length: 0, hash: 0 }, state.parts.at(-1)!)];
}

/** Chunks back to back in a batch slot: `lengths` cut its bytes from `start`. */
export interface SlotBatch {
  slot: Slot;
  /** Where the first chunk begins, in bytes from the slot's start. */
  start: number;
  lengths: number[];
}

/** The largest chunk a chunker makes: a batch slot must hold at least one. */
export function maxChunkBytes(params: ChunkerParams): number {
  return params.kind === 'fixed' ? params.blockSize : params.max;
}

/**
 * Split an async stream of buffers into batches of whole chunks, each gathered in a batch slot (the bytes'
 * one copy) and cut there, so a chunk never spans buffers and the slot goes to a worker as it is. A slot
 * is filled to the brim, then cut; the bytes after its last cut begin the next slot and are cut again
 * there: a chunk's cuts depend only on its own bytes, so they equal chunkStream's. Slots must hold at
 * least maxChunkBytes; every yielded slot is the caller's to release, the others are released here.
 */
export async function* chunkBatches(
  params: ChunkerParams,
  input: AsyncIterable<Buffer | Uint8Array>,
  slots: BatchSlots,
): AsyncGenerator<SlotBatch> {
  const capacity = slots.slotBytes;
  if (capacity < maxChunkBytes(params)) {
    throw new BackupdError(
      'INTERNAL',
      `batch slots of ${capacity} bytes cannot hold ${maxChunkBytes(params)}-byte chunks`,
    );
  }
  const cutter = params.kind === 'cdc' ? gearCutter(slots.memory, GEAR) : undefined;
  let slot: Slot | undefined = await slots.acquire();
  let length = 0;
  const cut = (last: boolean) => slotCuts(params, cutter, slot!, 0, length, last);
  try {
    for await (const piece of input) {
      let at = 0;
      while (at < piece.length) {
        const n = Math.min(piece.length - at, capacity - length);
        copyIntoSlot(slot, length, n === piece.length ? piece : piece.subarray(at, at + n));
        length += n;
        at += n;
        if (length < capacity) continue;
        const lengths = cut(false);
        const done = lengths.reduce((sum, k) => sum + k, 0);
        const next: Slot = await slots.acquire();
        copyIntoSlot(next, 0, slot.bytes.subarray(done, length));
        const batch = { slot, start: 0, lengths };
        slot = next;
        length -= done;
        yield batch;
      }
    }
    if (length > 0) {
      const batch = { slot, start: 0, lengths: cut(true) };
      slot = undefined;
      yield batch;
    }
  } finally {
    if (slot) slots.release(slot.index);
  }
}

/**
 * chunkBatches for a source that writes into the batch slots itself (SourceFile.fill), so its bytes are
 * never copied here. Each slot is given to the source with its first maxChunkBytes left free: the bytes
 * after the last cut of the slot before (fewer than that) are copied there, right before what the source
 * wrote, and the slot's batch starts with them. At most `ahead` slots are given and not yet filled; more
 * only as slots are free, so a run never waits for a slot while the source has one to fill.
 */
export async function* chunkFilled(
  params: ChunkerParams,
  fill: (memory: SharedArrayBuffer, capacity: number) => FillFeed,
  slots: BatchSlots,
  ahead: number,
): AsyncGenerator<SlotBatch> {
  const front = maxChunkBytes(params);
  if (slots.slotBytes < 2 * front) {
    throw new BackupdError('INTERNAL', `batch slots of ${slots.slotBytes} bytes leave too little room after ${front}`);
  }
  const cutter = params.kind === 'cdc' ? gearCutter(slots.memory, GEAR) : undefined;
  const feed = fill(slots.memory.buffer as SharedArrayBuffer, ahead);
  /** Slots given to the source and not yet filled, in the order given. */
  const given: Slot[] = [];
  const give = (slot: Slot) => {
    given.push(slot);
    feed.give(slot.offset + front, slots.slotBytes - front);
  };
  const topUp = async () => {
    if (given.length === 0) give(await slots.acquire());
    while (given.length < ahead) {
      const slot = slots.tryAcquire();
      if (!slot) break;
      give(slot);
    }
  };
  let start = front; // where the next slot's bytes begin: after the source's, before them what is carried over
  try {
    await topUp();
    for await (const filled of feed.filled) {
      const slot = given.shift()!;
      const end = front + filled;
      const lengths = slotCuts(params, cutter, slot, start, end, false);
      const done = lengths.reduce((sum, k) => sum + k, 0);
      await topUp();
      const carried = end - start - done;
      copyIntoSlot(given[0]!, front - carried, slot.bytes.subarray(start + done, end));
      const batch = { slot, start, lengths };
      start = front - carried;
      if (lengths.length > 0) yield batch;
      else slots.release(slot.index); // all of it was carried over
    }
    if (start < front) {
      const slot = given.shift()!;
      yield { slot, start, lengths: slotCuts(params, cutter, slot, start, front, true) };
    }
  } finally {
    const unfilled = given.splice(0);
    feed.whenIdle(() => {
      for (const slot of unfilled) slots.release(slot.index);
    });
  }
}

/**
 * The lengths of the chunks of `slot` from byte `from` to `to`, cut by the WebAssembly scan (cdc) or in
 * blocks (fixed); the bytes after the last cut are a chunk only when the stream ends there (`last`).
 */
function slotCuts(
  params: ChunkerParams,
  cut: GearCut | undefined,
  slot: Slot,
  from: number,
  to: number,
  last: boolean,
) {
  const lengths: number[] = [];
  const length = to - from;
  if (params.kind === 'fixed') {
    const blocks = Math.floor(length / params.blockSize);
    for (let i = 0; i < blocks; i++) lengths.push(params.blockSize);
    const rest = length - blocks * params.blockSize;
    if (last && rest > 0) lengths.push(rest);
    return lengths;
  }
  const { min, avg, max } = params;
  const bits = Math.log2(avg);
  const maskHard = topMask(bits + 2);
  const maskEasy = topMask(bits - 2);
  const end = slot.offset + to;
  let start = slot.offset + from;
  for (;;) {
    const at = cut!(start, end, min, avg, max, maskHard, maskEasy);
    if (at < 0) break;
    lengths.push(at - start);
    start = at;
  }
  if (last && start < end) lengths.push(end - start);
  return lengths;
}

/** The lengths of the fixed blocks that cut `length` bytes: full blocks, then a shorter last one. */
export function fixedBlocks(length: number, blockSize: number): number[] {
  const lengths: number[] = [];
  for (let at = 0; at < length; at += blockSize) lengths.push(Math.min(blockSize, length - at));
  return lengths;
}
