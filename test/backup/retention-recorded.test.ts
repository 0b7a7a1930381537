// Retention and listing at a destination that cannot list (Glacier on moto), from the object keys and
// archive ids publishing reported: whole chains go, newest kept, orphan packs of failed runs after the
// grace period, and what was deleted is observed on the server through a vault inventory job.

import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import {
  CreateVaultCommand,
  DescribeJobCommand,
  GetJobOutputCommand,
  type GlacierClient,
  InitiateJobCommand,
} from '@aws-sdk/client-glacier';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../../src/backup/backup.js';
import { chainsAt, chainsFromRefs, listChains } from '../../src/backup/chain.js';
import { restoreBackup } from '../../src/backup/restore.js';
import { applyRetention, RetentionStopped } from '../../src/backup/retention.js';
import { changeSampleDb, contentChecksum, createSampleDb } from '../../src/cli/sample-db.js';
import { BackupdError, findError } from '../../src/errors.js';
import { chainIdFor, chainPrefix, manifestKey, packKey } from '../../src/layout.js';
import type { Destination, DestinationCapabilities, ObjectInfo, PutResult } from '../../src/uploader/destination.js';
import { createGlacierClient, glacier } from '../../src/uploader/glacier.js';
import { LocalDestination } from '../../src/uploader/local.js';
import { PublishError } from '../../src/uploader/publish.js';
import { type MotoServer, startMoto } from '../harness/moto.js';
import { type Workspace, workspace } from '../support/workspace.js';

let ws: Workspace;
let moto: MotoServer;
const ref = () => ws.ref('shop.db');
const DAY = 86_400_000;
const HOUR = 3_600_000;

beforeAll(async () => {
  ws = await workspace();
  moto = await startMoto();
  createSampleDb(join(ws.dbDir, 'shop.db'), 5_000, 4);
}, 120_000);

afterAll(async () => {
  await moto?.stop();
  ws?.cleanup();
});

interface Vault {
  destination: Destination;
  /** A second client, for looking at the vault the way an operator would, not through the driver. */
  admin: GlacierClient;
  name: string;
  close(): Promise<void>;
}

