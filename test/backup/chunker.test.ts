// The chunkers: deterministic cuts, bounds respected, and an edit in the middle of a stream changes only
// the chunks around it (the property incrementals rely on).

import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { BatchSlots } from '../../src/backup/batch-slots.js';
import {
  type ChunkerParams,
  chunkBatches,
  chunkFilled,
  chunkStream,
  DEFAULT_CDC,
  fixedBlocks,
  type SlotBatch,
} from '../../src/backup/chunker.js';
import { prng } from '../../src/cli/sample-db.js';
import type { FillFeed } from '../../src/sources/source.js';

function text(bytes: number, seed: number): Buffer {
  const rnd = prng(seed);
  const words = ['order', 'customer', 'paid', '2026-11-22', 'shipped', 'Zürich', '42.50', 'note', 'id'];
  const parts: string[] = [];
  let size = 0;
  while (size < bytes) {
    const w = `${words[Math.floor(rnd() * words.length)]}${Math.floor(rnd() * 100000)} `;
    parts.push(w);
    size += w.length;
  }
  return Buffer.from(parts.join('')).subarray(0, bytes);
}

async function cut(params: ChunkerParams, data: Buffer, pieceSize: number): Promise<Buffer[]> {
  async function* pieces() {
    for (let i = 0; i < data.length; i += pieceSize) yield data.subarray(i, i + pieceSize);
  }
  const out: Buffer[] = [];
  for await (const group of chunkStream(params, pieces())) for (const chunk of group) out.push(Buffer.from(chunk));
  return out;
}

const ids = (chunks: Buffer[]) => chunks.map((c) => createHash('sha256').update(c).digest('hex'));

describe('cdc chunker', () => {
  const data = text(8 << 20, 1);

  it('cuts the same way whatever the input piece size, within min/max, losing no byte', async () => {
    const a = await cut(DEFAULT_CDC, data, 1 << 20);
    // Pieces smaller than the minimum chunk, odd sizes, and pieces larger than the maximum chunk.
    for (const pieceSize of [1000, 4093, 70_001]) expect(ids(await cut(DEFAULT_CDC, data, pieceSize))).toEqual(ids(a));
    expect(Buffer.concat(a).equals(data)).toBe(true);
    for (const chunk of a.slice(0, -1)) {
      expect(chunk.length).toBeGreaterThanOrEqual((DEFAULT_CDC as { min: number }).min);
      expect(chunk.length).toBeLessThanOrEqual((DEFAULT_CDC as { max: number }).max);
    }
    const average = data.length / a.length;
    expect(average).toBeGreaterThan(10 << 10);
    expect(average).toBeLessThan(26 << 10);
  });

  it('after an insert in the middle, all but a few chunks are unchanged', async () => {
    const edited = Buffer.concat([
      data.subarray(0, 4 << 20),
      Buffer.from('INSERTED ROW 12345 '),
      data.subarray(4 << 20),
    ]);
    const before = new Set(ids(await cut(DEFAULT_CDC, data, 1 << 20)));
    const after = ids(await cut(DEFAULT_CDC, edited, 1 << 20));
    const changed = after.filter((id) => !before.has(id));
    expect(changed.length).toBeGreaterThan(0);
    expect(changed.length).toBeLessThanOrEqual(3);
  });

  it('handles empty and tiny inputs', async () => {
    expect(await cut(DEFAULT_CDC, Buffer.alloc(0), 10)).toEqual([]);
    expect((await cut(DEFAULT_CDC, Buffer.from('x'), 10)).map(String)).toEqual(['x']);
  });
});

/** Every batch yielded, copied out, each slot released as a backup does. */
async function collectBatches(yielded: AsyncIterable<SlotBatch>, slots: BatchSlots) {
  const lengths: number[] = [];
  const bytes: Buffer[] = [];
  for await (const batch of yielded) {
    expect(batch.lengths.length).toBeGreaterThan(0);
    lengths.push(...batch.lengths);
    const length = batch.lengths.reduce((sum, n) => sum + n, 0);
    bytes.push(Buffer.from(batch.slot.bytes.subarray(batch.start, batch.start + length)));
    slots.release(batch.slot.index);
  }
  return { lengths, data: Buffer.concat(bytes) };
}

/** Every batch chunkBatches yields over `pieces`. */
function batches(params: ChunkerParams, input: AsyncIterable<Uint8Array>, slots: BatchSlots) {
  return collectBatches(chunkBatches(params, input, slots), slots);
}

async function* piecesOf(data: Uint8Array, pieceSize: number) {
  for (let i = 0; i < data.length; i += pieceSize) yield data.subarray(i, i + pieceSize);
}

