// A worker thread that names, seals and opens blobs (chunk ids, compression and AES-GCM are the CPU-heavy
// part of a run), so every core works and the main thread's event loop stays free. Driven by
// src/backup/blob-pool.ts. Requests carry a batch of chunks, so small chunks do not pay one message each.
// A backup's bytes reach a worker once ('name' for a batch the main thread cut, 'name range' for a file
// the worker reads itself): it answers the chunk ids and keeps the bytes until told which chunks are new
// ('seal kept'), so the main thread never hashes and never sends a chunk twice.

import { randomFillSync } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { BLOB_OVERHEAD, BlobError, NONCE_BYTES, openBlob, openBlobInto, sealBlobInto } from './blob.js';
import { type ChunkNamer, chunkNamer } from './chunk-id.js';
import { fixedBlocks } from './chunker.js';
import { alignedBuffer, DIRECT_ALIGN, TargetFile } from './direct-write.js';

/** What a worker names, seals and opens with: the chain's keys, chunk id algorithm and compression level. */
export interface BlobKeys {
  dataKey: Uint8Array | undefined;
  /** The chain's chunk id key; undefined in an unencrypted chain (unkeyed ids). */
  idKey: Uint8Array | undefined;
  level: number;
}

/**
 * The pool's first message to every worker, before any other: the keys come in a message rather than in
 * workerData so a worker can start (load its modules) while its run still derives the keys.
 */
export interface KeysRequest extends BlobKeys {
  op: 'keys';
}

/** Batch slots the main thread fills (batch-slots.ts): a shared memory, named by `id` in NameRequests. */
export interface SlotsRequest {
  op: 'slots';
  id: number;
  buffer: SharedArrayBuffer | ArrayBuffer;
}

/**
 * Name a batch: reply its ids (32 bytes each), and keep it under `seq` for a SealKeptRequest. The chunks
 * lie back to back from `offset` of slot memory `slots`; the main thread leaves them alone until the
 * batch is sealed.
 */
export interface NameRequest {
  seq: number;
  op: 'name';
  slots: number;
  offset: number;
  lengths: number[];
}

/**
 * Name a range of a regular file the worker reads itself through `fd`, cut into fixed blocks of
 * `blockSize` (the last one shorter), and keep it like a NameRequest's batch: raw snapshot files never
 * pass through the main thread.
 */
export interface NameRangeRequest {
  seq: number;
  op: 'name range';
  /** A descriptor the caller keeps open (it is never closed here: see SourceFile.onDisk). */
  fd: number;
  offset: number;
  length: number;
  blockSize: number;
}

/** Seal the chunks at `indexes` of the batch named by request `batch`, then forget that batch. */
export interface SealKeptRequest {
  seq: number;
  op: 'seal kept';
  batch: number;
  indexes: number[];
}

/** `data` holds the batch back to back; `lengths` cuts it; `ids` are 32 bytes each. */
export interface BlobRequest {
  seq: number;
  op: 'open';
  data: Uint8Array;
  lengths: number[];
  ids: Uint8Array;
  /** For 'open': the raw length of each chunk. */
  rawLengths?: number[];
}

/**
 * Restore part of a file in place: for each run (blobs stored back to back in one pack), read the run,
 * open each blob and write the chunk into `target` at its file offset. Nothing passes through the main
 * thread. `ids` holds 32 bytes per chunk, over all runs in order.
 */
export interface WriteRequest {
  seq: number;
  op: 'write';
  target: string;
  runs: {
    pack: string;
    offset: number;
    length: number;
    blobs: { length: number; rawLength: number; fileOffset: number }[];
  }[];
  ids: Uint8Array;
}

export type BlobReply =
  | { seq: number; data: Uint8Array; lengths: number[] }
  | { seq: number; ids: Uint8Array }
  | { seq: number; written: number }
  | { seq: number; error: string; corrupt: boolean; index: number };

let key: Buffer | undefined;
/** Names chunks as the chain does: set by the keys request. */
let nameChunk: ChunkNamer = () => {
  throw new Error('chunk ids asked for before the keys');
};
let level = 0;
/** Slot memories by id (SlotsRequest). */
const slotMemories = new Map<number, SharedArrayBuffer | ArrayBuffer>();
/** Batches named and not yet sealed, by the seq of their NameRequest. */
const kept = new Map<number, { data: Uint8Array; lengths: number[]; ids: Buffer; reusable: boolean }>();
/**
 * Range buffers of sealed batches, for the next ranges: a worker allocating a fresh 4 MiB per range grew
 * by ~45 MB before its garbage collector noticed the external memory (measured on a 1 GiB snapshot).
 */
const spareRanges: Buffer[] = [];
const MAX_SPARE_RANGES = 4;

