// The Store contract (src/cluster/store.ts) that every store keeps, run against each one on its real backing
// (the local store on a SQLite file, the etcd store on a real etcd): tasks and their errors, revision
// preconditions, keys apart from specs, what deleting a task removes, a unit's request apart from its status,
// atomic status updates, one claim per tick, run records (round trip, order, filters, limit, only forward).
// Each case opens its stores on a fresh, empty namespace (a folder, an etcd prefix). What only one store does
// (the local file's mode and schema, pruning, its events; etcd's other nodes, outages, trimming) stays in that
// store's own test file.

import { afterEach, describe, expect, it } from 'vitest';
import type { RunRecord, Store, UnitState } from '../../src/cluster/store.js';
import { BackupdError, RevisionConflict } from '../../src/errors.js';
import type { TaskSpec } from '../../src/task.js';

export interface StoreTarget {
  /**
   * Open a store on a fresh, empty namespace, with the clock given; `again` opens another store on the same
   * data (the local file opened again, another node on the same etcd prefix).
   */
  open(options: { now?: () => Date }): Promise<{ store: Store; again: () => Promise<Store> }>;
}

export function spec(name: string, overrides: Partial<TaskSpec> = {}): TaskSpec {
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

export function run(runId: string, overrides: Partial<RunRecord> = {}): RunRecord {
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

export async function rejection(promise: Promise<unknown>): Promise<BackupdError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(BackupdError);
  return error as BackupdError;
}

/** A clock tests move by hand. */
export function clock(start: string): { now: () => Date; advance: (ms: number) => void } {
  let at = Date.parse(start);
  return { now: () => new Date(at), advance: (ms) => (at += ms) };
}

/** A unit state without the assignment it was reported under, which only the etcd store records. */
function observed(unit: UnitState | undefined): UnitState | undefined {
  if (!unit) return unit;
  const { reportedUnder: _fence, ...rest } = unit;
  return rest;
}

/**
 * What `read` gives once it passes `done`, or its last answer after 5 s: the local store passes at once; the
 * etcd store's mirror learns of deletes made inside its own transactions (a new task's stale unit states)
 * through its watch.
 */
async function settled<T>(read: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  const until = Date.now() + 5000;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() > until) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export function storeConformance(name: string, target: StoreTarget): void {
  describe(`${name}: the Store contract`, () => {
    const opened: Store[] = [];
    const open = async (options: { now?: () => Date } = {}) => {
      const { store, again } = await target.open(options);
      opened.push(store);
      return {
        store,
        again: async () => {
          const other = await again();
          opened.push(other);
          return other;
        },
      };
    };
    afterEach(async () => {
      for (const store of opened.splice(0)) await store.close().catch(() => undefined);
    });

    it('tasks: creates, reads, lists, updates and deletes, with every error case', async () => {
      const time = clock('2026-11-22T05:00:00.000Z');
      const { store } = await open({ now: time.now });
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
    });

    it('tasks: refuses an update against a stale revision and changes nothing', async () => {
      const { store } = await open();
      await store.createTask(spec('nightly'), 'key-1');
      await store.updateTask(spec('nightly', { disabled: true }), undefined, 1);
      const stale = await rejection(store.updateTask(spec('nightly', { missedRuns: 'skip' }), 'key-2', 1));
      expect(stale.code).toBe('INVALID_ARGUMENT');
      expect(stale).toBeInstanceOf(RevisionConflict);
      expect(stale).toMatchObject({ revision: 2 });
      expect(stale.message).toBe('task nightly changed since revision 1 (now 2): read it again and retry');
      const current = await store.getTask('nightly');
      expect(current?.revision).toBe(2);
      expect(current?.spec.missedRuns).toBe('run-once');
      expect(await store.getTaskKey('nightly')).toBe('key-1');
    });

    it('tasks: keeps the key apart from the spec, kept by an update without one, replaced by one with one', async () => {
      const { store } = await open();
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
    });

    it('tasks: deleting one removes its key, unit states and ticks but keeps its runs', async () => {
      const { store } = await open();
      await store.createTask(spec('nightly'), 'key-1');
      await store.createTask(spec('other'), undefined);
      await store.updateUnitStatus('nightly', 'local/app.db', (u) => u);
      await store.setUnitRequest('nightly', 'local/b.db', { delayedUntil: '2026-11-23T00:00:00.000Z' });
      await store.updateUnitStatus('other', 'local/app.db', (u) => u);
      expect(await store.claimTick('nightly', 'local/app.db', 'full', '2026-11-22T03:00:00.000Z')).toBe(true);
      expect(await store.claimTick('other', 'local/app.db', 'full', '2026-11-22T03:00:00.000Z')).toBe(true);
      await store.putRun(run('r1', { task: 'nightly' }));

      await store.deleteTask('nightly');
      expect(await store.getTaskKey('nightly')).toBeUndefined();
      expect(await store.getUnit('nightly', 'local/app.db')).toBeUndefined();
      expect(await store.listUnits('nightly')).toEqual([]);
      expect(await store.getRun('r1')).toEqual(run('r1', { task: 'nightly' }));
      // The other task is untouched.
      expect(observed(await store.getUnit('other', 'local/app.db'))).toEqual({
        task: 'other',
        database: 'local/app.db',
        cursor: {},
        refs: {},
      });
      expect(await store.claimTick('other', 'local/app.db', 'full', '2026-11-22T03:00:00.000Z')).toBe(false);

      expect(await store.getUnit('nightly', 'local/b.db')).toBeUndefined();

      // A unit status written back by a late run, or a late request, is not inherited by a new task of the
      // same name.
      await store.updateUnitStatus('nightly', 'local/app.db', (u) => ({
        ...u,
        cursor: { full: '2026-11-22T03:00:00Z' },
      }));
      await store.setUnitRequest('nightly', 'local/b.db', { delayedUntil: '2026-11-23T00:00:00.000Z' });
      await store.createTask(spec('nightly'), undefined);
      expect(
        await settled(
          () => store.listUnits('nightly'),
          (units) => units.length === 0,
        ),
      ).toEqual([]);
      expect(await store.claimTick('nightly', 'local/app.db', 'full', '2026-11-22T03:00:00.000Z')).toBe(true);
    });

    it('units: start from an empty unit and round-trip every field', async () => {
      const { store } = await open();
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
      await store.setUnitRequest('nightly', 'local/app.db', { delayedUntil: full.delayedUntil });
      const written = await store.updateUnitStatus('nightly', 'local/app.db', (current) => {
        seen = current;
        return full;
      });
      expect(seen).toEqual({ task: 'nightly', database: 'local/app.db', cursor: {}, refs: {} });
      expect(observed(written)).toEqual(full);
      expect(observed(await store.getUnit('nightly', 'local/app.db'))).toEqual(full);
      await store.updateUnitStatus('nightly', 'local/b.db', (u) => u);
      await store.updateUnitStatus('hourly', 'local/app.db', (u) => u);
      const named = (units: UnitState[]) => units.map((u) => `${u.task} ${u.database}`).sort();
      expect(named(await store.listUnits('nightly'))).toEqual(['nightly local/app.db', 'nightly local/b.db']);
      expect(named(await store.listUnits())).toEqual([
        'hourly local/app.db',
        'nightly local/app.db',
        'nightly local/b.db',
      ]);
    });

    it("units: the operator's request and the status are written apart, neither changing the other", async () => {
      const { store, again } = await open();
      const until = '2026-11-22T06:00:00.000Z';
      // A request alone makes the unit known: a fresh status with the request.
      const requested = await store.setUnitRequest('nightly', 'local/app.db', { delayedUntil: until });
      const fresh = { task: 'nightly', database: 'local/app.db', cursor: {}, refs: {} };
      expect(observed(requested)).toEqual({ ...fresh, delayedUntil: until });
      expect(observed(await store.getUnit('nightly', 'local/app.db'))).toEqual({ ...fresh, delayedUntil: until });
      expect((await store.listUnits('nightly')).map(observed)).toEqual([{ ...fresh, delayedUntil: until }]);

      // A status change sees the status only, and what it returns of a request is not stored.
      let seen: UnitState | undefined;
      const reported = await store.updateUnitStatus('nightly', 'local/app.db', (current) => {
        seen = current;
        return { ...current, cursor: { full: '2026-11-22T03:00:00.000Z' }, delayedUntil: '2030-01-01T00:00:00.000Z' };
      });
      expect(seen).toEqual(fresh);
      const both = { ...fresh, cursor: { full: '2026-11-22T03:00:00.000Z' }, delayedUntil: until };
      expect(observed(reported)).toEqual(both);
      expect(observed(await store.getUnit('nightly', 'local/app.db'))).toEqual(both);

      // Replacing the request keeps the status; an empty request clears the delay.
      const cleared = await store.setUnitRequest('nightly', 'local/app.db', {});
      expect(observed(cleared)).toEqual({ ...fresh, cursor: { full: '2026-11-22T03:00:00.000Z' } });
      await store.setUnitRequest('nightly', 'local/app.db', { delayedUntil: until });

      // Both parts are stored: a store opened again on the same data (etcd: another node) reads them.
      const other = await again();
      expect(
        observed(
          await settled(
            () => other.getUnit('nightly', 'local/app.db'),
            (unit) => unit?.delayedUntil === until && unit.cursor.full !== undefined,
          ),
        ),
      ).toEqual(both);
    });

    it('units: read-modify-write, each change sees the one before, and a failing change writes nothing', async () => {
      const { store } = await open();
      const bump = (u: UnitState): UnitState => ({
        ...u,
        refs: { count: { n: String(Number(u.refs.count?.n ?? 0) + 1) } },
      });
      await Promise.all(Array.from({ length: 20 }, () => store.updateUnitStatus('nightly', 'local/app.db', bump)));
      expect((await store.getUnit('nightly', 'local/app.db'))?.refs.count?.n).toBe('20');

      const failure = new Error('change failed');
      await expect(
        store.updateUnitStatus('nightly', 'local/app.db', (u) => {
          bump(u);
          throw failure;
        }),
      ).rejects.toBe(failure);
      expect((await store.getUnit('nightly', 'local/app.db'))?.refs.count?.n).toBe('20');

      // A change that returns another unit's state is a bug, refused before it lands under the wrong key.
      const moved = await rejection(
        store.updateUnitStatus('nightly', 'local/app.db', (u) => ({ ...u, database: 'x/y' })),
      );
      expect(moved.code).toBe('INTERNAL');
      expect(await store.getUnit('nightly', 'x/y')).toBeUndefined();
    });

    it('ticks: each is claimed once, also by a store opened again on the same data', async () => {
      const { store, again } = await open();
      expect(await store.claimTick('nightly', 'local/app.db', 'full', '2026-11-22T03:00:00.000Z')).toBe(true);
      expect(await store.claimTick('nightly', 'local/app.db', 'full', '2026-11-22T03:00:00.000Z')).toBe(false);
      // Each part of the key makes another tick.
      expect(await store.claimTick('nightly', 'local/app.db', 'incr', '2026-11-22T03:00:00.000Z')).toBe(true);
      expect(await store.claimTick('nightly', 'local/b.db', 'full', '2026-11-22T03:00:00.000Z')).toBe(true);
      expect(await store.claimTick('hourly', 'local/app.db', 'full', '2026-11-22T03:00:00.000Z')).toBe(true);
      expect(await store.claimTick('nightly', 'local/app.db', 'full', '2026-11-23T03:00:00.000Z')).toBe(true);
      await store.close();

      const second = await again();
      expect(await second.claimTick('nightly', 'local/app.db', 'full', '2026-11-22T03:00:00.000Z')).toBe(false);
      expect(await second.claimTick('nightly', 'local/app.db', 'full', '2026-11-23T03:00:00.000Z')).toBe(false);
      expect(await second.claimTick('nightly', 'local/app.db', 'incr', '2026-11-22T03:00:00.000Z')).toBe(false);
      const claims = await Promise.all(
        Array.from({ length: 10 }, () => second.claimTick('nightly', 'local/app.db', 'full', '2026-11-24T03:00:00Z')),
      );
      expect(claims.filter(Boolean)).toHaveLength(1);
    });

    it('runs: round-trip every field and are replaced by run id', async () => {
      const { store } = await open();
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

    it('runs: list newest first, by queued time then run id, filtered, 50 by default', async () => {
      const { store } = await open();
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

    it('runs: a record only moves forward, queued -> running -> its outcome', async () => {
      const { store } = await open();
      await store.putRun(run('local-01', { outcome: 'running' }));
      const queuedAfter = await store.putRun(run('local-01', { outcome: 'queued' }));
      expect((await store.getRun('local-01'))?.outcome).toBe('running');
      await store.putRun(run('local-01', { outcome: 'failed' }));
      const cancelledAfter = await store.putRun(run('local-01', { outcome: 'cancelled' }));
      expect((await store.getRun('local-01'))?.outcome).toBe('failed');
      expect([queuedAfter, cancelledAfter]).toEqual([false, false]);

      // The runner writes one record object again as its run moves on: each step lands.
      const record = run('local-02', { outcome: 'queued' });
      expect(await store.putRun(record)).toBe(true);
      record.outcome = 'running';
      expect(await store.putRun(record)).toBe(true);
      record.outcome = 'succeeded';
      expect(await store.putRun(record)).toBe(true);
      expect((await store.getRun('local-02'))?.outcome).toBe('succeeded');
    });
  });
}
