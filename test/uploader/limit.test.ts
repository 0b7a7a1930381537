// withLimit: concurrency per destination and the bandwidth cap, the latter on a virtual clock.

import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { crc32OfBody } from '../../src/uploader/body.js';
import type { PutBody } from '../../src/uploader/destination.js';
import { TokenBucket, withLimit } from '../../src/uploader/limit.js';
import { FakeDestination } from './fake-destination.js';

/** A clock for withLimit's bucket whose sleeps only move its time on. */
function virtualClock() {
  let now = 0;
  return {
    now: () => now,
    sleep: async (ms: number) => {
      now += ms;
    },
  };
}

describe('withLimit', () => {
  it('keeps at most maxConcurrent requests in flight and queues the rest in order', async () => {
    let inFlight = 0;
    let most = 0;
    const gate = async () => {
      inFlight += 1;
      most = Math.max(most, inFlight);
      await new Promise((r) => setTimeout(r, 5));
      inFlight -= 1;
    };
    const inner = new FakeDestination(
      'nas',
      Array.from({ length: 12 }, () => gate),
    );
    const d = withLimit(inner, { maxConcurrent: 3 });
    await Promise.all(Array.from({ length: 12 }, (_, i) => d.put(`k${i}`, Buffer.from('x'), 1)));
    expect(most).toBe(3);
    expect(inner.calls).toEqual(Array.from({ length: 12 }, (_, i) => `put k${i}`));
    expect(d.load).toEqual({ inFlight: 0, waiting: 0 });
  });

  it('holds a get slot until its stream is done', async () => {
    const inner = new FakeDestination('nas');
    inner.objects.set('a', Buffer.from('aaa'));
    const d = withLimit(inner, { maxConcurrent: 1 });
    const stream = await d.get('a');
    expect(d.load.inFlight).toBe(1);
    const statting = d.stat('a');
    await new Promise((r) => setTimeout(r, 10));
    expect(d.load.waiting).toBe(1);
    for await (const _ of stream) {
      // drain
    }
    expect((await statting)?.size).toBe(3);
    expect(d.load).toEqual({ inFlight: 0, waiting: 0 });
  });

  it('caps bandwidth: 1 MiB at 256 KiB/s takes about 3 s of (virtual) time', async () => {
    const clock = virtualClock();
    const inner = new FakeDestination('slow-link');
    const d = withLimit(inner, { maxConcurrent: 2, bytesPerSecond: 256 * 1024, now: clock.now, sleep: clock.sleep });
    const data = randomBytes(1 << 20);
    await d.put('big', () => Readable.from([data.subarray(0, 300_000), data.subarray(300_000)]), data.length);
    expect(inner.objects.get('big')?.equals(data)).toBe(true);
    // One second of burst is free; the other 768 KiB wait 3 s.
    expect(clock.now()).toBeGreaterThanOrEqual(2900);
    expect(clock.now()).toBeLessThanOrEqual(3100);
  });

  it("throttles only the bytes sent: a driver's read of the body before its request (S3's CRC32) is free", async () => {
    const clock = virtualClock();
    // Like the S3 driver: the CRC32 of the body for a header, from one read, then the body sent.
    class ChecksummingDestination extends FakeDestination {
      crc: number | undefined;
      override async put(key: string, body: PutBody, size: number) {
        this.crc = await crc32OfBody(key, body, size);
        return super.put(key, body, size);
      }
    }
    const inner = new ChecksummingDestination('s3-like');
    const d = withLimit(inner, { maxConcurrent: 2, bytesPerSecond: 256 * 1024, now: clock.now, sleep: clock.sleep });
    const data = randomBytes(1 << 20);
    await d.put('big', () => Readable.from([data]), data.length);
    expect(inner.crc).toBe(crc32(data));
    expect(inner.objects.get('big')?.equals(data)).toBe(true);
    // As for one read: 3 s, not the 7 s that two throttled reads of 1 MiB would take.
    expect(clock.now()).toBeGreaterThanOrEqual(2900);
    expect(clock.now()).toBeLessThanOrEqual(3100);
  });

  it('a token bucket lends a large chunk ahead and makes the next caller wait for it', async () => {
    let now = 0;
    const waits: number[] = [];
    const bucket = new TokenBucket(
      1000,
      () => now,
      async (ms) => {
        waits.push(ms);
        now += ms;
      },
    );
    await bucket.take(3000);
    await bucket.take(500);
    expect(waits).toEqual([2000, 500]);
  });
});
