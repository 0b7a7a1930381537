// Retention on real chains at a local destination: by age and by count, whole chains only, the newest
// chain always kept, manifests removed newest first, orphan packs of failed runs after the grace period.

import { utimesSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../../src/backup/backup.js';
import { listChains } from '../../src/backup/chain.js';
import { restoreBackup } from '../../src/backup/restore.js';
import { applyRetention } from '../../src/backup/retention.js';
import { changeSampleDb, createSampleDb } from '../../src/cli/sample-db.js';
import { packKey } from '../../src/layout.js';
import { LocalDestination } from '../../src/uploader/local.js';
import { type Workspace, workspace } from '../support/workspace.js';

let ws: Workspace;
const ref = () => ws.ref('shop.db');
const DAY = 86_400_000;

beforeAll(async () => {
  ws = await workspace();
  createSampleDb(join(ws.dbDir, 'shop.db'), 5_000, 4);
});
afterAll(() => ws.cleanup());

/** Three chains (full + incremental each), made "days" apart by the injected clock. */
async function threeChains(destination: LocalDestination): Promise<string[]> {
  const base = {
    ref: ref(),
    source: ws.source,
    type: 'backup' as const,
    destinations: [destination],
    stagingDir: ws.stagingDir,
    node: 'n1',
    task: 't',
  };
  const chains: string[] = [];
  for (const day of [1, 5, 9]) {
    const at = (hour: number) => () => new Date(Date.UTC(2026, 10, day, hour));
    const full = await runBackup({ ...base, level: 'full', now: at(1) });
    changeSampleDb(join(ws.dbDir, 'shop.db'), day, 10, 10);
    await runBackup({ ...base, level: 'incr', now: at(2) });
    chains.push(full.chainId);
  }
  return chains;
}

describe('retention', () => {
  it('deletes chains older than the period, whole, and keeps the newest chain however old', async () => {
    const destination = new LocalDestination('r1', join(ws.dir, 'r1'));
    const [oldest, middle, newest] = await threeChains(destination);
    // On Nov 12: the oldest chain's last point is 11 days old, the middle one 7, the newest 3.
    const result = await applyRetention(destination, ref(), { maxAgeDays: 6 }, new Date(Date.UTC(2026, 10, 12)));
    expect(result.deletedChains.sort()).toEqual([oldest, middle].sort());
    expect(result.deletedManifests).toBe(4);
    expect((await listChains(destination, ref())).map((c) => c.chainId)).toEqual([newest]);

    // A year later the newest chain is still there: never delete the last backup.
    const later = await applyRetention(destination, ref(), { maxAgeDays: 6 }, new Date(Date.UTC(2027, 10, 12)));
    expect(later.deletedChains).toEqual([]);
    const left = await listChains(destination, ref());
    expect(left[0]!.backups).toHaveLength(2);
    const restored = await restoreBackup({
      ref: ref(),
      source: ws.source,
      from: destination,
      chainId: newest!,
      backupId: left[0]!.backups[1]!,
      target: 'after-retention',
      cacheDir: ws.cacheDir,
    });
    expect(restored.location).toContain('after-retention.db');
  });

  it('keeps the N newest chains', async () => {
    const destination = new LocalDestination('r2', join(ws.dir, 'r2'));
    const [oldest, middle, newest] = await threeChains(destination);
    const result = await applyRetention(destination, ref(), { keepChains: 2 }, new Date(Date.UTC(2026, 10, 10)));
    expect(result.deletedChains).toEqual([oldest]);
    expect((await listChains(destination, ref())).map((c) => c.chainId)).toEqual([middle, newest]);
  });

  it('removes packs of a failed full only after the grace period', async () => {
    const destination = new LocalDestination('r3', join(ws.dir, 'r3'));
    const [, , newest] = await threeChains(destination);
    const orphanChain = '20261120T000000Z-backup-n1';
    const orphan = packKey(ref(), orphanChain, 'ab'.repeat(32));
    await destination.put(orphan, Buffer.from('half a run'), 10);
    const now = new Date(Date.UTC(2026, 10, 10));
    utimesSync(destination.pathOf(orphan), now, new Date(now.getTime() - 2 * 3_600_000));
    expect((await applyRetention(destination, ref(), { orphanGraceHours: 24 }, now)).deletedPacks).toBe(0);
    utimesSync(destination.pathOf(orphan), now, new Date(now.getTime() - 2 * DAY));
    expect((await applyRetention(destination, ref(), { orphanGraceHours: 24 }, now)).deletedPacks).toBe(1);
    expect(await destination.stat(orphan)).toBeUndefined();
    expect((await listChains(destination, ref())).map((c) => c.chainId)).toContain(newest);
  });
});
