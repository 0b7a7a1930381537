// The single-node store on real SQLite files: the Store contract (errors, revisions, keys apart from specs,
// atomic unit updates, one claim per tick, bounded history), durability across reopen and SIGKILL, the file's
// mode, and the refusal of a file written by a newer backupd.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { type LocalStore, openLocalStore } from '../../src/cluster/local-store.js';
import type { RunRecord, StoreEvent, UnitState } from '../../src/cluster/store.js';
import { BackupdError } from '../../src/errors.js';
import type { TaskSpec } from '../../src/task.js';

/** A fresh data folder for one test, removed afterwards whatever happens. */
async function withDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'backupd-store-'));
  try {
    await body(join(dir, 'data'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A store in a fresh folder, closed (unless the test closed it) and removed afterwards. */
async function withStore(
  body: (store: LocalStore, dir: string) => Promise<void>,
  options: { maxRuns?: number; now?: () => Date } = {},
): Promise<void> {
  await withDir(async (dir) => {
    const store = await openLocalStore({ dataDir: dir, ...options });
    try {
      await body(store, dir);
    } finally {
      await store.close().catch(() => {
        // Already closed by the test itself.
      });
    }
  });
}

function spec(name: string, overrides: Partial<TaskSpec> = {}): TaskSpec {
  return {
    name,
    target: { databases: ['local/app.db'] },
    type: 'backup',
    schedule: { full: '0 3 * * *', timeZone: 'UTC' },
    pinToPreferredNode: false,
    destinations: [{ name: 'disk', kind: 'local', config: { path: '/backups' } }],
    disabled: false,
    missedRuns: 'run-once',
    encrypted: false,
    ...overrides,
  };
}

function run(runId: string, overrides: Partial<RunRecord> = {}): RunRecord {
  return {
    runId,
    task: 'nightly',
    database: 'local/app.db',
    type: 'backup',
    level: 'full',
    trigger: 'schedule',
    outcome: 'succeeded',
    node: 'node1',
    queuedAt: '2026-11-22T05:00:00.000Z',
    rawBytes: 0,
    storedBytes: 0,
    destinations: [],
    ...overrides,
  };
}

async function rejection(promise: Promise<unknown>): Promise<BackupdError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(BackupdError);
  return error as BackupdError;
}

/** A clock tests move by hand. */
function clock(start: string): { now: () => Date; advance: (ms: number) => void } {
  let at = Date.parse(start);
  return { now: () => new Date(at), advance: (ms) => (at += ms) };
}

const DAY = 24 * 60 * 60 * 1000;

describe('tasks', () => {
  it('creates, reads, lists, updates and deletes, with every error case', async () => {
    const time = clock('2026-11-22T05:00:00.000Z');
    await withStore(
      async (store) => {
        const full = spec('nightly', {
          target: { serverWide: { source: 'pg', exclude: ['template0'] } },
          type: 'snapshot',
          schedule: { full: '0 3 * * 0', incremental: '0 * * * *', timeZone: 'Europe/Berlin' },
          preferredNode: 'node2',
          pinToPreferredNode: true,
          retention: { maxAgeDays: 30, keepChains: 4, orphanGraceHours: 12 },
          destinations: [
            { name: 's3', kind: 's3', config: { bucket: 'b', secretAccessKey: 'secret', nested: { list: [1, 'x'] } } },
          ],
          disabled: true,
          missedRuns: 'skip',
          encrypted: true,
        });
        const created = await store.createTask(full, 'key-1');
        expect(created).toEqual({
          spec: full,
          createdAt: '2026-11-22T05:00:00.000Z',
          updatedAt: '2026-11-22T05:00:00.000Z',
          revision: 1,
        });
        expect(await store.getTask('nightly')).toEqual(created);
        await store.createTask(spec('hourly'), undefined);
        expect((await store.listTasks()).map((t) => t.spec.name)).toEqual(['hourly', 'nightly']);
        expect(await store.getTask('missing')).toBeUndefined();

        const taken = await rejection(store.createTask(spec('nightly'), undefined));
        expect(taken.code).toBe('ALREADY_EXISTS');
        expect(taken.message).toContain('nightly');
        // The refused create changed nothing.
        expect(await store.getTask('nightly')).toEqual(created);
        expect(await store.getTaskKey('nightly')).toBe('key-1');

        time.advance(60_000);
        const changed = { ...full, disabled: false };
        const updated = await store.updateTask(changed, undefined, 1);
        expect(updated).toEqual({
          spec: changed,
          createdAt: '2026-11-22T05:00:00.000Z',
          updatedAt: '2026-11-22T05:01:00.000Z',
          revision: 2,
        });
        expect(await store.getTask('nightly')).toEqual(updated);
        // No expected revision: the update applies whatever the current one is.
        expect((await store.updateTask(changed, undefined)).revision).toBe(3);

        const unknown = await rejection(store.updateTask(spec('missing'), undefined));
        expect(unknown.code).toBe('NOT_FOUND');
        expect(unknown.message).toContain('missing');

        await store.deleteTask('nightly');
        expect(await store.getTask('nightly')).toBeUndefined();
        expect(await store.getTaskKey('nightly')).toBeUndefined();
        expect((await rejection(store.deleteTask('nightly'))).code).toBe('NOT_FOUND');
        expect((await store.listTasks()).map((t) => t.spec.name)).toEqual(['hourly']);
      },
      { now: time.now },
    );
  });

  it('refuses an update against a stale revision and changes nothing', async () => {
    await withStore(async (store) => {
      await store.createTask(spec('nightly'), 'key-1');
      await store.updateTask(spec('nightly', { disabled: true }), undefined, 1);
      const stale = await rejection(store.updateTask(spec('nightly', { missedRuns: 'skip' }), 'key-2', 1));
      expect(stale.code).toBe('INVALID_ARGUMENT');
      expect(stale.details).toMatchObject({ precondition: true, revision: 2 });
      expect(stale.message).toBe('task nightly changed since revision 1 (now 2): read it again and retry');
      const current = await store.getTask('nightly');
      expect(current?.revision).toBe(2);
      expect(current?.spec.missedRuns).toBe('run-once');
      expect(await store.getTaskKey('nightly')).toBe('key-1');
    });
  });

  it('keeps the key apart from the spec: kept by an update without one, replaced by one with one', async () => {
    await withStore(async (store, dir) => {
      await store.createTask(spec('plain'), undefined);
      expect(await store.getTaskKey('plain')).toBeUndefined();
      await store.createTask(spec('secret', { encrypted: true }), 'key-1');
      expect(await store.getTaskKey('secret')).toBe('key-1');
      expect(JSON.stringify(await store.getTask('secret'))).not.toContain('key-1');
      expect(JSON.stringify(await store.listTasks())).not.toContain('key-1');

      const kept = await store.updateTask(spec('secret', { encrypted: true, disabled: true }), undefined);
      expect(kept.revision).toBe(2);
      expect(await store.getTaskKey('secret')).toBe('key-1');
      const replaced = await store.updateTask(spec('secret', { encrypted: true, disabled: true }), 'key-2');
      expect(replaced.revision).toBe(3);
      expect(await store.getTaskKey('secret')).toBe('key-2');
      await store.updateTask(spec('plain', { encrypted: true }), 'key-3');
      expect(await store.getTaskKey('plain')).toBe('key-3');

      // On disk too the key is in its own table, not in the spec's row.
      await store.close();
      const db = new Database(join(dir, 'state.db'), { readonly: true });
      try {
        const specs = db.prepare('SELECT spec FROM tasks').all() as { spec: string }[];
        expect(specs.map((row) => row.spec).join()).not.toContain('key-');
        expect(db.prepare('SELECT name, key FROM task_keys ORDER BY name').all()).toEqual([
          { name: 'plain', key: 'key-3' },
          { name: 'secret', key: 'key-2' },
        ]);
      } finally {
        db.close();
      }
    });
  });

  it('deleting a task removes its key, unit states and ticks but keeps its runs', async () => {
    await withStore(async (store) => {
      await store.createTask(spec('nightly'), 'key-1');
      await store.createTask(spec('other'), undefined);
      await store.updateUnit('nightly', 'local/app.db', (u) => ({ ...u, delayedUntil: '2026-11-23T00:00:00.000Z' }));
      await store.updateUnit('other', 'local/app.db', (u) => u);
      expect(await store.claimTick('nightly', 'local/app.db', 'full', '2026-11-22T03:00:00.000Z')).toBe(true);
      expect(await store.claimTick('other', 'local/app.db', 'full', '2026-11-22T03:00:00.000Z')).toBe(true);
      await store.putRun(run('r1', { task: 'nightly' }));

      await store.deleteTask('nightly');
      expect(await store.getTaskKey('nightly')).toBeUndefined();
      expect(await store.getUnit('nightly', 'local/app.db')).toBeUndefined();
      expect(await store.listUnits('nightly')).toEqual([]);
      expect(await store.getRun('r1')).toEqual(run('r1', { task: 'nightly' }));
      // The other task is untouched.
      expect(await store.getUnit('other', 'local/app.db')).toEqual({
        task: 'other',
        database: 'local/app.db',
        cursor: {},
        refs: {},
      });
      expect(await store.claimTick('other', 'local/app.db', 'full', '2026-11-22T03:00:00.000Z')).toBe(false);

      // A unit state written back by a late run is not inherited by a new task of the same name.
      await store.updateUnit('nightly', 'local/app.db', (u) => ({ ...u, cursor: { full: '2026-11-22T03:00:00Z' } }));
      await store.createTask(spec('nightly'), undefined);
      expect(await store.listUnits('nightly')).toEqual([]);
      expect(await store.claimTick('nightly', 'local/app.db', 'full', '2026-11-22T03:00:00.000Z')).toBe(true);
    });
  });
});

describe('units', () => {
  it('starts from an empty unit and round-trips every field', async () => {
    await withStore(async (store) => {
      expect(await store.getUnit('nightly', 'local/app.db')).toBeUndefined();
      let seen: UnitState | undefined;
      const full: UnitState = {
        task: 'nightly',
        database: 'local/app.db',
        cursor: { full: '2026-11-22T03:00:00.000Z', incr: '2026-11-22T04:00:00.000Z' },
        lastFull: {
          runId: 'r1',
          level: 'full',
          outcome: 'succeeded',
          startedAt: '2026-11-22T03:00:01.000Z',
          finishedAt: '2026-11-22T03:02:00.000Z',
          chainId: '20261122T030000Z-backup-node1',
          backupId: '20261122T030000Z-full',
          storedBytes: 1234,
        },
        lastRun: {
          runId: 'r2',
          level: 'incr',
          outcome: 'failed',
          storedBytes: 0,
          error: 'bucket gone',
          destinations: [{ destination: 's3', ok: false, uploadedBytes: 0, reusedPacks: 0, error: 'bucket gone' }],
        },
        delayedUntil: '2026-11-22T06:00:00.000Z',
        refs: { glacier: { 'packs/a.pack': 'archive-1', 'packs/b.pack': 'archive-2' } },
      };
      const written = await store.updateUnit('nightly', 'local/app.db', (current) => {
        seen = current;
        return full;
      });
      expect(seen).toEqual({ task: 'nightly', database: 'local/app.db', cursor: {}, refs: {} });
      expect(written).toEqual(full);
      expect(await store.getUnit('nightly', 'local/app.db')).toEqual(full);
      await store.updateUnit('nightly', 'local/b.db', (u) => u);
      await store.updateUnit('hourly', 'local/app.db', (u) => u);
      expect((await store.listUnits('nightly')).map((u) => u.database)).toEqual(['local/app.db', 'local/b.db']);
      expect((await store.listUnits()).map((u) => `${u.task} ${u.database}`)).toEqual([
        'hourly local/app.db',
        'nightly local/app.db',
        'nightly local/b.db',
      ]);
    });
  });

  it('read-modify-write: each change sees the one before, and a failing change writes nothing', async () => {
    await withStore(async (store) => {
      const bump = (u: UnitState): UnitState => ({
        ...u,
        refs: { count: { n: String(Number(u.refs.count?.n ?? 0) + 1) } },
      });
      await Promise.all(Array.from({ length: 20 }, () => store.updateUnit('nightly', 'local/app.db', bump)));
      expect((await store.getUnit('nightly', 'local/app.db'))?.refs.count?.n).toBe('20');

      const failure = new Error('change failed');
      await expect(
        store.updateUnit('nightly', 'local/app.db', (u) => {
          bump(u);
          throw failure;
        }),
      ).rejects.toBe(failure);
      expect((await store.getUnit('nightly', 'local/app.db'))?.refs.count?.n).toBe('20');

      // A change that returns another unit's state is a bug, refused before it lands under the wrong key.
      const moved = await rejection(store.updateUnit('nightly', 'local/app.db', (u) => ({ ...u, database: 'x/y' })));
      expect(moved.code).toBe('INTERNAL');
      expect(await store.getUnit('nightly', 'x/y')).toBeUndefined();
    });
  });
});

describe('ticks', () => {
  it('are claimed once, also after the store is reopened', async () => {
    await withDir(async (dir) => {
      const first = await openLocalStore({ dataDir: dir });
      try {
        expect(await first.claimTick('nightly', 'local/app.db', 'full', '2026-11-22T03:00:00.000Z')).toBe(true);
        expect(await first.claimTick('nightly', 'local/app.db', 'full', '2026-11-22T03:00:00.000Z')).toBe(false);
        // Each part of the key makes another tick.
        expect(await first.claimTick('nightly', 'local/app.db', 'incr', '2026-11-22T03:00:00.000Z')).toBe(true);
        expect(await first.claimTick('nightly', 'local/b.db', 'full', '2026-11-22T03:00:00.000Z')).toBe(true);
        expect(await first.claimTick('hourly', 'local/app.db', 'full', '2026-11-22T03:00:00.000Z')).toBe(true);
        expect(await first.claimTick('nightly', 'local/app.db', 'full', '2026-11-23T03:00:00.000Z')).toBe(true);
      } finally {
        await first.close();
      }
      const second = await openLocalStore({ dataDir: dir });
      try {
        expect(await second.claimTick('nightly', 'local/app.db', 'full', '2026-11-22T03:00:00.000Z')).toBe(false);
        expect(await second.claimTick('nightly', 'local/app.db', 'full', '2026-11-23T03:00:00.000Z')).toBe(false);
        const claims = await Promise.all(
          Array.from({ length: 10 }, () => second.claimTick('nightly', 'local/app.db', 'full', '2026-11-24T03:00:00Z')),
        );
        expect(claims.filter(Boolean)).toHaveLength(1);
      } finally {
        await second.close();
      }
    });
  });

  it('claims older than 35 days are pruned when the store opens', async () => {
    const time = clock('2026-11-22T05:00:00.000Z');
    await withDir(async (dir) => {
      const first = await openLocalStore({ dataDir: dir, now: time.now });
      await first.claimTick('nightly', 'local/app.db', 'full', '2026-11-22T03:00:00.000Z');
      time.advance(30 * DAY);
      await first.claimTick('nightly', 'local/app.db', 'full', '2026-12-22T03:00:00.000Z');
      await first.close();

      time.advance(6 * DAY);
      const second = await openLocalStore({ dataDir: dir, now: time.now });
      try {
        // 36 days old: forgotten. 6 days old: still claimed.
        expect(await second.claimTick('nightly', 'local/app.db', 'full', '2026-11-22T03:00:00.000Z')).toBe(true);
        expect(await second.claimTick('nightly', 'local/app.db', 'full', '2026-12-22T03:00:00.000Z')).toBe(false);
      } finally {
        await second.close();
      }
    });
  });
  it('claims older than 35 days are also pruned every 1000th claim of a running store', async () => {
    const time = clock('2026-11-22T05:00:00.000Z');
    await withStore(
      async (store) => {
        await store.claimTick('nightly', 'local/app.db', 'full', '2026-11-22T03:00:00.000Z');
        time.advance(36 * DAY);
        for (let i = 1; i < 999; i++) {
          await store.claimTick(
            'nightly',
            'local/app.db',
            'incr',
            new Date(Date.UTC(2026, 11, 1) + i * 60_000).toISOString(),
          );
        }
        // 999 claims since open: not pruned yet; this one is the 1000th and prunes after it is made.
        expect(await store.claimTick('nightly', 'local/app.db', 'full', '2026-11-22T03:00:00.000Z')).toBe(false);
        expect(await store.claimTick('nightly', 'local/app.db', 'full', '2026-11-22T03:00:00.000Z')).toBe(true);
      },
      { now: time.now },
    );
  });
});

describe('runs', () => {
  it('round-trip every field and are replaced by run id', async () => {
    await withStore(async (store) => {
      const full = run('r1', {
        task: '',
        trigger: 'one-time',
        scheduledAt: '2026-11-22T03:00:00.000Z',
        outcome: 'running',
        startedAt: '2026-11-22T05:00:01.000Z',
        chainId: '20261122T050000Z-snapshot-node1',
        backupId: '20261122T050000Z-full',
        type: 'snapshot',
        rawBytes: 10,
        storedBytes: 5,
        destinations: [
          { destination: 'disk', ok: true, uploadedBytes: 5, reusedPacks: 1 },
          { destination: 's3', ok: false, uploadedBytes: 0, reusedPacks: 0, error: 'denied' },
        ],
        error: 'denied',
        errorCode: 'DESTINATION_FAILED',
        staging: '/data/staging/r1',
      });
      await store.putRun(full);
      expect(await store.getRun('r1')).toEqual(full);
      const finished = { ...full, outcome: 'failed' as const, finishedAt: '2026-11-22T05:03:00.000Z' };
      await store.putRun(finished);
      expect(await store.getRun('r1')).toEqual(finished);
      expect(await store.listRuns()).toEqual([finished]);
      expect(await store.getRun('missing')).toBeUndefined();
    });
  });

  it('list newest first, by queued time then run id, filtered, 50 by default', async () => {
    await withStore(async (store) => {
      const at = (minute: number) => new Date(Date.UTC(2026, 10, 22, 5, minute)).toISOString();
      for (let i = 0; i < 60; i++) {
        await store.putRun(
          run(`r${String(i).padStart(2, '0')}`, {
            // Pairs share a queued time, so the run id breaks the tie.
            queuedAt: at(Math.floor(i / 2)),
            task: i % 2 === 0 ? 'even' : 'odd',
            database: i % 3 === 0 ? 'local/a.db' : 'local/b.db',
            outcome: i % 5 === 0 ? 'failed' : 'succeeded',
            node: i < 30 ? 'node1' : 'node2',
          }),
        );
      }
      const ids = (runs: RunRecord[]) => runs.map((r) => r.runId);
      const all = await store.listRuns();
      expect(all).toHaveLength(50);
      expect(ids(all).slice(0, 4)).toEqual(['r59', 'r58', 'r57', 'r56']);
      expect(ids(await store.listRuns({ limit: 3 }))).toEqual(['r59', 'r58', 'r57']);
      expect(ids(await store.listRuns({ outcome: 'failed' }))).toEqual([
        'r55',
        'r50',
        'r45',
        'r40',
        'r35',
        'r30',
        'r25',
        'r20',
        'r15',
        'r10',
        'r05',
        'r00',
      ]);
      expect(ids(await store.listRuns({ task: 'odd', outcome: 'failed', node: 'node1' }))).toEqual([
        'r25',
        'r15',
        'r05',
      ]);
      expect(ids(await store.listRuns({ database: 'local/a.db', node: 'node2', limit: 2 }))).toEqual(['r57', 'r54']);
      expect(await store.listRuns({ task: 'none' })).toEqual([]);
      const bad = await rejection(store.listRuns({ limit: 0 }));
      expect(bad.code).toBe('INVALID_ARGUMENT');
      expect(bad.message).toContain('limit');
    });
  });

  it('history is bounded by dropping the oldest finished runs, never a queued or running one', async () => {
    await withStore(
      async (store) => {
        const at = (minute: number) => new Date(Date.UTC(2026, 10, 22, 5, minute)).toISOString();
        // The oldest runs are still open.
        await store.putRun(run('open-1', { queuedAt: at(0), outcome: 'running' }));
        await store.putRun(run('open-2', { queuedAt: at(1), outcome: 'queued' }));
        for (let i = 2; i < 8; i++) {
          const outcome = (['succeeded', 'failed', 'cancelled', 'interrupted'] as const)[i % 4];
          await store.putRun(run(`done-${i}`, { queuedAt: at(i), outcome }));
        }
        const ids = async () => (await store.listRuns()).map((r) => r.runId);
        expect(await ids()).toEqual(['done-7', 'done-6', 'done-5', 'done-4', 'open-2', 'open-1']);

        // Finishing a run keeps it (same id, replaced), and it is then the oldest finished one to go next.
        await store.putRun(run('open-1', { queuedAt: at(0), outcome: 'succeeded' }));
        await store.putRun(run('done-8', { queuedAt: at(8), outcome: 'succeeded' }));
        expect(await ids()).toEqual(['done-8', 'done-7', 'done-6', 'done-5', 'done-4', 'open-2']);

        // More open runs than the bound: all stay, the history is over its bound until they finish.
        for (let i = 9; i < 17; i++) await store.putRun(run(`open-${i}`, { queuedAt: at(i), outcome: 'running' }));
        const open = await store.listRuns({ outcome: 'running' });
        expect(open).toHaveLength(8);
        expect(await store.getRun('open-2')).toBeDefined();
        expect(await store.listRuns({ outcome: 'succeeded' })).toEqual([]);
      },
      { maxRuns: 6 },
    );
  });
});

describe('events', () => {
  it('tell listeners of task and run changes; a throwing listener breaks nothing', async () => {
    await withStore(async (store) => {
      const events: StoreEvent[] = [];
      store.subscribe(() => {
        throw new Error('listener bug');
      });
      const unsubscribe = store.subscribe((event) => events.push(event));
      await store.createTask(spec('nightly'), undefined);
      await store.updateTask(spec('nightly', { disabled: true }), undefined);
      await store.putRun(run('r1'));
      await store.deleteTask('nightly');
      // Refused changes and unit or tick writes say nothing.
      await store.createTask(spec('other'), undefined);
      await rejection(store.createTask(spec('other'), undefined));
      await rejection(store.updateTask(spec('missing'), undefined));
      await store.updateUnit('other', 'local/app.db', (u) => u);
      await store.claimTick('other', 'local/app.db', 'full', '2026-11-22T03:00:00.000Z');
      expect(events).toEqual([
        { kind: 'task', name: 'nightly' },
        { kind: 'task', name: 'nightly' },
        { kind: 'run', run: run('r1') },
        { kind: 'task', name: 'nightly' },
        { kind: 'task', name: 'other' },
      ]);
      unsubscribe();
      await store.deleteTask('other');
      expect(events).toHaveLength(5);
    });
  });
});

describe('the file', () => {
  it('tasks, keys, units and runs survive a reopen', async () => {
    await withDir(async (dir) => {
      const first = await openLocalStore({ dataDir: dir });
      const task = await first.createTask(spec('nightly', { encrypted: true }), 'key-1');
      const unit = await first.updateUnit('nightly', 'local/app.db', (u) => ({ ...u, cursor: { full: 'x' } }));
      await first.putRun(run('r1'));
      await first.close();

      const second = await openLocalStore({ dataDir: dir });
      try {
        expect(await second.listTasks()).toEqual([task]);
        expect(await second.getTaskKey('nightly')).toBe('key-1');
        expect(await second.listUnits()).toEqual([unit]);
        expect(await second.listRuns()).toEqual([run('r1')]);
      } finally {
        await second.close();
      }
    });
  });

  it('is readable by its owner only, with its write-ahead log, also when it existed with a looser mode', async () => {
    await withDir(async (dir) => {
      const path = join(dir, 'state.db');
      const first = await openLocalStore({ dataDir: dir });
      try {
        expect(statSync(path).mode & 0o777).toBe(0o600);
        await first.createTask(spec('nightly'), 'key-1');
        for (const suffix of ['-wal', '-shm']) {
          expect(existsSync(path + suffix)).toBe(true);
          expect(statSync(path + suffix).mode & 0o777).toBe(0o600);
        }
      } finally {
        await first.close();
      }
      const { chmodSync } = await import('node:fs');
      chmodSync(path, 0o644);
      const second = await openLocalStore({ dataDir: dir });
      try {
        expect(statSync(path).mode & 0o777).toBe(0o600);
      } finally {
        await second.close();
      }
    });
  });

  it('a file of a newer schema version is refused, naming the file, and left as it is', async () => {
    await withDir(async (dir) => {
      const path = join(dir, 'state.db');
      await (await openLocalStore({ dataDir: dir })).close();
      const db = new Database(path);
      db.pragma('user_version = 2');
      db.close();
      const error = await rejection(openLocalStore({ dataDir: dir }));
      expect(error.code).toBe('UNSUPPORTED_FORMAT');
      expect(error.message).toBe(
        `${path} has schema version 2, written by a newer backupd (this one reads up to 1): upgrade backupd`,
      );
      const after = new Database(path, { readonly: true });
      try {
        expect(after.pragma('user_version', { simple: true })).toBe(2);
      } finally {
        after.close();
      }
    });
  });

  it('after close every call fails with UNAVAILABLE', async () => {
    await withStore(async (store) => {
      await store.close();
      const calls: (() => Promise<unknown>)[] = [
        () => store.listTasks(),
        () => store.getTask('x'),
        () => store.createTask(spec('x'), undefined),
        () => store.updateTask(spec('x'), undefined),
        () => store.deleteTask('x'),
        () => store.getTaskKey('x'),
        () => store.getUnit('x', 'a/b'),
        () => store.listUnits(),
        () => store.updateUnit('x', 'a/b', (u) => u),
        () => store.claimTick('x', 'a/b', 'full', '2026-11-22T03:00:00.000Z'),
        () => store.putRun(run('r1')),
        () => store.getRun('r1'),
        () => store.listRuns({ limit: 0 }),
        () => store.close(),
      ];
      for (const call of calls) {
        const error = await rejection(call());
        expect(error.code).toBe('UNAVAILABLE');
        expect(error.message).toBe('store is closed');
      }
      expect(() => store.subscribe(() => undefined)).toThrow('store is closed');
    });
  });

  it('a write survives the process being killed with SIGKILL right after it', async () => {
    await withDir(async (dir) => {
      const moduleUrl = new URL('../../src/cluster/local-store.ts', import.meta.url).href;
      // The child stays alive after the write, so only SIGKILL ends it: no close, no checkpoint, no exit hooks.
      const script = `
        const { openLocalStore } = await import(${JSON.stringify(moduleUrl)});
        const store = await openLocalStore({ dataDir: ${JSON.stringify(dir)} });
        await store.createTask(${JSON.stringify(spec('nightly', { encrypted: true }))}, 'key-1');
        await store.putRun(${JSON.stringify(run('r1', { outcome: 'running' }))});
        process.stdout.write('written\\n');
        setInterval(() => {}, 1000);
      `;
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
        cwd: join(import.meta.dirname, '../..'),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (data: Buffer) => {
        stderr += data.toString();
      });
      const exited = new Promise<NodeJS.Signals | null>((resolve) =>
        child.on('exit', (_code, signal) => resolve(signal)),
      );
      try {
        await new Promise<void>((resolve, reject) => {
          child.stdout.on('data', (data: Buffer) => {
            if (data.toString().includes('written')) resolve();
          });
          child.on('exit', (code) => reject(new Error(`child exited with ${code} before writing: ${stderr}`)));
        });
        child.kill('SIGKILL');
        expect(await exited).toBe('SIGKILL');
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
      // The write is still only in the write-ahead log: reopening recovers it from there.
      expect(existsSync(join(dir, 'state.db-wal'))).toBe(true);
      const store = await openLocalStore({ dataDir: dir });
      try {
        expect((await store.getTask('nightly'))?.spec).toEqual(spec('nightly', { encrypted: true }));
        expect(await store.getTaskKey('nightly')).toBe('key-1');
        expect(await store.getRun('r1')).toEqual(run('r1', { outcome: 'running' }));
      } finally {
        await store.close();
      }
    });
  });
});
