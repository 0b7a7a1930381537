// An in-memory Store for tests of the code above the store (scheduler, agent). It keeps the interface's
// promises honestly (claimTick is create-if-absent, updateUnitStatus read-modify-write, values are copied in and
// out as a real store would serialize them) and can be told to fail a method, to test recovery.

import type {
  RunFilter,
  RunRecord,
  Store,
  StoredTask,
  StoreEvent,
  TickKind,
  UnitRequest,
  UnitState,
  UnitStatus,
} from '../../src/cluster/store.js';
import { emptyUnit, runMatches, runMovesForward, statusOf, unitOf, unitOrder } from '../../src/cluster/store.js';
import { BackupdError, RevisionConflict } from '../../src/errors.js';
import type { TaskSpec } from '../../src/task.js';

type Method = 'getUnit' | 'updateUnitStatus' | 'setUnitRequest' | 'claimTick' | 'listUnits' | 'putRun';

export class MemoryStore implements Store {
  readonly mode = 'single-node' as const;

  private readonly tasks = new Map<string, { task: StoredTask; key: string | undefined }>();
  private readonly units = new Map<string, UnitStatus>();
  private readonly requests = new Map<string, UnitRequest & { task: string; database: string }>();
  private readonly claims = new Set<string>();
  private readonly runs = new Map<string, RunRecord>();
  private readonly listeners = new Set<(event: StoreEvent) => void>();
  private readonly failures = new Map<Method, unknown[]>();
  /** Every claimTick call that succeeded, in order: what ran cluster-wide. */
  readonly claimed: { task: string; database: string; level: TickKind; scheduledAt: string }[] = [];

