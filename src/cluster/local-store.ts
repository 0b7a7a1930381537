// The store of the single-node embedded default: tasks, keys, unit requests and statuses, tick claims and run
// history in one SQLite file, `<dataDir>/state.db` (its schema and statements: local-schema.ts). The agent is
// its own leader, so a local transaction is all the fencing a tick claim needs. The etcd store implements the
// same contract (store.ts) for a cluster.

import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { BackupdError, messageOf, RevisionConflict } from '../errors.js';
import type { TaskSpec } from '../task.js';
import { migrate, prepare } from './local-schema.js';
import { createPrivate } from './private-file.js';
import type { TickKind } from './store.js';
import {
  emptyUnit,
  type RunFilter,
  type RunRecord,
  runLimit,
  runMovesForward,
  type Store,
  type StoredTask,
  type StoreEvent,
  statusOf,
  type UnitRequest,
  type UnitState,
  type UnitStatus,
  unitOf,
  unitOrder,
} from './store.js';

export interface LocalStoreOptions {
  /** The agent's data folder; created when missing. */
  dataDir: string;
  /** Run records kept at most (finished ones beyond it are dropped oldest first); 1000 by default. */
  maxRuns?: number;
  /** The clock, injected by tests. */
  now?: () => Date;
}

/** The file inside the data folder. */
export const STATE_FILE = 'state.db';

const DEFAULT_MAX_RUNS = 1000;
/** Tick claims older than this are dropped: the unit's cursor already covers them and catch-up never looks back that far. */
const TICK_RETENTION_MS = 35 * 24 * 60 * 60 * 1000;
/** Pruning ticks costs an index scan, so it runs at open and then every so many claims, not on each one. */
const TICK_PRUNE_EVERY = 1000;
/** How long a write waits for another connection (a second process on the same file) before UNAVAILABLE. */
const BUSY_TIMEOUT_MS = 5000;

interface StatusRow {
  task: string;
  database: string;
  status: string;
}

interface RequestRow {
  task: string;
  database: string;
  request: string;
}

// Our own file, written only by this module: the JSON is what updateUnitStatus and setUnitRequest stored.
const parseStatus = (row: StatusRow) => JSON.parse(row.status) as UnitStatus;
const parseRequest = (row: RequestRow) => JSON.parse(row.request) as UnitRequest;

interface TaskRow {
  spec: string;
  created_at: string;
  updated_at: string;
  revision: number;
}

/** Open (creating when needed) the store in `<dataDir>/state.db`. UNSUPPORTED_FORMAT for a file of a newer backupd. */
export async function openLocalStore(options: LocalStoreOptions): Promise<LocalStore> {
  return LocalStore.open(options);
}

export class LocalStore implements Store {
  readonly mode = 'single-node' as const;

  private db: Database.Database | undefined;
  private readonly listeners = new Set<(event: StoreEvent) => void>();
  private claimsSincePrune = 0;
  private readonly sql: ReturnType<typeof prepare>;
  private readonly runQueries = new Map<string, Database.Statement>();

  private constructor(
    db: Database.Database,
    /** The file, for error messages. */
    readonly path: string,
    private readonly maxRuns: number,
    private readonly now: () => Date,
  ) {
    this.db = db;
    this.sql = prepare(db);
  }

  /** Use openLocalStore. */
  static async open(options: LocalStoreOptions): Promise<LocalStore> {
    const maxRuns = options.maxRuns ?? DEFAULT_MAX_RUNS;
    if (!Number.isInteger(maxRuns) || maxRuns < 1) {
      throw new BackupdError('INVALID_ARGUMENT', `maxRuns must be a positive integer, not ${maxRuns}`);
    }
    const path = join(options.dataDir, STATE_FILE);
    try {
      await mkdir(options.dataDir, { recursive: true });
      await createPrivate(path, options.dataDir);
    } catch (error) {
      throw new BackupdError('UNAVAILABLE', `cannot create the state file ${path}: ${messageOf(error)}`, {
        retryable: false,
        cause: error,
      });
    }
    const db = guard(path, 'opening', () => new Database(path, { timeout: BUSY_TIMEOUT_MS }));
    try {
      guard(path, 'opening', () => migrate(db, path));
    } catch (error) {
      db.close();
      throw error;
    }
    const store = new LocalStore(db, path, maxRuns, options.now ?? (() => new Date()));
    try {
      store.pruneTicks();
    } catch (error) {
      db.close();
      throw error;
    }
    return store;
  }

