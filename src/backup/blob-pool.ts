// A pool of blob workers, one per core: seal(chunk) and open(blob) return promises; callers keep their own
// order. Created per run (it holds the chain's data key) and closed when the run ends.

import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { BackupdError } from '../errors.js';
import { startWorker } from '../worker.js';
import type { BlobReply, BlobRequest, BlobWorkerData } from './blob-worker.js';

interface Pending {
  resolve: (data: Buffer) => void;
  reject: (error: Error) => void;
}

/** Thrown (as the rejection) when a blob fails to open: corrupted or unauthenticated data. */
export class CorruptBlobError extends Error {}

export class BlobPool {
  private readonly workers: Worker[];
  private readonly pending = new Map<number, Pending>();
  private readonly load: number[];
  private seq = 0;
  private failure: Error | undefined;
  private closing = false;

  constructor(dataKey: Buffer | undefined, level: number, size = Math.max(1, availableParallelism())) {
    const workerData: BlobWorkerData = { dataKey: dataKey ? new Uint8Array(dataKey) : undefined, level };
    this.workers = [];
    this.load = [];
    for (let i = 0; i < size; i++) {
      const worker = startWorker(import.meta.url, './blob-worker', workerData);
      const index = i;
      worker.on('message', (reply: BlobReply) => this.settle(index, reply));
      worker.on('error', (error) => this.fail(error));
      worker.on('exit', (code) => {
        if (code !== 0 && !this.closing) this.fail(new Error(`blob worker exited with code ${code}`));
      });
      this.workers.push(worker);
      this.load.push(0);
    }
  }

  /** Compress and seal a chunk. The chunk's bytes are copied; the caller keeps its buffer. */
  seal(chunk: Uint8Array, id: Uint8Array): Promise<Buffer> {
    const copy = new Uint8Array(chunk);
    return this.send({ seq: 0, op: 'seal', chunk: copy, id }, [copy.buffer]);
  }

  /** Open a blob; rejects with CorruptBlobError when it fails authentication or decoding. */
  open(blob: Uint8Array, id: Uint8Array, rawLength: number): Promise<Buffer> {
    const copy = new Uint8Array(blob);
    return this.send({ seq: 0, op: 'open', blob: copy, id, rawLength }, [copy.buffer]);
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }

  private send(request: BlobRequest, transfer: ArrayBuffer[]): Promise<Buffer> {
    if (this.failure) return Promise.reject(this.failure);
    request.seq = ++this.seq;
    let target = 0;
    for (let i = 1; i < this.load.length; i++) if (this.load[i]! < this.load[target]!) target = i;
    this.load[target]!++;
    return new Promise((resolve, reject) => {
      this.pending.set(request.seq, { resolve, reject });
      this.workers[target]!.postMessage(request, transfer);
    });
  }

  private settle(worker: number, reply: BlobReply): void {
    this.load[worker]!--;
    const waiter = this.pending.get(reply.seq);
    if (!waiter) return;
    this.pending.delete(reply.seq);
    if ('error' in reply) {
      waiter.reject(reply.corrupt ? new CorruptBlobError(reply.error) : new BackupdError('INTERNAL', reply.error));
    } else {
      waiter.resolve(Buffer.from(reply.data.buffer, reply.data.byteOffset, reply.data.byteLength));
    }
  }

  private fail(error: Error): void {
    this.failure = new BackupdError('INTERNAL', `blob worker failed: ${error.message}`, { cause: error });
    for (const waiter of this.pending.values()) waiter.reject(this.failure);
    this.pending.clear();
  }
}
