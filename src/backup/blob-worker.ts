// A worker thread that seals and opens blobs (compression and AES-GCM are the CPU-heavy part of a run),
// so every core works and the main thread's event loop stays free. Driven by src/backup/blob-pool.ts.
// Requests carry a batch of chunks, so small chunks do not pay one message each.

import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { BlobError, openBlob, sealBlob } from './blob.js';

export interface BlobWorkerData {
  dataKey: Uint8Array | undefined;
  level: number;
}

/** `data` holds the batch back to back; `lengths` cuts it; `ids` are 32 bytes each. */
export interface BlobRequest {
  seq: number;
  op: 'seal' | 'open';
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
  | { seq: number; written: number }
  | { seq: number; error: string; corrupt: boolean; index: number };

const { dataKey, level } = workerData as BlobWorkerData;
const key = dataKey ? Buffer.from(dataKey) : undefined;

parentPort?.on('message', (request: BlobRequest | WriteRequest) => {
  if (request.op === 'write') {
    writeRuns(request);
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
      out.push(
        request.op === 'seal' ? sealBlob(item, id, key, level) : openBlob(item, id, key, request.rawLengths![index]!),
      );
    }
    const data = Buffer.concat(out);
    parentPort?.postMessage({ seq: request.seq, data, lengths: out.map((b) => b.length) } satisfies BlobReply, [
      data.buffer as ArrayBuffer,
    ]);
  } catch (error) {
    replyError(request.seq, error, index);
  }
});

function writeRuns(request: WriteRequest): void {
  let index = 0;
  let written = 0;
  const target = openSync(request.target, 'r+');
  try {
    for (const run of request.runs) {
      const bytes = Buffer.allocUnsafe(run.length);
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
        const chunk = openBlob(bytes.subarray(at, at + blob.length), id, key, blob.rawLength);
        writeSync(target, chunk, 0, chunk.length, blob.fileOffset);
        written += chunk.length;
        at += blob.length;
        index++;
      }
    }
    parentPort?.postMessage({ seq: request.seq, written } satisfies BlobReply);
  } catch (error) {
    replyError(request.seq, error, index);
  } finally {
    closeSync(target);
  }
}

/** Report the failure of blob `index` of a request; BlobErrors mean corrupt data, anything else a bug. */
function replyError(seq: number, error: unknown, index: number): void {
  const message = error instanceof Error ? error.message : String(error);
  parentPort?.postMessage({ seq, error: message, corrupt: error instanceof BlobError, index } satisfies BlobReply);
}