  async listTasks(): Promise<StoredTask[]> {
    return this.run('listing tasks', () => (this.sql.listTasks.all() as TaskRow[]).map(toStoredTask));
  }

  async getTask(name: string): Promise<StoredTask | undefined> {
    return this.run('reading a task', () => {
      const row = this.sql.getTask.get(name) as TaskRow | undefined;
      return row && toStoredTask(row);
    });
  }

  async createTask(spec: TaskSpec, key: string | undefined): Promise<StoredTask> {
    const stored = this.write('creating a task', () => {
      if (this.sql.getTask.get(spec.name)) {
        throw new BackupdError('ALREADY_EXISTS', `task ${spec.name} already exists`);
      }
      const at = this.now().toISOString();
      const task: StoredTask = { spec, createdAt: at, updatedAt: at, revision: 1 };
      this.sql.insertTask.run(spec.name, JSON.stringify(spec), at, at, 1);
      if (key !== undefined) this.sql.putKey.run(spec.name, key);
      // A run that finished after its task was deleted may have written its unit state again; a new task of
      // the same name starts with none, so it neither skips ticks nor inherits another task's references.
      this.sql.deleteUnits.run(spec.name);
      this.sql.deleteRequests.run(spec.name);
      this.sql.deleteTicks.run(spec.name);
      return task;
    });
    this.emit({ kind: 'task', name: spec.name });
    return stored;
  }

  /**
   * As Store.updateTask. A revision mismatch (FAILED_PRECONDITION in the contract) is a RevisionConflict, code
   * INVALID_ARGUMENT (there is no FAILED_PRECONDITION code), with the current revision.
   */
  async updateTask(spec: TaskSpec, key: string | undefined, expectedRevision?: number): Promise<StoredTask> {
    const stored = this.write('updating a task', () => {
      const row = this.sql.getTask.get(spec.name) as TaskRow | undefined;
      if (!row) throw new BackupdError('NOT_FOUND', `task ${spec.name} not found`);
      if (expectedRevision !== undefined && expectedRevision !== row.revision) {
        throw new RevisionConflict(
          `task ${spec.name} changed since revision ${expectedRevision} (now ${row.revision}): read it again and retry`,
          row.revision,
        );
      }
      const task: StoredTask = {
        spec,
        createdAt: row.created_at,
        updatedAt: this.now().toISOString(),
        revision: row.revision + 1,
      };
      this.sql.updateTask.run(JSON.stringify(spec), task.updatedAt, task.revision, spec.name);
      if (key !== undefined) this.sql.putKey.run(spec.name, key);
      return task;
    });
    this.emit({ kind: 'task', name: spec.name });
    return stored;
  }

  async deleteTask(name: string): Promise<void> {
    this.write('deleting a task', () => {
      if (this.sql.deleteTask.run(name).changes === 0) throw new BackupdError('NOT_FOUND', `task ${name} not found`);
      this.sql.deleteKey.run(name);
      this.sql.deleteUnits.run(name);
      this.sql.deleteRequests.run(name);
      this.sql.deleteTicks.run(name);
    });
    this.emit({ kind: 'task', name });
  }

  async getTaskKey(name: string): Promise<string | undefined> {
    return this.run('reading a task key', () => (this.sql.getKey.get(name) as { key: string } | undefined)?.key);
  }

