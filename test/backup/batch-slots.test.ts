// Batch slots: a fixed set of regions of one shared memory, handed out one holder at a time; a holder
// that finds none waits for a release instead of allocating more.

import { describe, expect, it } from 'vitest';
import { BatchSlots, copyIntoSlot } from '../../src/backup/batch-slots.js';

describe('batch slots', () => {
  it('hands out disjoint slots of whole pages after the reserved head, in one shared memory', async () => {
    const slots = new BatchSlots(3, 100_000);
    expect(slots.slotBytes).toBe(131_072);
    expect(slots.memory.buffer).toBeInstanceOf(SharedArrayBuffer);
    const held = await Promise.all([slots.acquire(), slots.acquire(), slots.acquire()]);
    const offsets = held.map((slot) => slot.offset).sort((a, b) => a - b);
    expect(offsets).toEqual([65_536, 65_536 + 131_072, 65_536 + 2 * 131_072]);
    for (const slot of held) {
      expect(slot.bytes.buffer).toBe(slots.memory.buffer);
      expect(slot.bytes.byteOffset).toBe(slot.offset);
      expect(slot.bytes.length).toBe(131_072);
    }
    expect(slots.available).toBe(0);
  });

  it('makes a holder wait until a slot is released, in the order they asked', async () => {
    const slots = new BatchSlots(1, 1);
    const first = await slots.acquire();
    const order: string[] = [];
    const a = slots.acquire().then((slot) => {
      order.push('a');
      return slot;
    });
    const b = slots.acquire().then((slot) => {
      order.push('b');
      return slot;
    });
    await Promise.resolve();
    expect(order).toEqual([]);
    slots.release(first.index);
    const gotA = await a;
    expect(order).toEqual(['a']);
    expect(gotA.index).toBe(first.index);
    slots.release(gotA.index);
    await b;
    expect(order).toEqual(['a', 'b']);
  });

  it('refuses to take back a slot that is not held', async () => {
    const slots = new BatchSlots(2, 1);
    const slot = await slots.acquire();
    slots.release(slot.index);
    expect(() => slots.release(slot.index)).toThrow(/released twice/);
    expect(() => slots.release(7)).toThrow(/released twice/);
  });
  it('serves a later run with a set an earlier run gave back whole, and never with one still held', async () => {
    // A shape no other test uses, so the spares are this test's own.
    const first = BatchSlots.take(2, 5 * 65_536);
    const held = await first.acquire();
    first.recycle(); // a slot is still held: not given back
    const second = BatchSlots.take(2, 5 * 65_536);
    expect(second === first).toBe(false); // (not .not.toBe: its message compares the memories byte by byte)
    first.release(held.index);
    first.recycle();
    second.recycle();
    const again = [BatchSlots.take(2, 5 * 65_536), BatchSlots.take(2, 5 * 65_536)];
    expect(again.includes(first) && again.includes(second)).toBe(true);
    expect(BatchSlots.take(2, 5 * 65_536) === first).toBe(false); // each spare serves one run at a time
    expect(BatchSlots.take(3, 5 * 65_536) === first).toBe(false); // and only runs of its shape
  });
});

describe('copyIntoSlot', () => {
  it('copies exactly the bytes given, at any alignment, and refuses what does not fit', async () => {
    const slots = new BatchSlots(2, 1 << 16);
    const [a, b] = [await slots.acquire(), await slots.acquire()];
    const source = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7) & 255));
    copyIntoSlot(a, 3, source);
    copyIntoSlot(a, 1003, source.subarray(1, 10));
    expect(a.bytes[2]).toBe(0);
    expect(Buffer.from(a.bytes.subarray(3, 1003)).equals(source)).toBe(true);
    expect(Buffer.from(a.bytes.subarray(1003, 1012)).equals(source.subarray(1, 10))).toBe(true);
    expect(a.bytes[1012]).toBe(0);
    copyIntoSlot(b, 0, a.bytes.subarray(3, 1003)); // slot to slot, as a batch's last bytes move on
    expect(Buffer.from(b.bytes.subarray(0, 1000)).equals(source)).toBe(true);
    copyIntoSlot(b, 5, new Uint8Array(0));
    expect(() => copyIntoSlot(b, (1 << 16) - 10, source)).toThrow(/do not fit/);
  });
});