export type BlobWorkerRequest = BlobRequest | WriteRequest | NameRequest | NameRangeRequest | SealKeptRequest;

parentPort?.on('message', (request: BlobWorkerRequest | KeysRequest | SlotsRequest) => {
  if (request.op === 'slots') {
    slotMemories.set(request.id, request.buffer);
    return;
  }
  if (request.op === 'keys') {
    key = request.dataKey ? Buffer.from(request.dataKey) : undefined;
    level = request.level;
    nameChunk = chunkNamer(request.idKey);
    return;
  }
  if (request.op === 'write') {
    void writeRuns(request); // replies itself, failures included
    return;
  }
  if (request.op === 'name') {
    const memory = slotMemories.get(request.slots);
    if (!memory) {
      replyError(request.seq, new Error(`batch slots ${request.slots} were never sent`), 0);
      return;
    }
    const length = request.lengths.reduce((sum, n) => sum + n, 0);
    nameBatch(request.seq, new Uint8Array(memory, request.offset, length), request.lengths);
    return;
  }
  if (request.op === 'name range') {
    nameRange(request);
    return;
  }
  if (request.op === 'seal kept') {
    sealKept(request);
    return;
  }
  const out: Buffer[] = [];
  let offset = 0;
  let index = 0;
  try {
    for (; index < request.lengths.length; index++) {
      const length = request.lengths[index]!;
      const item = request.data.subarray(offset, offset + length);
      const id = request.ids.subarray(index * 32, index * 32 + 32);
      offset += length;
      out.push(openBlob(item, id, key, request.rawLengths![index]!, nameChunk));
    }
    const data = Buffer.concat(out);
    parentPort?.postMessage({ seq: request.seq, data, lengths: out.map((b) => b.length) } satisfies BlobReply, [
      data.buffer as ArrayBuffer,
    ]);
  } catch (error) {
    replyError(request.seq, error, index);
  }
});

function nameBatch(seq: number, data: Uint8Array, lengths: number[], reusable = false): void {
  try {
    const ids = Buffer.allocUnsafeSlow(lengths.length * 32);
    let offset = 0;
    lengths.forEach((length, i) => {
      ids.set(nameChunk(data.subarray(offset, offset + length)), i * 32);
      offset += length;
    });
    kept.set(seq, { data, lengths, ids, reusable });
    // A copy goes back: the worker keeps its own ids for sealing.
    parentPort?.postMessage({ seq, ids: new Uint8Array(ids) } satisfies BlobReply);
  } catch (error) {
    replyError(seq, error, 0);
  }
}

function nameRange(request: NameRangeRequest): void {
  let data: Buffer;
  try {
    const spare = spareRanges.pop();
    data = spare && spare.length >= request.length ? spare : Buffer.allocUnsafeSlow(request.length);
    let got = 0;
    while (got < request.length) {
      const n = readSync(request.fd, data, got, request.length - got, request.offset + got);
      if (n === 0) throw new Error(`the file ends before byte ${request.offset + request.length}`);
      got += n;
    }
  } catch (error) {
    replyError(request.seq, error, 0);
    return;
  }
  nameBatch(request.seq, data.subarray(0, request.length), fixedBlocks(request.length, request.blockSize), true);
}

/** Where a worker seals a batch's blobs, reused from one batch to the next; and their nonces. */
let sealScratch = Buffer.alloc(0);
let nonces = Buffer.alloc(0);

function sealKept(request: SealKeptRequest): void {
  const batch = kept.get(request.batch);
  kept.delete(request.batch);
  let index = 0;
  try {
    if (!batch) throw new Error(`batch ${request.batch} was not named by this worker`);
    const starts: number[] = [];
    let offset = 0;
    for (const length of batch.lengths) {
      starts.push(offset);
      offset += length;
    }
    const count = request.indexes.length;
    let room = 0;
    for (const i of request.indexes) room += batch.lengths[i]! + BLOB_OVERHEAD;
    if (sealScratch.length < room) sealScratch = Buffer.allocUnsafeSlow(Math.max(room, 2 << 20));
    if (key) {
      // One draw of random nonces for the whole batch.
      if (nonces.length < count * NONCE_BYTES) nonces = Buffer.allocUnsafeSlow(Math.max(count * NONCE_BYTES, 4096));
      randomFillSync(nonces, 0, count * NONCE_BYTES);
    }
    const lengths: number[] = [];
    let at = 0;
    for (; index < count; index++) {
      const i = request.indexes[index]!;
      const item = batch.data.subarray(starts[i]!, starts[i]! + batch.lengths[i]!);
      const id = batch.ids.subarray(i * 32, i * 32 + 32);
      const nonce = key ? nonces.subarray(index * NONCE_BYTES, (index + 1) * NONCE_BYTES) : undefined;
      const length = sealBlobInto(item, id, key, level, nonce, sealScratch, at);
      lengths.push(length);
      at += length;
    }
    // The blobs leave in a buffer of their own, transferred: the scratch stays for the next batch.
    const data = Buffer.allocUnsafeSlow(at);
    sealScratch.copy(data, 0, 0, at);
    parentPort?.postMessage({ seq: request.seq, data, lengths } satisfies BlobReply, [data.buffer as ArrayBuffer]);
  } catch (error) {
    replyError(request.seq, error, index);
  } finally {
    if (batch?.reusable && spareRanges.length < MAX_SPARE_RANGES) {
      spareRanges.push(Buffer.from(batch.data.buffer, 0, batch.data.buffer.byteLength));
    }
  }
}

