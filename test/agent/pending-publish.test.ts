// A task run whose publishing failed keeps its staged backup pending; the unit's next run publishes that same
// backup first (reusing the packs destinations already hold, by stat or by the unit's recorded references),
// then runs as an incremental of its chain. Pending backups too old, damaged, or of a deleted task are dropped.

import { existsSync } from 'node:fs';
import { readdir, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import Database from 'better-sqlite3';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentMetrics } from '../../src/agent/metrics.js';
import { pendingDir, sweepPending } from '../../src/agent/pending.js';
import type { RunContext, RunJob } from '../../src/agent/run-context.js';
import { executeRun } from '../../src/agent/runner.js';
import { listChains } from '../../src/backup/chain.js';
import type { RetentionPolicy } from '../../src/backup/retention.js';
import { readStaged } from '../../src/backup/staged.js';
import { verifyBackup } from '../../src/backup/verify.js';
import { createSampleDb } from '../../src/cli/sample-db.js';
import type { RunRecord, UnitState } from '../../src/cluster/store.js';
import { BackupdError } from '../../src/errors.js';
import type { BackupLevel } from '../../src/layout.js';
import { parseTaskSpec } from '../../src/task.js';
import type {
  Destination,
  DestinationFactory,
  GetOptions,
  ObjectInfo,
  PutOptions,
} from '../../src/uploader/destination.js';
import { LocalDestination, local } from '../../src/uploader/local.js';
import { DestinationRegistry, type DestinationSpec } from '../../src/uploader/registry.js';
import { parseWith, z } from '../../src/validate.js';
import { MemoryStore } from '../support/memory-store.js';
import { type Workspace, workspace } from '../support/workspace.js';

const TASK = 't';
const DB = 'local/shop.db';
const REF = { cluster: 'test', source: 'local', database: 'shop.db' };
const KEY = 'pending publish test key';
const HOUR = 3_600_000;

/** What one destination was asked to store, and which uploads it refuses. */
interface Control {
  /** The key of every upload (put or putFile), in order. */
  puts: string[];
  refuse?: (key: string) => boolean;
}

function upload(control: Control, name: string, key: string): void {
  control.puts.push(key);
  if (control.refuse?.(key)) throw new BackupdError('PERMISSION_DENIED', `${name}: put ${key}: access denied`);
}

/** A real local folder that refuses the uploads its control says (a permanent error: not retried). */
class SwitchableLocal extends LocalDestination {
  constructor(
    name: string,
    root: string,
    private readonly control: Control,
  ) {
    super(name, root);
  }

  override async put(key: string, body: Buffer | (() => Readable), size: number, options?: PutOptions) {
    upload(this.control, this.name, key);
    return super.put(key, body, size, options);
  }

  override async putFile(key: string, path: string, size: number) {
    upload(this.control, this.name, key);
    return super.putFile(key, path, size);
  }
}

/** Archives in memory, found only by the id each put returned (as Glacier): it cannot list or stat. */
class VaultDestination implements Destination {
  readonly kind = 'vault';
  readonly capabilities = { listable: false, rangeReads: false, immediateReads: false, maxObjectSize: 1 << 30 };
  private next = 0;

  constructor(
    readonly name: string,
    private readonly control: Control,
    readonly archives: Map<string, { key: string; data: Buffer }>,
  ) {}

  async put(key: string, body: Buffer | (() => Readable)) {
    upload(this.control, this.name, key);
    const chunks: Buffer[] = [];
    for await (const chunk of Buffer.isBuffer(body) ? Readable.from([body]) : body()) chunks.push(chunk as Buffer);
    this.next += 1;
    const ref = `${this.name}-${this.archives.size}-${this.next}`;
    this.archives.set(ref, { key, data: Buffer.concat(chunks) });
    return { ref };
  }

  async get(key: string, options: GetOptions = {}) {
    const archive = options.ref === undefined ? undefined : this.archives.get(options.ref);
    if (!archive) throw new BackupdError('NOT_FOUND', `vault: get ${key}: no such archive`);
    return Readable.from([archive.data]);
  }