describe('chunkBatches (what a backup cuts)', () => {
  it('gives the cuts of the whole stream and every byte once, whatever the piece and slot sizes', async () => {
    const data = text(3 << 20, 4);
    for (const params of [DEFAULT_CDC, { kind: 'fixed', blockSize: 65536 } as ChunkerParams]) {
      const whole = (await cut(params, data, 1 << 20)).map((c) => c.length);
      for (const [pieceSize, slotBytes] of [
        [1 << 20, 1 << 20],
        [4093, 128 << 10],
        [70_001, 64 << 10],
        [3 << 20, 192 << 10],
      ] as const) {
        const slots = new BatchSlots(3, slotBytes);
        const got = await batches(params, piecesOf(data, pieceSize), slots);
        expect(got.lengths, `${params.kind}, pieces of ${pieceSize}, slots of ${slotBytes}`).toEqual(whole);
        expect(got.data.equals(data)).toBe(true);
        expect(slots.available).toBe(slots.count);
      }
    }
    async function* nothing(): AsyncGenerator<Buffer> {}
    const slots = new BatchSlots(2, 1 << 20);
    expect((await batches(DEFAULT_CDC, nothing(), slots)).lengths).toEqual([]);
    expect(slots.available).toBe(2);
  });

  it('refuses slots smaller than the largest chunk', async () => {
    const slots = new BatchSlots(2, 64 << 10);
    const params: ChunkerParams = { kind: 'fixed', blockSize: 128 << 10 };
    await expect(batches(params, piecesOf(Buffer.alloc(10), 10), slots)).rejects.toThrow(/cannot hold/);
  });

  it('lets its slot go when the caller stops early', async () => {
    const slots = new BatchSlots(3, 64 << 10);
    for await (const batch of chunkBatches(DEFAULT_CDC, piecesOf(text(1 << 20, 5), 10_000), slots)) {
      slots.release(batch.slot.index);
      break;
    }
    expect(slots.available).toBe(3);
  });
});

/**
 * A source that writes `data` into the regions it is given (SourceFile.fill), in this thread: region k
 * gets at most `sizes[k % sizes.length]` bytes, so regions are filled fully, partly and barely. It fails
 * the test if more than `capacity` regions are given and not filled, or if a region is asked to be
 * filled before it is given. `idle` counts whenIdle calls.
 */
function fakeFill(data: Buffer, sizes: number[]) {
  const seen = { maxPending: 0, idle: 0, capacity: 0 };
  const fill = (memory: SharedArrayBuffer, capacity: number): FillFeed => {
    seen.capacity = capacity;
    const regions: { offset: number; room: number }[] = [];
    async function* filled(): AsyncGenerator<number> {
      for (let at = 0, k = 0; at < data.length; k++) {
        const region = regions.shift();
        if (!region) throw new Error('a region was to be filled before it was given');
        const n = Math.min(region.room, sizes[k % sizes.length]!, data.length - at);
        new Uint8Array(memory, region.offset, n).set(data.subarray(at, at + n));
        at += n;
        yield n;
      }
    }
    return {
      give: (offset, room) => {
        regions.push({ offset, room });
        seen.maxPending = Math.max(seen.maxPending, regions.length);
      },
      filled: filled(),
      whenIdle: (then) => {
        seen.idle++;
        then();
      },
    };
  };
  return { fill, seen };
}

describe('chunkFilled (a source writing into the batch slots)', () => {
  it('gives the cuts of the whole stream and every byte once, however much each slot gets', async () => {
    const data = text(3 << 20, 8);
    for (const params of [DEFAULT_CDC, { kind: 'fixed', blockSize: 65536 } as ChunkerParams]) {
      const whole = (await cut(params, data, 1 << 20)).map((c) => c.length);
      for (const sizes of [[1 << 30], [1000, 70_001, 4093], [5000]]) {
        const slots = new BatchSlots(6, 256 << 10);
        const { fill, seen } = fakeFill(data, sizes);
        const got = await collectBatches(chunkFilled(params, fill, slots, 3), slots);
        expect(got.lengths, `${params.kind}, fills of ${sizes}`).toEqual(whole);
        expect(got.data.equals(data)).toBe(true);
        expect(seen.maxPending).toBeLessThanOrEqual(seen.capacity);
        expect(seen.idle).toBe(1);
        expect(slots.available).toBe(slots.count); // the slots given and never filled came back too
      }
    }
    const slots = new BatchSlots(4, 256 << 10);
    const empty = await collectBatches(chunkFilled(DEFAULT_CDC, fakeFill(Buffer.alloc(0), [10]).fill, slots, 2), slots);
    expect(empty.lengths).toEqual([]);
    expect(slots.available).toBe(4);
  });

  it('refuses slots with too little room after the bytes carried over', async () => {
    const slots = new BatchSlots(4, 64 << 10);
    await expect(
      collectBatches(chunkFilled(DEFAULT_CDC, fakeFill(text(10, 1), [10]).fill, slots, 2), slots),
    ).rejects.toThrow(/too little room/);
  });

  it('gives back every slot when the caller stops early', async () => {
    const slots = new BatchSlots(5, 256 << 10);
    const { fill, seen } = fakeFill(text(2 << 20, 5), [200_000]);
    for await (const batch of chunkFilled(DEFAULT_CDC, fill, slots, 3)) {
      slots.release(batch.slot.index);
      break;
    }
    expect(seen.idle).toBe(1);
    expect(slots.available).toBe(5);
  });
});

