// The local destination's putFile: a staged pack is hard-linked into place (no copy), atomically, and a
// size mismatch is refused without leaving anything behind.

import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LocalDestination } from '../../src/uploader/local.js';

const dir = mkdtempSync(join(tmpdir(), 'backupd-putfile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('local putFile', () => {
  it('hard-links the staged file into place', async () => {
    const staged = join(dir, 'staged.pack');
    writeFileSync(staged, 'pack bytes');
    const destination = new LocalDestination('disk', join(dir, 'repo'));
    await destination.putFile('a/b/x.pack', staged, 10);
    const placed = statSync(destination.pathOf('a/b/x.pack'));
    expect(placed.ino).toBe(statSync(staged).ino);
    expect(placed.size).toBe(10);
  });

  it('refuses a file whose size is not the expected one, leaving nothing', async () => {
    const staged = join(dir, 'short.pack');
    writeFileSync(staged, 'short');
    const destination = new LocalDestination('disk', join(dir, 'repo2'));
    await expect(destination.putFile('p/y.pack', staged, 10)).rejects.toMatchObject({ code: 'DESTINATION_FAILED' });
    expect(await destination.stat('p/y.pack')).toBeUndefined();
    expect(readdirSync(join(dir, 'repo2', 'p'))).toEqual([]);
  });
});