/** The buffer a worker reads pack runs into, reused from one write request to the next. */
let readScratch = Buffer.alloc(0);
/**
 * Aligned buffers of write requests whose writes have settled, for the next requests. A request's writes
 * run while the worker opens the next request's chunks into another buffer, so a worker holds a few.
 */
const spareWriteBuffers: Buffer[] = [];
const MAX_SPARE_WRITE_BUFFERS = 3;

/** Round `n` up to a multiple of DIRECT_ALIGN. */
const alignUp = (n: number) => Math.ceil(n / DIRECT_ALIGN) * DIRECT_ALIGN;

/**
 * Open the request's chunks into one aligned buffer, each stretch of chunks that follow each other in
 * the file at an aligned place in it, and write each stretch with one call (direct-write.ts); the reply
 * comes once the writes have settled. Until then the worker goes on with its next request: opening and
 * writing overlap instead of taking turns.
 */
async function writeRuns(request: WriteRequest): Promise<void> {
  let index = 0;
  let written = 0;
  let target: TargetFile | undefined;
  const writes: Promise<void>[] = [];
  // Room for every chunk, and for aligning the start of each stretch (at most one per chunk).
  const blobs = request.runs.reduce((sum, run) => sum + run.blobs.length, 0);
  const total = request.runs.reduce((sum, run) => sum + run.blobs.reduce((n, blob) => n + blob.rawLength, 0), 0);
  const room = total + Math.max(0, blobs - 1) * DIRECT_ALIGN;
  const spare = spareWriteBuffers.findIndex((b) => b.length >= room);
  const out = spare >= 0 ? spareWriteBuffers.splice(spare, 1)[0]! : alignedBuffer(room);
  let stretchAt = 0; // where the current stretch begins in `out`
  let fileStart = -1; // ... and in the file
  let length = 0;
  const flush = () => {
    if (length > 0) writes.push(target!.write(out.subarray(stretchAt, stretchAt + length), fileStart));
    stretchAt = alignUp(stretchAt + length);
    length = 0;
  };
  try {
    target = new TargetFile(request.target);
    for (const run of request.runs) {
      if (readScratch.length < run.length) readScratch = Buffer.allocUnsafeSlow(run.length);
      const bytes = readScratch;
      const fd = openSync(run.pack, 'r');
      let got = 0;
      try {
        got = readSync(fd, bytes, 0, run.length, run.offset);
      } finally {
        closeSync(fd);
      }
      if (got !== run.length) throw new BlobError(`pack ends before byte ${run.offset + run.length} (truncated)`);
      let at = 0;
      for (const blob of run.blobs) {
        const id = request.ids.subarray(index * 32, index * 32 + 32);
        if (length > 0 && fileStart + length !== blob.fileOffset) flush();
        if (length === 0) fileStart = blob.fileOffset;
        openBlobInto(bytes.subarray(at, at + blob.length), id, key, blob.rawLength, out, stretchAt + length, nameChunk);
        length += blob.rawLength;
        written += blob.rawLength;
        at += blob.length;
        index++;
      }
    }
    flush();
    await Promise.all(writes);
    parentPort?.postMessage({ seq: request.seq, written } satisfies BlobReply);
  } catch (error) {
    await Promise.allSettled(writes); // the file and the buffer are let go only once no write uses them
    replyError(request.seq, error, index);
  } finally {
    target?.close();
    if (spareWriteBuffers.length < MAX_SPARE_WRITE_BUFFERS) spareWriteBuffers.push(out);
  }
}

/** Report the failure of blob `index` of a request; BlobErrors mean corrupt data, anything else a bug. */
function replyError(seq: number, error: unknown, index: number): void {
  const message = error instanceof Error ? error.message : String(error);
  parentPort?.postMessage({ seq, error: message, corrupt: error instanceof BlobError, index } satisfies BlobReply);
}
