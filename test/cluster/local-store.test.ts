// The single-node store on real SQLite files: the Store contract (store-conformance.ts), and what only this
// store does: units listed in order, a unit's request in its own table beside its status, the key in its own
// table on disk, claims pruned after 35 days, history bounded on every write, events for its own changes,
// durability across reopen and SIGKILL, the file's mode, and the refusal of a file written by a newer backupd.

import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { type LocalStore, openLocalStore } from '../../src/cluster/local-store.js';
import type { StoreEvent } from '../../src/cluster/store.js';
import { clock, rejection, run, spec, storeConformance } from './store-conformance.js';

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

const DAY = 24 * 60 * 60 * 1000;

const folders: string[] = [];
storeConformance('the local store', {
  open: async ({ now }) => {
    const dir = mkdtempSync(join(tmpdir(), 'backupd-store-'));
    folders.push(dir);
    const dataDir = join(dir, 'data');
    return {
      store: await openLocalStore({ dataDir, now }),
      again: () => openLocalStore({ dataDir, now }),
    };
  },
});
afterAll(() => {
  for (const dir of folders.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('units', () => {
  it('are listed by task, then database', async () => {
    await withStore(async (store) => {
      await store.updateUnitStatus('nightly', 'local/app.db', (u) => u);
      await store.updateUnitStatus('nightly', 'local/b.db', (u) => u);
      await store.updateUnitStatus('hourly', 'local/app.db', (u) => u);
      expect((await store.listUnits('nightly')).map((u) => u.database)).toEqual(['local/app.db', 'local/b.db']);
      expect((await store.listUnits()).map((u) => `${u.task} ${u.database}`)).toEqual([
        'hourly local/app.db',
        'nightly local/app.db',
        'nightly local/b.db',
      ]);
    });
  });
});

describe('unit requests', () => {
  it("are stored in their own table beside the units' statuses, as the sqlite3 CLI reads the file", async () => {
    await withStore(async (store, dir) => {
      await store.setUnitRequest('nightly', 'local/app.db', { delayedUntil: '2026-11-22T06:00:00.000Z' });
      await store.updateUnitStatus('nightly', 'local/app.db', (u) => ({
        ...u,
        cursor: { full: '2026-11-22T03:00:00.000Z' },
        delayedUntil: '2030-01-01T00:00:00.000Z',
      }));
      const query = (sql: string) =>
        JSON.parse(execFileSync('sqlite3', ['-json', '-readonly', join(dir, 'state.db'), sql], { encoding: 'utf8' }));
      expect(query('SELECT task, database, request FROM unit_requests')).toEqual([
        { task: 'nightly', database: 'local/app.db', request: '{"delayedUntil":"2026-11-22T06:00:00.000Z"}' },
      ]);
      const [status] = query('SELECT status FROM units') as { status: string }[];
      expect(JSON.parse(status!.status)).toEqual({
        task: 'nightly',
        database: 'local/app.db',
        cursor: { full: '2026-11-22T03:00:00.000Z' },
        refs: {},
      });
    });
  });
});

describe('tasks', () => {
  it("keep the key on disk in its own table, not in the spec's row", async () => {
    await withStore(async (store, dir) => {
      await store.createTask(spec('plain'), undefined);
      await store.createTask(spec('secret', { encrypted: true }), 'key-1');
      await store.updateTask(spec('secret', { encrypted: true, disabled: true }), 'key-2');
      await store.updateTask(spec('plain', { encrypted: true }), 'key-3');
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
});

describe('ticks', () => {
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
      await store.updateUnitStatus('other', 'local/app.db', (u) => u);
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
      const unit = await first.updateUnitStatus('nightly', 'local/app.db', (u) => ({ ...u, cursor: { full: 'x' } }));
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
        () => store.updateUnitStatus('x', 'a/b', (u) => u),
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
