// A file the workers read themselves (a raw snapshot) goes to them in 4 MiB ranges, and each range is held
// in its worker until sealed: the run keeps at most four of them between naming and sealing, which is
// what bounds a snapshot's memory (docs/BENCHMARKS.md, "Peak memory of a snapshot"). The file is restored
// byte for byte afterwards.

import { closeSync, createReadStream, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { runBackup } from '../../src/backup/backup.js';
import { BlobPool } from '../../src/backup/blob-pool.js';
import { restoreBackup } from '../../src/backup/restore.js';
import { prng } from '../../src/cli/sample-db.js';
import type { Source, SourceReading } from '../../src/sources/source.js';
import { restoreIntoMemory } from '../support/memory-restore.js';
import { type Workspace, workspace } from '../support/workspace.js';

const BLOCK = 64 << 10;
/** Ten and a half ranges of 4 MiB: more than the old window of eight. */
const SIZE = 42 << 20;

let ws: Workspace;
let path: string;
beforeAll(async () => {
  ws = await workspace();
  path = join(ws.dir, 'data.db');
  const rnd = prng(3);
  const bytes = Buffer.alloc(SIZE);
  for (let i = 0; i < SIZE; i += 4) bytes.writeUInt32LE(Math.floor(rnd() * 2 ** 32), i);
  writeFileSync(path, bytes);
});
afterAll(() => ws.cleanup());

/** A snapshot source of one file, offered to the pipeline on disk. */
function fileSource(restored: Map<string, Buffer>): Source {
  return {
    name: 'file',
    engine: 'file',
    types: ['snapshot'],
    snapshotScope: 'database',
    async listDatabases() {
      return [{ name: 'db' }];
    },
    async read(): Promise<SourceReading> {
      const fd = openSync(path, 'r');
      async function* one() {
        yield {
          name: 'data.db',
          chunking: { kind: 'fixed' as const, blockSize: BLOCK },
          stream: createReadStream(path),
          onDisk: { fd, size: SIZE },
        };
      }
      return { engineVersion: 'file 1', files: one(), close: async () => closeSync(fd) };
    },
    restore: restoreIntoMemory(restored),
    async close() {},
  };
}

it('keeps at most four ranges of a file between naming and sealing, and restores it byte for byte', async () => {
  let held = 0;
  let most = 0;
  const { nameRange, sealKept } = BlobPool.prototype;
  const naming = vi.spyOn(BlobPool.prototype, 'nameRange').mockImplementation(function (this: BlobPool, ...args) {
    most = Math.max(most, ++held);
    return nameRange.apply(this, args);
  });
  const sealing = vi.spyOn(BlobPool.prototype, 'sealKept').mockImplementation(async function (this: BlobPool, ...args) {
    try {
      return await sealKept.apply(this, args);
    } finally {
      held--;
    }
  });
  try {
    const restored = new Map<string, Buffer>();
    const source = fileSource(restored);
    const request = {
      ref: { cluster: 'test', source: 'file', database: 'db' },
      source,
      type: 'snapshot' as const,
      destinations: [ws.destination],
      stagingDir: ws.stagingDir,
      key: 'range window key',
      node: 'n1',
      task: 't1',
    };
    const full = await runBackup({ ...request, level: 'full' });
    expect(naming).toHaveBeenCalledTimes(Math.ceil(SIZE / (4 << 20)));
    expect(held).toBe(0);
    expect(most).toBeGreaterThan(1); // ranges do overlap: the workers run side by side
    expect(most).toBeLessThanOrEqual(4);
    await restoreBackup({ ...request, from: ws.destination, ...full, target: 'copy', cacheDir: ws.cacheDir });
    expect(restored.get('copy')?.equals(readFileSync(path))).toBe(true);
  } finally {
    naming.mockRestore();
    sealing.mockRestore();
  }
});
