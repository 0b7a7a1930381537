// Retrying a destination's transient failures (UNAVAILABLE, TIMEOUT, anything marked retryable) with
// exponential backoff and full jitter, inside a time budget per call. Permanent errors are thrown at
// once; an exhausted budget becomes DESTINATION_FAILED naming the destination and the last error.
// Clock and sleep are injectable so tests run without waiting.

import type { Readable } from 'node:stream';
import { type BackupdError, isBackupdError } from '../errors.js';
import type { Destination, GetOptions, ObjectInfo, PutBody, PutOptions, PutResult } from './destination.js';
import { DestinationError } from './failure.js';

export interface RetryPolicy {
  /** Attempts per call, the first included (default 5). */
  attempts?: number;
  /** First backoff in milliseconds; doubles per attempt (default 500). */
  baseDelayMs?: number;
  /** Longest single backoff (default 30000). */
  maxDelayMs?: number;
  /** Total time one call may take including its retries (default 300000). */
  budgetMs?: number;
  /** Waits `ms`; rejects when the signal aborts. Default: a timer. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Milliseconds now. Default: Date.now. */
  now?: () => number;
  /** A number in [0, 1) for jitter. Default: Math.random. */
  random?: () => number;
  /**
   * Stops retrying, and any backoff in progress, once it aborts: for every call, also those that take no
   * signal of their own (stat, list, delete). The agent passes the run's signal.
   */
  signal?: AbortSignal;
  /** Told about every retry, e.g. to log or count it. */
  onRetry?: (info: { destination: string; op: string; attempt: number; delayMs: number; error: BackupdError }) => void;
}

function timerSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** A signal that aborts when either does. */
function both(a: AbortSignal | undefined, b: AbortSignal | undefined): AbortSignal | undefined {
  return a && b && a !== b ? AbortSignal.any([a, b]) : (a ?? b);
}

/** Is this error worth another attempt? Only BackupdErrors that say so; unknown errors are bugs. */
export function isRetryable(error: unknown): error is BackupdError {
  return isBackupdError(error) && error.retryable;
}

class RetryingDestination implements Destination {
  readonly kind: string;
  readonly name: string;
  readonly capabilities: Destination['capabilities'];
  private readonly attempts: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly budgetMs: number;
  private readonly sleep: NonNullable<RetryPolicy['sleep']>;
  private readonly now: () => number;
  private readonly random: () => number;
  /** Present when the inner destination has it (the local destination): retried as a put. */
  readonly putFile?: (key: string, path: string, size: number) => Promise<PutResult>;
  /** Present when the inner destination has it; a local lookup, nothing to retry. */
  readonly localPath?: (key: string) => string | undefined;
  /** Present when the inner destination writes temp names; housekeeping, not retried or limited. */
  readonly removeStaleTemps?: (prefix: string, before: Date) => Promise<string[]>;

  constructor(
    private readonly inner: Destination,
    private readonly policy: RetryPolicy,
  ) {
    this.kind = inner.kind;
    this.name = inner.name;
    this.capabilities = inner.capabilities;
    const { putFile, localPath } = inner;
    if (putFile) {
      this.putFile = (key, path, size) => this.retry(`put ${key}`, () => putFile.call(inner, key, path, size));
    }
    if (localPath) this.localPath = (key) => localPath.call(inner, key);
    const { removeStaleTemps } = inner;
    if (removeStaleTemps) this.removeStaleTemps = (prefix, before) => removeStaleTemps.call(inner, prefix, before);
    this.attempts = policy.attempts ?? 5;
    this.baseDelayMs = policy.baseDelayMs ?? 500;
    this.maxDelayMs = policy.maxDelayMs ?? 30_000;
    this.budgetMs = policy.budgetMs ?? 300_000;
    this.sleep = policy.sleep ?? timerSleep;
    this.now = policy.now ?? Date.now;
    this.random = policy.random ?? Math.random;
  }

  private async retry<T>(op: string, call: () => Promise<T>, callSignal?: AbortSignal): Promise<T> {
    const started = this.now();
    let signal: AbortSignal | undefined;
    for (let attempt = 1; ; attempt++) {
      let error: unknown;
      try {
        return await call();
      } catch (caught) {
        error = caught;
      }
      signal ??= both(callSignal, this.policy.signal);
      if (!isRetryable(error) || signal?.aborted) throw error;
      const elapsed = this.now() - started;
      // Full jitter: anywhere up to the exponential step, so many uploaders do not retry in lockstep.
      const step = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** (attempt - 1));
      const delayMs = Math.floor(this.random() * step);
      if (attempt >= this.attempts || elapsed + delayMs >= this.budgetMs) {
        const why =
          attempt >= this.attempts
            ? `after ${attempt} attempts`
            : `after ${attempt} attempts in ${elapsed} ms (budget ${this.budgetMs} ms)`;
        throw new DestinationError(
          'DESTINATION_FAILED',
          `destination "${this.name}" (${this.kind}): ${op} gave up ${why}: ${error.message}`,
          this.name,
          this.kind,
          { cause: error, retryable: false, attempts: attempt, lastCode: error.code },
        );
      }
      this.policy.onRetry?.({ destination: this.name, op, attempt, delayMs, error });
      try {
        await this.sleep(delayMs, signal);
      } catch (cause) {
        throw new DestinationError(
          'CANCELLED',
          `destination "${this.name}": ${op} cancelled while waiting to retry`,
          this.name,
          this.kind,
          { cause },
        );
      }
    }
  }

  /** A Buffer is sent again as is; a body factory is called again for a fresh stream each attempt. */
  put(key: string, body: PutBody, size: number, options?: PutOptions): Promise<PutResult> {
    return this.retry(`put ${key}`, () => this.inner.put(key, body, size, options), options?.signal);
  }

  /** Retries opening the stream; errors while reading it reach the reader. */
  get(key: string, options?: GetOptions): Promise<Readable> {
    return this.retry(`get ${key}`, () => this.inner.get(key, options), options?.signal);
  }

  stat(key: string, options?: { ref?: string }): Promise<ObjectInfo | undefined> {
    return this.retry(`stat ${key}`, () => this.inner.stat(key, options));
  }

  /** Retries until the first object arrives; a failure after that would repeat objects, so it is thrown. */
  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    let iterator: AsyncIterator<ObjectInfo> | undefined;
    const first = await this.retry(`list ${prefix || '(all)'}`, async () => {
      iterator = this.inner.list(prefix)[Symbol.asyncIterator]();
      return iterator.next();
    });
    if (first.done || !iterator) return;
    yield first.value;
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) yield next.value;
  }

  delete(key: string, options?: { ref?: string }): Promise<void> {
    return this.retry(`delete ${key}`, () => this.inner.delete(key, options));
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** `destination` with every call retried per `policy`. */
export function withRetry(destination: Destination, policy: RetryPolicy = {}): Destination {
  return new RetryingDestination(destination, policy);
}