  constructor(
    private readonly maxRuns = 1000,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** Make the next `times` calls of `method` reject with `error` (default: a retryable UNAVAILABLE). */
  failNext(
    method: Method,
    times = 1,
    error: unknown = new BackupdError('UNAVAILABLE', `store ${method} failed`),
  ): void {
    const queue = this.failures.get(method) ?? [];
    for (let i = 0; i < times; i++) queue.push(error);
    this.failures.set(method, queue);
  }

  async listTasks(): Promise<StoredTask[]> {
    return [...this.tasks.values()]
      .map((t) => structuredClone(t.task))
      .sort((a, b) => (a.spec.name < b.spec.name ? -1 : 1));
  }

  async getTask(name: string): Promise<StoredTask | undefined> {
    const t = this.tasks.get(name);
    return t && structuredClone(t.task);
  }

  async createTask(spec: TaskSpec, key: string | undefined): Promise<StoredTask> {
    if (this.tasks.has(spec.name)) throw new BackupdError('ALREADY_EXISTS', `task "${spec.name}" already exists`);
    const at = this.now().toISOString();
    const task: StoredTask = { spec: structuredClone(spec), createdAt: at, updatedAt: at, revision: 1 };
    this.tasks.set(spec.name, { task, key });
    this.emit({ kind: 'task', name: spec.name });
    return structuredClone(task);
  }

  async updateTask(spec: TaskSpec, key: string | undefined, expectedRevision?: number): Promise<StoredTask> {
    const current = this.tasks.get(spec.name);
    if (!current) throw new BackupdError('NOT_FOUND', `task "${spec.name}" does not exist`);
    if (expectedRevision !== undefined && expectedRevision !== current.task.revision) {
      // As local-store.ts: a RevisionConflict (INVALID_ARGUMENT; no FAILED_PRECONDITION code exists).
      throw new RevisionConflict(
        `task "${spec.name}" is at revision ${current.task.revision}, not ${expectedRevision}`,
        current.task.revision,
      );
    }
    const task: StoredTask = {
      spec: structuredClone(spec),
      createdAt: current.task.createdAt,
      updatedAt: this.now().toISOString(),
      revision: current.task.revision + 1,
    };
    this.tasks.set(spec.name, { task, key: key ?? current.key });
    this.emit({ kind: 'task', name: spec.name });
    return structuredClone(task);
  }

  async deleteTask(name: string): Promise<void> {
    if (!this.tasks.delete(name)) throw new BackupdError('NOT_FOUND', `task "${name}" does not exist`);
    for (const [k, unit] of this.units) if (unit.task === name) this.units.delete(k);
    for (const [k, request] of this.requests) if (request.task === name) this.requests.delete(k);
    this.emit({ kind: 'task', name });
  }

  async getTaskKey(name: string): Promise<string | undefined> {
    return this.tasks.get(name)?.key;
  }

  async getUnit(task: string, database: string): Promise<UnitState | undefined> {
    this.maybeFail('getUnit');
    return this.unit(task, database);
  }

  async listUnits(task?: string): Promise<UnitState[]> {
    this.maybeFail('listUnits');
    const named = new Map<string, { task: string; database: string }>();
    for (const u of [...this.units.values(), ...this.requests.values()]) {
      if (task === undefined || u.task === task) named.set(unitKey(u.task, u.database), u);
    }
    return [...named.values()].map((u) => this.unit(u.task, u.database) as UnitState).sort(unitOrder);
  }

  async updateUnitStatus(
    task: string,
    database: string,
    change: (current: UnitStatus) => UnitStatus,
  ): Promise<UnitState> {
    this.maybeFail('updateUnitStatus');
    const key = unitKey(task, database);
    const current = this.units.get(key) ?? emptyUnit(task, database);
    this.units.set(key, structuredClone(statusOf(change(structuredClone(current)))));
    return this.unit(task, database) as UnitState;
  }

  async setUnitRequest(task: string, database: string, request: UnitRequest): Promise<UnitState> {
    this.maybeFail('setUnitRequest');
    this.requests.set(unitKey(task, database), { ...structuredClone(request), task, database });
    return this.unit(task, database) as UnitState;
  }

  /** A copy of the unit's status with its request, as a real store reads them back. */
  private unit(task: string, database: string): UnitState | undefined {
    const key = unitKey(task, database);
    const [status, request] = [this.units.get(key), this.requests.get(key)];
    return status || request ? structuredClone(unitOf(task, database, status, request)) : undefined;
  }

  async claimTick(task: string, database: string, level: TickKind, scheduledAt: string): Promise<boolean> {
    this.maybeFail('claimTick');
    const key = JSON.stringify([task, database, level, scheduledAt]);
    if (this.claims.has(key)) return false;
    this.claims.add(key);
    this.claimed.push({ task, database, level, scheduledAt });
    return true;
  }

  async putRun(run: RunRecord): Promise<boolean> {
    this.maybeFail('putRun');
    if (!runMovesForward(this.runs.get(run.runId), run)) return false;
    this.runs.set(run.runId, structuredClone(run));
    // Bounded history: drop the oldest finished runs first, as the interface promises.
    const finished = [...this.runs.values()]
      .filter((r) => r.outcome !== 'queued' && r.outcome !== 'running')
      .sort((a, b) => (a.queuedAt < b.queuedAt ? -1 : 1));
    while (this.runs.size > this.maxRuns && finished.length > 0) this.runs.delete(finished.shift()!.runId);
    this.emit({ kind: 'run', run: structuredClone(run) });
    return true;
  }

  async getRun(runId: string): Promise<RunRecord | undefined> {
    const run = this.runs.get(runId);
    return run && structuredClone(run);
  }

  async listRuns(filter: RunFilter = {}): Promise<RunRecord[]> {
    return [...this.runs.values()]
      .filter((r) => runMatches(r, filter))
      .sort((a, b) => (a.queuedAt < b.queuedAt ? 1 : -1))
      .slice(0, filter.limit ?? 50)
      .map((r) => structuredClone(r));
  }

  subscribe(listener: (event: StoreEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }

  private emit(event: StoreEvent): void {
    for (const listener of this.listeners) listener(event);
  }

  private maybeFail(method: Method): void {
    const error = this.failures.get(method)?.shift();
    if (error !== undefined) throw error;
  }
}

function unitKey(task: string, database: string): string {
  return JSON.stringify([task, database]);
}