  async getUnit(task: string, database: string): Promise<UnitState | undefined> {
    return this.run('reading a unit', () => {
      const status = this.sql.getUnit.get(task, database) as StatusRow | undefined;
      const request = this.sql.getRequest.get(task, database) as RequestRow | undefined;
      if (!status && !request) return undefined;
      return unitOf(task, database, status && parseStatus(status), request && parseRequest(request));
    });
  }

  async listUnits(task?: string): Promise<UnitState[]> {
    return this.run('listing units', () => {
      const statuses = (
        task === undefined ? this.sql.listUnits.all() : this.sql.listTaskUnits.all(task)
      ) as StatusRow[];
      const requests = (
        task === undefined ? this.sql.listRequests.all() : this.sql.listTaskRequests.all(task)
      ) as RequestRow[];
      const units = new Map<string, { task: string; database: string; status?: UnitStatus; request?: UnitRequest }>();
      const entry = (row: { task: string; database: string }) => {
        const id = `${row.task}\u0000${row.database}`;
        const known = units.get(id) ?? { task: row.task, database: row.database };
        units.set(id, known);
        return known;
      };
      for (const row of statuses) entry(row).status = parseStatus(row);
      for (const row of requests) entry(row).request = parseRequest(row);
      return [...units.values()].map((u) => unitOf(u.task, u.database, u.status, u.request)).sort(unitOrder);
    });
  }

  async updateUnitStatus(
    task: string,
    database: string,
    change: (current: UnitStatus) => UnitStatus,
  ): Promise<UnitState> {
    // One immediate transaction: the write lock is taken before the read, so no other connection can change
    // the unit between what `change` saw and what it wrote. An error thrown by `change` rolls back and passes
    // through as it is.
    return this.write('updating a unit', () => {
      const row = this.sql.getUnit.get(task, database) as StatusRow | undefined;
      const next = statusOf(change(row ? parseStatus(row) : emptyUnit(task, database)));
      if (next.task !== task || next.database !== database) {
        throw new BackupdError(
          'INTERNAL',
          `the state of unit ${task} x ${database} was changed into one of ${next.task} x ${next.database}`,
        );
      }
      this.sql.putUnit.run(task, database, JSON.stringify(next));
      const request = this.sql.getRequest.get(task, database) as RequestRow | undefined;
      return unitOf(task, database, next, request && parseRequest(request));
    });
  }

  async setUnitRequest(task: string, database: string, request: UnitRequest): Promise<UnitState> {
    return this.write('recording a unit request', () => {
      this.sql.putRequest.run(task, database, JSON.stringify(request));
      const status = this.sql.getUnit.get(task, database) as StatusRow | undefined;
      return unitOf(task, database, status && parseStatus(status), request);
    });
  }

  async claimTick(task: string, database: string, level: TickKind, scheduledAt: string): Promise<boolean> {
    const pruneDue = this.claimsSincePrune + 1 >= TICK_PRUNE_EVERY;
    // The pruning shares the claim's transaction: were it a write of its own, its failure could reject a call
    // whose claim had already committed, and that tick would then be run by nobody.
    const claimed = this.write('claiming a tick', () => {
      const at = this.now();
      const fresh = this.sql.claimTick.run(task, database, level, scheduledAt, at.toISOString()).changes === 1;
      if (pruneDue) this.sql.pruneTicks.run(tickPruneBefore(at));
      return fresh;
    });
    this.claimsSincePrune = pruneDue ? 0 : this.claimsSincePrune + 1;
    return claimed;
  }

  /** As Store.putRun: the stored record is read and replaced in one transaction, so it only moves forward. */
  async putRun(run: RunRecord): Promise<boolean> {
    const written = this.write('recording a run', () => {
      const row = this.sql.getRun.get(run.runId) as { record: string } | undefined;
      if (row && !runMovesForward(JSON.parse(row.record) as RunRecord, run)) return false;
      this.sql.putRun.run(run.runId, run.task, run.database, run.outcome, run.node, run.queuedAt, JSON.stringify(run));
      const { count } = this.sql.countRuns.get() as { count: number };
      // Only finished runs go: a queued or running one is still the agent's work in progress (and a restarted
      // agent takes back a half-published run from it), so the bound may be exceeded while many are open.
      if (count > this.maxRuns) this.sql.pruneRuns.run(count - this.maxRuns);
      return true;
    });
    if (written) this.emit({ kind: 'run', run });
    return written;
  }

