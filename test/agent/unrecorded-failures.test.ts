// Failures of a whole agent that used to leave nothing but a log line (issue 21): a scheduled tick whose run
// could not be queued, and a staging folder on a full disk. An agent runs in this process on its single-node
// store, with a real SQLite source and a real local destination; the full disk is a real, small tmpfs
// mounted over the staging folder (or a loop-mounted image where tmpfs cannot be mounted).

import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { loadAgentConfig } from '../../src/agent/config.js';
import type { RunView } from '../../src/agent/operations.js';
import { grpcPeers } from '../../src/api/forward.js';
import { createSampleDb } from '../../src/cli/sample-db.js';
import type { Store } from '../../src/cluster/store.js';
import { BackupdError } from '../../src/errors.js';
import type { Clock } from '../../src/scheduler/clock.js';
import { sourceEngines } from '../../src/sources/registry.js';
import { tempDir } from '../harness/process.js';
import { FakeClock } from '../support/fake-clock.js';

const DB = 'main/shop.db';

/** `promise`, or a failure naming `what` after `ms`. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

interface Here {
  agent: Agent;
  logs: Record<string, unknown>[];
  dataDir: string;
  destDir: string;
  dbDir: string;
}

describe('failures an agent records', () => {
  let dir: ReturnType<typeof tempDir>;
  const started: Agent[] = [];

  beforeEach(() => {
    dir = tempDir('unrecorded');
  });
  afterEach(async () => {
    for (const agent of started.splice(0)) await agent.stop();
    dir.remove();
  });

  async function startHere(clock?: Clock): Promise<Here> {
    const dbDir = join(dir.path, 'dbs');
    const dataDir = join(dir.path, 'data');
    const destDir = join(dir.path, 'dest');
    mkdirSync(dbDir, { recursive: true });
    createSampleDb(join(dbDir, 'shop.db'), 3_000, 5);
    const file = join(dir.path, 'backupd.json');
    writeFileSync(
      file,
      JSON.stringify({
        node: 'n1',
        dataDir,
        sources: [{ name: 'main', engine: 'sqlite', config: { path: dbDir } }],
        discoverySeconds: 3600,
      }),
    );
    const config = loadAgentConfig({ file, env: {}, flags: {} }, sourceEngines);
    const logs: Record<string, unknown>[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line)) });
    const agent = await Agent.start({ config, logger, peers: grpcPeers, ...(clock ? { clock } : {}) });
    started.push(agent);
    return { agent, logs, dataDir, destDir, dbDir };
  }

  async function createTask(here: Here, full: string): Promise<void> {
    await here.agent.createTask(
      {
        name: 't',
        target: { databases: [DB] },
        type: 'backup',
        schedule: { full },
        destinations: [{ name: 'disk', kind: 'local', config: { path: here.destDir } }],
      },
      undefined,
    );
  }

  /** The run's record once it has ended (events, then the store, so a run that already ended is found too). */
  async function ended(agent: Agent, runId: string): Promise<RunView> {
    const done = (run: RunView) => run.outcome !== 'queued' && run.outcome !== 'running';
    return new Promise<RunView>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`run ${runId} did not end within 60 s`)), 60_000);
      const listener = (run: RunView) => {
        if (run.runId !== runId || !done(run)) return;
        clearTimeout(timer);
        agent.events.off('run', listener);
        resolve(run);
      };
      agent.events.on('run', listener);
      agent.getRun(runId).then((run) => run && done(run) && listener(run), reject);
    });
  }

  /** The agent's own store, to make one of its reads fail as a locked store file does. */
  const storeOf = (agent: Agent): Store => (agent as unknown as { cluster: { store: Store } }).cluster.store;

  it('a claimed tick whose run cannot be queued gets a failed run record, the unit shows it, a metric counts it', async () => {
    const clock = new FakeClock('2026-03-01T00:00:30Z');
    const here = await startHere(clock);
    await createTask(here, '* * * * *');
    // A stand-in for a store whose file is locked: the one read that queueing a run needs fails once (a real
    // lock would also stop the failure from being recorded, which is what the log line is then for).
    const store = storeOf(here.agent);
    const getTaskKey = store.getTaskKey.bind(store);
    let failures = 1;
    store.getTaskKey = async (name) => {
      if (failures-- > 0) throw new BackupdError('UNAVAILABLE', 'the store file is locked (SQLITE_BUSY)');
      return getTaskKey(name);
    };
    // Still locked when the failure is first recorded: the record is written on a later try.
    const putRun = store.putRun.bind(store);
    let putFailures = 1;
    store.putRun = async (run) => {
      if (run.outcome === 'failed' && putFailures-- > 0) throw new BackupdError('UNAVAILABLE', 'still locked');
      return putRun(run);
    };

    const recorded = new Promise<RunView>((resolve) =>
      here.agent.events.on('run', (run) => run.outcome === 'failed' && resolve(run)),
    );
    await clock.set('2026-03-01T00:01:00Z');
    await clock.advance(1_000); // the second try to record it
    const failed = await within(recorded, 20_000, 'a failed run record of the tick');
    expect(failed).toMatchObject({
      task: 't',
      database: DB,
      trigger: 'schedule',
      scheduledAt: '2026-03-01T00:01:00.000Z',
      outcome: 'failed',
      errorCode: 'UNAVAILABLE',
    });
    expect(failed.error).toContain('the store file is locked');
    // The store holds it, and the unit's status says its last run failed.
    expect(await store.getRun(failed.runId)).toMatchObject({ outcome: 'failed', scheduledAt: failed.scheduledAt });
    const [unit] = await here.agent.taskStatus('t');
    expect(unit?.lastRun).toMatchObject({ runId: failed.runId, outcome: 'failed' });
    const metric = await here.agent.metrics.registry.getSingleMetricAsString('backupd_ticks_not_queued_total');
    expect(metric).toContain('backupd_ticks_not_queued_total{task="t"} 1');
    expect(here.logs).toContainEqual(expect.objectContaining({ msg: 'could not queue a run', run: failed.runId }));
    expect(here.logs).toContainEqual(
      expect.objectContaining({ msg: 'could not record an unqueued run yet; trying again', run: failed.runId }),
    );
    // The scheduler's line names the tick's level as backupLevel: pino's numeric level stays (JSON.parse keeps
    // the last of two keys).
    expect(here.logs).toContainEqual(expect.objectContaining({ msg: 'tick due', level: 30, backupLevel: 'full' }));
    for (const line of here.logs) expect(typeof line.level, JSON.stringify(line)).toBe('number');

    // The next tick queues and runs as usual.
    const next = new Promise<RunView>((resolve) =>
      here.agent.events.on(
        'run',
        (run) => run.scheduledAt === '2026-03-01T00:02:00.000Z' && run.outcome === 'queued' && resolve(run),
      ),
    );
    await clock.set('2026-03-01T00:02:00Z');
    const run = await ended(here.agent, (await within(next, 20_000, 'the next tick queued')).runId);
    expect(run.outcome, run.error).toBe('succeeded');
  }, 60_000);

  it('a tick whose run is queued but whose first record fails runs all the same, with no failed record', async () => {
    const clock = new FakeClock('2026-03-01T00:00:30Z');
    const here = await startHere(clock);
    await createTask(here, '* * * * *');
    const store = storeOf(here.agent);
    const putRun = store.putRun.bind(store);
    let failures = 1;
    store.putRun = async (run) => {
      if (run.outcome === 'queued' && failures-- > 0) throw new BackupdError('UNAVAILABLE', 'locked for a moment');
      return putRun(run);
    };
    const running = new Promise<RunView>((resolve) =>
      here.agent.events.on('run', (run) => run.outcome === 'running' && resolve(run)),
    );
    await clock.set('2026-03-01T00:01:00Z');
    const run = await ended(here.agent, (await within(running, 20_000, 'the run started')).runId);
    expect(run).toMatchObject({ outcome: 'succeeded', scheduledAt: '2026-03-01T00:01:00.000Z' });
    expect(await here.agent.listRuns({ outcome: 'failed' })).toEqual([]);
    expect(await here.agent.metrics.registry.getSingleMetricAsString('backupd_ticks_not_queued_total')).not.toContain(
      'task="t"',
    );
    expect(here.logs).toContainEqual(expect.objectContaining({ msg: 'could not record a queued run' }));
  }, 60_000);

  it('a staging folder on a full disk: the run fails with NO_SPACE, nothing is published, staging is emptied, the next run succeeds', async () => {
    const here = await startHere();
    await createTask(here, '0 0 1 1 *');
    // Mounted once the agent runs: staging is then a small filesystem of its own.
    const staging = join(here.dataDir, 'staging');
    mkdirSync(staging, { recursive: true });
    const unmount = mountSmallDisk(staging, join(dir.path, 'disk.img'));
    try {
      // Leave less room than the backup needs.
      const free = Number(execFileSync('df', ['--output=avail', '-B1', staging]).toString().split('\n')[1]);
      writeFileSync(join(staging, 'filler'), Buffer.alloc(Math.max(0, free - 64 * 1024)));

      const [queued] = await here.agent.backupNow('t', DB, 'full');
      const failed = await ended(here.agent, queued!.runId);
      expect(failed.outcome).toBe('failed');
      expect(failed.errorCode).toBe('NO_SPACE');
      expect(failed.error).toContain(staging);
      expect(failed.error).toMatch(/no space/i);
      // Nothing published: no manifest anywhere under the destination.
      expect(filesUnder(here.destDir).filter((f) => f.endsWith('.manifest'))).toEqual([]);
      // The run's staging folder is gone; only the filler is left.
      expect(readdirSync(staging)).toEqual(['filler']);
      // The agent keeps serving, and its status names the failure.
      const [unit] = await here.agent.taskStatus('t');
      expect(unit?.lastRun).toMatchObject({ runId: failed.runId, outcome: 'failed' });

      // Space is back: the next run succeeds, and its backup restores to the same rows (judged by sqlite3).
      execFileSync('rm', [join(staging, 'filler')]);
      const [again] = await here.agent.backupNow('t', DB, 'full');
      const done = await ended(here.agent, again!.runId);
      expect(done.outcome, done.error).toBe('succeeded');
      await here.agent.restore(
        {
          from: { task: 't', destination: 'disk' },
          database: DB,
          chainId: done.chainId!,
          backupId: done.backupId!,
          target: 'restored.db',
        },
        () => {},
      );
      const dump = (file: string) => execFileSync('sqlite3', [join(here.dbDir, file), '.dump']).toString();
      expect(dump('restored.db')).toBe(dump('shop.db'));
    } finally {
      await here.agent.stop();
      unmount();
    }
  }, 120_000);
});

