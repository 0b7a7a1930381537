// A stand-in for the agent behind the gRPC API, so the API layer (conversion, errors, auth, streams) is
// tested alone; the real agent is tested end to end elsewhere. Tasks go through the real parseTaskSpec and
// redactTask with the built-in drivers, so validation problems and masked secrets are what the agent gives.

import type { Operations, RunView, UnitView } from '../../../src/agent/operations.js';
import type { Progress } from '../../../src/backup/requests.js';
import type { StoredTask } from '../../../src/cluster/store.js';
import { BackupdError } from '../../../src/errors.js';
import { parseTaskSpec, redactTask } from '../../../src/task.js';
import { destinations } from '../../../src/uploader/registry.js';

export interface FakeOperations extends Operations {
  /** The key each task was stored with, as the agent would keep it (never returned). */
  keys: Map<string, string | undefined>;
  /** Method names in call order. */
  calls: string[];
}

export const NOW = '2026-11-22T05:00:00.000Z';

export function sampleRun(overrides: Partial<RunView> = {}): RunView {
  return {
    runId: 'run-1',
    task: 'nightly',
    database: 'main/app',
    type: 'backup',
    level: 'incr',
    trigger: 'now',
    outcome: 'running',
    node: 'node1',
    queuedAt: NOW,
    startedAt: NOW,
    rawBytes: 0,
    storedBytes: 0,
    destinations: [],
    ...overrides,
  };
}

export function sampleUnit(overrides: Partial<UnitView> = {}): UnitView {
  return {
    task: 'nightly',
    database: 'main/app',
    cursor: {},
    refs: {},
    state: 'active',
    responsibleNode: 'node1',
    destinations: ['disk'],
    ...overrides,
  };
}

/** Defaults that answer like a small agent; `overrides` replace single methods per test. */
export function fakeOperations(overrides: Partial<Operations> = {}): FakeOperations {
  const tasks = new Map<string, StoredTask>();
  const keys = new Map<string, string | undefined>();
  const calls: string[] = [];

  const base: Operations = {
    async createTask(input, key) {
      const spec = parseTaskSpec(input, destinations);
      if (tasks.has(spec.name)) throw new BackupdError('ALREADY_EXISTS', `task "${spec.name}" already exists`);
      const stored: StoredTask = { spec, createdAt: NOW, updatedAt: NOW, revision: 1 };
      tasks.set(spec.name, stored);
      keys.set(spec.name, key);
      return { ...stored, spec: redactTask(spec, destinations) };
    },
    async updateTask(input, key, expectedRevision) {
      const spec = parseTaskSpec(input, destinations);
      const current = tasks.get(spec.name);
      if (!current) throw new BackupdError('NOT_FOUND', `task "${spec.name}" does not exist`);
      if (expectedRevision !== undefined && expectedRevision !== current.revision) {
        throw new BackupdError('UNSUPPORTED', `task "${spec.name}" changed since revision ${expectedRevision}`);
      }
      const stored: StoredTask = { spec, createdAt: current.createdAt, updatedAt: NOW, revision: current.revision + 1 };
      tasks.set(spec.name, stored);
      if (key !== undefined) keys.set(spec.name, key);
      return { ...stored, spec: redactTask(spec, destinations) };
    },
    async deleteTask(name) {
      if (!tasks.delete(name)) throw new BackupdError('NOT_FOUND', `task "${name}" does not exist`);
    },
    async getTask(name) {
      const stored = tasks.get(name);
      if (!stored) throw new BackupdError('NOT_FOUND', `task "${name}" does not exist`);
      return { ...stored, spec: redactTask(stored.spec, destinations) };
    },
    async listTasks() {
      return [...tasks.values()].map((t) => ({ ...t, spec: redactTask(t.spec, destinations) }));
    },
    async taskStatus(name) {
      return [sampleUnit({ task: name })];
    },
    async backupNow(task, database, level) {
      return [sampleRun({ task, database: database ?? 'main/app', level: level ?? 'incr', outcome: 'queued' })];
    },
    async oneTimeBackup(input) {
      return sampleRun({ task: '', database: input.database, type: input.type, trigger: 'one-time' });
    },
    async cancelRun(runId) {
      return sampleRun({ runId, outcome: 'cancelled' });
    },
    async delayUnit(task, database, seconds) {
      return sampleUnit({ task, database, delayedUntil: new Date(Date.parse(NOW) + seconds * 1000).toISOString() });
    },
    async getRun(runId) {
      return sampleRun({ runId });
    },
    async listRuns() {
      return [sampleRun()];
    },
    async watchRun(runId, onUpdate) {
      const run = sampleRun({ runId, outcome: 'succeeded', finishedAt: NOW });
      onUpdate(run);
      return run;
    },
    async listDatabases() {
      return [{ source: 'main', name: 'app', engine: 'sqlite', sizeBytes: 4096, types: ['backup', 'snapshot'] }];
    },
    async listLeftOut() {
      return [{ source: 'main', name: 'my app.db', reason: 'its name is not a safe path segment' }];
    },
    async listBackups() {
      return {
        searched: 'disk (local): /b/',
        chains: [
          {
            cluster: 'default',
            database: 'main/app',
            chainId: '20261122T050000Z-backup-node1',
            type: 'backup',
            backups: ['20261122T050000Z-full'],
            bytes: 10,
          },
        ],
      };
    },
    async restore(_input, onProgress: (p: Progress) => void) {
      onProgress({ phase: 'restoring', bytesDone: 10, bytesTotal: 10 });
      return { location: '/data/app-restored.db', bytes: 10, seconds: 0.5 };
    },
    async verify(input, onProgress: (p: Progress) => void) {
      onProgress({ phase: 'verifying', bytesDone: 10, bytesTotal: 10 });
      const outcome = { packs: 1, chunks: 2, rawBytes: 10, packBytes: 12, seconds: 0.1 };
      if (!input.restore) return outcome;
      return {
        ...outcome,
        restore: {
          chainId: input.chainId,
          backupId: input.backupId,
          ok: false,
          fingerprinted: true,
          tables: 2,
          differences: [{ table: 'orders', kind: 'rows' as const, expected: '3', found: '2' }],
          problems: [],
          notes: ['amcheck is not installed on this machine: the indexes were not checked'],
          bytes: 10,
          restoreMs: 500,
          checkMs: 250,
          bytesPerSecond: 20,
        },
      };
    },
    async clusterStatus() {
      return {
        cluster: 'test',
        node: 'node1',
        mode: 'single-node',
        leader: 'node1',
        term: 1,
        members: [
          {
            node: 'node1',
            address: '127.0.0.1:7443',
            version: '0.1.0',
            healthy: true,
            state: 'serving',
            databases: ['main/app'],
          },
        ],
        assignments: [{ task: 'nightly', database: 'main/app', node: 'node1', reason: 'only node', term: 0 }],
        leaderChanges: [],
        pendingReports: 0,
      };
    },
  };

  const merged: Operations = { ...base, ...overrides };
  // Record every call by name, whichever implementation answers it.
  const recorded = Object.fromEntries(
    Object.entries(merged).map(([name, fn]) => [
      name,
      (...args: unknown[]) => {
        calls.push(name);
        return (fn as (...a: unknown[]) => unknown)(...args);
      },
    ]),
  ) as unknown as Operations;
  return Object.assign(recorded, { keys, calls });
}