  async getRun(runId: string): Promise<RunRecord | undefined> {
    return this.run('reading a run', () => {
      const row = this.sql.getRun.get(runId) as { record: string } | undefined;
      return row && (JSON.parse(row.record) as RunRecord);
    });
  }

  /** As Store.listRuns; INVALID_ARGUMENT when `limit` is not a positive integer. */
  async listRuns(filter: RunFilter = {}): Promise<RunRecord[]> {
    const db = this.open();
    const limit = runLimit(filter);
    const where: string[] = [];
    const params: Record<string, string | number> = { limit };
    // Column names come from this fixed list, values are bound: nothing from the filter reaches the SQL text.
    for (const field of ['task', 'database', 'outcome', 'node'] as const) {
      const value = filter[field];
      if (value === undefined) continue;
      where.push(`${field} = @${field}`);
      params[field] = value;
    }
    const sql = `SELECT record FROM runs${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY queued_at DESC, run_id DESC LIMIT @limit`;
    return this.run('listing runs', () => {
      // At most 16 shapes of query (which filters are set), each prepared once.
      let statement = this.runQueries.get(sql);
      if (!statement) {
        statement = db.prepare(sql);
        this.runQueries.set(sql, statement);
      }
      return (statement.all(params) as { record: string }[]).map((row) => JSON.parse(row.record) as RunRecord);
    });
  }

  subscribe(listener: (event: StoreEvent) => void): () => void {
    this.open();
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** Closes the file; every later call, close included, throws UNAVAILABLE. */
  async close(): Promise<void> {
    const db = this.open();
    this.db = undefined;
    this.listeners.clear();
    db.close();
  }

  /** Drop tick claims older than TICK_RETENTION_MS. */
  private pruneTicks(): void {
    this.write('pruning old ticks', () => this.sql.pruneTicks.run(tickPruneBefore(this.now())));
    this.claimsSincePrune = 0;
  }

  private emit(event: StoreEvent): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(event);
      } catch {
        // The change is already committed and the caller must learn that it succeeded; a listener's own bug
        // is the listener's to report, and must not stop the listeners after it from hearing of the change.
      }
    }
  }

  private open(): Database.Database {
    if (!this.db) throw new BackupdError('UNAVAILABLE', 'store is closed', { retryable: false });
    return this.db;
  }

  private run<T>(what: string, body: () => T): T {
    this.open();
    return guard(this.path, what, body);
  }

  /** `body` in an immediate transaction (the write lock taken up front), committed when it returns. */
  private write<T>(what: string, body: () => T): T {
    const db = this.open();
    return guard(this.path, what, () => db.transaction(body).immediate());
  }
}

/** Tick claims made before this time are forgotten. */
function tickPruneBefore(now: Date): string {
  return new Date(now.getTime() - TICK_RETENTION_MS).toISOString();
}

function toStoredTask(row: TaskRow): StoredTask {
  // Our own file, written only by this module: the JSON is a TaskSpec as it was given.
  return {
    spec: JSON.parse(row.spec) as TaskSpec,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    revision: row.revision,
  };
}

/** Run `body`, turning SQLite's errors into BackupdError naming the file; every other error passes as it is. */
function guard<T>(path: string, what: string, body: () => T): T {
  try {
    return body();
  } catch (error) {
    if (!(error instanceof Database.SqliteError)) throw error;
    const busy = error.code.startsWith('SQLITE_BUSY') || error.code.startsWith('SQLITE_LOCKED');
    throw new BackupdError(
      'UNAVAILABLE',
      busy
        ? `${what} failed: ${path} is locked by another process (${error.message})`
        : `${what} failed in ${path}: ${error.message} (${error.code})`,
      { retryable: busy, cause: error },
    );
  }
}
