// Verify by restoring, on real SQLite databases: a restore point that restores right passes, one whose
// fingerprint does not match what the restore gives fails naming the table, and the scratch place is gone
// afterwards either way. The judge of "right" is the fingerprint the backup recorded, itself checked against
// the sqlite3 shell in test/sources/fingerprint-sqlite.test.ts.

import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../../src/backup/backup.js';
import { KeyRing, loadManifest } from '../../src/backup/chain.js';
import { encodeManifest } from '../../src/backup/manifest.js';
import { verifyByRestoring } from '../../src/backup/verify-restore.js';
import { createSampleDb } from '../../src/cli/sample-db.js';
import type { BackupType } from '../../src/layout.js';
import { manifestKey } from '../../src/layout.js';
import { type Workspace, workspace } from '../support/workspace.js';

describe('verify by restoring (SQLite)', () => {
  let ws: Workspace;
  beforeAll(async () => {
    ws = await workspace({ fingerprints: true });
  });
  afterAll(() => ws.cleanup());

  const backup = (db: string, type: BackupType, key?: string) =>
    runBackup({
      ref: ws.ref(db),
      source: ws.source,
      type,
      level: 'full',
      destinations: [ws.destination],
      stagingDir: ws.stagingDir,
      node: 'n1',
      task: 't1',
      key,
    });
  const verify = (db: string, point: { chainId: string; backupId: string }, key?: string) =>
    verifyByRestoring({
      ref: ws.ref(db),
      source: ws.source,
      from: ws.destination,
      ...point,
      key,
      scratchDir: join(ws.dir, 'scratch'),
      cacheDir: ws.cacheDir,
    });
  const scratchLeft = () => readdirSync(join(ws.dir, 'scratch'));

  for (const [type, wal] of [
    ['backup', false],
    ['snapshot', false],
    ['backup', true],
    ['snapshot', true],
  ] as [BackupType, boolean][]) {
    it(`a ${type}${wal ? ' of a WAL database' : ''} that restores right passes, with its duration and throughput`, async () => {
      const db = `shop-${type}${wal ? '-wal' : ''}.db`;
      createSampleDb(join(ws.dbDir, db), 5_000, 7);
      if (wal) {
        const handle = new Database(join(ws.dbDir, db));
        handle.pragma('journal_mode = WAL');
        handle.close();
      }
      const point = await backup(db, type, 'a key');
      const result = await verify(db, point, 'a key');
      expect(result).toMatchObject({ ok: true, fingerprinted: true, differences: [], problems: [] });
      const tables = new Database(join(ws.dbDir, db), { readonly: true })
        .prepare("SELECT count(*) FROM sqlite_schema WHERE type = 'table'")
        .pluck()
        .get();
      expect(result.tables).toBe(tables);
      expect(result.bytes).toBeGreaterThan(100_000);
      expect(result.restoreMs).toBeGreaterThan(0);
      expect(result.bytesPerSecond).toBeGreaterThan(0);
      expect(scratchLeft()).toEqual([]);
    });
  }

  it('with fingerprints off (the source default), records none and still restores and checks', async () => {
    const plain = await workspace();
    try {
      for (const type of ['backup', 'snapshot'] as BackupType[]) {
        const db = `plain-${type}.db`;
        createSampleDb(join(plain.dbDir, db), 2_000, 9);
        const point = await runBackup({
          ref: plain.ref(db),
          source: plain.source,
          type,
          level: 'full',
          destinations: [plain.destination],
          stagingDir: plain.stagingDir,
          node: 'n1',
          task: 't1',
        });
        const loaded = await loadManifest(
          plain.destination,
          plain.ref(db),
          point.chainId,
          point.backupId,
          new KeyRing(undefined),
        );
        expect(loaded.manifest.fingerprint, type).toBeUndefined();
        const result = await verifyByRestoring({
          ref: plain.ref(db),
          source: plain.source,
          from: plain.destination,
          ...point,
          scratchDir: join(plain.dir, 'scratch'),
          cacheDir: plain.cacheDir,
        });
        expect(result, type).toMatchObject({ ok: true, fingerprinted: false, problems: [] });
      }
    } finally {
      plain.cleanup();
    }
  });

  it('fails naming the table whose rows do not match the fingerprint, and removes the scratch', async () => {
    const db = 'changed.db';
    createSampleDb(join(ws.dbDir, db), 2_000, 8);
    const point = await backup(db, 'backup');
    // The fingerprint of one table made not to match what the backup holds: as if one row had changed between
    // the dump and the fingerprint. The manifest is written again as backupd writes it.
    const ref = ws.ref(db);
    const loaded = await loadManifest(ws.destination, ref, point.chainId, point.backupId, new KeyRing(undefined));
    const orders = loaded.manifest.fingerprint!.tables.find((t) => t.name === 'orders')!;
    orders.digest = orders.digest.replace(/^./, (c) => (c === '0' ? '1' : '0'));
    const customers = loaded.manifest.fingerprint!.tables.find((t) => t.name === 'customers')!;
    customers.rows += 1;
    const bytes = encodeManifest(loaded.manifest, undefined, undefined);
    await ws.destination.put(manifestKey(ref, point.chainId, point.backupId), bytes, bytes.length);

    const result = await verify(db, point);
    expect(result.ok).toBe(false);
    expect(result.problems).toEqual([]);
    expect(result.differences).toEqual([
      { table: 'customers', kind: 'rows', expected: String(customers.rows), found: String(customers.rows - 1) },
      { table: 'orders', kind: 'digest', expected: orders.digest, found: expect.any(String) },
    ]);
    expect(scratchLeft()).toEqual([]);
  });
});
