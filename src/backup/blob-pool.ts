// A pool of blob workers, one per core. A backup names a batch (name, or nameRange for a file the worker
// reads itself), then seals its new chunks (sealKept); restore and verify open batches of blobs
// (open) or write them into a file (write). Results keep the batch's order; callers keep their own
// order between batches. Created per run (it holds the chain's data key) and closed when the run ends.

import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { BackupdError } from '../errors.js';
import { startWorker } from '../worker.js';
import { BatchSlots, type Slot } from './batch-slots.js';
import type {
  BlobReply,
  BlobRequest,
  BlobWorkerRequest,
  KeysRequest,
  NameRangeRequest,
  NameRequest,
  SealKeptRequest,
  SlotsRequest,
  WriteRequest,
} from './blob-worker.js';

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

/** A batch a worker has named and keeps until sealKept: its chunk ids, 32 bytes each, in batch order. */
export interface NamedBatch {
  ids: Buffer;
  /** Which worker keeps the batch, and the seq of the request that named it. */
  worker: number;
  seq: number;
  /** The batch slot it lies in, released once the worker has sealed it. */
  slot?: { slots: BatchSlots; index: number };
}

/** A run's keys, chunk id algorithm and compression level (keys undefined in an unencrypted chain). */
export interface PoolKeys {
  dataKey: Buffer | undefined;
  level: number;
  /** Only a backup names chunks under a key. */
  idKey?: Buffer | undefined;
}

export class BlobPool {
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, Pending>();
  private readonly load: number[] = [];
  private seq = 0;
  private failure: Error | undefined;
  /** Batch slots shared with the workers, by the id the name requests give. */
  private readonly slotSets = new Map<BatchSlots, number>();
  private closing = false;

  /** Sent to every worker as its first message; requests wait for it. */
  private readonly ready: Promise<void>;
  private configured = false;

  /**
   * Start the workers now; `keys` may still be coming (a restore derives them while the workers load),
   * and no request reaches a worker before them. If `keys` rejects, so does every request.
   */
  constructor(keys: PoolKeys | Promise<PoolKeys>, size = Math.max(1, availableParallelism())) {
    for (let i = 0; i < size; i++) {
      const worker = startWorker(import.meta.url, './blob-worker', undefined);
      const index = i;
      worker.on('message', (reply: BlobReply) => this.settle(index, reply));
      worker.on('error', (error) => this.fail(error));
      worker.on('exit', (code) => {
        // A worker keepOnly stopped is no longer in the list.
        if (code !== 0 && !this.closing && this.workers.includes(worker)) {
          this.fail(new Error(`blob worker exited with code ${code}`));
        }
      });
      this.workers.push(worker);
      this.load.push(0);
    }
    this.ready = Promise.resolve(keys).then(({ dataKey, level, idKey }) => {
      const request: KeysRequest = {
        op: 'keys',
        dataKey: dataKey ? new Uint8Array(dataKey) : undefined,
        idKey: idKey ? new Uint8Array(idKey) : undefined,
        level,
      };
      for (const worker of this.workers) worker.postMessage(request);
      this.configured = true;
    });
    this.ready.catch(() => {}); // reported by the requests that wait for it
  }

  /** Stop the workers past the first `count`, before any request went to them (a run that needs fewer). */
  async keepOnly(count: number): Promise<void> {
    const extra = this.workers.splice(Math.max(1, count));
    this.load.splice(this.workers.length);
    await Promise.all(extra.map((w) => w.terminate()));
  }

  /**
   * Batch slots of at least `slotBytes` each, shared with every worker (chunkBatches fills them, name()
   * hands them over): the set made last when its slots are large enough, else a new one of `count` slots.
   */
  batchSlots(count: number, slotBytes: number): BatchSlots {
    const last = [...this.slotSets.keys()].at(-1);
    if (last && last.slotBytes >= slotBytes) return last;
    const slots = BatchSlots.take(count, slotBytes);
    const request: SlotsRequest = { op: 'slots', id: this.slotSets.size, buffer: slots.memory.buffer };
    this.slotSets.set(slots, request.id);
    for (const worker of this.workers) worker.postMessage(request);
    return slots;
  }

  /**
   * Compute the chunk ids of the chunks back to back from byte `start` of `slot` (the pool's algorithm,
   * under its id key) in a worker, which reads them in place. Every named batch must be passed to sealKept
   * once, with no indexes when none of it is new: that lets the worker forget it and releases the slot.
   */
  name(slots: BatchSlots, slot: Slot, lengths: number[], start = 0): Promise<NamedBatch> {
    const id = this.slotSets.get(slots);
    if (id === undefined) throw new BackupdError('INTERNAL', 'name() needs slots made by this pool');
    const request: NameRequest = { seq: 0, op: 'name', slots: id, offset: slot.offset + start, lengths };
    return this.named(request, []).then(
      (named) => ({ ...named, slot: { slots, index: slot.index } }),
      (error: unknown) => {
        slots.release(slot.index);
        throw error;
      },
    );
  }

