// Packs as the writer leaves them: the magic, then every blob in the order added, at the place add()
// returned, named by the sha256 of the whole file; whether the blobs arrive as views side by side in one
// buffer (as a sealed batch does: they are written as one stretch) or as buffers of their own.

import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PACK_MAGIC, PackWriter } from '../../src/backup/pack.js';
import { type Workspace, workspace } from '../support/workspace.js';

let ws: Workspace;
beforeAll(async () => {
  ws = await workspace();
});
afterAll(() => ws.cleanup());

describe('PackWriter', () => {
  it('writes each blob at its place, in order, across flushes and packs, however the blobs share memory', async () => {
    const batch = randomBytes(6 << 20); // a sealed batch: blobs back to back in one buffer
    const blobs: Buffer[] = [
      batch.subarray(0, 1 << 20),
      batch.subarray(1 << 20, 3 << 20), // next to the one before
      randomBytes(100_000), // a buffer of its own
      batch.subarray(3 << 20, (3 << 20) + 5), // next to the second one, though not added right after it
      batch.subarray((4 << 20) + 1, 6 << 20), // same buffer, with a gap before it
      Buffer.alloc(0),
      randomBytes(3 << 20),
    ];
    const writer = new PackWriter(join(ws.dir, 'packs'), 5 << 20); // a pack closes past 5 MiB
    const places = await writer.addAll(blobs);
    const packs = await writer.close();
    expect(packs.length).toBe(2);
    for (const pack of packs) {
      const bytes = readFileSync(pack.path);
      expect(pack.size).toBe(bytes.length);
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(pack.id);
      expect(bytes.subarray(0, PACK_MAGIC.length).equals(PACK_MAGIC)).toBe(true);
    }
    // Every blob is where add() said, and the packs hold nothing else.
    const expected = packs.map(() => [PACK_MAGIC] as Buffer[]);
    for (const [i, place] of places.entries()) {
      const bytes = readFileSync(packs[place.pack]!.path);
      expect(bytes.subarray(place.offset, place.offset + place.length).equals(blobs[i]!), `blob ${i}`).toBe(true);
      expected[place.pack]!.push(blobs[i]!);
    }
    for (const [i, pack] of packs.entries()) {
      expect(readFileSync(pack.path).equals(Buffer.concat(expected[i]!)), `pack ${i}`).toBe(true);
    }
  });
});
