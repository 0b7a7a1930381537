// The store of a cluster in etcd (etcd-keys.ts): tasks, keys, unit requests and statuses, assignments, tick
// claims (etcd-ticks.ts) and run history (etcd-runs.ts), so they survive the death of any single node.
// Everything under `tasks/` is mirrored in memory by one watch (etcd-mirror.ts), so reads are local and keep
// working while etcd is unreachable; units already owned keep running from that mirror. Task changes and the
// operator's unit requests go to etcd or fail with UNAVAILABLE. Status reports (unit statuses, runs) and tick
// claims made while etcd is unreachable go to the durable local outbox (outbox.ts) and are written when etcd
// returns. Three writes are guarded in their etcd transaction: a unit's status is written only while the
// unit's assignment is still the one it was reported under (an old owner's late report never overwrites the
// new owner's), a run record only moves forward (queued -> running -> its outcome), and a tick is claimed
// create-if-absent; the outbox flush (outbox-flush.ts) goes through the same guards.

import type { Namespace } from 'etcd3';
import type { Logger } from 'pino';
import { BackupdError, messageOf, RevisionConflict } from '../errors.js';
import type { TaskSpec } from '../task.js';
import { type EtcdConnection, etcdFailure, isUnreachable } from './etcd-client.js';
import { keys, parseTaskKey } from './etcd-keys.js';
import { type Assignment, EtcdMirror, unitId } from './etcd-mirror.js';
import { EtcdRuns, GUARDED_ATTEMPTS } from './etcd-runs.js';
import { EtcdTicks } from './etcd-ticks.js';
import { Outbox } from './outbox.js';
import { OutboxFlush } from './outbox-flush.js';
import type { TickKind } from './store.js';
import {
  emptyUnit,
  type ReportFence,
  type RunFilter,
  type RunRecord,
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

export type { Assignment } from './etcd-mirror.js';

export interface EtcdStoreOptions {
  connection: EtcdConnection;
  /**
   * This node's name: a unit's state is reported under this node's assignment of the unit, and a tick claim
   * says who made it.
   */
  node: string;
  /** The node's data folder, for the outbox. */
  dataDir: string;
  logger: Logger;
  /** Run records kept (finished ones beyond it are dropped oldest first); 1000 by default. */
  maxRuns?: number;
  /** How often the outbox is flushed while it holds reports; 1 s by default. */
  flushIntervalMs?: number;
  /** Tick claims expire after this long; the unit's cursor covers them by then. */
  tickTtlSeconds?: number;
  now?: () => Date;
}

const DEFAULT_MAX_RUNS = 1000;
const FLUSH_INTERVAL_MS = 1000;

export class EtcdStore implements Store {
  readonly mode = 'etcd' as const;
  private readonly ns: Namespace;
  private readonly mirror: EtcdMirror;
  private readonly runs: EtcdRuns;
  private readonly ticks: EtcdTicks;
  private readonly listeners = new Set<(event: StoreEvent) => void>();
  /** The report of each unit under way (updateUnitStatus): the unit's next change waits for it. */
  private readonly unitReports = new Map<string, Promise<UnitStatus>>();
  private readonly outboxFlush: OutboxFlush;
  private closed = false;

  private constructor(
    private readonly connection: EtcdConnection,
    private readonly node: string,
    private readonly outbox: Outbox,
    private readonly log: Logger,
    maxRuns: number,
    tickTtlSeconds: number,
    private readonly now: () => Date,
  ) {
    this.ns = connection.ns;
    this.mirror = new EtcdMirror(
      this.ns,
      log,
      (event) => this.emit(event),
      (task) => {
        if (!this.closed) this.outbox.forgetTask(task);
      },
    );
    this.ticks = new EtcdTicks({ connection, node, outbox, log, tickTtlSeconds, now });
    this.runs = new EtcdRuns({
      ns: this.ns,
      config: connection.config,
      outbox,
      log,
      maxRuns,
      written: this.mirror.written,
      markedDuplicate: (run) => this.outboxFlush.markedDuplicate(run),
      emit: (event) => this.emit(event),
    });
    this.outboxFlush = new OutboxFlush(
      outbox,
      node,
      {
        claim: (key, value) => this.ticks.createIfAbsent(key, value),
        claimant: async (key) => {
          const existing = await this.ns.get(key).string();
          return existing === null ? undefined : (JSON.parse(existing) as { node?: string }).node;
        },
        run: (key, run) => this.runs.write(key, run),
        unit: async (key, state) => {
          if (await this.writeUnit(key, state, false)) return true;
          await this.reloadUnit(state.task, state.database);
          return false;
        },
        put: async (key, value) => {
          const result = await this.ns.put(key).value(value).exec();
          this.mirror.written.set(key, Number(result.header.revision));
        },
      },
      this.log,
      () => this.emit({ kind: 'settled' }),
    );
  }

  /** Load everything under `tasks/`, start watching it, and start flushing the outbox. */
  static async open(options: EtcdStoreOptions): Promise<EtcdStore> {
    const outbox = await Outbox.open(options.dataDir);
    const store = new EtcdStore(
      options.connection,
      options.node,
      outbox,
      options.logger.child({ component: 'etcd-store' }),
      options.maxRuns ?? DEFAULT_MAX_RUNS,
      options.tickTtlSeconds ?? 6 * 3600,
      options.now ?? (() => new Date()),
    );
    try {
      await store.mirror.start(await store.etcd('loading tasks', () => store.ns.getAll().prefix(keys.tasks).exec()));
    } catch (error) {
      outbox.close();
      throw error;
    }
    store.outboxFlush.start(options.flushIntervalMs ?? FLUSH_INTERVAL_MS);
    await store.flush();
    return store;
  }

  // ---- tasks ----

  async listTasks(): Promise<StoredTask[]> {
    return [...this.mirror.tasks.values()].sort((a, b) => a.spec.name.localeCompare(b.spec.name));
  }

  async getTask(name: string): Promise<StoredTask | undefined> {
    return this.mirror.tasks.get(name);
  }

  async createTask(spec: TaskSpec, key: string | undefined): Promise<StoredTask> {
    const at = this.now().toISOString();
    const task: StoredTask = { spec, createdAt: at, updatedAt: at, revision: 1 };
    const name = spec.name;
    const result = await this.etcd('creating a task', () =>
      this.ns
        .if(keys.taskSpec(name), 'Create', '==', 0)
        // A run that finished after a task of this name was deleted may have written a unit state again: a
        // new task starts with none, so it neither skips ticks nor inherits another task's references.
        .then(
          this.ns.delete().prefix(`${keys.task(name)}units/`),
          this.ns.delete().prefix(keys.taskTicks(name)),
          this.ns.put(keys.taskSpec(name)).value(JSON.stringify(task)),
          ...(key === undefined ? [] : [this.ns.put(keys.taskKey(name)).value(key)]),
        )
        .commit(),
    );
    if (!result.succeeded) throw new BackupdError('ALREADY_EXISTS', `task ${name} already exists`);
    this.mirror.applyTask(task, key, Number(result.header.revision));
    return task;
  }

  /** As LocalStore.updateTask: a revision mismatch is a RevisionConflict (INVALID_ARGUMENT). */
  async updateTask(spec: TaskSpec, key: string | undefined, expectedRevision?: number): Promise<StoredTask> {
    const name = spec.name;
    const current = await this.etcd('reading a task', () => this.ns.getAll().prefix(keys.taskSpec(name)).exec());
    const kv = current.kvs.find((k) => k.key.toString() === keys.taskSpec(name));
    if (!kv) throw new BackupdError('NOT_FOUND', `task ${name} not found`);
    const stored = JSON.parse(kv.value.toString()) as StoredTask;
    if (expectedRevision !== undefined && expectedRevision !== stored.revision) {
      throw new RevisionConflict(
        `task ${name} changed since revision ${expectedRevision} (now ${stored.revision}): read it again and retry`,
        stored.revision,
      );
    }
    const task: StoredTask = {
      spec,
      createdAt: stored.createdAt,
      updatedAt: this.now().toISOString(),
      revision: stored.revision + 1,
    };
    const result = await this.etcd('updating a task', () =>
      this.ns
        .if(keys.taskSpec(name), 'Mod', '==', kv.mod_revision)
        .then(
          this.ns.put(keys.taskSpec(name)).value(JSON.stringify(task)),
          ...(key === undefined ? [] : [this.ns.put(keys.taskKey(name)).value(key)]),
        )
        .commit(),
    );
    if (!result.succeeded) {
      throw new RevisionConflict(`task ${name} was changed by another node meanwhile: retry`);
    }
    this.mirror.applyTask(task, key, Number(result.header.revision));
    return task;
  }

  async deleteTask(name: string): Promise<void> {
    const result = await this.etcd('deleting a task', () =>
      this.ns
        .if(keys.taskSpec(name), 'Create', '>', 0)
        .then(this.ns.delete().prefix(keys.task(name)), this.ns.delete().prefix(keys.taskTicks(name)))
        .commit(),
    );
    if (!result.succeeded) throw new BackupdError('NOT_FOUND', `task ${name} not found`);
    this.mirror.dropTask(name);
  }

  async getTaskKey(name: string): Promise<string | undefined> {
    return this.mirror.taskKeys.get(name);
  }

  // ---- units ----

  async getUnit(task: string, database: string): Promise<UnitState | undefined> {
    const id = unitId(task, database);
    const [status, request] = [this.mirror.units.get(id), this.mirror.requests.get(id)];
    return status || request ? unitOf(task, database, status, request) : undefined;
  }

  async listUnits(task?: string): Promise<UnitState[]> {
    const ids = new Set([...this.mirror.units.keys(), ...this.mirror.requests.keys()]);
    const units: UnitState[] = [];
    for (const id of ids) {
      const status = this.mirror.units.get(id);
      const request = this.mirror.requests.get(id);
      const named = status ?? request;
      if (!named || (task !== undefined && named.task !== task)) continue;
      units.push(unitOf(named.task, named.database, status, request));
    }
    return units.sort(unitOrder);
  }

  /**
   * The operator's request goes to etcd at once or fails UNAVAILABLE, as task changes do; any node may write
   * it (it is no status report, so no assignment guards it), and the unit's owner learns of it by the watch.
   */
  async setUnitRequest(task: string, database: string, request: UnitRequest): Promise<UnitState> {
    const key = keys.unitRequest(task, database);
    const result = await this.etcd('recording a unit request', () =>
      this.ns.put(key).value(JSON.stringify(request)).exec(),
    );
    this.mirror.written.set(key, Number(result.header.revision));
    this.mirror.requests.set(unitId(task, database), { ...request, task, database });
    return unitOf(task, database, this.mirror.units.get(unitId(task, database)), request);
  }

  /**
   * Read-modify-write on the mirror, then report to etcd (or the outbox). Only the responsible node writes a
   * unit's state in normal operation, so the mirror is the truth for the units this node runs. The report
   * carries the assignment (term, revision) it is made under, and etcd takes it only while that is still the
   * unit's assignment: a node that lost the unit (or never had it) never overwrites its new owner's state,
   * and then gets back the state etcd holds. A unit's changes run one at a time, each after the one before
   * is reported, so each sees the one before and etcd gets them in order.
   */
  async updateUnitStatus(
    task: string,
    database: string,
    change: (current: UnitStatus) => UnitStatus,
  ): Promise<UnitState> {
    const id = unitId(task, database);
    const now = () => this.reportUnit(task, database, change);
    const before = this.unitReports.get(id);
    const report = before ? before.then(now, now) : now();
    this.unitReports.set(id, report);
    const done = () => {
      if (this.unitReports.get(id) === report) this.unitReports.delete(id);
    };
    report.then(done, done);
    return unitOf(task, database, await report, this.mirror.requests.get(id));
  }

  private async reportUnit(
    task: string,
    database: string,
    change: (current: UnitStatus) => UnitStatus,
  ): Promise<UnitStatus> {
    const id = unitId(task, database);
    const next: UnitStatus = {
      ...statusOf(change(this.mirror.units.get(id) ?? emptyUnit(task, database))),
      reportedUnder: this.fenceOf(task, database),
    };
    if (next.task !== task || next.database !== database) {
      throw new BackupdError('INTERNAL', `the state of unit ${task} x ${database} was changed into another unit's`);
    }
    this.mirror.units.set(id, next);
    const key = keys.unitStatus(task, database);
    if (this.outbox.size > 0) {
      // Behind older reports, so etcd never gets them out of order; the flush applies the same guard.
      this.outbox.add({ key, value: JSON.stringify(next), kind: 'put' });
      return next;
    }
    try {
      if (await this.writeUnit(key, next, true)) return this.mirror.units.get(id) ?? next;
    } catch (error) {
      if (!isUnreachable(error)) throw etcdFailure(this.connection.config, 'reporting a unit state', error);
      this.log.warn({ key, error: messageOf(error) }, 'etcd unreachable: keeping status reports in the local outbox');
      this.outbox.add({ key, value: JSON.stringify(next), kind: 'put' });
      return next;
    }
    return (await this.reloadUnit(task, database)) ?? next;
  }

  /** Every unit's assignment the mirror holds. */
  assignments(): (Assignment & { task: string; database: string })[] {
    return [...this.mirror.assignments.values()];
  }

  assignment(task: string, database: string): Assignment | undefined {
    return this.mirror.assignments.get(unitId(task, database));
  }

  /** The assignment this node reports a unit's state under: its own, or none (revision 0). */
  private fenceOf(task: string, database: string): ReportFence {
    const assignment = this.mirror.assignments.get(unitId(task, database));
    return assignment && assignment.node === this.node
      ? { term: assignment.term, revision: assignment.revision }
      : { term: 0, revision: 0 };
  }

  // ---- ticks (etcd-ticks.ts) ----

  claimTick(task: string, database: string, level: TickKind, scheduledAt: string): Promise<boolean> {
    return this.ticks.claim(task, database, level, scheduledAt);
  }

  // ---- runs (etcd-runs.ts) ----

  putRun(run: RunRecord): Promise<boolean> {
    return this.runs.put(run);
  }

  getRun(runId: string): Promise<RunRecord | undefined> {
    return this.runs.get(runId);
  }

  listRuns(filter: RunFilter = {}): Promise<RunRecord[]> {
    return this.runs.list(filter);
  }

  subscribe(listener: (event: StoreEvent) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** When (ms since the epoch) the task watch was lost, undefined while it delivers changes. */
  get watchLostSince(): number | undefined {
    return this.mirror.watchLostSince;
  }

  /** Reports waiting for etcd. */
  get pendingReports(): number {
    return this.outbox.size;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.outboxFlush.stop();
    await this.mirror.stop();
    this.outbox.close();
  }

  /** Write what the outbox holds now (outbox-flush.ts; also done on a timer). */
  flush(): Promise<void> {
    return this.outboxFlush.flush();
  }

  // ---- inside ----

  /** Run one etcd call; an etcd failure becomes the typed error saying what it means for the operator. */
  private async etcd<T>(what: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      throw etcdFailure(this.connection.config, what, error);
    }
  }

  /**
   * Write a unit's state only while the unit's assignment is the one the state was reported under
   * (`reportedUnder`, revision 0: none). False when another assignment holds: the report is dropped. A report
   * made just now (`current`) whose assignment etcd rewrote for this same node, before the watch brought the
   * new revision, is made again under it: it is this owner's newest state. One from the outbox is not: it was
   * made under the assignment it names, and another owner may have reported since.
   */
  private async writeUnit(key: string, state: UnitStatus, current: boolean): Promise<boolean> {
    const parsed = parseTaskKey(key);
    if (parsed.kind !== 'status') throw new BackupdError('INTERNAL', `${key} is not a unit state`);
    const assignmentKey = keys.assignment(parsed.task, parsed.database);
    let fence = state.reportedUnder ?? { term: 0, revision: 0 };
    for (let attempt = 0; attempt < GUARDED_ATTEMPTS; attempt++) {
      const fenced = { ...state, reportedUnder: fence };
      const result = await this.ns
        .if(assignmentKey, 'Mod', '==', fence.revision)
        .then(this.ns.put(key).value(JSON.stringify(fenced)))
        .else(this.ns.get(assignmentKey))
        .commit();
      if (result.succeeded) {
        this.mirror.written.set(key, Number(result.header.revision));
        if (current) this.mirror.units.set(unitId(parsed.task, parsed.database), fenced);
        return true;
      }
      const kv = result.responses[0]?.response_range?.kvs[0];
      const now = kv ? (JSON.parse(kv.value.toString()) as Assignment) : undefined;
      if (!current || !kv || now?.node !== this.node) break;
      fence = { term: now.term, revision: Number(kv.mod_revision) };
    }
    this.log.warn(
      { task: parsed.task, database: parsed.database, term: fence.term, revision: fence.revision },
      'dropped a status report made under an older assignment of the unit: its new owner reports it now',
    );
    return false;
  }

  /** Put the unit's state etcd holds back into the mirror (after a dropped report). */
  private async reloadUnit(task: string, database: string): Promise<UnitStatus | undefined> {
    const id = unitId(task, database);
    try {
      const value = await this.ns.get(keys.unitStatus(task, database)).string();
      if (value === null) {
        this.mirror.units.delete(id);
        return undefined;
      }
      const state = JSON.parse(value) as UnitStatus;
      this.mirror.units.set(id, state);
      return state;
    } catch (error) {
      // The watch brings the newer state anyway; until then the mirror holds this node's dropped report.
      this.log.warn({ task, database, error: messageOf(error) }, 'could not read back a unit state');
      return this.mirror.units.get(id);
    }
  }

  private emit(event: StoreEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (error) {
        this.log.error({ error: messageOf(error) }, 'a store listener failed');
      }
    }
  }
}
