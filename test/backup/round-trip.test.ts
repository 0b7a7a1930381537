// Round trips through the whole pipeline: full, two incrementals and snapshots of a 100k+ row SQLite
// database, every restore point restored into a new database and compared with the data it was taken from.

import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../../src/backup/backup.js';
import { restoreBackup } from '../../src/backup/restore.js';
import { verifyBackup } from '../../src/backup/verify.js';
import { changeSampleDb, contentChecksum, createSampleDb } from '../../src/cli/sample-db.js';
import type { BackupType } from '../../src/layout.js';
import { type Workspace, workspace } from '../support/workspace.js';

const ROWS = 120_000;

describe.each([
  { encrypted: false, key: undefined },
  { encrypted: true, key: 'correct horse battery staple' },
])('round trip (encrypted: $encrypted)', ({ key }) => {
  let ws: Workspace;
  beforeAll(async () => {
    ws = await workspace();
  });
  afterAll(() => ws.cleanup());

  for (const type of ['backup', 'snapshot'] as BackupType[]) {
    it(`restores full, incr 1 and incr 2 of a ${type} to exactly the data at each point`, async () => {
      const db = `shop-${type}.db`;
      const path = join(ws.dbDir, db);
      createSampleDb(path, ROWS, 42);
      const ref = ws.ref(db);
      const common = {
        ref,
        source: ws.source,
        type,
        destinations: [ws.destination],
        stagingDir: ws.stagingDir,
        key,
        node: 'n1',
        task: 't1',
      };

      const points: { chainId: string; backupId: string; level: string; storedBytes: number; checksum: string }[] = [];
      const full = await runBackup({ ...common, level: 'full' });
      points.push({ ...full, checksum: contentChecksum(path) });
      for (const seed of [1, 2]) {
        changeSampleDb(path, seed, 120, 1_200); // 0.1% of rows updated, 1% appended
        const incr = await runBackup({ ...common, level: 'incr' });
        points.push({ ...incr, checksum: contentChecksum(path) });
      }
      expect(points.map((p) => p.level)).toEqual(['full', 'incr', 'incr']);
      expect(new Set(points.map((p) => p.chainId)).size).toBe(1);
      // An incremental stores only what the chain lacks: far less than the full.
      expect(points[1]!.storedBytes).toBeLessThan(points[0]!.storedBytes * 0.75);
      expect(points[2]!.storedBytes).toBeLessThan(points[0]!.storedBytes * 0.75);
      expect(new Set(points.map((p) => p.checksum)).size).toBe(3);

      for (const point of points) {
        const target = `restored-${type}-${point.level}-${points.indexOf(point)}`;
        const restored = await restoreBackup({
          ...common,
          from: ws.destination,
          chainId: point.chainId,
          backupId: point.backupId,
          target,
          cacheDir: ws.cacheDir,
        });
        expect(contentChecksum(restored.location)).toBe(point.checksum);
        const check = new Database(restored.location, { readonly: true });
        expect(check.pragma('integrity_check', { simple: true })).toBe('ok');
        const indexes = check
          .prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL ORDER BY name")
          .pluck()
          .all();
        expect(indexes).toEqual(['customers_email', 'events_by_kind', 'orders_by_customer']);
        expect(check.prepare('SELECT count(*) FROM orders').pluck().get()).toBeGreaterThanOrEqual(ROWS);
        check.close();
        const verified = await verifyBackup({
          ref,
          from: ws.destination,
          chainId: point.chainId,
          backupId: point.backupId,
          key,
        });
        expect(verified.chunks).toBeGreaterThan(0);
      }
      // Nothing is left in staging once a run is published.
      expect(existsSync(ws.stagingDir) ? readdirSync(ws.stagingDir) : []).toEqual([]);
    });
  }
});
