// What a destination holds of every cluster (databasesAt) and how the path a listing searched is named
// (searchedPath): a real local destination with two clusters' folders and files that are not backups; and
// the same keys as recorded references, as a destination that cannot list (Glacier) gives them.

import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { searchedPath } from '../../src/agent/location.js';
import { databasesAt } from '../../src/backup/chain.js';
import { LocalDestination } from '../../src/uploader/local.js';
import { tempDir } from '../harness/process.js';

const PACK = 'a'.repeat(64);
const KEYS = [
  `alpha/main/shop.db/20261201T000000Z-backup-n1/packs/${PACK}.pack`,
  'alpha/main/shop.db/20261201T000000Z-backup-n1/20261201T000000Z-full.manifest',
  'alpha/main/shop.db/20261201T000000Z-backup-n1/20261201T010000Z-incr.manifest',
  'alpha/pg/all-databases/20261201T000000Z-snapshot-n1/20261201T000000Z-full.manifest',
  'beta/files/notes.db/20261202T000000Z-backup-b1/20261202T000000Z-full.manifest',
  // A failed full: packs, no manifest.
  `beta/files/notes.db/20261203T000000Z-backup-b1/packs/${PACK}.pack`,
  // Not backups: ignored.
  'README.txt',
  'alpha/stray.txt',
];

describe('databasesAt', () => {
  const dir = tempDir('databases-at');
  afterAll(() => dir.remove());
  for (const key of KEYS) {
    mkdirSync(dirname(join(dir.path, key)), { recursive: true });
    writeFileSync(join(dir.path, key), 'x');
  }
  const destination = new LocalDestination('disk', dir.path);

  const summary = (found: Awaited<ReturnType<typeof databasesAt>>) =>
    found.map(({ ref, chains }) => [
      `${ref.cluster}/${ref.source}/${ref.database}`,
      chains.map((c) => `${c.chainId}: ${c.backups.join(' ')}`),
    ]);

  it('finds every cluster and database at a listable destination, sorted, ignoring what is not a backup', async () => {
    expect(summary(await databasesAt(destination))).toEqual([
      ['alpha/main/shop.db', ['20261201T000000Z-backup-n1: 20261201T000000Z-full 20261201T010000Z-incr']],
      ['alpha/pg/all-databases', ['20261201T000000Z-snapshot-n1: 20261201T000000Z-full']],
      ['beta/files/notes.db', ['20261202T000000Z-backup-b1: 20261202T000000Z-full', '20261203T000000Z-backup-b1: ']],
    ]);
    expect(summary(await databasesAt(destination, { cluster: 'beta' })).map(([db]) => db)).toEqual([
      'beta/files/notes.db',
    ]);
    expect(await databasesAt(destination, { cluster: 'gamma' })).toEqual([]);
  });

  it('reads the same from recorded references when the destination cannot list', async () => {
    const unlistable = Object.assign(Object.create(destination) as LocalDestination, {
      capabilities: { ...destination.capabilities, listable: false },
    });
    const recorded = Object.fromEntries(KEYS.map((k, i) => [k, `archive-${i}`]));
    expect(summary(await databasesAt(unlistable, { recorded }))).toEqual(summary(await databasesAt(destination)));
    await expect(databasesAt(unlistable)).rejects.toMatchObject({ code: 'UNSUPPORTED' });
  });
});

describe('searchedPath', () => {
  it('names the folder, bucket or vault a listing searched, never a secret', () => {
    expect(searchedPath({ name: 'nas', kind: 'local', config: { path: '/mnt/b' } }, '')).toBe('nas (local): /mnt/b/');
    expect(searchedPath({ name: 'nas', kind: 'local', config: { path: '/mnt/b' } }, 'beta/')).toBe(
      'nas (local): /mnt/b/beta/',
    );
    const s3 = { bucket: 'bk', prefix: 'backupd', secretAccessKey: 'SECRET' };
    expect(searchedPath({ name: 'cloud', kind: 's3', config: s3 }, 'alpha/')).toBe(
      'cloud (s3): s3://bk/backupd/alpha/',
    );
    expect(searchedPath({ name: 'g', kind: 'gcs', config: { bucket: 'bk' } }, '')).toBe('g (gcs): gs://bk/');
    expect(searchedPath({ name: 'f', kind: 'ftp', config: { host: 'h', root: '/b', password: 'SECRET' } }, 'a/')).toBe(
      'f (ftp): ftp://h/b/a/',
    );
    expect(searchedPath({ name: 'v', kind: 'glacier', config: { vault: 'vlt' } }, '')).toContain('vault vlt');
    expect(JSON.stringify(searchedPath({ name: 'cloud', kind: 's3', config: s3 }, ''))).not.toContain('SECRET');
  });
});
