// A pool of blob workers, one per core: seal(chunks) and open(blobs) take a batch and return the results
// in the same order; callers keep their own order between batches. Created per run (it holds the chain's
// data key) and closed when the run ends.

import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { BackupdError } from '../errors.js';
import { startWorker } from '../worker.js';
import type { BlobReply, BlobRequest, BlobWorkerData, WriteRequest } from './blob-worker.js';

type Success = Exclude<BlobReply, { error: string }>;

interface Pending {
  resolve: (reply: Success) => void;
  reject: (error: Error) => void;
}

/** The rejection when a blob fails to open: corrupted or unauthenticated data. `index` is its place in the batch. */
export class CorruptBlobError extends Error {
  constructor(
    message: string,
    readonly index: number,
  ) {
    super(message);
  }
}

export interface BatchItem {
  data: Uint8Array;
  id: Uint8Array;
  /** For open: the chunk's raw length. */
  rawLength?: number;
}

export class BlobPool {
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, Pending>();
  private readonly load: number[] = [];
  private seq = 0;
  private failure: Error | undefined;
  private closing = false;

  constructor(dataKey: Buffer | undefined, level: number, size = Math.max(1, availableParallelism())) {
    const workerData: BlobWorkerData = { dataKey: dataKey ? new Uint8Array(dataKey) : undefined, level };
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

  /** Compress and seal a batch of chunks. The bytes are copied; the caller keeps its buffers. */
  seal(items: BatchItem[]): Promise<Buffer[]> {
    return this.send('seal', items);
  }

  /** Open a batch of blobs; rejects with CorruptBlobError when one fails authentication or decoding. */
  open(items: BatchItem[]): Promise<Buffer[]> {
    return this.send('open', items);
  }

  /**
   * Restore chunks straight into a file (see WriteRequest): resolves with the bytes written, rejects with
   * CorruptBlobError (index over all blobs of the request) when one fails to open.
   */
  async write(target: string, runs: WriteRequest['runs'], ids: Buffer): Promise<number> {
    const reply = await this.dispatch({ seq: 0, op: 'write', target, runs, ids }, []);
    return 'written' in reply ? reply.written : 0;
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }

  private async send(op: 'seal' | 'open', items: BatchItem[]): Promise<Buffer[]> {
    const lengths = items.map((item) => item.data.length);
    const data = Buffer.allocUnsafeSlow(lengths.reduce((a, b) => a + b, 0));
    const ids = Buffer.allocUnsafeSlow(items.length * 32);
    let offset = 0;
    items.forEach((item, i) => {
      data.set(item.data, offset);
      offset += item.data.length;
      ids.set(item.id, i * 32);
    });
    const request: BlobRequest = { seq: 0, op, data, lengths, ids };
    if (op === 'open') request.rawLengths = items.map((item) => item.rawLength ?? 0);
    const reply = await this.dispatch(request, [data.buffer as ArrayBuffer, ids.buffer as ArrayBuffer]);
    if (!('data' in reply)) throw new BackupdError('INTERNAL', 'blob worker answered a batch without data');
    const all = Buffer.from(reply.data.buffer, reply.data.byteOffset, reply.data.byteLength);
    const out: Buffer[] = [];
    let at = 0;
    for (const length of reply.lengths) {
      out.push(all.subarray(at, at + length));
      at += length;
    }
    return out;
  }

  private dispatch(request: BlobRequest | WriteRequest, transfer: ArrayBuffer[]): Promise<Success> {
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
      waiter.reject(
        reply.corrupt ? new CorruptBlobError(reply.error, reply.index) : new BackupdError('INTERNAL', reply.error),
      );
      return;
    }
    waiter.resolve(reply);
  }

  private fail(error: Error): void {
    this.failure = new BackupdError('INTERNAL', `blob worker failed: ${error.message}`, { cause: error });
    for (const waiter of this.pending.values()) waiter.reject(this.failure);
    this.pending.clear();
  }
}
