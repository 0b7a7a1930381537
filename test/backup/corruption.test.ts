// Every way a stored backup can be wrong gives a typed error naming what failed, from restore and from
// verify, and a restore that fails leaves no database behind.

import { existsSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runBackup } from '../../src/backup/backup.js';
import { KeyRing, loadManifest } from '../../src/backup/chain.js';
import type { CHUNK_IDS } from '../../src/backup/chunk-id.js';
import { encodeManifest, FORMAT_VERSION } from '../../src/backup/manifest.js';
import { restoreBackup } from '../../src/backup/restore.js';
import { verifyBackup } from '../../src/backup/verify.js';
import { createSampleDb } from '../../src/cli/sample-db.js';
import { manifestKey, packKey } from '../../src/layout.js';
import { type Workspace, workspace } from '../support/workspace.js';

const KEY = 'the right key';
let ws: Workspace;
let point: { chainId: string; backupId: string };
let packs: string[];
let manifestPath: string;
const saved = new Map<string, Buffer>();
const ref = () => ws.ref('shop.db');

beforeAll(async () => {
  ws = await workspace();
  createSampleDb(join(ws.dbDir, 'shop.db'), 20_000, 3);
  point = await runBackup({
    ref: ref(),
    source: ws.source,
    type: 'backup',
    level: 'full',
    destinations: [ws.destination],
    stagingDir: ws.stagingDir,
    key: KEY,
    node: 'n1',
    task: 't1',
  });
  manifestPath = ws.destination.pathOf(manifestKey(ref(), point.chainId, point.backupId));
  const packDir = join(ws.destination.root, 'test', 'local', 'shop.db', point.chainId, 'packs');
  packs = readdirSync(packDir).map((f) => ws.destination.pathOf(packKey(ref(), point.chainId, f.replace('.pack', ''))));
  for (const file of [manifestPath, ...packs]) saved.set(file, readFileSync(file));
});
afterAll(() => ws.cleanup());
beforeEach(() => {
  for (const [file, bytes] of saved) writeFileSync(file, bytes);
});

const restore = (target: string, key: string | undefined = KEY) =>
  restoreBackup({ ref: ref(), source: ws.source, from: ws.destination, ...point, target, key, cacheDir: ws.cacheDir });
const verify = (key: string | undefined = KEY) => verifyBackup({ ref: ref(), from: ws.destination, ...point, key });

async function expectFailure(code: string, message: RegExp, target: string, key?: string) {
  await expect(restore(target, key)).rejects.toMatchObject({ code, message: expect.stringMatching(message) });
  await expect(verify(key)).rejects.toMatchObject({ code, message: expect.stringMatching(message) });
  expect(existsSync(join(ws.dbDir, `${target}.db`))).toBe(false);
  expect(readdirSync(ws.dbDir).filter((f) => f.startsWith('.restoring'))).toEqual([]);
}

