// All-or-nothing publishing through a whole backup run: one destination failing mid-upload leaves no
// manifest anywhere and an error naming it; the retry succeeds and reuses the packs already uploaded.

import { existsSync, readdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../../src/backup/backup.js';
import { listChains } from '../../src/backup/chain.js';
import { restoreBackup } from '../../src/backup/restore.js';
import { publishStaged, StagedPublishError } from '../../src/backup/staged.js';
import { contentChecksum, createSampleDb } from '../../src/cli/sample-db.js';
import { BackupdError, findError } from '../../src/errors.js';
import type { PutOptions } from '../../src/uploader/destination.js';
import { LocalDestination } from '../../src/uploader/local.js';
import { openDestination } from '../../src/uploader/registry.js';
import { withRetry } from '../../src/uploader/retry.js';
import { type Workspace, workspace } from '../support/workspace.js';

/** A real local destination whose n-th put fails (retryable) when `fails(n)` says so, as a server going away would. */
class FailingDestination extends LocalDestination {
  puts = 0;
  constructor(
    name: string,
    root: string,
    public fails: (put: number) => boolean,
  ) {
    super(name, root);
  }
  override async put(key: string, body: Buffer | (() => Readable), size: number, options?: PutOptions) {
    if (this.fails(++this.puts)) throw new BackupdError('UNAVAILABLE', `${this.name}: connection reset by peer`);
    return super.put(key, body, size, options);
  }
  override async putFile(key: string, path: string, size: number) {
    if (this.fails(++this.puts)) throw new BackupdError('UNAVAILABLE', `${this.name}: connection reset by peer`);
    return super.putFile(key, path, size);
  }
}

const failAfter = (okPuts: number) => (put: number) => put > okPuts;

let ws: Workspace;
beforeAll(async () => {
  ws = await workspace();
  createSampleDb(join(ws.dbDir, 'shop.db'), 60_000, 9);
});
afterAll(() => ws.cleanup());

const manifests = (root: string) =>
  existsSync(root) ? readdirSync(root, { recursive: true }).filter((f) => String(f).endsWith('.manifest')) : [];

describe('publishing to several destinations', () => {
  it('fails as a whole when one destination fails, then the retry succeeds and reuses uploaded packs', async () => {
    const a = new LocalDestination('a', join(ws.dir, 'dest-a'));
    const b = new FailingDestination('b', join(ws.dir, 'dest-b'), failAfter(0));
    const c = new LocalDestination('c', join(ws.dir, 'dest-c'));
    const request = {
      ref: ws.ref('shop.db'),
      source: ws.source,
      type: 'backup' as const,
      level: 'full' as const,
      stagingDir: ws.stagingDir,
      key: 'k',
      node: 'n1',
      task: 't',
    };

    const failure = await runBackup({ ...request, destinations: [a, b, c] }).catch((error: BackupdError) => error);
    expect(failure).toMatchObject({
      code: 'DESTINATION_FAILED',
      message: expect.stringMatching(/destination b failed: b: connection reset/),
    });
    for (const root of [a.root, b.root, c.root]) expect(manifests(root)).toEqual([]);
    const staged = findError(failure, StagedPublishError)?.folder as string;
    expect(staged).toEqual(expect.any(String));
    expect(readdirSync(ws.stagingDir)).toHaveLength(1);

    // The retry of the same run: the staged packs and manifest, published again.
    b.fails = () => false;
    const seen: Record<string, { done: number; total: number }> = {};
    const { run, outcomes } = await publishStaged(staged, [a, b, c], {
      onProgress: (_done, _total, byDestination) => Object.assign(seen, structuredClone(byDestination)),
    });
    // Progress per destination ends at its total, whether packs were sent (b) or found there (a, c).
    for (const name of ['a', 'b', 'c']) expect(seen[name]!.done).toBe(seen[name]!.total);
    expect(readdirSync(ws.stagingDir)).toEqual([]);
    for (const root of [a.root, b.root, c.root]) expect(manifests(root)).toHaveLength(1);
    const result = { chainId: run.chainId, backupId: run.backupId };
    const byName = Object.fromEntries(outcomes.map((d) => [d.destination, d]));
    // The failed attempt already put every pack at a and c: they are reused, not sent again.
    expect(byName.a!.reusedPacks).toBeGreaterThan(0);
    expect(byName.a!.uploadedBytes).toBe(0);
    expect(byName.b!.uploadedBytes).toBeGreaterThan(0);

    const restored = await restoreBackup({ ...request, from: b, ...result, target: 'from-b', cacheDir: ws.cacheDir });
    expect(contentChecksum(restored.location)).toBe(contentChecksum(join(ws.dbDir, 'shop.db')));
  });

  it('takes back manifests already written when another destination fails to take its manifest', async () => {
    const a = new LocalDestination('a2', join(ws.dir, 'dest-a2'));
    const b = new FailingDestination('b2', join(ws.dir, 'dest-b2'), failAfter(0));
    // b2 accepts every pack but not the manifest: count the packs first with a dry run at another folder.
    const probe = await runBackup({
      ref: ws.ref('shop.db'),
      source: ws.source,
      type: 'snapshot',
      level: 'full',
      destinations: [new LocalDestination('p', join(ws.dir, 'probe'))],
      stagingDir: ws.stagingDir,
      node: 'n1',
      task: 't',
    });
    const chains = await listChains(new LocalDestination('p', join(ws.dir, 'probe')), ws.ref('shop.db'));
    b.fails = failAfter(chains[0]!.packs.size);
    expect(probe.level).toBe('full');
    await expect(
      runBackup({
        ref: ws.ref('shop.db'),
        source: ws.source,
        type: 'snapshot',
        level: 'full',
        destinations: [a, b],
        stagingDir: ws.stagingDir,
        node: 'n1',
        task: 't',
      }),
    ).rejects.toMatchObject({ code: 'DESTINATION_FAILED', message: expect.stringMatching(/destination b2 failed/) });
    expect(manifests(a.root)).toEqual([]);
    expect(readdirSync(ws.stagingDir)).toHaveLength(1);
    await rm(ws.stagingDir, { recursive: true });
    expect(manifests(b.root)).toEqual([]);
  });

  it('a flaky destination that recovers within its retry budget gives a successful run', async () => {
    const a = new LocalDestination('steady', join(ws.dir, 'steady'));
    // Its first three puts fail with a retryable error, then it works: a server that restarted.
    const flaky = new FailingDestination('flaky', join(ws.dir, 'flaky'), (put) => put <= 3);
    const sleeps: number[] = [];
    const retried = withRetry(flaky, { attempts: 5, sleep: async (ms) => void sleeps.push(ms) });
    const result = await runBackup({
      ref: ws.ref('shop.db'),
      source: ws.source,
      type: 'backup',
      level: 'full',
      destinations: [a, retried],
      stagingDir: ws.stagingDir,
      node: 'n1',
      task: 't',
    });
    expect(result.destinations.every((d) => d.ok)).toBe(true);
    expect(sleeps.length).toBe(3);
    expect(manifests(flaky.root)).toHaveLength(1);
    expect(manifests(a.root)).toHaveLength(1);
  });

  it('a destination that cannot be reached fails the run with its name, and nothing is published anywhere', async () => {
    const a = new LocalDestination('ok-one', join(ws.dir, 'ok-one'));
    const unreachable = await openDestination({
      name: 'gone-s3',
      kind: 's3',
      config: {
        bucket: 'backups',
        region: 'us-east-1',
        endpoint: 'http://127.0.0.1:9',
        forcePathStyle: true,
        accessKeyId: 'a',
        secretAccessKey: 'b',
      },
    });
    const retried = withRetry(unreachable, { attempts: 2, sleep: async () => {} });
    await expect(
      runBackup({
        ref: ws.ref('shop.db'),
        source: ws.source,
        type: 'backup',
        level: 'full',
        destinations: [a, retried],
        stagingDir: ws.stagingDir,
        node: 'n1',
        task: 't',
      }),
    ).rejects.toMatchObject({
      code: 'DESTINATION_FAILED',
      message: expect.stringMatching(/destination gone-s3 failed/),
    });
    expect(manifests(a.root)).toEqual([]);
    await unreachable.close();
    await rm(ws.stagingDir, { recursive: true, force: true });
  });
});
