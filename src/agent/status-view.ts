// The status views: a unit's (its state, its responsible node, its next runs as its scheduler plans them,
// the run in progress) and the cluster's (members and their health, assignments, leader changes).

import type { Progress } from '../backup/requests.js';
import type { Cluster } from '../cluster/cluster.js';
import { emptyUnit, type RunRecord, type Store, type UnitState } from '../cluster/store.js';
import type { Clock } from '../scheduler/clock.js';
import { planUnit } from '../scheduler/plan.js';
import { nextOf, type Scheduler } from '../scheduler/scheduler.js';
import type { TaskSpec } from '../task.js';
import type { AgentConfig } from './config.js';
import type { ClusterView, UnitView } from './operations.js';
import type { PeerCalls } from './peer-calls.js';

export interface StatusDeps {
  config: AgentConfig;
  clock: Clock;
  store: Store;
  cluster: Cluster;
  scheduler: Scheduler;
  peers: PeerCalls;
  /** Runs queued or running on this node, with their latest progress. */
  progress: ReadonlyMap<string, { record: RunRecord; progress?: Progress }>;
  unitsOf(spec: TaskSpec): string[];
}

export class StatusView {
  constructor(private readonly deps: StatusDeps) {}

  async clusterStatus(): Promise<ClusterView> {
    const assignments: ClusterView['assignments'] = [];
    for (const task of await this.deps.store.listTasks()) {
      for (const database of this.deps.unitsOf(task.spec)) {
        const owner = this.deps.cluster.owner(task.spec.name, database);
        assignments.push({
          task: task.spec.name,
          database,
          node: owner?.node ?? '',
          reason: owner?.reason ?? 'not assigned yet',
          term: owner?.term ?? 0,
        });
      }
    }
    const state = await this.deps.cluster.state();
    // Other members are listed while their lease lives, which says nothing of whether they work: ask each
    // (in parallel, with a short deadline). This node is healthy while it is in contact with etcd.
    const states = await Promise.all(
      state.members.map((m) =>
        m.node === this.deps.config.node
          ? Promise.resolve(m.healthy ? 'serving' : 'lost contact with etcd')
          : this.deps.peers.health(m.node),
      ),
    );
    return {
      cluster: this.deps.config.cluster,
      node: this.deps.config.node,
      mode: this.deps.store.mode,
      leader: state.leader,
      term: state.term,
      members: state.members.map((m, i) => ({
        node: m.node,
        address: m.address,
        version: m.version,
        healthy: states[i] === 'serving',
        state: states[i]!,
        databases: m.sources.flatMap((s) => s.databases.map((db) => `${s.name}/${db}`)),
      })),
      assignments,
      leaderChanges: state.leaderChanges,
      pendingReports: state.pendingReports,
    };
  }

  async unitView(spec: TaskSpec, database: string): Promise<UnitView> {
    const unit: UnitState = (await this.deps.store.getUnit(spec.name, database)) ?? emptyUnit(spec.name, database);
    const owner = this.deps.cluster.owner(spec.name, database);
    const here = owner?.node === this.deps.config.node;
    // The responsible node's scheduler knows the next times; elsewhere they are planned from the unit's
    // state as etcd holds it, which is what the responsible node plans from too.
    const next = spec.disabled
      ? undefined
      : here
        ? this.deps.scheduler.nextTimes(spec.name, database)
        : owner?.node
          ? nextOf(
              planUnit({
                schedule: spec.schedule,
                missedRuns: spec.missedRuns,
                cursor: unit.cursor,
                delayedUntil: unit.delayedUntil,
                now: this.deps.clock.now(),
                lateToleranceMs: this.deps.config.lateToleranceSeconds * 1000,
              }),
            )
          : undefined;
    const candidates = [
      ...(next?.full ? [{ at: next.full, level: 'full' as const }] : []),
      ...(next?.incremental ? [{ at: next.incremental, level: 'incr' as const }] : []),
    ].sort((a, b) => a.at.getTime() - b.at.getTime() || (a.level === 'full' ? -1 : 1));
    const current = [...this.deps.progress.values()].find(
      (p) => p.record.task === spec.name && p.record.database === database && p.record.outcome === 'running',
    );
    return {
      ...unit,
      state: !here ? 'not-on-this-node' : spec.disabled ? 'disabled' : 'active',
      responsibleNode: owner?.node ?? '',
      destinations: spec.destinations.map((d) => d.name),
      retention: spec.retention,
      nextFullAt: next?.full?.toISOString(),
      nextIncrementalAt: next?.incremental?.toISOString(),
      nextDrillAt: next?.drill?.toISOString(),
      nextEstimatedAt: candidates[0]?.at.toISOString(),
      nextEstimatedLevel: candidates[0]?.level,
      currentRun: current && { ...current.record, progress: current.progress },
    };
  }
}
