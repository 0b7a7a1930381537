// The units this node is responsible for, as given to its scheduler: refreshed when tasks, ownership or
// the sources' databases change; a unit taken over from another node waits for that node's run of it still
// in flight (takeover.ts); a unit this node gained may hold a run cut off on its last owner. Every few seconds
// a check reports (and schedules) units assigned here that the scheduler is not running, and a task watch
// that has been down a while.

import type { Logger } from 'pino';
import type { Cluster } from '../cluster/cluster.js';
import { GRACE_TTLS } from '../cluster/leader.js';
import type { RunRecord, Store } from '../cluster/store.js';
import { messageOf } from '../errors.js';
import type { Clock } from '../scheduler/clock.js';
import type { Scheduler } from '../scheduler/scheduler.js';
import type { TaskSpec } from '../task.js';
import type { AgentConfig } from './config.js';
import type { AgentMetrics } from './metrics.js';
import { Takeovers, unitKey } from './takeover.js';

/** How often the agent checks that it schedules every unit assigned to it. */
const ASSIGNMENT_CHECK_MS = 5000;

export interface OwnedUnitsDeps {
  config: AgentConfig;
  log: Logger;
  clock: Clock;
  store: Store;
  cluster: Cluster;
  scheduler: Scheduler;
  metrics: AgentMetrics;
  /** Whether this node is the unit's responsible node. */
  owns(task: string, database: string): boolean;
  unitsOf(spec: TaskSpec): string[];
  stopping(): boolean;
  /** Run again what another node's cut-off runs of these units left (recovery.ts). */
  takeOver(units: { task: string; database: string }[]): Promise<void>;
}

export class OwnedUnits {
  /** The units this node is responsible for, as last given to the scheduler (task NUL database). */
  private owned = new Set<string>();
  /** Units assigned here that the scheduler was not running at the last assignment check. */
  private unscheduled = new Set<string>();
  /** Each task's backup type as refresh last read it, for the record of a tick that could not be queued. */
  private readonly taskTypes = new Map<string, RunRecord['type']>();
  /** Units taken over from another node wait for its runs of them (cluster only). */
  private readonly takeovers: Takeovers | undefined;
  private assignmentTimer: { cancel(): void } | undefined;
  private takeoverTimer: { cancel(): void } | undefined;

  constructor(private readonly deps: OwnedUnitsDeps) {
    const { config, clock } = deps;
    this.takeovers = config.etcd
      ? new Takeovers(config.node, GRACE_TTLS * config.etcd.leaseTtlSeconds * 1000, () => clock.now().getTime())
      : undefined;
  }

  taskType(task: string): RunRecord['type'] | undefined {
    return this.taskTypes.get(task);
  }

  stop(): void {
    this.assignmentTimer?.cancel();
    this.takeoverTimer?.cancel();
  }

  /**
   * Every few seconds: a unit assigned to this node that its scheduler is not running (an ownership change
   * missed) is reported (log, metric) and scheduled; a task watch that has been down for a while is reported
   * too, as assignments made meanwhile cannot reach this node.
   */
  startChecks(): void {
    if (this.deps.stopping()) return;
    this.assignmentTimer = this.deps.clock.setTimeout(() => {
      this.check()
        .catch((error: unknown) => this.deps.log.warn({ error: messageOf(error) }, 'could not check assignments'))
        .finally(() => this.startChecks());
    }, ASSIGNMENT_CHECK_MS);
  }

