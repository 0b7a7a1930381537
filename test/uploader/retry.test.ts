// withRetry with an injected clock and sleep: no real waiting.

import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { BackupdError } from '../../src/errors.js';
import { DestinationError } from '../../src/uploader/failure.js';
import { withRetry } from '../../src/uploader/retry.js';
import { FakeDestination } from './fake-destination.js';

const transient = () => Promise.reject(new BackupdError('UNAVAILABLE', 'connection reset'));
const permanent = () => Promise.reject(new BackupdError('PERMISSION_DENIED', 'access denied'));
const ok = () => Promise.resolve();

/** A virtual clock: sleep() only moves time forward. */
function virtualTime() {
  let now = 0;
  const sleeps: number[] = [];
  return {
    now: () => now,
    sleep: async (ms: number) => {
      sleeps.push(ms);
      now += ms;
    },
    sleeps,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

describe('withRetry', () => {
  it('recovers from transient errors inside the budget, with growing backoff', async () => {
    const time = virtualTime();
    const inner = new FakeDestination('offsite', [transient, transient, transient, ok]);
    const d = withRetry(inner, { ...time, random: () => 0.999, baseDelayMs: 100, maxDelayMs: 1000, budgetMs: 10_000 });
    await d.put('a.pack', Buffer.from('data'), 4);
    expect(inner.calls).toEqual(['put a.pack', 'put a.pack', 'put a.pack', 'put a.pack']);
    expect(time.sleeps).toEqual([99, 199, 399]);
    expect(inner.objects.get('a.pack')?.toString()).toBe('data');
  });

  it('re-creates a body factory for every attempt', async () => {
    const time = virtualTime();
    let made = 0;
    const body = () => {
      made += 1;
      return Readable.from([Buffer.from('abc')]);
    };
    const inner = new FakeDestination('offsite', [transient, ok]);
    await withRetry(inner, { ...time, random: () => 0 }).put('k', body, 3);
    // The first attempt consumed its stream before failing: the second one needs, and gets, a new one.
    expect(made).toBe(2);
    expect(inner.bodies.map(String)).toEqual(['abc']);
  });

  it('throws a permanent error at once, unchanged', async () => {
    const time = virtualTime();
    const inner = new FakeDestination('offsite', [permanent, ok]);
    const error = await withRetry(inner, time)
      .put('k', Buffer.from('x'), 1)
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackupdError);
    expect((error as BackupdError).code).toBe('PERMISSION_DENIED');
    expect(inner.calls).toHaveLength(1);
    expect(time.sleeps).toEqual([]);
  });

  it('does not retry errors that are not BackupdErrors (bugs)', async () => {
    const inner = new FakeDestination('offsite', [() => Promise.reject(new TypeError('x is undefined')), ok]);
    await expect(withRetry(inner, virtualTime()).stat('k')).rejects.toThrow(TypeError);
    expect(inner.calls).toHaveLength(1);
  });

  it('gives up when the budget is spent, naming the destination and the last error', async () => {
    const time = virtualTime();
    const slow = () => {
      time.advance(4000); // each attempt takes 4 s of the 10 s budget
      return transient();
    };
    const inner = new FakeDestination(
      'offsite-eu',
      Array.from({ length: 10 }, () => slow),
    );
    const d = withRetry(inner, { ...time, random: () => 0.5, baseDelayMs: 1000, budgetMs: 10_000, attempts: 10 });
    const error = (await d.put('k', Buffer.from('x'), 1).catch((e: unknown) => e)) as BackupdError;
    expect(error.code).toBe('DESTINATION_FAILED');
    expect(error.retryable).toBe(false);
    expect(error.message).toContain('destination "offsite-eu"');
    expect(error.message).toContain('connection reset');
    expect(error.message).toMatch(/budget 10000 ms/);
    expect(error).toBeInstanceOf(DestinationError);
    expect(error).toMatchObject({ destination: 'offsite-eu', lastCode: 'UNAVAILABLE' });
    expect(inner.calls.length).toBeLessThan(10);
    expect(time.now()).toBeLessThanOrEqual(10_000 + 4000);
  });

  it('gives up after the allowed attempts', async () => {
    const inner = new FakeDestination(
      'nas',
      Array.from({ length: 5 }, () => transient),
    );
    const d = withRetry(inner, { ...virtualTime(), attempts: 3, random: () => 0 });
    const error = await d.delete('k').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DestinationError);
    expect(error).toMatchObject({ code: 'DESTINATION_FAILED', attempts: 3 });
    expect(inner.calls).toHaveLength(3);
  });

  it('stops waiting and throws CANCELLED when the put is aborted during a backoff', async () => {
    const controller = new AbortController();
    const inner = new FakeDestination('nas', [transient, ok]);
    const d = withRetry(inner, {
      random: () => 0.99,
      baseDelayMs: 60_000,
      sleep: (_ms, signal) =>
        new Promise((_resolve, reject) => {
          signal?.addEventListener('abort', () => reject(signal.reason));
          controller.abort();
        }),
    });
    await expect(d.put('k', Buffer.from('x'), 1, { signal: controller.signal })).rejects.toMatchObject({
      code: 'CANCELLED',
    });
    expect(inner.calls).toHaveLength(1);
  });

  it('retries a listing that fails before its first object', async () => {
    const inner = new FakeDestination('nas', [transient, ok]);
    inner.objects.set('a/1', Buffer.from('1'));
    const keys = [];
    for await (const info of withRetry(inner, { ...virtualTime(), random: () => 0 }).list('a/')) keys.push(info.key);
    expect(keys).toEqual(['a/1']);
    expect(inner.calls).toEqual(['list a/', 'list a/']);
  });
});
