// The piece queue between a producer thread and the main thread (piece-ring.ts), driven here from one
// thread within what the producer may publish without waiting: pieces come through whole, in order and in
// the regions given, the producer fills no more than it was given, an end and a stop are told apart, and
// fillStream (source.ts) turns a filling producer into a stream of copies.

import { describe, expect, it, vi } from 'vitest';
import { PieceQueue, PieceWriter } from '../../src/sources/piece-ring.js';
import { type FillFeed, fillStream } from '../../src/sources/source.js';

/** The next piece's bytes, copied out of `memory` at `offset`. */
async function next(queue: PieceQueue, memory: SharedArrayBuffer, offset: number): Promise<string | undefined> {
  const length = await queue.next();
  return length === undefined ? undefined : Buffer.from(memory, offset, length).toString();
}

describe('piece queue', () => {
  it('brings pieces in the regions given, in order, splitting what does not fit one, and ends after the last', async () => {
    const memory = new SharedArrayBuffer(32);
    const queue = new PieceQueue(memory, 3);
    const writer = new PieceWriter(queue.shared);
    queue.give(16, 8);
    queue.give(0, 8);
    queue.give(24, 8);
    expect(writer.write(Buffer.from('0123456789abcdefXYZ'))).toBe(true); // 8 + 8 + 3 bytes
    expect(await next(queue, memory, 16)).toBe('01234567');
    expect(await next(queue, memory, 0)).toBe('89abcdef');
    expect(await next(queue, memory, 24)).toBe('XYZ');
    queue.give(8, 8);
    writer.write(Buffer.from('end'));
    writer.end();
    expect(await next(queue, memory, 8)).toBe('end');
    expect(await queue.next()).toBeUndefined();
    expect(queue.idle).toBe(true);
  });

  it('refuses a region beyond its capacity, and frees a producer that would wait on a stop', async () => {
    const memory = new SharedArrayBuffer(8);
    const queue = new PieceQueue(memory, 1);
    const writer = new PieceWriter(queue.shared);
    queue.give(0, 4);
    expect(() => queue.give(4, 4)).toThrow(/one more/);
    expect(writer.write(Buffer.from('aaaa'))).toBe(true);
    expect(await next(queue, memory, 0)).toBe('aaaa');
    // The next region was never given: a producer would wait for it; the consumer stops instead.
    queue.close();
    expect(writer.stopped).toBe(true);
    expect(writer.next()).toBeUndefined();
    expect(writer.write(Buffer.from('more'))).toBe(false);
  });

  it('fails a consumer still reading when the queue is stopped, and one whose producer failed', async () => {
    const stopped = new PieceQueue(new SharedArrayBuffer(4), 1);
    stopped.give(0, 4);
    const waiting = stopped.next();
    stopped.close();
    stopped.producerExited(() => new Error('not this one'));
    await expect(waiting).rejects.toMatchObject({ code: 'CANCELLED' });

    const memory = new SharedArrayBuffer(8);
    const failed = new PieceQueue(memory, 2);
    const writer = new PieceWriter(failed.shared);
    failed.give(0, 4);
    failed.give(4, 4);
    writer.write(Buffer.from('kept'));
    failed.fail(new Error('disk on fire'));
    expect(await next(failed, memory, 0)).toBe('kept'); // what was published before still comes
    await expect(failed.next()).rejects.toThrow('disk on fire');
  });

  it('calls whenIdle once the producer can no longer write into a region given', () => {
    const queue = new PieceQueue(new SharedArrayBuffer(8), 2);
    queue.give(0, 4);
    queue.give(4, 4);
    let idle = false;
    queue.whenIdle(() => {
      idle = true;
    });
    queue.close();
    expect(idle).toBe(false); // stopped, but the producer thread may still be inside a region
    queue.producerExited(() => new Error('stopped early'));
    expect(idle).toBe(true);
  });
});

/** A FillFeed whose producer runs on this thread: `data` written into each region as it is given. */
function syncFill(data: Buffer, onFill?: (capacity: number) => void) {
  let feed: FillFeed | undefined;
  let stops = 0;
  const fill = (memory: SharedArrayBuffer, capacity: number): FillFeed => {
    onFill?.(capacity);
    const queue = new PieceQueue(memory, capacity);
    const writer = new PieceWriter(queue.shared);
    let at = 0;
    async function* filled(): AsyncGenerator<number> {
      try {
        for (let n = await queue.next(); n !== undefined; n = await queue.next()) yield n;
      } finally {
        stops++;
        queue.close();
      }
    }
    feed = {
      give: (offset, room) => {
        queue.give(offset, room);
        if (at === data.length) return; // ended: the region stays unfilled
        const region = writer.next()!;
        const length = Math.min(region.length, data.length - at);
        region.set(data.subarray(at, at + length));
        writer.handOn(length);
        at += length;
        if (at === data.length) writer.end();
      },
      filled: filled(),
      whenIdle: (then) => then(),
    };
    return feed;
  };
  return { fill, stops: () => stops, started: () => feed !== undefined };
}

describe('fillStream', () => {
  it('streams every byte a filling producer writes, as copies that stay whole', async () => {
    const data = Buffer.alloc(5 * (1 << 20) + 12_345);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 13)) & 0xff;
    const source = syncFill(data);
    const kept: Buffer[] = [];
    for await (const piece of fillStream(source.fill)) kept.push(piece as Buffer);
    expect(Buffer.concat(kept).equals(data)).toBe(true);
  });

  it('starts the producer only when read, and stops it when destroyed midway', async () => {
    const data = Buffer.alloc(8 << 20, 1);
    const source = syncFill(data);
    const stream = fillStream(source.fill);
    await new Promise((resolve) => setImmediate(resolve));
    expect(source.started()).toBe(false);
    for await (const _ of stream) break; // destroys the stream
    expect(source.started()).toBe(true);
    await vi.waitFor(() => expect(source.stops()).toBe(1)); // destroy() ends the producer's feed soon after
  });
});
