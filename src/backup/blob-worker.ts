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
import { type ChunkIdAlgorithm, type ChunkNamer, chunkNamer } from './chunk-id.js';
import { fixedBlocks } from './chunker.js';
import { alignedBuffer, TargetFile } from './direct-write.js';

/** What a worker names, seals and opens with: the chain's keys, chunk id algorithm and compression level. */
export interface BlobKeys {
  dataKey: Uint8Array | undefined;
  /** The chain's chunk id key; undefined in an unencrypted chain (unkeyed ids). */
  idKey: Uint8Array | undefined;
  /** The chain's chunk id algorithm (chunk-id.ts). */
  chunkIds: ChunkIdAlgorithm;
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
    nameChunk = chunkNamer(request.chunkIds, request.idKey);
    return;
  }
  if (request.op === 'write') {
    writeRuns(request);
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

/** Buffers a worker reuses from one write request to the next: the runs it reads, the chunks it writes. */
let readScratch = Buffer.alloc(0);
let writeScratch: Buffer = Buffer.alloc(0);

function writeRuns(request: WriteRequest): void {
  let index = 0;
  let written = 0;
  const target = new TargetFile(request.target);
  // Chunks that follow each other in the file are opened into one buffer and written with one call: one
  // write per batch instead of one per 64 KiB chunk, so the two workers meet less on the file's lock.
  const total = request.runs.reduce((sum, run) => sum + run.blobs.reduce((n, blob) => n + blob.rawLength, 0), 0);
  // Aligned memory, so a write of whole pages at a page offset can go straight to the disk (direct-write.ts).
  if (writeScratch.length < total) writeScratch = alignedBuffer(total);
  const out = writeScratch;
  let outStart = -1;
  let outLength = 0;
  const flush = () => {
    if (outLength > 0) target.write(out.subarray(0, outLength), outStart);
    outLength = 0;
  };
  try {
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
        if (outLength > 0 && outStart + outLength !== blob.fileOffset) flush();
        if (outLength === 0) outStart = blob.fileOffset;
        openBlobInto(bytes.subarray(at, at + blob.length), id, key, blob.rawLength, out, outLength, nameChunk);
        outLength += blob.rawLength;
        written += blob.rawLength;
        at += blob.length;
        index++;
      }
    }
    flush();
    parentPort?.postMessage({ seq: request.seq, written } satisfies BlobReply);
  } catch (error) {
    replyError(request.seq, error, index);
  } finally {
    target.close();
  }
}

/** Report the failure of blob `index` of a request; BlobErrors mean corrupt data, anything else a bug. */
function replyError(seq: number, error: unknown, index: number): void {
  const message = error instanceof Error ? error.message : String(error);
  parentPort?.postMessage({ seq, error: message, corrupt: error instanceof BlobError, index } satisfies BlobReply);
}
