// A node's mirror of everything under a cluster's `tasks/` prefix in etcd (etcd-keys.ts): task specs, their
// keys, unit statuses, unit requests and assignments, in memory, kept by one watch. Reads are local and keep
// working while etcd is unreachable; the etcd store (etcd-store.ts) writes through etcd and puts its own writes
// here at once, and the watch brings what other nodes write. Echoes of this node's own writes older than its
// last one are ignored, and an assignment of an older term than one held is too.

import type { IKeyValue, IRangeResponse, Namespace, Watcher } from 'etcd3';
import type { Logger } from 'pino';
import { messageOf } from '../errors.js';
import { keys, parseTaskKey } from './etcd-keys.js';
import type { StoredTask, StoreEvent, UnitRequest, UnitStatus } from './store.js';

/** A unit's responsible node, as the leader wrote it. */
export interface Assignment {
  /** Empty when no live node can take the unit. */
  node: string;
  /** The term of the leader that wrote it; nodes ignore an assignment older than one they have. */
  term: number;
  reason: string;
  at: string;
}

/** An assignment the mirror holds: its unit, and the etcd mod revision of its key (the unit's fencing token). */
export type HeldAssignment = Assignment & { task: string; database: string; revision: number };

export const unitId = (task: string, database: string) => `${task}\u0000${database}`;

export class EtcdMirror {
  readonly tasks = new Map<string, StoredTask>();
  readonly taskKeys = new Map<string, string>();
  /** Unit statuses, by unitId. */
  readonly units = new Map<string, UnitStatus>();
  /** What the operator asked of units, by unitId. */
  readonly requests = new Map<string, UnitRequest & { task: string; database: string }>();
  /** By unitId. */
  readonly assignments = new Map<string, HeldAssignment>();
  /** The etcd revision of this node's last write per key: older watch echoes of it are ignored. */
  readonly written = new Map<string, number>();
  private watcher: Watcher | undefined;
  private lostAt: number | undefined;

  constructor(
    private readonly ns: Namespace,
    private readonly log: Logger,
    private readonly emit: (event: StoreEvent) => void,
    /** Called when a task is dropped (deleted here or by another node). */
    private readonly dropped: (task: string) => void,
  ) {}

  /** Fill the mirror from a read of the whole prefix, and watch it from the revision after that read. */
  async start(all: IRangeResponse): Promise<void> {
    for (const kv of all.kvs) this.applyKv(kv, false);
    const watcher = await this.ns
      .watch()
      .prefix(keys.tasks)
      .startRevision(String(Number(all.header.revision) + 1))
      .create();
    watcher.on('put', (kv) => this.applyKv(kv, true));
    watcher.on('delete', (kv) => this.applyDelete(kv));
    watcher.on('error', (error) => this.log.warn({ error: messageOf(error) }, 'task watch failed'));
    // While the watch is down the mirror is stale: assignments made meanwhile arrive only when it resumes.
    watcher.on('disconnected', (error) => {
      if (this.lostAt !== undefined) return;
      this.lostAt = Date.now();
      this.log.warn({ error: messageOf(error) }, 'task watch lost: assignment and task changes wait until it resumes');
    });
    watcher.on('connected', () => {
      if (this.lostAt === undefined) return;
      this.log.info({ blindMs: Date.now() - this.lostAt }, 'task watch resumed');
      this.lostAt = undefined;
    });
    this.watcher = watcher;
  }

  /** When (ms since the epoch) the watch was lost, undefined while it delivers changes. */
  get watchLostSince(): number | undefined {
    return this.lostAt;
  }

  async stop(): Promise<void> {
    await this.watcher?.cancel().catch(() => undefined);
  }

  /** A task this node wrote at `revision` (its key too, unless undefined). */
  applyTask(task: StoredTask, key: string | undefined, revision: number): void {
    this.written.set(keys.taskSpec(task.spec.name), revision);
    this.tasks.set(task.spec.name, task);
    if (key !== undefined) this.taskKeys.set(task.spec.name, key);
    this.emit({ kind: 'task', name: task.spec.name });
  }

  /** Forget a task with its key, unit statuses, unit requests and assignments. */
  dropTask(name: string): void {
    const existed = this.tasks.delete(name);
    this.taskKeys.delete(name);
    this.dropped(name);
    for (const [id, unit] of this.units) if (unit.task === name) this.units.delete(id);
    for (const [id, request] of this.requests) if (request.task === name) this.requests.delete(id);
    for (const [id, a] of this.assignments) if (a.task === name) this.assignments.delete(id);
    if (existed) this.emit({ kind: 'task', name });
  }

  private applyKv(kv: IKeyValue, fromWatch: boolean): void {
    const key = kv.key.toString();
    if (fromWatch && Number(kv.mod_revision) < (this.written.get(key) ?? 0)) return;
    const parsed = parseTaskKey(key);
    const value = kv.value.toString();
    switch (parsed.kind) {
      case 'spec':
        this.tasks.set(parsed.task, JSON.parse(value) as StoredTask);
        this.emit({ kind: 'task', name: parsed.task });
        return;
      case 'key':
        this.taskKeys.set(parsed.task, value);
        return;
      case 'status':
        this.units.set(unitId(parsed.task, parsed.database), JSON.parse(value) as UnitStatus);
        if (fromWatch) this.emit({ kind: 'unit', task: parsed.task, database: parsed.database });
        return;
      case 'request':
        this.requests.set(unitId(parsed.task, parsed.database), {
          ...(JSON.parse(value) as UnitRequest),
          task: parsed.task,
          database: parsed.database,
        });
        if (fromWatch) this.emit({ kind: 'unit', task: parsed.task, database: parsed.database });
        return;
      case 'assignment': {
        const id = unitId(parsed.task, parsed.database);
        const next = JSON.parse(value) as Assignment;
        const known = this.assignments.get(id);
        if (known && known.term > next.term) {
          this.log.warn(
            { task: parsed.task, database: parsed.database, term: next.term },
            'ignored an assignment of an older term',
          );
          return;
        }
        this.assignments.set(id, {
          ...next,
          task: parsed.task,
          database: parsed.database,
          revision: Number(kv.mod_revision),
        });
        this.emit({ kind: 'assignment', task: parsed.task, database: parsed.database });
        return;
      }
      default:
    }
  }

  private applyDelete(kv: IKeyValue): void {
    const parsed = parseTaskKey(kv.key.toString());
    switch (parsed.kind) {
      case 'spec':
        this.dropTask(parsed.task);
        return;
      case 'key':
        this.taskKeys.delete(parsed.task);
        return;
      case 'status':
        this.units.delete(unitId(parsed.task, parsed.database));
        return;
      case 'request':
        this.requests.delete(unitId(parsed.task, parsed.database));
        return;
      case 'assignment':
        this.assignments.delete(unitId(parsed.task, parsed.database));
        this.emit({ kind: 'assignment', task: parsed.task, database: parsed.database });
        return;
      default:
    }
  }
}
