// The piece ring between a producer thread and the main thread (piece-ring.ts), driven here from one
// thread within what the producer may publish without waiting: pieces come through whole and in order,
// the producer may run slots - 4 pieces ahead, an end and a stop are told apart, and the memory of a
// ring read to its end serves the next ring of its shape.

import { describe, expect, it } from 'vitest';
import { PieceWriter, RingReader } from '../../src/sources/piece-ring.js';

async function next(pieces: AsyncGenerator<Buffer>): Promise<Buffer | undefined> {
  const step = await pieces.next();
  return step.done ? undefined : Buffer.from(step.value);
}

describe('piece ring', () => {
  it('brings pieces in order, splitting what does not fit one, and ends after the last', async () => {
    const reader = new RingReader(8, 6);
    const writer = new PieceWriter(reader.shared);
    // 6 slots: pieces 0..2 may be published before the consumer asks for any.
    expect(writer.write(Buffer.from('0123456789abcdefXYZ'))).toBe(true); // 8 + 8 + 3 bytes
    const pieces = reader.pieces();
    expect((await next(pieces))?.toString()).toBe('01234567');
    expect((await next(pieces))?.toString()).toBe('89abcdef');
    expect((await next(pieces))?.toString()).toBe('XYZ');
    writer.write(Buffer.from('end'));
    writer.end();
    expect((await next(pieces))?.toString()).toBe('end');
    expect(await next(pieces)).toBeUndefined();
  });

  it('lets the producer publish up to slots - 4 pieces past the one asked for, and frees one that would wait on a stop', async () => {
    const reader = new RingReader(4, 5); // 5 slots: one piece beyond the one asked for
    const writer = new PieceWriter(reader.shared);
    const publish = (text: string) => {
      writer.next()!.set(Buffer.from(text));
      writer.publish(text.length);
    };
    publish('aaaa'); // piece 0
    publish('bbbb'); // piece 1: before anything is asked for, piece 0 counts as the next one asked
    const pieces = reader.pieces();
    expect((await next(pieces))?.toString()).toBe('aaaa');
    publish('cccc'); // piece 2, now that piece 0 was asked for
    // Piece 3 would wait until piece 1 is asked for; the consumer stops instead, and next() lets go.
    await pieces.return(undefined);
    expect(writer.stopped).toBe(true);
    expect(writer.next()).toBeUndefined();
  });

  it('fails a consumer still reading when the ring is stopped, and one whose producer failed', async () => {
    const stopped = new RingReader(4, 4);
    const pieces = stopped.pieces();
    const waiting = pieces.next();
    stopped.close();
    stopped.producerExited(() => new Error('not this one'));
    await expect(waiting).rejects.toMatchObject({ code: 'CANCELLED' });

    const failed = new RingReader(4, 4);
    const writer = new PieceWriter(failed.shared);
    writer.write(Buffer.from('kept'));
    failed.fail(new Error('disk on fire'));
    const read = failed.pieces();
    expect((await next(read))?.toString()).toBe('kept'); // what was published before still comes
    await expect(read.next()).rejects.toThrow('disk on fire');
  });

  it('reuses the memory of a ring read to its end for the next ring of the same shape', async () => {
    const first = new RingReader(16, 7);
    const writer = new PieceWriter(first.shared);
    writer.write(Buffer.from('x'));
    writer.end();
    for await (const _ of first.pieces()) {
      // read to the end
    }
    const before = new RingReader(16, 7);
    expect(before.shared.memory === first.shared.memory).toBe(false); // the producer has not exited yet
    first.producerExited(() => new Error('unexpected'));
    const reused = new RingReader(16, 7);
    expect(reused.shared.memory === first.shared.memory).toBe(true);
    expect(new RingReader(16, 8).shared.memory === first.shared.memory).toBe(false);
    // A reused ring starts empty: nothing of the last ring's pieces comes again.
    const fresh = new PieceWriter(reused.shared);
    fresh.write(Buffer.from('new'));
    fresh.end();
    const got: string[] = [];
    for await (const piece of reused.pieces()) got.push(piece.toString());
    expect(got).toEqual(['new']);
  });
});