  async stat(): Promise<ObjectInfo | undefined> {
    return undefined;
  }

  // biome-ignore lint/correctness/useYield: throwing before the first item is the whole behaviour (as Glacier)
  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    throw new BackupdError('UNSUPPORTED', `vault: list ${prefix}: vaults cannot be listed`);
  }

  async delete(_key: string, options: { ref?: string } = {}) {
    if (options.ref) this.archives.delete(options.ref);
  }

  async close() {}
}

describe('a backup whose publishing failed', () => {
  let ws: Workspace;
  let store: MemoryStore;
  let now: number;
  let logs: { msg: string; [field: string]: unknown }[];
  let controls: Map<string, Control>;
  let archives: Map<string, { key: string; data: Buffer }>;
  let ctx: RunContext;
  let runs: number;

  beforeEach(async () => {
    ws = await workspace();
    createSampleDb(join(ws.dir, 'dbs', 'shop.db'), 2_000, 7);
    store = new MemoryStore();
    now = Date.parse('2026-03-01T00:00:00Z');
    logs = [];
    controls = new Map();
    archives = new Map();
    runs = 0;
    const switchable: DestinationFactory<unknown> = {
      kind: 'switchable',
      parseConfig: (input, path) => local.parseConfig(input, path),
      redact: (config) => config,
      open: async (name, config) => new SwitchableLocal(name, (config as { path: string }).path, control(name)),
    };
    const vault: DestinationFactory<unknown> = {
      kind: 'vault',
      parseConfig: (input, path) => parseWith(z.strictObject({}), input, 'vault destination', path) as unknown,
      redact: (config) => config,
      open: async (name) => new VaultDestination(name, control(name), archives),
    };
    ctx = {
      cluster: 'test',
      node: 'n1',
      dataDir: join(ws.dir, 'data'),
      store,
      metrics: new AgentMetrics(),
      registry: new DestinationRegistry([switchable, vault], { retry: { sleep: async () => {} } }),
      logger: pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line)) }),
      sourceFor: (name) => (name === 'local' ? ws.source : undefined),
      term: () => 0,
      now: () => new Date(now),
      stopping: () => false,
    };
  });
  afterEach(() => ws.cleanup());

  const folderOf = (name: string) => join(ws.dir, name);
  const disk = (name: string): DestinationSpec => ({ name, kind: 'switchable', config: { path: folderOf(name) } });
  const vaultSpec: DestinationSpec = { name: 'vault', kind: 'vault', config: {} };
  const control = (name: string): Control => {
    if (!controls.has(name)) controls.set(name, { puts: [] });
    return controls.get(name)!;
  };

  function run(destinations: DestinationSpec[], retention?: RetentionPolicy, level: BackupLevel = 'incr') {
    runs += 1;
    const record: RunRecord = {
      runId: `run-${runs}`,
      task: TASK,
      database: DB,
      type: 'backup',
      level,
      trigger: 'schedule',
      outcome: 'queued',
      node: 'n1',
      queuedAt: new Date(now).toISOString(),
      rawBytes: 0,
      storedBytes: 0,
      destinations: [],
    };
    const job: RunJob = {
      id: record.runId,
      unitKey: `${TASK}/${DB}`,
      level,
      record,
      destinations,
      key: KEY,
      retention,
    };
    return executeRun(ctx, job, new AbortController().signal, () => {});
  }

  const unit = async (): Promise<UnitState> => (await store.getUnit(TASK, DB))!;
  /** The restore points each chain at a local destination holds (chains with none left out). */
  const published = async (name: string) =>
    (await listChains(new LocalDestination(name, folderOf(name)), REF))
      .filter((c) => c.backups.length > 0)
      .map((c) => ({ chainId: c.chainId, backups: c.backups }));
  const changeSomeRows = () => {
    const db = new Database(join(ws.dir, 'dbs', 'shop.db'));
    db.exec('UPDATE customers SET balance = balance + 1 WHERE id <= 20');
    db.close();
  };
  const dropped = () => logs.filter((l) => l.msg === 'dropped a pending backup');

  /** Run 1 fails at `failing` as `refuse` says; returns the run, its pending folder and its staged pack keys. */
  async function failedFirstRun(destinations: DestinationSpec[], failing: string, refuse: (key: string) => boolean) {
    control(failing).refuse = refuse;
    const first = await run(destinations);
    expect(first.outcome).toBe('failed');
    const pending = (await unit()).pendingPublish;
    expect(pending).toBeDefined();
    const packKeys = (await readStaged(pending!.folder)).packs.map((p) => p.key);
    expect(packKeys.length).toBeGreaterThan(0);
    control(failing).refuse = undefined;
    for (const c of controls.values()) c.puts.length = 0;
    return { first, pending: pending!, packKeys };
  }

  it.each([
    ['its manifest', (key: string) => key.endsWith('.manifest')],
    ['its packs', (key: string) => key.endsWith('.pack')],
  ])('refused %s: kept, published by the next run with its packs reused', async (_what, refuse) => {
    const { first, pending, packKeys } = await failedFirstRun([disk('a'), disk('b')], 'b', refuse);

    // Nothing was published anywhere, the failed run says what it was, and its staged backup waits aside.
    expect(await published('a')).toEqual([]);
    expect(await published('b')).toEqual([]);
    expect(first).toMatchObject({ level: 'full', errorCode: 'DESTINATION_FAILED' });
    expect(first.error).toMatch(/destination b failed: .*access denied/);
    expect(first.chainId).toMatch(/-backup-n1$/);
    expect(first.backupId).toMatch(/-full$/);
    expect(first.rawBytes).toBeGreaterThan(0);
    expect(first.storedBytes).toBeGreaterThan(0);
    expect(pending).toMatchObject({
      runId: first.runId,
      node: 'n1',
      folder: join(pendingDir(ctx.dataDir), first.runId),
      chainId: first.chainId,
      backupId: first.backupId,
      level: 'full',
      storedBytes: first.storedBytes,
      stagedAt: new Date(now).toISOString(),
    });
    expect(existsSync(join(pending.folder, 'staged.json'))).toBe(true);
    expect(existsSync(join(ctx.dataDir, 'staging', first.runId))).toBe(false);
    // a holds every pack (its uploads succeeded); b holds them too only when it refused just the manifest.
    const aPacks = (await listChains(new LocalDestination('a', folderOf('a')), REF))[0]!.packs.size;
    expect(aPacks).toBe(packKeys.length);

    // The next run, b healthy again: the pending backup is published first, reusing every pack a destination
    // has; the run itself is an incremental of that chain.
    now += HOUR;
    changeSomeRows();
    const second = await run([disk('a'), disk('b')]);
    expect(second.outcome, second.error).toBe('succeeded');
    const bHadPacks = refuse('x.manifest');
    expect(second.pending).toEqual({
      runId: first.runId,
      chainId: first.chainId,
      backupId: first.backupId,
      outcome: 'published',
      destinations: [
        { destination: 'a', ok: true, uploadedBytes: 0, reusedPacks: packKeys.length },
        {
          destination: 'b',
          ok: true,
          uploadedBytes: bHadPacks ? 0 : first.storedBytes,
          reusedPacks: bHadPacks ? packKeys.length : 0,
        },
      ],
    });
    // Counted at the destinations: a never received the first run's packs again, b only if it lacked them.
    expect(control('a').puts.filter((k) => packKeys.includes(k))).toEqual([]);
    expect(
      control('b')
        .puts.filter((k) => packKeys.includes(k))
        .sort(),
    ).toEqual(bHadPacks ? [] : [...packKeys].sort());
    expect(second).toMatchObject({ level: 'incr', chainId: first.chainId });
    expect(second.storedBytes).toBeGreaterThan(0);
    expect(second.storedBytes).toBeLessThan(first.storedBytes);
    for (const name of ['a', 'b']) {
      expect(await published(name)).toEqual([{ chainId: first.chainId, backups: [first.backupId, second.backupId] }]);
      const checked = await verifyBackup({
        ref: REF,
        from: new LocalDestination(name, folderOf(name)),
        chainId: first.chainId!,
        backupId: first.backupId!,
        key: KEY,
      });
      expect(checked.packs).toBe(packKeys.length);
    }

    const after = await unit();
    expect(after.pendingPublish).toBeUndefined();
    expect(after.lastFull).toMatchObject({ runId: first.runId, outcome: 'succeeded', backupId: first.backupId });
    expect(after.lastIncremental).toMatchObject({ runId: second.runId, backupId: second.backupId });
    expect(await readdir(pendingDir(ctx.dataDir))).toEqual([]);
    expect(logs).toContainEqual(
      expect.objectContaining({ msg: 'published a pending backup', run: second.runId, backupId: first.backupId }),
    );
  });

  it('reuses the packs a vault holds through the references the failed run recorded', async () => {
    const { first, packKeys } = await failedFirstRun([disk('a'), vaultSpec], 'a', (k) => k.endsWith('.manifest'));
    // The vault took every pack; only the references the unit keeps can find them again.
    const recorded = (await unit()).refs.vault!;
    expect(Object.keys(recorded).sort()).toEqual([...packKeys].sort());

    now += HOUR;
    const second = await run([disk('a'), vaultSpec]);
    expect(second.outcome, second.error).toBe('succeeded');
    expect(second.pending?.destinations).toContainEqual({
      destination: 'vault',
      ok: true,
      uploadedBytes: 0,
      reusedPacks: packKeys.length,
    });
    expect(control('vault').puts.filter((k) => packKeys.includes(k))).toEqual([]);
    expect(second.chainId).toBe(first.chainId);
    const refs = (await unit()).refs.vault!;
    for (const key of packKeys) expect(refs[key]).toBe(recorded[key]);
    expect(Object.keys(refs).filter((k) => k.endsWith(`${first.backupId}.manifest`))).toHaveLength(1);
  });

  it('is dropped once older than the orphan grace period, and the run starts a new chain', async () => {
    const { first, pending, packKeys } = await failedFirstRun([disk('a'), disk('b')], 'b', (k) =>
      k.endsWith('.manifest'),
    );
    now += 25 * HOUR;
    const second = await run([disk('a'), disk('b')]);
    expect(second.outcome, second.error).toBe('succeeded');
    expect(second.pending).toMatchObject({ runId: first.runId, outcome: 'dropped', destinations: [] });
    expect(second.pending?.error).toMatch(/past the orphan grace period of 24 h/);
    expect(dropped()).toHaveLength(1);
    expect(existsSync(pending.folder)).toBe(false);
    expect((await unit()).pendingPublish).toBeUndefined();
    expect(second.level).toBe('full');
    expect(second.chainId).not.toBe(first.chainId);
    expect(control('b').puts.filter((k) => k.endsWith(`${first.backupId}.manifest`) || packKeys.includes(k))).toEqual(
      [],
    );
    expect(await published('b')).toEqual([{ chainId: second.chainId, backups: [second.backupId] }]);
  });

  it("follows the task's orphan grace period", async () => {
    const { first } = await failedFirstRun([disk('a'), disk('b')], 'b', (k) => k.endsWith('.manifest'));
    now += 25 * HOUR;
    const second = await run([disk('a'), disk('b')], { orphanGraceHours: 48 });
    expect(second.outcome, second.error).toBe('succeeded');
    expect(second.pending?.outcome).toBe('published');
    expect(second.chainId).toBe(first.chainId);
  });

  it.each([
    ['missing', (folder: string) => rm(folder, { recursive: true })],
    ['without a readable description', (folder: string) => writeFile(join(folder, 'staged.json'), '{"truncated')],
    [
      'holding a truncated pack',
      async (folder: string) => {
        const [pack] = (await readStaged(folder)).packs;
        await truncate(pack!.localPath!, 10);
      },
    ],
  ])('is dropped with a log when its folder is %s, and the run goes on', async (_what, damage) => {
    const { first, pending } = await failedFirstRun([disk('a'), disk('b')], 'b', (k) => k.endsWith('.manifest'));
    await damage(pending.folder);
    now += HOUR;
    const second = await run([disk('a'), disk('b')]);
    expect(second.outcome, second.error).toBe('succeeded');
    expect(second.pending).toMatchObject({ runId: first.runId, outcome: 'dropped' });
    expect(dropped()).toEqual([
      expect.objectContaining({ pendingRun: first.runId, reason: expect.stringMatching(/missing|incomplete|bytes/) }),
    ]);
    expect(existsSync(pending.folder)).toBe(false);
    expect((await unit()).pendingPublish).toBeUndefined();
    expect(await published('a')).toEqual([{ chainId: second.chainId, backups: [second.backupId] }]);
  });

  it('stays pending when publishing it fails again, while the run itself still runs', async () => {
    const { first, pending } = await failedFirstRun([disk('a'), disk('b')], 'b', (k) => k.endsWith('.manifest'));
    // b now refuses only that backup's manifest: the retry fails, the run's own (new) backup succeeds.
    const pendingManifest = `${first.backupId}.manifest`;
    control('b').refuse = (k) => k.endsWith(pendingManifest);
    now += HOUR;
    const second = await run([disk('a'), disk('b')]);
    expect(second.outcome, second.error).toBe('succeeded');
    expect(second.pending).toMatchObject({ runId: first.runId, outcome: 'failed' });
    expect(second.pending?.error).toMatch(/destination b failed/);
    expect((await unit()).pendingPublish).toEqual(pending);
    expect(existsSync(join(pending.folder, 'staged.json'))).toBe(true);
    expect(second.chainId).not.toBe(first.chainId);

    // Healthy again: the older backup is published as its own chain; the newer full stays the unit's last.
    control('b').refuse = undefined;
    now += HOUR;
    const third = await run([disk('a'), disk('b')]);
    expect(third.outcome, third.error).toBe('succeeded');
    expect(third.pending?.outcome).toBe('published');
    expect(third.chainId).toBe(second.chainId);
    expect(await published('b')).toEqual([
      { chainId: first.chainId, backups: [first.backupId] },
      { chainId: second.chainId, backups: [second.backupId, third.backupId] },
    ]);
    expect((await unit()).lastFull?.backupId).toBe(second.backupId);
  });

  it('a newer failed backup replaces the pending one', async () => {
    const { pending } = await failedFirstRun([disk('a'), disk('b')], 'b', (k) => k.endsWith('.manifest'));
    control('b').refuse = (k) => k.endsWith('.manifest');
    now += HOUR;
    const second = await run([disk('a'), disk('b')]);
    expect(second.outcome).toBe('failed');
    expect(second.pending?.outcome).toBe('failed');
    const replaced = (await unit()).pendingPublish;
    expect(replaced).toMatchObject({ runId: second.runId, backupId: second.backupId });
    expect(existsSync(pending.folder)).toBe(false);
    expect(existsSync(join(replaced!.folder, 'staged.json'))).toBe(true);
  });

  it('is removed by the sweep once its task is deleted; a folder no unit waits for goes at once', async () => {
    await store.createTask(
      parseTaskSpec(
        {
          name: TASK,
          target: { databases: [DB] },
          type: 'backup',
          schedule: { incremental: '0 * * * *' },
          destinations: [disk('a'), disk('b')],
          encrypted: true,
        },
        ctx.registry,
      ),
      KEY,
    );
    const { pending } = await failedFirstRun([disk('a'), disk('b')], 'b', (k) => k.endsWith('.manifest'));
    const stray = join(pendingDir(ctx.dataDir), 'run-0');
    await writeFile(stray, 'left by a crash');

    await sweepPending(ctx.dataDir, ctx.node, store, ctx.logger);
    expect(existsSync(pending.folder)).toBe(true);
    expect(existsSync(stray)).toBe(false);

    await store.deleteTask(TASK);
    await sweepPending(ctx.dataDir, ctx.node, store, ctx.logger);
    expect(await readdir(pendingDir(ctx.dataDir))).toEqual([]);
    expect(logs.filter((l) => l.msg === 'removed a pending backup no unit waits for')).toHaveLength(2);
  });
});
