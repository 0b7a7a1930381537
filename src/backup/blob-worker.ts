// A worker thread that seals and opens blobs (compression and AES-GCM are the CPU-heavy part of a run),
// so every core works and the main thread's event loop stays free. Driven by src/backup/blob-pool.ts.
// Requests carry a batch of chunks, so small chunks do not pay one message each.

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

export type BlobReply =
  | { seq: number; data: Uint8Array; lengths: number[] }
  | { seq: number; error: string; corrupt: boolean; index: number };

const { dataKey, level } = workerData as BlobWorkerData;
const key = dataKey ? Buffer.from(dataKey) : undefined;

parentPort?.on('message', (request: BlobRequest) => {
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
    const message = error instanceof Error ? error.message : String(error);
    parentPort?.postMessage({
      seq: request.seq,
      error: message,
      corrupt: error instanceof BlobError,
      index,
    } satisfies BlobReply);
  }
});