  /**
   * name() for `length` bytes from `offset` of the regular file open as `fd` (the caller keeps it open),
   * cut into fixed blocks of `blockSize`: the worker reads them itself. Rejects (INTERNAL) when the file is
   * shorter than that.
   */
  nameRange(fd: number, offset: number, length: number, blockSize: number): Promise<NamedBatch> {
    const request: NameRangeRequest = { seq: 0, op: 'name range', fd, offset, length, blockSize };
    return this.named(request, []);
  }

  private async named(request: NameRequest | NameRangeRequest, transfer: ArrayBuffer[]): Promise<NamedBatch> {
    const target = this.leastLoaded();
    const reply = await this.dispatch(request, transfer, target);
    if (!('ids' in reply)) throw new BackupdError('INTERNAL', 'blob worker answered a name request without ids');
    return {
      ids: Buffer.from(reply.ids.buffer, reply.ids.byteOffset, reply.ids.byteLength),
      worker: target,
      seq: request.seq,
    };
  }

  /** Compress and seal the chunks at `indexes` of a named batch, in that order; releases its slot. */
  async sealKept(batch: NamedBatch, indexes: number[]): Promise<Buffer[]> {
    const request: SealKeptRequest = { seq: 0, op: 'seal kept', batch: batch.seq, indexes };
    try {
      return unpack(await this.dispatch(request, [], batch.worker));
    } finally {
      batch.slot?.slots.release(batch.slot.index);
    }
  }

  /** Open a batch of blobs; rejects with CorruptBlobError when one fails authentication or decoding. */
  open(items: BatchItem[]): Promise<Buffer[]> {
    return this.send('open', items, false);
  }

  /**
   * open(), giving up the items' memory: when they lie back to back over the whole of one buffer (blobs
   * read from a pack in one run) that buffer is transferred to the worker uncopied and detached here.
   */
  openOwned(items: BatchItem[]): Promise<Buffer[]> {
    return this.send('open', items, true);
  }

  /**
   * Restore chunks straight into a file (see WriteRequest): resolves with the bytes written, rejects with
   * CorruptBlobError (index over all blobs of the request) when one fails to open.
   */
  async write(target: string, runs: WriteRequest['runs'], ids: Buffer): Promise<number> {
    const reply = await this.dispatch({ seq: 0, op: 'write', target, runs, ids }, []);
    return 'written' in reply ? reply.written : 0;
  }

  /** Stop the workers; the batch slots of a run whose batches all finished go back for the next run. */
  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
    for (const slots of this.slotSets.keys()) slots.recycle();
  }

  private async send(op: 'open', items: BatchItem[], owned: boolean): Promise<Buffer[]> {
    const chunks = items.map((item) => item.data);
    const { data, lengths } = owned ? packOwned(chunks) : pack(chunks);
    const ids = Buffer.allocUnsafeSlow(items.length * 32);
    for (const [i, item] of items.entries()) ids.set(item.id, i * 32);
    const request: BlobRequest = { seq: 0, op, data, lengths, ids };
    request.rawLengths = items.map((item) => item.rawLength ?? 0);
    return unpack(await this.dispatch(request, [data.buffer as ArrayBuffer, ids.buffer as ArrayBuffer]));
  }

  private leastLoaded(): number {
    let target = 0;
    for (let i = 1; i < this.load.length; i++) if (this.load[i]! < this.load[target]!) target = i;
    return target;
  }

  private dispatch(request: BlobWorkerRequest, transfer: ArrayBuffer[], target?: number): Promise<Success> {
    // Requests made before the keys were sent wait for them, in the order they were made.
    if (!this.configured) return this.ready.then(() => this.dispatch(request, transfer, target));
    if (this.failure) return Promise.reject(this.failure);
    target ??= this.leastLoaded();
    request.seq = ++this.seq;
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

/** Chunks back to back in one transferable buffer, with their lengths. */
function pack(chunks: Uint8Array[]): { data: Buffer; lengths: number[] } {
  const lengths = chunks.map((chunk) => chunk.length);
  const data = Buffer.allocUnsafeSlow(lengths.reduce((a, b) => a + b, 0));
  let offset = 0;
  for (const chunk of chunks) {
    data.set(chunk, offset);
    offset += chunk.length;
  }
  return { data, lengths };
}

/**
 * pack(), without the copy when the chunks are back to back over the whole of one buffer (blobs read from a
 * pack in one run): that buffer itself is transferred, and every view of it is detached afterwards.
 */
function packOwned(chunks: Uint8Array[]): { data: Buffer; lengths: number[] } {
  const buffer = chunks[0]?.buffer;
  let at = 0;
  for (const chunk of chunks) {
    if (chunk.buffer !== buffer || chunk.byteOffset !== at) return pack(chunks);
    at += chunk.byteLength;
  }
  if (!buffer || at !== buffer.byteLength) return pack(chunks);
  return { data: Buffer.from(buffer, 0, at), lengths: chunks.map((chunk) => chunk.length) };
}

/** The blobs of a worker's reply, as views into its one buffer. */
function unpack(reply: Success): Buffer[] {
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