  private async check(): Promise<void> {
    const missing: string[] = [];
    for (const task of await this.deps.store.listTasks()) {
      for (const database of this.deps.unitsOf(task.spec)) {
        if (this.deps.owns(task.spec.name, database) && !this.owned.has(`${task.spec.name}\u0000${database}`)) {
          missing.push(`${task.spec.name} x ${database}`);
        }
      }
    }
    // Only what the last check found too: an ownership change being applied right now (its refresh is
    // debounced) is not a missed one.
    const missed = missing.filter((unit) => this.unscheduled.has(unit));
    this.unscheduled = new Set(missing);
    this.deps.metrics.unitsNotScheduled.set(missed.length);
    if (missed.length > 0) {
      this.deps.log.warn(
        { units: missed.slice(0, 20), count: missed.length },
        'holding assignments it was not scheduling: scheduling them now',
      );
      await this.refresh();
    }
    const lost = this.deps.cluster.watchLostSince();
    if (lost !== undefined && Date.now() - lost > ASSIGNMENT_CHECK_MS) {
      this.deps.log.warn(
        { downSeconds: Math.round((Date.now() - lost) / 1000) },
        'the task watch is down: assignments made meanwhile have not reached this node',
      );
    }
  }

  /** Give the scheduler the units this node is responsible for. */
  async refresh(): Promise<void> {
    if (this.deps.stopping()) return;
    const units = [];
    // Back from an etcd outage with reports etcd does not have yet: no new unit until they are there, so a
    // unit this node takes over is planned from claims and states that include its own (docs/CLUSTER.md).
    const holdNew = this.deps.cluster.settling?.() ?? false;
    let held = 0;
    for (const task of await this.deps.store.listTasks()) {
      this.taskTypes.set(task.spec.name, task.spec.type);
      for (const database of this.deps.unitsOf(task.spec)) {
        if (!this.deps.owns(task.spec.name, database)) continue;
        if (holdNew && !this.deps.scheduler.has(task.spec.name, database)) {
          held++;
          continue;
        }
        units.push({
          task: task.spec.name,
          database,
          schedule: task.spec.schedule,
          drill: task.spec.drill?.schedule,
          missedRuns: task.spec.missedRuns,
          disabled: task.spec.disabled,
        });
      }
    }
    if (held > 0) this.deps.log.info({ units: held }, 'new units wait until this node’s outbox is in etcd');
    const waiting = await this.waitingTakeovers(units.filter((u) => !this.deps.scheduler.has(u.task, u.database)));
    if (this.deps.stopping()) return;
    this.deps.scheduler.setUnits(units.filter((u) => !waiting.has(unitKey(u))));
    this.deps.metrics.unitsOwned.set(units.length);
    // In a cluster, units that just became this node's may hold a run their last owner could not finish.
    const before = this.owned;
    this.owned = new Set(units.map((u) => `${u.task}\u0000${u.database}`));
    const gained = units.filter((u) => !before.has(`${u.task}\u0000${u.database}`));
    if (this.deps.store.mode === 'etcd' && gained.length > 0) {
      void this.deps
        .takeOver(gained)
        .catch((error: unknown) =>
          this.deps.log.warn({ error: messageOf(error) }, 'could not look for runs cut off on other nodes'),
        );
    }
  }

  /**
   * Of the units new to this node, those that wait because another node's run of them is still queued or
   * running (takeover.ts); units are looked at again every half second while any waits.
   */
  private async waitingTakeovers(fresh: { task: string; database: string }[]): Promise<Set<string>> {
    if (!this.takeovers || fresh.length === 0) return new Set();
    let inFlight: RunRecord[] | undefined;
    try {
      inFlight = (await this.deps.store.listRuns({ limit: 1000 })).filter(
        (r) => r.outcome === 'running' || r.outcome === 'queued',
      );
    } catch (error) {
      this.deps.log.debug({ error: messageOf(error) }, 'cannot read the runs in flight; new units wait');
    }
    const held = this.takeovers.hold(fresh, inFlight);
    if (held.size > 0) {
      this.deps.log.info(
        { units: held.size, runs: [...held.values()].flatMap((r) => (r ? [`${r.runId} on ${r.node}`] : [])) },
        'units taken over wait for the previous owner’s runs of them',
      );
      this.takeoverTimer?.cancel();
      this.takeoverTimer = this.deps.clock.setTimeout(() => void this.refresh(), 500);
    }
    return new Set(held.keys());
  }
}
