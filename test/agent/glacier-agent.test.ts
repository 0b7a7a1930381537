// Issue 3's Glacier pieces end to end: a real `backupd` process with tasks that publish to a local folder
// and to a Glacier vault on moto, driven by the real `backupctl`. Glacier cannot list, so everything the
// agent does there goes through the archive ids its runs record in the unit's state: reuse by the next
// run, listing, restore through retrieval jobs, retention of whole chains and of failed runs' orphans.
// The API does not show those ids, so the test reads them from the agent's store file (read-only), and
// checks the vault itself with a moto inventory job (moto computes its archive list when it is fetched).

import { existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  CreateVaultCommand,
  DescribeJobCommand,
  GetJobOutputCommand,
  type GlacierClient,
  InitiateJobCommand,
} from '@aws-sdk/client-glacier';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { changeSampleDb, contentChecksum, createSampleDb } from '../../src/cli/sample-db.js';
import { STATE_FILE } from '../../src/cluster/local-store.js';
import type { UnitStatus } from '../../src/cluster/store.js';
import { createGlacierClient, glacier } from '../../src/uploader/glacier.js';
import { type AgentProcess, ctl, eventually, startAgent } from '../harness/agent.js';
import { type MotoServer, startMoto } from '../harness/moto.js';
import { tempDir } from '../harness/process.js';

const TOKEN = 'glacier-e2e-token-0123456789';
const auth = { BACKUPD_TOKEN: TOKEN };
const DB = 'main/shop.db';

interface DestinationJson {
  destination: string;
  ok: boolean;
  uploadedBytes: number;
  reusedPacks: number;
  error: string;
}

interface RunJson {
  runId: string;
  level: string;
  outcome: string;
  chainId: string;
  backupId: string;
  storedBytes: number;
  error: string;
  destinations: DestinationJson[];
}

interface ChainJson {
  chainId: string;
  backups: string[];
}

/** Every file under `dir`, relative, sorted. */
function filesUnder(dir: string, prefix = ''): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .flatMap((name) => {
      const path = join(dir, name);
      return statSync(path).isDirectory() ? filesUnder(path, `${prefix}${name}/`) : [`${prefix}${name}`];
    })
    .sort();
}

/** The chain id in an object key `<cluster>/<source>/<db>/<chain>/...` (src/layout.ts). */
const chainOf = (key: string) => key.split('/')[3];

/** Object key -> archive id, as the agent recorded them for one destination of one unit. */
function recordedRefs(agent: AgentProcess, task: string, destination: string): Record<string, string> {
  const db = new Database(join(agent.dataDir, STATE_FILE), { readonly: true, fileMustExist: true });
  try {
    const row = db.prepare('SELECT status FROM units WHERE task = ? AND database = ?').get(task, DB) as
      | { status: string }
      | undefined;
    return row ? ((JSON.parse(row.status) as UnitStatus).refs[destination] ?? {}) : {};
  } finally {
    db.close();
  }
}

/** The archive ids the vault holds now, through an inventory-retrieval job (about 2 s at moto). */
async function archivesIn(client: GlacierClient, vaultName: string): Promise<Set<string>> {
  const vault = { vaultName, accountId: '-' };
  const started = await client.send(
    new InitiateJobCommand({ ...vault, jobParameters: { Type: 'inventory-retrieval', Tier: 'Expedited' } }),
  );
  const jobId = started.jobId!;
  await eventually(
    `inventory job ${jobId}`,
    async () => ((await client.send(new DescribeJobCommand({ ...vault, jobId }))).Completed ? true : undefined),
    20_000,
    250,
  );
  const output = await client.send(new GetJobOutputCommand({ ...vault, jobId }));
  const inventory = JSON.parse(await output.body!.transformToString()) as { ArchiveList: { ArchiveId: string }[] };
  return new Set(inventory.ArchiveList.map((a) => a.ArchiveId));
}