/**
 * The CDC cuts exactly as docs/FORMAT.md words them, byte by byte and independent of chunker.ts (its own
 * gear table): the reference the optimized scans must match, since dedupe across existing chains depends
 * on every boundary staying where it was.
 */
function referenceCuts(data: Uint8Array, min: number, avg: number, max: number): number[] {
  const gear = Array.from({ length: 256 }, (_, i) =>
    createHash('sha256').update(`backupd-gear-v1/${i}`).digest().readInt32LE(0),
  );
  const bits = Math.log2(avg);
  const top = (n: number) => Number(((1n << BigInt(n)) - 1n) << BigInt(32 - n)) | 0;
  const lengths: number[] = [];
  let start = 0;
  while (start < data.length) {
    let h = 0;
    let end = Math.min(start + max, data.length);
    for (let i = min; i < max && start + i < data.length; i++) {
      h = (Math.imul(h, 2) + gear[data[start + i]!]!) | 0;
      if ((h & top(i < avg ? bits + 2 : bits - 2)) === 0) {
        end = start + i + 1;
        break;
      }
    }
    lengths.push(end - start);
    start = end;
  }
  return lengths;
}

describe('CDC boundaries stay those of the format', () => {
  const rnd = prng(7);
  const random = Buffer.from(Array.from({ length: 2 << 20 }, () => Math.floor(rnd() * 256)));
  const inputs: [string, Buffer][] = [
    ['random bytes', random],
    ['text', text(2 << 20, 6)],
    ['zeros (no cut before max)', Buffer.alloc(1 << 20)],
    ['a short repeated pattern', Buffer.from('abcdefghij'.repeat(100_000))],
    [
      'a dump-like table',
      Buffer.from(Array.from({ length: 20_000 }, (_, i) => `${i}\t1\t0\t${' '.repeat(84)}\n`).join('')),
    ],
    [
      'random runs between repeats',
      Buffer.concat([random.subarray(0, 300_000), Buffer.alloc(200_000, 7), random.subarray(5)]),
    ],
  ];
  const params: { min: number; avg: number; max: number }[] = [
    { min: 4 << 10, avg: 16 << 10, max: 64 << 10 }, // DEFAULT_CDC
    { min: 64, avg: 256, max: 1024 }, // many cuts under both masks, and at max
    { min: 1 << 10, avg: 4 << 10, max: 6000 }, // a max that is no power of two
  ];
  for (const [label, data] of inputs) {
    it(`on ${label}`, async () => {
      for (const { min, avg, max } of params) {
        const cdc: ChunkerParams = { kind: 'cdc', gear: 'backupd-gear-v1', min, avg, max };
        const expected = referenceCuts(data, min, avg, max);
        expect(expected.reduce((sum, n) => sum + n, 0)).toBe(data.length);
        const streamed = (await cut(cdc, data, 10_007)).map((c) => c.length);
        expect(streamed, `chunkStream, ${JSON.stringify(cdc)}`).toEqual(expected);
        const slots = new BatchSlots(3, Math.max(max, 100 << 10));
        const batched = await batches(cdc, piecesOf(data, 65_536), slots);
        expect(batched.lengths, `chunkBatches, ${JSON.stringify(cdc)}`).toEqual(expected);
        expect(batched.data.equals(data)).toBe(true);
      }
    });
  }
});

describe('fixed chunker', () => {
  it('cuts aligned blocks and a short last one', async () => {
    const data = text((1 << 20) + 100, 2);
    for (const pieceSize of [10_000, 65_536, 200_000]) {
      const chunks = await cut({ kind: 'fixed', blockSize: 65536 }, data, pieceSize);
      expect(chunks.map((c) => c.length)).toEqual([...Array(16).fill(65536), 100]);
      expect(Buffer.concat(chunks).equals(data)).toBe(true);
    }
  });

  it('cuts a file the workers read at offsets (fixedBlocks) exactly as it cuts the same bytes streamed', async () => {
    // A snapshot file is read either way; a difference would make an incremental store every block again.
    for (const size of [0, 1, 4096, 65_535, 65_536, 65_537, 3 * 65_536 + 4096]) {
      const streamed = await cut({ kind: 'fixed', blockSize: 65536 }, text(size, 3), 10_000);
      expect(fixedBlocks(size, 65536), `size ${size}`).toEqual(streamed.map((c) => c.length));
    }
  });
});