describe('a damaged or mismatched backup', () => {
  it('restores and verifies when nothing is wrong (the baseline of this file)', async () => {
    await expect(verify()).resolves.toMatchObject({ chunks: expect.any(Number) });
    await expect(restore('intact')).resolves.toMatchObject({ location: join(ws.dbDir, 'intact.db') });
  });

  it('wrong key: WRONG_KEY', async () => {
    await expectFailure('WRONG_KEY', /encryption key does not open backup/, 'wrong-key', 'not the key');
  });

  it('no key for an encrypted backup: KEY_REQUIRED', async () => {
    await expect(
      restoreBackup({
        ref: ref(),
        source: ws.source,
        from: ws.destination,
        ...point,
        target: 'no-key',
        cacheDir: ws.cacheDir,
      }),
    ).rejects.toMatchObject({ code: 'KEY_REQUIRED' });
    expect(existsSync(join(ws.dbDir, 'no-key.db'))).toBe(false);
  });

  it('missing pack: PACK_MISSING naming the pack', async () => {
    rmSync(packs[0]!);
    const id = packs[0]!.split('/').at(-1)!.replace('.pack', '');
    await expectFailure('PACK_MISSING', new RegExp(`pack ${id} is missing`), 'missing-pack');
  });

  it('truncated pack: PACK_CORRUPT', async () => {
    truncateSync(packs[0]!, saved.get(packs[0]!)!.length - 1000);
    await expectFailure('PACK_CORRUPT', /truncated/, 'truncated-pack');
  });

  it('one flipped byte in a pack: PACK_CORRUPT naming the pack and the chunk', async () => {
    const bytes = Buffer.from(saved.get(packs[0]!)!);
    bytes[Math.floor(bytes.length / 2)]! ^= 0x01;
    writeFileSync(packs[0]!, bytes);
    // Restore finds the chunk that fails to open; verify finds the pack hash mismatch first.
    await expect(restore('flipped-pack')).rejects.toMatchObject({
      code: 'PACK_CORRUPT',
      message: expect.stringMatching(/chunk at byte \d+ of pack [0-9a-f]{64} is corrupt/),
    });
    await expect(verify()).rejects.toMatchObject({
      code: 'PACK_CORRUPT',
      message: expect.stringMatching(/does not match its hash/),
    });
    expect(existsSync(join(ws.dbDir, 'flipped-pack.db'))).toBe(false);
  });

  it('one flipped byte in the manifest: MANIFEST_CORRUPT', async () => {
    const bytes = Buffer.from(saved.get(manifestPath)!);
    bytes[bytes.length - 200]! ^= 0x01;
    writeFileSync(manifestPath, bytes);
    await expectFailure('MANIFEST_CORRUPT', /fails its checksum/, 'flipped-manifest');
  });

  it('a manifest from a newer format version: UNSUPPORTED_FORMAT', async () => {
    const bytes = saved
      .get(manifestPath)!
      .toString('latin1')
      .replace(`BACKUPD-MANIFEST ${FORMAT_VERSION}\n`, `BACKUPD-MANIFEST ${FORMAT_VERSION + 1}\n`);
    expect(bytes.startsWith(`BACKUPD-MANIFEST ${FORMAT_VERSION + 1}\n`), 'the manifest now names a newer version').toBe(
      true,
    );
    writeFileSync(manifestPath, Buffer.from(bytes, 'latin1'));
    await expectFailure(
      'UNSUPPORTED_FORMAT',
      new RegExp(
        `format version ${FORMAT_VERSION + 1}; this backupd reads version ${FORMAT_VERSION} only: upgrade backupd`,
      ),
      'newer-format',
    );
  });

  it('a manifest of an older format version (none shipped): UNSUPPORTED_FORMAT, not read the old way', async () => {
    const loaded = await loadManifest(ws.destination, ref(), point.chainId, point.backupId, new KeyRing(KEY));
    const older = encodeManifest({ ...loaded.manifest, format: FORMAT_VERSION - 1 }, loaded.keys, loaded.kdf);
    expect(older.subarray(0, 19).toString()).toBe(`BACKUPD-MANIFEST ${FORMAT_VERSION - 1}\n`);
    writeFileSync(manifestPath, older);
    await expectFailure(
      'UNSUPPORTED_FORMAT',
      new RegExp(`format version ${FORMAT_VERSION - 1}; this backupd reads version ${FORMAT_VERSION} only`),
      'older-format',
    );
  });

  it('a manifest naming its chunks with an algorithm this backupd does not know: UNSUPPORTED_FORMAT', async () => {
    const loaded = await loadManifest(ws.destination, ref(), point.chainId, point.backupId, new KeyRing(KEY));
    const manifest = { ...loaded.manifest, chunkIds: 'sha3-256' as typeof CHUNK_IDS };
    writeFileSync(manifestPath, encodeManifest(manifest, loaded.keys, loaded.kdf));
    await expectFailure('UNSUPPORTED_FORMAT', /names its chunks with "sha3-256".*upgrade backupd/, 'unknown-ids');
  });

  it('a backup id that does not exist: NOT_FOUND', async () => {
    await expect(
      restoreBackup({
        ref: ref(),
        source: ws.source,
        from: ws.destination,
        chainId: point.chainId,
        backupId: '20200101T000000Z-full',
        target: 'nope',
        key: KEY,
        cacheDir: ws.cacheDir,
      }),
    ).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('restoring over an existing database: ALREADY_EXISTS, and the existing database is untouched', async () => {
    const before = readFileSync(join(ws.dbDir, 'shop.db'));
    await expect(restore('shop.db')).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
    expect(readFileSync(join(ws.dbDir, 'shop.db')).equals(before)).toBe(true);
  });

  it('a target name that escapes the folder: INVALID_ARGUMENT', async () => {
    await expect(restore('../evil')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(existsSync(join(ws.dir, 'evil.db'))).toBe(false);
  });
});

describe('a damaged snapshot (restored by workers writing at file offsets)', () => {
  it('one flipped byte or a truncated pack: PACK_CORRUPT, and no database at the target', async () => {
    const snap = await runBackup({
      ref: ref(),
      source: ws.source,
      type: 'snapshot',
      level: 'full',
      destinations: [ws.destination],
      stagingDir: ws.stagingDir,
      key: KEY,
      node: 'n1',
      task: 't1',
    });
    const packDir = join(ws.destination.root, 'test', 'local', 'shop.db', snap.chainId, 'packs');
    const pack = join(packDir, readdirSync(packDir)[0]!);
    const original = readFileSync(pack);
    const attempt = (target: string) =>
      restoreBackup({
        ref: ref(),
        source: ws.source,
        from: ws.destination,
        ...snap,
        target,
        key: KEY,
        cacheDir: ws.cacheDir,
      });

    const flipped = Buffer.from(original);
    flipped[flipped.length - 100]! ^= 0x80;
    writeFileSync(pack, flipped);
    await expect(attempt('snap-flipped')).rejects.toMatchObject({
      code: 'PACK_CORRUPT',
      message: expect.stringMatching(/chunk at byte \d+ of pack [0-9a-f]{64} is corrupt/),
    });
    expect(existsSync(join(ws.dbDir, 'snap-flipped.db'))).toBe(false);

    writeFileSync(pack, original);
    await expect(attempt('snap-ok')).resolves.toMatchObject({ location: join(ws.dbDir, 'snap-ok.db') });
    expect(readdirSync(ws.dbDir).filter((f) => f.startsWith('.restoring'))).toEqual([]);
  });
});