/**
 * Mount an 8 MiB filesystem at `at`: a tmpfs, or a loop-mounted ext4 image at `image` where tmpfs cannot be
 * mounted. Throws naming what is missing when neither works. Returns the unmount.
 */
function mountSmallDisk(at: string, image: string): () => void {
  const unmount = () => execFileSync('umount', [at]);
  const tried: string[] = [];
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', at], { stdio: 'pipe' });
    return unmount;
  } catch (error) {
    tried.push(`tmpfs: ${String((error as { stderr?: Buffer }).stderr ?? error).trim()}`);
  }
  try {
    execFileSync('truncate', ['-s', '8M', image]);
    execFileSync('mkfs.ext4', ['-q', image], { stdio: 'pipe' });
    execFileSync('mount', ['-o', 'loop', image, at], { stdio: 'pipe' });
    return unmount;
  } catch (error) {
    tried.push(`loop image: ${String((error as { stderr?: Buffer }).stderr ?? error).trim()}`);
  }
  throw new Error(
    `this test needs a small filesystem of its own (root, and mount with tmpfs or loop devices): ${tried.join('; ')}`,
  );
}

function filesUnder(folder: string): string[] {
  try {
    return readdirSync(folder, { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => join(e.parentPath, e.name));
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') return [];
    throw error;
  }
}
