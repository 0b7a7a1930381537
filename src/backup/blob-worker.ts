// A worker thread that seals and opens blobs (compression and AES-GCM are the CPU-heavy part of a run),
// so every core works and the main thread's event loop stays free. Driven by src/backup/blob-pool.ts.

import { parentPort, workerData } from 'node:worker_threads';
import { BlobError, openBlob, sealBlob } from './blob.js';

export interface BlobWorkerData {
  dataKey: Uint8Array | undefined;
  level: number;
}

export type BlobRequest =
  | { seq: number; op: 'seal'; chunk: Uint8Array; id: Uint8Array }
  | { seq: number; op: 'open'; blob: Uint8Array; id: Uint8Array; rawLength: number };

export type BlobReply = { seq: number; data: Uint8Array } | { seq: number; error: string; corrupt: boolean };

const { dataKey, level } = workerData as BlobWorkerData;
const key = dataKey ? Buffer.from(dataKey) : undefined;

parentPort?.on('message', (request: BlobRequest) => {
  try {
    const data =
      request.op === 'seal'
        ? sealBlob(request.chunk, request.id, key, level)
        : openBlob(request.blob, request.id, key, request.rawLength);
    // Copy out of any pooled allocation so the buffer can be transferred whole.
    const out = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? data : Buffer.from(data);
    parentPort?.postMessage({ seq: request.seq, data: out } satisfies BlobReply, [out.buffer as ArrayBuffer]);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    parentPort?.postMessage({
      seq: request.seq,
      error: message,
      corrupt: error instanceof BlobError,
    } satisfies BlobReply);
  }
});
