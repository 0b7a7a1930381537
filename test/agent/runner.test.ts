// executeRun() against destinations opened through the registry, as the agent runs them: the references a
// unit records follow what retention really deleted at a vault that cannot list (also when retention stops
// halfway), and a run's destination calls are retried when the error is transient and only then.

import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentMetrics } from '../../src/agent/metrics.js';
import type { RunContext, RunJob } from '../../src/agent/run-context.js';
import { executeRun } from '../../src/agent/runner.js';
import type { RetentionPolicy } from '../../src/backup/retention.js';
import { readStaged } from '../../src/backup/staged.js';
import { createSampleDb } from '../../src/cli/sample-db.js';
import type { RunRecord, UnitState } from '../../src/cluster/store.js';
import { BackupdError } from '../../src/errors.js';
import type { BackupLevel } from '../../src/layout.js';
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
const HOUR = 3_600_000;

/** Archives in memory, as Glacier keeps them: found only by the id each put returned. */
class Vault {
  readonly archives = new Map<string, { key: string; data: Buffer }>();
  private next = 0;
  /** Deletes that still succeed; every later one is refused (not retryable). Unlimited when undefined. */
  deletesLeft: number | undefined;

  newId(): string {
    this.next += 1;
    return `archive-${this.next}`;
  }
}

/** A destination over a Vault: it cannot list and cannot stat by key, so the runner must keep its refs. */
class VaultDestination implements Destination {
  readonly kind = 'vault';
  readonly capabilities = { listable: false, rangeReads: false, immediateReads: false, maxObjectSize: 1 << 30 };

  constructor(
    readonly name: string,
    private readonly vault: Vault,
  ) {}

  async put(key: string, body: Buffer | (() => Readable), size: number) {
    const chunks: Buffer[] = [];
    for await (const chunk of Buffer.isBuffer(body) ? Readable.from([body]) : body()) chunks.push(chunk as Buffer);
    const data = Buffer.concat(chunks);
    if (data.length !== size) throw new BackupdError('DESTINATION_FAILED', `${key}: ${data.length} != ${size} bytes`);
    const ref = this.vault.newId();
    this.vault.archives.set(ref, { key, data });
    return { ref };
  }

  async get(key: string, options: GetOptions = {}) {
    const archive = options.ref === undefined ? undefined : this.vault.archives.get(options.ref);
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

  async delete(key: string, options: { ref?: string } = {}) {
    if (this.vault.deletesLeft === 0) throw new BackupdError('PERMISSION_DENIED', `vault: delete ${key}: denied`);
    if (this.vault.deletesLeft !== undefined) this.vault.deletesLeft -= 1;
    if (options.ref) this.vault.archives.delete(options.ref);
  }

  async close() {}
}

/** A real local folder whose uploads (put and putFile alike) fail as `failure(attempt)` says. */
class FlakyLocal extends LocalDestination {
  constructor(
    name: string,
    root: string,
    private readonly uploads: Uploads,
  ) {
    super(name, root);
  }

  override async put(key: string, body: Buffer | (() => Readable), size: number, options?: PutOptions) {
    this.fail(key);
    return super.put(key, body, size, options);
  }

  override async putFile(key: string, path: string, size: number) {
    this.fail(key);
    return super.putFile(key, path, size);
  }

