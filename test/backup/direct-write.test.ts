// Restored bytes written past the page cache where they can be, buffered where they cannot: the file holds
// exactly what was written either way, on a disk file system (direct writes for aligned regions) and on
// tmpfs (which refuses O_DIRECT, so every write falls back). Runs in this order: the fallback is sticky.

import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { alignedBuffer, DIRECT_ALIGN, TargetFile } from '../../src/backup/direct-write.js';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** Aligned and unaligned writes at their offsets into a fresh file in `parent`, some at once; returns what it holds. */
async function writeMixed(parent: string): Promise<{ expected: Buffer; actual: Buffer }> {
  const dir = mkdtempSync(join(parent, 'backupd-direct-'));
  dirs.push(dir);
  const path = join(dir, 'target');
  writeFileSync(path, '');
  const expected = randomBytes(5 * DIRECT_ALIGN + 777);
  const file = new TargetFile(path);
  try {
    const scratch = alignedBuffer(5 * DIRECT_ALIGN);
    // Two aligned pages at offset 2 pages and the first two pages (direct where allowed), out of order
    // and at once, from aligned places in one buffer.
    expected.copy(scratch, 0, 2 * DIRECT_ALIGN, 4 * DIRECT_ALIGN);
    expected.copy(scratch, 3 * DIRECT_ALIGN, 0, 2 * DIRECT_ALIGN);
    await Promise.all([
      file.write(scratch.subarray(0, 2 * DIRECT_ALIGN), 2 * DIRECT_ALIGN),
      file.write(scratch.subarray(3 * DIRECT_ALIGN, 5 * DIRECT_ALIGN), 0),
    ]);
    // The unaligned tail (always buffered).
    await file.write(expected.subarray(4 * DIRECT_ALIGN), 4 * DIRECT_ALIGN);
  } finally {
    file.close();
  }
  return { expected, actual: readFileSync(path) };
}

describe('TargetFile', () => {
  it('writes aligned and unaligned regions of a file on disk exactly', async () => {
    const { expected, actual } = await writeMixed(tmpdir());
    expect(actual.equals(expected)).toBe(true);
  });

  it('falls back to buffered writes on a file system that refuses O_DIRECT (tmpfs)', async () => {
    if (!existsSync('/dev/shm')) throw new Error('this test needs /dev/shm (a tmpfs), which Linux machines have');
    const { expected, actual } = await writeMixed('/dev/shm');
    expect(actual.equals(expected)).toBe(true);
    // And a disk file after the fallback is still written right (buffered from now on).
    const again = await writeMixed(tmpdir());
    expect(again.actual.equals(again.expected)).toBe(true);
  });

  it('gives page-multiple aligned buffers of at least the size asked', () => {
    const buffer = alignedBuffer(100_000);
    expect(buffer.length).toBeGreaterThanOrEqual(100_000);
    expect(buffer.length % DIRECT_ALIGN).toBe(0);
    expect(buffer.byteOffset).toBe(0);
  });
});
