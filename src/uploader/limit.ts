// Per-destination limits: at most N requests in flight (a get holds its slot until its stream is
// finished or destroyed), and optionally a shared bandwidth cap in bytes per second over every
// upload and download of the destination (a token bucket; one second of burst).

import { type Readable, Transform, type TransformCallback } from 'node:stream';
import { openBody } from './body.js';
import type { Destination, GetOptions, ObjectInfo, PutBody, PutOptions, PutResult } from './destination.js';
import { Semaphore } from './semaphore.js';

export interface LimitPolicy {
  /** Requests in flight at once (default 4). */
  maxConcurrent?: number;
  /** Bytes per second over all transfers of this destination; unlimited when absent. */
  bytesPerSecond?: number;
  /** Milliseconds now and a sleep, injectable for tests. */
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

/** Tokens are bytes; they refill at `rate` per second up to one second's worth. */
export class TokenBucket {
  private tokens: number;
  private last: number;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly rate: number,
    private readonly now: () => number = Date.now,
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
  ) {
    if (!(rate > 0)) throw new RangeError(`bytes per second must be positive, got ${rate}`);
    this.tokens = rate;
    this.last = now();
  }

  /** Wait until `bytes` may be sent; callers are served in order, a large chunk may borrow ahead. */
  take(bytes: number): Promise<void> {
    const turn = this.queue.then(async () => {
      const now = this.now();
      this.tokens = Math.min(this.rate, this.tokens + ((now - this.last) * this.rate) / 1000);
      this.last = now;
      this.tokens -= bytes;
      if (this.tokens < 0) await this.sleep((-this.tokens / this.rate) * 1000);
    });
    this.queue = turn.catch(() => undefined); // one failed sleep must not stall everyone after it
    return turn;
  }
}

/** A pass-through that waits for the bucket before each chunk. */
export function throttled(bucket: TokenBucket): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      bucket.take(chunk.length).then(() => callback(null, chunk), callback);
    },
  });
}

function pipeThrough(source: Readable, through: Transform): Readable {
  source.on('error', (error) => through.destroy(error));
  through.on('close', () => {
    if (!source.destroyed && !through.readableEnded) source.destroy();
  });
  return source.pipe(through);
}

class LimitedDestination implements Destination {
  readonly kind: string;
  readonly name: string;
  readonly capabilities: Destination['capabilities'];
  private readonly slots: Semaphore;
  private readonly bucket: TokenBucket | undefined;
  /**
   * Present when the inner destination has it (the local destination). Takes a slot; not throttled: it
   * links or copies a file on this machine, nothing crosses a network.
   */
  readonly putFile?: (key: string, path: string, size: number) => Promise<PutResult>;
  /** Present when the inner destination has it; reading a local file in place takes no slot. */
  readonly localPath?: (key: string) => string | undefined;
  /** Present when the inner destination writes temp names; housekeeping, not retried or limited. */
  readonly removeStaleTemps?: (prefix: string, before: Date) => Promise<string[]>;

  constructor(
    private readonly inner: Destination,
    policy: LimitPolicy,
  ) {
    this.kind = inner.kind;
    this.name = inner.name;
    this.capabilities = inner.capabilities;
    const { putFile, localPath } = inner;
    if (putFile) this.putFile = (key, path, size) => this.slots.run(() => putFile.call(inner, key, path, size));
    if (localPath) this.localPath = (key) => localPath.call(inner, key);
    const { removeStaleTemps } = inner;
    if (removeStaleTemps) this.removeStaleTemps = (prefix, before) => removeStaleTemps.call(inner, prefix, before);
    this.slots = new Semaphore(policy.maxConcurrent ?? 4);
    this.bucket = policy.bytesPerSecond ? new TokenBucket(policy.bytesPerSecond, policy.now, policy.sleep) : undefined;
  }

  /** Requests in flight and waiting, for metrics and tests. */
  get load(): { inFlight: number; waiting: number } {
    return { inFlight: this.slots.inUse, waiting: this.slots.queued };
  }

  put(key: string, body: PutBody, size: number, options?: PutOptions): Promise<PutResult> {
    const bucket = this.bucket;
    // Only the bytes sent cross the link: a read of the local copy before the request is not throttled.
    const limited: PutBody = bucket
      ? (use = 'send') => (use === 'send' ? pipeThrough(openBody(body), throttled(bucket)) : openBody(body, use))
      : body;
    return this.slots.run(() => this.inner.put(key, limited, size, options));
  }

  async get(key: string, options?: GetOptions): Promise<Readable> {
    await this.slots.acquire();
    let stream: Readable;
    try {
      stream = await this.inner.get(key, options);
    } catch (error) {
      this.slots.release();
      throw error;
    }
    const out = this.bucket ? pipeThrough(stream, throttled(this.bucket)) : stream;
    out.once('close', () => this.slots.release());
    return out;
  }

  stat(key: string, options?: { ref?: string }): Promise<ObjectInfo | undefined> {
    return this.slots.run(() => this.inner.stat(key, options));
  }

  /** Each page request takes a slot; none is held while the caller handles an object. */
  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const iterator = this.inner.list(prefix)[Symbol.asyncIterator]();
    for (;;) {
      const next = await this.slots.run(() => iterator.next());
      if (next.done) return;
      yield next.value;
    }
  }

  delete(key: string, options?: { ref?: string }): Promise<void> {
    return this.slots.run(() => this.inner.delete(key, options));
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** `destination` with at most `maxConcurrent` requests at once and an optional bandwidth cap. */
export function withLimit(
  destination: Destination,
  policy: LimitPolicy = {},
): Destination & {
  readonly load: { inFlight: number; waiting: number };
} {
  return new LimitedDestination(destination, policy);
}