  private fail(key: string): void {
    this.uploads.attempts.push(key);
    const error = this.uploads.failure(this.uploads.attempts.length);
    if (error) throw error;
  }
}

interface Uploads {
  /** The key of every upload attempt, in order. */
  attempts: string[];
  failure: (attempt: number) => BackupdError | undefined;
}

const emptyConfig = (input: unknown, path: string) =>
  parseWith(z.strictObject({}), input, 'vault destination', path) as unknown;

function vaultKind(vault: Vault): DestinationFactory<unknown> {
  return {
    kind: 'vault',
    parseConfig: emptyConfig,
    redact: (config) => config,
    open: async (name) => new VaultDestination(name, vault),
  };
}

function flakyKind(uploads: Uploads): DestinationFactory<unknown> {
  return {
    kind: 'flaky',
    parseConfig: (input, path) => local.parseConfig(input, path),
    redact: (config) => config,
    open: async (name, config) => new FlakyLocal(name, (config as { path: string }).path, uploads),
  };
}

const unavailable = () => new BackupdError('UNAVAILABLE', 'connection reset by peer');
const denied = () => new BackupdError('PERMISSION_DENIED', 'access denied');

describe('executeRun', () => {
  let ws: Workspace;
  let store: MemoryStore;
  let now: number;
  /** Backoff delays the registry's retries asked for (none is waited). */
  let sleeps: number[];
  let logs: { msg: string; [field: string]: unknown }[];

  beforeEach(async () => {
    ws = await workspace();
    createSampleDb(join(ws.dbDir, 'shop.db'), 2_000, 7);
    store = new MemoryStore();
    now = Date.parse('2026-03-01T00:00:00Z');
    sleeps = [];
    logs = [];
  });
  afterEach(() => ws.cleanup());

  function context(factory: DestinationFactory<unknown>): RunContext {
    const registry = new DestinationRegistry([factory], {
      retry: { random: () => 0.5, sleep: async (ms) => void sleeps.push(ms) },
    });
    return {
      cluster: 'test',
      node: 'n1',
      dataDir: join(ws.dir, 'data'),
      store,
      metrics: new AgentMetrics(),
      registry,
      logger: pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line)) }),
      sourceFor: (name) => (name === 'local' ? ws.source : undefined),
      term: () => 0,
      now: () => new Date(now),
      stopping: () => false,
    };
  }

  let runs = 0;
  function run(
    ctx: RunContext,
    destinations: DestinationSpec[],
    retention?: RetentionPolicy,
    level: BackupLevel = 'full',
  ): Promise<RunRecord> {
    runs += 1;
    const record: RunRecord = {
      runId: `run-${runs}`,
      task: TASK,
      database: DB,
      type: 'backup',
      level,
      trigger: 'now',
      outcome: 'queued',
      node: 'n1',
      queuedAt: new Date(now).toISOString(),
      rawBytes: 0,
      storedBytes: 0,
      destinations: [],
    };
    const job: RunJob = { id: record.runId, unitKey: `${TASK}/${DB}`, level, record, destinations, retention };
    return executeRun(ctx, job, new AbortController().signal, () => {});
  }

  const unit = async (): Promise<UnitState> => (await store.getUnit(TASK, DB))!;
  const chainOf = (key: string) => key.split('/')[3];

  describe('retention at a vault that cannot list', () => {
    const vaultSpec: DestinationSpec = { name: 'vault', kind: 'vault', config: {} };

    it('drops the refs of what a failed retention deleted, keeps the rest, and the next run finishes', async () => {
      const vault = new Vault();
      const ctx = context(vaultKind(vault));

      const first = await run(ctx, [vaultSpec]);
      expect(first.outcome, first.error).toBe('succeeded');
      const firstRefs = { ...(await unit()).refs.vault };
      const firstManifest = Object.keys(firstRefs).find((k) => k.endsWith('.manifest'))!;
      const firstPacks = Object.keys(firstRefs).filter((k) => k.endsWith('.pack'));
      expect(firstManifest).toBeDefined();
      expect(firstPacks.length).toBeGreaterThan(0);

      // A second chain; keepChains 1 retires the first. The vault takes one delete (the manifest goes first,
      // so what stays still restores nothing by mistake) and refuses the next, a pack's.
      now += HOUR;
      vault.deletesLeft = 1;
      const second = await run(ctx, [vaultSpec], { keepChains: 1 });
      expect(second.outcome, second.error).toBe('succeeded');
      expect(second.chainId).not.toBe(first.chainId);
      expect(vault.archives.has(firstRefs[firstManifest]!)).toBe(false);

      const refs = (await unit()).refs.vault!;
      // The deleted manifest is no longer recorded: no listing shows that restore point, no run reuses it.
      expect(refs).not.toHaveProperty([firstManifest]);
      // The packs that were not deleted keep their archive ids, so a later retention can still remove them.
      for (const key of firstPacks) {
        expect(refs[key]).toBe(firstRefs[key]);
        expect(vault.archives.has(refs[key]!)).toBe(true);
      }
      const secondKeys = Object.keys(refs).filter((k) => chainOf(k) === second.chainId);
      expect(secondKeys.some((k) => k.endsWith('.manifest'))).toBe(true);
      expect(Object.keys(refs).sort()).toEqual([...firstPacks, ...secondKeys].sort());
      expect(logs).toContainEqual(
        expect.objectContaining({ msg: 'retention failed', destination: 'vault', deletedObjects: 1 }),
      );

      // Past the orphan grace period (24 h), the next run's retention removes the first chain's packs and
      // the second chain; the recorded refs and the vault then hold exactly the newest chain.
      now += 25 * HOUR;
      vault.deletesLeft = undefined;
      const third = await run(ctx, [vaultSpec], { keepChains: 1 });
      expect(third.outcome, third.error).toBe('succeeded');
      const kept = (await unit()).refs.vault!;
      expect(Object.keys(kept).every((k) => chainOf(k) === third.chainId)).toBe(true);
      expect([...vault.archives.keys()].sort()).toEqual(Object.values(kept).sort());
    });
  });

  describe('retries of destination calls', () => {
    const disk = (config: object = {}): DestinationSpec => ({
      name: 'disk',
      kind: 'flaky',
      config: { path: join(ws.dir, 'disk'), ...config },
    });
    const retryLogs = () => logs.filter((l) => l.msg === 'destination call failed, retrying');

    it('a transient error is retried with backoff and the run succeeds', async () => {
      const uploads: Uploads = { attempts: [], failure: (n) => (n <= 2 ? unavailable() : undefined) };
      const record = await run(context(flakyKind(uploads)), [disk()]);
      expect(record.outcome, record.error).toBe('succeeded');
      expect(record.destinations).toEqual([expect.objectContaining({ destination: 'disk', ok: true })]);
      // Two failed attempts, each followed by a backoff, logged with the run, and a retry of the same upload.
      expect(sleeps).toHaveLength(2);
      const retried = expect.objectContaining({
        run: record.runId,
        destination: 'disk',
        op: expect.stringMatching(/^put .*\.pack$/),
        code: 'UNAVAILABLE',
      });
      expect(retryLogs()).toEqual([retried, retried]);
      const distinct = new Set(uploads.attempts);
      expect(uploads.attempts).toHaveLength(distinct.size + 2);
      expect([...distinct].some((k) => k.endsWith('.manifest'))).toBe(true);
    });

    it('a permanent error is not retried: the run fails at once, naming the destination', async () => {
      const uploads: Uploads = { attempts: [], failure: denied };
      const record = await run(context(flakyKind(uploads)), [disk()]);
      expect(record.outcome).toBe('failed');
      expect(record.errorCode).toBe('DESTINATION_FAILED');
      expect(record.error).toMatch(/destination disk failed: access denied/);
      expect(sleeps).toEqual([]);
      expect(retryLogs()).toEqual([]);
      // Each upload was tried once (the publisher runs two at a time).
      expect(new Set(uploads.attempts).size).toBe(uploads.attempts.length);
    });

    it("gives up after the spec's maxAttempts when the destination stays down", async () => {
      const uploads: Uploads = { attempts: [], failure: unavailable };
      const record = await run(context(flakyKind(uploads)), [disk({ retry: { maxAttempts: 3 } })]);
      expect(record.outcome).toBe('failed');
      expect(record.error).toMatch(/destination disk failed: .*gave up after 3 attempts: connection reset by peer/);
      const tries = new Map<string, number>();
      for (const key of uploads.attempts) tries.set(key, (tries.get(key) ?? 0) + 1);
      expect(Math.max(...tries.values())).toBe(3);
    });
  });

  describe('a run killed after publishing, before its outcome is recorded', () => {
    it('keeps its staged run until the outcome is recorded, so a restart can tell it was published', async () => {
      const ctx = context(local);
      const dest: DestinationSpec = { name: 'd', kind: 'local', config: { path: join(ws.dir, 'dest') } };
      // The store takes the running record and fails the outcome: what a kill right after publishing leaves.
      const unsubscribe = store.subscribe((event) => {
        if (event.kind === 'run' && event.run.outcome === 'running') store.failNext('putRun');
      });
      let failure: unknown;
      try {
        await run(ctx, [dest]);
      } catch (error) {
        failure = error;
      } finally {
        unsubscribe();
      }
      expect(failure).toBeInstanceOf(BackupdError);
      const recorded = (await store.getRun(`run-${runs}`))!;
      expect(recorded.outcome).toBe('running');
      const folders = await readdir(recorded.staging!);
      expect(folders).toHaveLength(1);
      const staged = await readStaged(join(recorded.staging!, folders[0]!));
      // The destination holds the manifest the staged run names: the restore point was published.
      expect(existsSync(join(ws.dir, 'dest', staged.manifestKey))).toBe(true);
    });
  });
});