describe('backupd with a Glacier destination (moto)', () => {
  const dir = tempDir('glacier-agent');
  const dbDir = join(dir.path, 'dbs');
  const keyFile = join(dir.path, 'key');
  let moto: MotoServer;
  let admin: GlacierClient;
  let agent: AgentProcess;

  const glacierDest = (vault: string) => ({
    name: 'vault',
    kind: 'glacier',
    config: {
      vault,
      endpoint: moto.endpoint,
      accessKeyId: moto.accessKeyId,
      secretAccessKey: moto.secretAccessKey,
      retrievalTier: 'Expedited',
      pollIntervalMs: 250,
    },
  });
  const localDest = (path: string) => ({ name: 'disk', kind: 'local', config: { path } });

  async function createTask(name: string, destinations: unknown[], retention: Record<string, number>) {
    const file = join(dir.path, `${name}.json`);
    writeFileSync(
      file,
      JSON.stringify({
        name,
        target: { databases: [DB] },
        type: 'backup',
        // Never due during the test: every run here is a "backup now".
        schedule: { full: '0 0 1 1 *' },
        destinations,
        retention,
        // Encrypted: every chain gets its own keys, so no two chains upload byte-identical archives
        // (moto names an archive by the MD5 of its body; real Glacier gives every upload a new id).
        encrypted: true,
      }),
    );
    const created = await ctl(agent.address, ['task', 'create', '--file', file, '--key-file', keyFile], auth);
    expect(created.code, created.stderr).toBe(0);
  }

  /** "backup now", wait for the run to end, and return it as `run get --json` shows it. */
  async function backupNow(task: string, level: 'full' | 'incr'): Promise<RunJson> {
    const now = await ctl(agent.address, ['--json', 'backup', 'now', task, `--${level}`], auth);
    expect(now.code, now.stderr).toBe(0);
    const runId = (now.json as { runs: RunJson[] }).runs[0]!.runId;
    await ctl(agent.address, ['run', 'watch', runId], auth);
    const run = await ctl(agent.address, ['--json', 'run', 'get', runId], auth);
    expect(run.code, run.stderr).toBe(0);
    return run.json as RunJson;
  }

  async function chainsAt(task: string, destination: string): Promise<ChainJson[]> {
    const listed = await ctl(
      agent.address,
      ['--json', 'backups', 'list', '--task', task, '--destination', destination, '--database', DB],
      auth,
    );
    expect(listed.code, listed.stderr).toBe(0);
    return (listed.json as { chains: ChainJson[] }).chains.map((c) => ({ chainId: c.chainId, backups: c.backups }));
  }

  async function createVault(): Promise<string> {
    const name = `agent-${Math.random().toString(16).slice(2, 10)}`;
    await admin.send(new CreateVaultCommand({ vaultName: name, accountId: '-' }));
    return name;
  }

  const at = (run: RunJson, destination: string) => run.destinations.find((d) => d.destination === destination)!;

  beforeAll(async () => {
    mkdirSync(dbDir, { recursive: true });
    createSampleDb(join(dbDir, 'shop.db'), 3_000, 3);
    writeFileSync(keyFile, 'a glacier e2e encryption key\n');
    moto = await startMoto();
    admin = createGlacierClient(
      glacier.parseConfig(
        { vault: 'admin', endpoint: moto.endpoint, accessKeyId: 'x', secretAccessKey: 'y' },
        'glacier',
      ),
    );
    agent = await startAgent({
      dir: dir.path,
      token: TOKEN,
      sources: [{ name: 'main', engine: 'sqlite', config: { path: dbDir } }],
    });
  });
  afterAll(async () => {
    await agent?.stop();
    admin?.destroy();
    await moto?.stop();
    dir.remove();
  });

  it('records archive ids, reuses them, lists, restores and applies retention at the vault', async () => {
    const vault = await createVault();
    const disk = join(dir.path, 'disk');
    await createTask('vaulted', [localDest(disk), glacierDest(vault)], { keepChains: 1 });

    // 1. A full: every pack and the manifest become archives, and their ids are in the unit's state.
    const full = await backupNow('vaulted', 'full');
    expect(full.outcome, full.error).toBe('succeeded');
    expect(at(full, 'vault')).toMatchObject({ ok: true, reusedPacks: 0 });
    expect(at(full, 'vault').uploadedBytes).toBe(full.storedBytes);
    const fullRefs = recordedRefs(agent, 'vaulted', 'vault');
    const fullPacks = Object.keys(fullRefs).filter((k) => k.endsWith('.pack'));
    expect(fullPacks.length).toBeGreaterThan(0);
    expect(Object.keys(fullRefs).filter((k) => k.endsWith('.manifest'))).toEqual([
      expect.stringContaining(`/${full.chainId}/${full.backupId}`),
    ]);
    expect(Object.keys(fullRefs).every((k) => chainOf(k) === full.chainId)).toBe(true);
    // The unit has no refs for the local folder: it can be listed.
    expect(recordedRefs(agent, 'vaulted', 'disk')).toEqual({});

    // 2. An incremental of the same chain: the full's packs are reused through the recorded ids, only
    //    the new pack goes up.
    const checksumBefore = contentChecksum(join(dbDir, 'shop.db'));
    changeSampleDb(join(dbDir, 'shop.db'), 4, 30, 200);
    const checksumAfter = contentChecksum(join(dbDir, 'shop.db'));
    expect(checksumAfter).not.toBe(checksumBefore);
    const incr = await backupNow('vaulted', 'incr');
    expect(incr.outcome, incr.error).toBe('succeeded');
    expect(incr.backupId).toMatch(/-incr$/);
    expect(incr.chainId).toBe(full.chainId);
    expect(at(incr, 'vault').reusedPacks).toBe(fullPacks.length);
    expect(at(incr, 'vault').uploadedBytes).toBe(incr.storedBytes);
    expect(incr.storedBytes).toBeGreaterThan(0);
    const incrRefs = recordedRefs(agent, 'vaulted', 'vault');
    expect(incrRefs).toMatchObject(fullRefs); // the full's archive ids kept as they were
    expect(Object.keys(incrRefs).filter((k) => k.endsWith('.manifest'))).toHaveLength(2);

    // 3. Listing the vault (from the recorded ids) shows what the local folder (listed) holds.
    const expected = [{ chainId: full.chainId, backups: [full.backupId, incr.backupId] }];
    expect(await chainsAt('vaulted', 'vault')).toEqual(expected);
    expect(await chainsAt('vaulted', 'disk')).toEqual(expected);

    // 4. Restore the incremental from the vault alone: retrieval jobs for its manifest and packs.
    const restored = await ctl(
      agent.address,
      [
        'restore',
        '--task',
        'vaulted',
        '--destination',
        'vault',
        '--database',
        DB,
        '--chain',
        incr.chainId,
        '--backup',
        incr.backupId,
        '--target',
        'from-vault.db',
      ],
      auth,
    );
    expect(restored.code, restored.stderr).toBe(0);
    expect(contentChecksum(join(dbDir, 'from-vault.db'))).toBe(checksumAfter);

    // 5. A second full starts a second chain; keepChains 1 deletes the first at both destinations.
    changeSampleDb(join(dbDir, 'shop.db'), 5, 10, 50);
    const second = await backupNow('vaulted', 'full');
    expect(second.outcome, second.error).toBe('succeeded');
    expect(second.chainId).not.toBe(full.chainId);
    const kept = recordedRefs(agent, 'vaulted', 'vault');
    expect(Object.keys(kept).length).toBeGreaterThan(0);
    expect(Object.keys(kept).every((k) => chainOf(k) === second.chainId)).toBe(true);
    // The vault itself holds exactly the archives of the kept chain: the first chain's are gone.
    const archives = await archivesIn(admin, vault);
    expect([...archives].sort()).toEqual(Object.values(kept).sort());
    for (const id of Object.values(incrRefs)) expect(archives.has(id)).toBe(false);
    const onlySecond = [{ chainId: second.chainId, backups: [second.backupId] }];
    expect(await chainsAt('vaulted', 'vault')).toEqual(onlySecond);
    expect(await chainsAt('vaulted', 'disk')).toEqual(onlySecond);
    expect(filesUnder(disk).some((f) => f.includes(full.chainId))).toBe(false);
  }, 120_000);

  it('a vault that does not exist fails the run and publishes nothing at the local folder', async () => {
    const disk = join(dir.path, 'lost-disk');
    await createTask('lost', [localDest(disk), glacierDest('no-such-vault')], { keepChains: 1 });
    const run = await backupNow('lost', 'full');
    expect(run.outcome).toBe('failed');
    expect(run.error).toMatch(/destination vault failed/);
    expect(run.error).toMatch(/glacier destination "vault": put .*\.pack: .*VaultNotFound/);
    expect(at(run, 'vault').ok).toBe(false);
    expect(at(run, 'disk').ok).toBe(true);
    // The local folder got the packs (reused by a later attempt) but no manifest: no backup to be found.
    expect(filesUnder(disk).some((f) => f.endsWith('.pack'))).toBe(true);
    expect(filesUnder(disk).filter((f) => f.endsWith('.manifest'))).toEqual([]);
    expect(await chainsAt('lost', 'disk')).toEqual([]);
    expect(await chainsAt('lost', 'vault')).toEqual([]);
    expect(recordedRefs(agent, 'lost', 'vault')).toEqual({});
  }, 60_000);

  it("keeps the archive ids of a failed run's packs, and retention removes them as orphans", async () => {
    const vault = await createVault();
    // The local folder's path runs through a file: every write there fails until the file is gone.
    const blocker = join(dir.path, 'blocker');
    writeFileSync(blocker, 'not a folder');
    const disk = join(blocker, 'disk');
    // A tiny grace period (0.36 s) so the failed run's packs count as orphans at the next run.
    await createTask('halfway', [localDest(disk), glacierDest(vault)], { keepChains: 1, orphanGraceHours: 0.0001 });

    const failed = await backupNow('halfway', 'full');
    expect(failed.outcome).toBe('failed');
    expect(failed.error).toMatch(/destination disk failed/);
    expect(at(failed, 'vault')).toMatchObject({ ok: true });
    expect(at(failed, 'vault').uploadedBytes).toBeGreaterThan(0);
    // The vault got every pack but no manifest, and the unit keeps the packs' archive ids.
    // (A failed run's record names no chain: the chain is the one its recorded packs belong to.)
    const orphans = recordedRefs(agent, 'halfway', 'vault');
    const orphanKeys = Object.keys(orphans);
    expect(orphanKeys.length).toBeGreaterThan(0);
    const orphanChain = chainOf(orphanKeys[0]!);
    expect(orphanKeys.every((k) => k.endsWith('.pack') && chainOf(k) === orphanChain)).toBe(true);
    expect([...(await archivesIn(admin, vault))].sort()).toEqual(Object.values(orphans).sort());
    expect(await chainsAt('halfway', 'vault')).toEqual([]);

    // The next run succeeds; retention deletes the failed chain's archives from the vault and the refs.
    rmSync(blocker);
    const next = await backupNow('halfway', 'full');
    expect(next.outcome, next.error).toBe('succeeded');
    expect(next.chainId).not.toBe(orphanChain);
    const kept = recordedRefs(agent, 'halfway', 'vault');
    expect(Object.keys(kept).every((k) => chainOf(k) === next.chainId)).toBe(true);
    const archives = await archivesIn(admin, vault);
    expect([...archives].sort()).toEqual(Object.values(kept).sort());
    for (const id of Object.values(orphans)) expect(archives.has(id)).toBe(false);
    expect(await chainsAt('halfway', 'vault')).toEqual([{ chainId: next.chainId, backups: [next.backupId] }]);
  }, 60_000);
});