/** A fresh vault on moto per test, so archive counts belong to that test alone. */
async function openVault(): Promise<Vault> {
  const config = glacier.parseConfig(
    {
      vault: `retention-${randomBytes(4).toString('hex')}`,
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
  const destination = await glacier.open('cold', config);
  return {
    destination,
    admin,
    name: config.vault,
    close: async () => {
      await destination.close();
      admin.destroy();
    },
  };
}

/**
 * The archive ids the vault holds, from an inventory-retrieval job: the server's own account of its
 * contents (moto finishes an Expedited job after 2 s; real Glacier takes hours and has no Expedited
 * inventories, which is why backupd never does this).
 */
async function archivesIn(vault: Vault): Promise<Set<string>> {
  const at = { vaultName: vault.name, accountId: '-' };
  const { jobId } = await vault.admin.send(
    new InitiateJobCommand({
      ...at,
      jobParameters: { Type: 'inventory-retrieval', Tier: 'Expedited', Format: 'JSON' },
    }),
  );
  for (let waited = 0; ; waited += 250) {
    const job = await vault.admin.send(new DescribeJobCommand({ ...at, jobId }));
    if (job.Completed) break;
    if (waited > 30_000) throw new Error(`inventory job ${jobId} did not finish`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  const output = await vault.admin.send(new GetJobOutputCommand({ ...at, jobId }));
  const inventory = JSON.parse((await output.body?.transformToString()) ?? '{}') as {
    ArchiveList?: { ArchiveId: string }[];
  };
  return new Set((inventory.ArchiveList ?? []).map((a) => a.ArchiveId));
}

/**
 * Three encrypted chains (full + incremental each) published to a local folder and Glacier, made days
 * apart by the injected clock. Encrypted, so every chain's packs differ (moto names an archive by the
 * MD5 of its bytes: equal bytes in two chains would be one archive there). Each incremental gets the
 * refs recorded so far, as the agent passes them, so nothing is uploaded to Glacier twice. Returns the
 * chains and every key -> archive id recorded for Glacier, as the unit's status would hold them.
 */
async function threeChains(
  local: Destination,
  vault: Destination,
): Promise<{ chains: { chainId: string; backupIds: string[] }[]; recorded: Record<string, string> }> {
  const base = {
    ref: ref(),
    source: ws.source,
    type: 'backup' as const,
    destinations: [local, vault],
    stagingDir: ws.stagingDir,
    key: 'k',
    node: 'n1',
    task: 't',
  };
  const recorded: Record<string, string> = {};
  const record = (result: Awaited<ReturnType<typeof runBackup>>) =>
    Object.assign(recorded, result.destinations.find((d) => d.destination === vault.name)!.refs);
  const chains: { chainId: string; backupIds: string[] }[] = [];
  for (const day of [1, 5, 9]) {
    const at = (hour: number) => () => new Date(Date.UTC(2026, 10, day, hour));
    const full = await runBackup({ ...base, level: 'full', now: at(1) });
    record(full);
    changeSampleDb(join(ws.dbDir, 'shop.db'), day, 10, 10);
    const incr = await runBackup({ ...base, level: 'incr', now: at(2), knownRefs: { [vault.name]: { ...recorded } } });
    expect(incr.chainId).toBe(full.chainId);
    record(incr);
    chains.push({ chainId: full.chainId, backupIds: [full.backupId, incr.backupId] });
  }
  return { chains, recorded };
}

const keysUnder = (recorded: Record<string, string>, chainIds: string[]) =>
  Object.keys(recorded)
    .filter((key) => chainIds.some((chainId) => key.startsWith(chainPrefix(ref(), chainId))))
    .sort();

const without = (recorded: Record<string, string>, keys: string[]) =>
  Object.fromEntries(Object.entries(recorded).filter(([key]) => !keys.includes(key)));

describe('chains from recorded refs', () => {
  it('have the shape listChains gives, with sizes 0 and times from the ids', () => {
    const chainId = '20261101T010000Z-snapshot-n1';
    const pack = packKey(ref(), chainId, 'cd'.repeat(32));
    const full = manifestKey(ref(), chainId, '20261101T010000Z-full');
    const incr = manifestKey(ref(), chainId, '20261101T020000Z-incr');
    const other = packKey(ws.ref('other.db'), chainId, 'ef'.repeat(32));
    const listing = chainsFromRefs(ref(), { [incr]: 'a2', [pack]: 'a3', [full]: 'a1', [other]: 'a4', 'x/y': 'a5' });
    expect(listing).toHaveLength(1);
    const chain = listing[0]!;
    expect(chain).toMatchObject({ chainId, type: 'snapshot', bytes: 0, newestAt: Date.UTC(2026, 10, 1, 2) });
    expect(chain.backups).toEqual(['20261101T010000Z-full', '20261101T020000Z-incr']);
    expect(chain.manifests.get('20261101T020000Z-incr')).toEqual({
      key: incr,
      size: 0,
      modifiedAt: new Date(Date.UTC(2026, 10, 1, 2)),
    });
    // A pack's time is unknown: its chain's (the full's start) stands in.
    expect(chain.packs.get('cd'.repeat(32))).toEqual({
      key: pack,
      size: 0,
      modifiedAt: new Date(Date.UTC(2026, 10, 1, 1)),
    });
  });

  it('a destination that cannot list needs them: UNSUPPORTED without', async () => {
    const vault = await openVault();
    try {
      await expect(chainsAt(vault.destination, ref())).rejects.toMatchObject({ code: 'UNSUPPORTED' });
      await expect(applyRetention(vault.destination, ref(), { keepChains: 1 })).rejects.toMatchObject({
        code: 'UNSUPPORTED',
      });
      expect(await chainsAt(vault.destination, ref(), {})).toEqual([]);
    } finally {
      await vault.close();
    }
  });
});

describe('retention at Glacier from recorded refs', () => {
  it('keepChains=1 deletes the two old chains archive by archive; the newest restores from Glacier alone', async () => {
    const vault = await openVault();
    try {
      const local = new LocalDestination('disk', join(ws.dir, 'keep-local'));
      const { chains, recorded } = await threeChains(local, vault.destination);
      const [oldest, middle, newest] = chains.map((c) => c.chainId);

      // What was recorded is what the server holds, and lists the same chains the local copy does.
      const before = await archivesIn(vault);
      expect(before).toEqual(new Set(Object.values(recorded)));
      const shape = (listing: Awaited<ReturnType<typeof listChains>>) =>
        listing.map((c) => ({
          chainId: c.chainId,
          type: c.type,
          backups: c.backups,
          packs: [...c.packs.keys()].sort(),
        }));
      expect(shape(await chainsAt(vault.destination, ref(), recorded))).toEqual(shape(await listChains(local, ref())));

      const result = await applyRetention(
        vault.destination,
        ref(),
        { keepChains: 1 },
        new Date(Date.UTC(2026, 10, 10)),
        recorded,
      );
      expect(result.deletedChains.sort()).toEqual([oldest, middle].sort());
      expect(result.deletedManifests).toBe(4);
      const gone = keysUnder(recorded, [oldest!, middle!]);
      expect([...result.deletedKeys].sort()).toEqual(gone);
      expect(result.deletedPacks).toBe(gone.filter((k) => k.endsWith('.pack')).length);
      expect(result.freedBytes).toBe(0); // recorded refs carry no sizes
      // Within each chain the manifests went first, newest first: an interruption leaves a shorter chain.
      const firstOfOldest = result.deletedKeys.filter((k) => k.startsWith(chainPrefix(ref(), oldest!))).slice(0, 2);
      expect(firstOfOldest).toEqual([...chains[0]!.backupIds].reverse().map((b) => manifestKey(ref(), oldest!, b)));

      // The server no longer holds those archives, and holds every other one.
      const remaining = without(recorded, result.deletedKeys);
      expect(await archivesIn(vault)).toEqual(new Set(Object.values(remaining)));
      expect(chainsFromRefs(ref(), remaining).map((c) => [c.chainId, c.backups.length])).toEqual([[newest, 2]]);

      const restored = await restoreBackup({
        ref: ref(),
        source: ws.source,
        from: vault.destination,
        chainId: newest!,
        backupId: chains[2]!.backupIds[1]!,
        target: 'kept-on-glacier',
        key: 'k',
        refs: remaining,
        cacheDir: join(ws.cacheDir, 'keep'),
      });
      expect(contentChecksum(restored.location)).toBe(contentChecksum(join(ws.dbDir, 'shop.db')));
    } finally {
      await vault.close();
    }
  }, 180_000);

  it('maxAgeDays judges chains by their newest restore point against the injected now, keeping the newest', async () => {
    const vault = await openVault();
    try {
      const local = new LocalDestination('disk', join(ws.dir, 'age-local'));
      const { chains, recorded } = await threeChains(local, vault.destination);
      const [oldest, middle, newest] = chains.map((c) => c.chainId);

      // On Nov 12 the oldest chain's last point is 11 days old, the middle one's 7, the newest one's 3.
      const first = await applyRetention(
        vault.destination,
        ref(),
        { maxAgeDays: 8 },
        new Date(Date.UTC(2026, 10, 12)),
        recorded,
      );
      expect(first.deletedChains).toEqual([oldest]);
      expect([...first.deletedKeys].sort()).toEqual(keysUnder(recorded, [oldest!]));
      const afterFirst = without(recorded, first.deletedKeys);

      // A year later everything is too old, yet the newest chain stays.
      const second = await applyRetention(
        vault.destination,
        ref(),
        { maxAgeDays: 8 },
        new Date(Date.UTC(2027, 10, 12)),
        afterFirst,
      );
      expect(second.deletedChains).toEqual([middle]);
      expect([...second.deletedKeys].sort()).toEqual(keysUnder(recorded, [middle!]));
      const left = without(afterFirst, second.deletedKeys);
      expect(Object.keys(left).sort()).toEqual(keysUnder(recorded, [newest!]));
      expect(await archivesIn(vault)).toEqual(new Set(Object.values(left)));
    } finally {
      await vault.close();
    }
  }, 180_000);

  it('removes the archives of a failed full once its chain id is older than the grace period', async () => {
    const vault = await openVault();
    try {
      // One committed chain, then two fulls that fail at another destination after Glacier took their
      // packs: publishing reports the refs it got in the error, and they are recorded like any other.
      const base = {
        ref: ref(),
        source: ws.source,
        type: 'snapshot' as const,
        stagingDir: join(ws.dir, 'orphan-staging'),
        key: 'k',
        node: 'n1',
        task: 't',
      };
      const committed = await runBackup({
        ...base,
        level: 'full',
        destinations: [vault.destination],
        now: () => new Date(Date.UTC(2026, 10, 19)),
      });
      const recorded: Record<string, string> = { ...committed.destinations[0]!.refs };
      const failedFull = async (at: Date): Promise<string> => {
        const error = await runBackup({
          ...base,
          level: 'full',
          destinations: [vault.destination, new BrokenDestination()],
          now: () => at,
        }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(BackupdError);
        const outcomes = findError(error, PublishError)?.outcomes ?? [];
        const refs = outcomes.find((o) => o.destination === vault.destination.name)!.refs;
        expect(Object.keys(refs).length).toBeGreaterThan(0);
        expect(Object.keys(refs).every((k) => k.endsWith('.pack'))).toBe(true);
        Object.assign(recorded, refs);
        return chainIdFor(at, 'snapshot', 'n1');
      };
      const now = new Date(Date.UTC(2026, 10, 22));
      const oldOrphan = await failedFull(new Date(now.getTime() - 2 * DAY));
      const youngOrphan = await failedFull(new Date(now.getTime() - 2 * HOUR));
      expect(chainsFromRefs(ref(), recorded).map((c) => [c.chainId, c.backups.length])).toEqual([
        [committed.chainId, 1],
        [oldOrphan, 0],
        [youngOrphan, 0],
      ]);
      expect(await archivesIn(vault)).toEqual(new Set(Object.values(recorded)));

      const result = await applyRetention(vault.destination, ref(), { orphanGraceHours: 24 }, now, recorded);
      expect(result.deletedChains).toEqual([]);
      expect(result.deletedManifests).toBe(0);
      expect([...result.deletedKeys].sort()).toEqual(keysUnder(recorded, [oldOrphan]));
      const left = without(recorded, result.deletedKeys);
      expect(await archivesIn(vault)).toEqual(new Set(Object.values(left)));
      expect(chainsFromRefs(ref(), left).map((c) => c.chainId)).toEqual([committed.chainId, youngOrphan]);
    } finally {
      await vault.close();
    }
  }, 180_000);

  it('a delete that fails midway still reports the keys already deleted', async () => {
    const chainIds = ['20261101T010000Z-backup-n1', '20261105T010000Z-backup-n1'];
    const recorded: Record<string, string> = {};
    for (const chainId of chainIds) {
      recorded[manifestKey(ref(), chainId, `${chainId.slice(0, 16)}-full`)] = `m-${chainId}`;
      recorded[packKey(ref(), chainId, 'ab'.repeat(32))] = `p-${chainId}`;
    }
    const destination = new BrokenDestination({ listable: false, failDeleteOf: `p-${chainIds[0]}` });
    const error = await applyRetention(destination, ref(), { keepChains: 1 }, new Date(), recorded).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(RetentionStopped);
    expect(error).toMatchObject({
      code: 'UNAVAILABLE',
      retryable: true,
      deletedKeys: [manifestKey(ref(), chainIds[0]!, `${chainIds[0]!.slice(0, 16)}-full`)],
    });
    expect(destination.deletedRefs).toEqual([`m-${chainIds[0]}`]);
  });
});

describe('retention at a listable destination without recorded refs', () => {
  it('lists and deletes as before, and reports the keys it deleted', async () => {
    const vault = await openVault();
    try {
      const local = new LocalDestination('disk', join(ws.dir, 'listable'));
      const { chains } = await threeChains(local, vault.destination);
      const [oldest, middle, newest] = chains.map((c) => c.chainId);
      const listed = await listChains(local, ref());
      const oldestKeys = [...listed[0]!.manifests.values(), ...listed[0]!.packs.values()].map((o) => o.key).sort();
      const oldestBytes = listed[0]!.bytes;

      const result = await applyRetention(local, ref(), { keepChains: 2 }, new Date(Date.UTC(2026, 10, 10)));
      expect(result.deletedChains).toEqual([oldest]);
      expect([...result.deletedKeys].sort()).toEqual(oldestKeys);
      expect(result.freedBytes).toBe(oldestBytes);
      expect((await listChains(local, ref())).map((c) => c.chainId)).toEqual([middle, newest]);
      for (const key of oldestKeys) expect(await local.stat(key)).toBeUndefined();
    } finally {
      await vault.close();
    }
  }, 180_000);
});

/** A destination that fails: puts always (a run that cannot publish everywhere), deletes of one ref. */
class BrokenDestination implements Destination {
  readonly name = 'broken';
  readonly kind = 'test';
  readonly capabilities: DestinationCapabilities;
  readonly deletedRefs: string[] = [];
  private readonly failDeleteOf: string | undefined;

  constructor(options: { listable?: boolean; failDeleteOf?: string } = {}) {
    this.capabilities = {
      listable: options.listable ?? true,
      rangeReads: true,
      immediateReads: true,
      maxObjectSize: 2 ** 40,
    };
    this.failDeleteOf = options.failDeleteOf;
  }

  async put(key: string): Promise<PutResult> {
    throw new BackupdError('DESTINATION_FAILED', `broken: put ${key}: refused`);
  }
  async get(key: string): Promise<Readable> {
    throw new BackupdError('NOT_FOUND', `broken: get ${key}: nothing here`);
  }
  async stat(): Promise<ObjectInfo | undefined> {
    return undefined;
  }
  async *list(): AsyncIterable<ObjectInfo> {}
  async delete(key: string, options: { ref?: string } = {}): Promise<void> {
    if (options.ref !== undefined && options.ref === this.failDeleteOf) {
      throw new BackupdError('UNAVAILABLE', `broken: delete ${key}: connection reset`);
    }
    if (options.ref !== undefined) this.deletedRefs.push(options.ref);
  }
  async close(): Promise<void> {}
}
