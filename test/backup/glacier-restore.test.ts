// A backup published to a local folder and to Glacier (moto) at once, then restored and verified from
// Glacier alone through retrieval jobs, using the archive ids publishing reported.

import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { CreateVaultCommand } from '@aws-sdk/client-glacier';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../../src/backup/backup.js';
import { restoreBackup } from '../../src/backup/restore.js';
import { verifyBackup } from '../../src/backup/verify.js';
import { changeSampleDb, contentChecksum, createSampleDb } from '../../src/cli/sample-db.js';
import type { Destination } from '../../src/uploader/destination.js';
import { createGlacierClient, glacier } from '../../src/uploader/glacier.js';
import { type MotoServer, startMoto } from '../harness/moto.js';
import { type Workspace, workspace } from '../support/workspace.js';

let ws: Workspace;
let moto: MotoServer;
let vault: Destination;

beforeAll(async () => {
  ws = await workspace();
  moto = await startMoto();
  const config = glacier.parseConfig(
    {
      vault: `restore-${randomBytes(4).toString('hex')}`,
      endpoint: moto.endpoint,
      accessKeyId: moto.accessKeyId,
      secretAccessKey: moto.secretAccessKey,
      retrievalTier: 'Expedited',
      pollIntervalMs: 250,
    },
    'glacier',
  );
  const admin = createGlacierClient(config);
  await admin.send(new CreateVaultCommand({ vaultName: config.vault, accountId: '-' }));
  admin.destroy();
  vault = await glacier.open('vault', config);
  createSampleDb(join(ws.dbDir, 'shop.db'), 3_000, 5);
}, 120_000);

afterAll(async () => {
  await vault?.close();
  await moto?.stop();
  ws?.cleanup();
});

describe('Glacier as a destination', () => {
  it('restores and verifies from Glacier alone, through retrieval jobs and the recorded archive ids', async () => {
    const ref = ws.ref('shop.db');
    const result = await runBackup({
      ref,
      source: ws.source,
      type: 'backup',
      level: 'full',
      destinations: [ws.destination, vault],
      stagingDir: ws.stagingDir,
      key: 'k',
      node: 'n1',
      task: 't',
    });
    const refs = result.destinations.find((d) => d.destination === 'vault')!.refs;
    // One archive per pack plus the manifest.
    expect(Object.keys(refs).filter((k) => k.endsWith('.manifest'))).toHaveLength(1);
    expect(Object.keys(refs).filter((k) => k.endsWith('.pack')).length).toBeGreaterThan(0);

    const point = { chainId: result.chainId, backupId: result.backupId };
    await expect(verifyBackup({ ref, from: vault, ...point, key: 'k', refs })).resolves.toMatchObject({
      chunks: expect.any(Number),
    });
    const restored = await restoreBackup({
      ref,
      source: ws.source,
      from: vault,
      ...point,
      target: 'from-glacier',
      key: 'k',
      refs,
      cacheDir: ws.cacheDir,
    });
    expect(contentChecksum(restored.location)).toBe(contentChecksum(join(ws.dbDir, 'shop.db')));
  });

  it('an incremental reuses the archives earlier runs recorded instead of uploading the chain again', async () => {
    const ref = ws.ref('shop.db');
    const common = {
      ref,
      source: ws.source,
      type: 'snapshot' as const,
      destinations: [ws.destination, vault],
      stagingDir: ws.stagingDir,
      key: 'k',
      node: 'n1',
      task: 't',
    };
    const full = await runBackup({ ...common, level: 'full' });
    const fullRefs = full.destinations.find((d) => d.destination === 'vault')!.refs;
    changeSampleDb(join(ws.dbDir, 'shop.db'), 3, 5, 5);
    const incr = await runBackup({ ...common, level: 'incr', knownRefs: { vault: fullRefs } });
    expect(incr.level).toBe('incr');
    const atVault = incr.destinations.find((d) => d.destination === 'vault')!;
    // The full's packs were not sent again; only the incremental's new pack was.
    expect(atVault.reusedPacks).toBe(Object.keys(fullRefs).filter((k) => k.endsWith('.pack')).length);
    expect(atVault.uploadedBytes).toBe(incr.storedBytes);
    const refs = { ...fullRefs, ...atVault.refs };
    const restored = await restoreBackup({
      ref,
      source: ws.source,
      from: vault,
      chainId: incr.chainId,
      backupId: incr.backupId,
      target: 'incr-from-glacier',
      key: 'k',
      refs,
      cacheDir: ws.cacheDir,
    });
    expect(contentChecksum(restored.location)).toBe(contentChecksum(join(ws.dbDir, 'shop.db')));
  });
});
