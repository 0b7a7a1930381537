// Recovery after a crash, and taking over units from a node that died: runs this node left unfinished are
// settled (published ones recorded as succeeded, half-published ones taken back) and run again once; a unit
// newly this node's whose last run was cut off on another node runs again here once.

import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Cluster } from '../cluster/cluster.js';
import { type RunRecord, type Store, summarize } from '../cluster/store.js';
import { messageOf } from '../errors.js';
import type { BackupLevel } from '../layout.js';
import type { Clock } from '../scheduler/clock.js';
import type { TaskSpec } from '../task.js';
import type { DestinationRegistry, DestinationSpec } from '../uploader/registry.js';
import type { AgentConfig } from './config.js';
import { sweepPending } from './pending.js';
import { isTerminal } from './run-context.js';
import { type HalfPublished, takeBackHalfPublished } from './runner.js';

export interface RecoveryDeps {
  config: AgentConfig;
  log: Logger;
  clock: Clock;
  store: Store;
  registry: DestinationRegistry;
  cluster: Cluster;
  /** Whether this node is the unit's responsible node. */
  owns(task: string, database: string): boolean;
  stopping(): boolean;
  /** Remove the scratch places a killed verify --restore left. */
  sweepScratch(): Promise<void>;
  enqueueTaskRun(
    spec: TaskSpec,
    database: string,
    level: BackupLevel,
    trigger: RunRecord['trigger'],
    scheduledAt?: string,
  ): Promise<unknown>;
}

export class Recovery {
  constructor(private readonly deps: RecoveryDeps) {}

  /**
   * Runs this node left unfinished (killed, or stopped mid-run). A run whose restore point is at every
   * destination was published: it is recorded as succeeded. Otherwise its half-published manifests are taken
   * back (unless a later restore point builds on one), it is marked interrupted (cancelled when it never
   * started) and run again once, when this node still runs its unit (else its new owner does: takeOver).
   */
  async recover(): Promise<void> {
    await this.deps.sweepScratch();
    // Backups kept for a unit's next run stay (outside staging); those no unit waits for any more go.
    await sweepPending(this.deps.config.dataDir, this.deps.config.node, this.deps.store, this.deps.log);
    const staging = join(this.deps.config.dataDir, 'staging');
    // Queued only once staging is cleared below: a run started earlier would lose its staging folder.
    const again: { spec: TaskSpec; run: RunRecord }[] = [];
    const unfinished = [
      ...(await this.deps.store.listRuns({ node: this.deps.config.node, outcome: 'running', limit: 1000 })),
      ...(await this.deps.store.listRuns({ node: this.deps.config.node, outcome: 'queued', limit: 1000 })),
    ];
    for (const run of unfinished) {
      const task = run.task ? await this.deps.store.getTask(run.task) : undefined;
      const settled = run.staging ? await this.settleStaged(run, run.staging, task?.spec) : [];
      const published = settled.find((r) => r.complete)?.staged;
      const kept = settled.find((r) => r.parentOf);
      const unsure = settled.find((r) => r.unsure);
      const finishedAt = this.deps.clock.now().toISOString();
      if (published) {
        // Killed between publishing and recording: the destinations hold the restore point.
        const level = published.backupId.endsWith('-incr') ? 'incr' : 'full';
        const ended: RunRecord = {
          ...run,
          staging: undefined,
          outcome: 'succeeded',
          level,
          chainId: published.chainId,
          backupId: published.backupId,
          finishedAt,
          error: undefined,
          errorCode: undefined,
        };
        if (await this.deps.store.putRun(ended)) {
          this.deps.log.warn(
            { run: run.runId, backupId: published.backupId },
            'a run cut off after publishing its restore point is recorded as succeeded',
          );
          await this.recordRecovered(ended);
        }
        continue;
      }
      const why =
        run.outcome === 'queued' ? 'the agent stopped before this run started' : 'the agent stopped during this run';
      const ended: RunRecord = {
        ...run,
        staging: undefined,
        outcome: run.outcome === 'queued' ? 'cancelled' : 'interrupted',
        finishedAt,
        error: kept
          ? `${why}; its restore point ${kept.staged.backupId} stays where it was published, as ${kept.parentOf} builds on it`
          : unsure
            ? `${why}; its restore point ${unsure.staged.backupId} may be at some destinations: ${unsure.unsure?.join(', ') || 'a destination'} could not be checked`
            : why,
      };
      if (!(await this.deps.store.putRun(ended))) continue;
      if (task && !task.spec.disabled && this.deps.owns(run.task, run.database)) again.push({ spec: task.spec, run });
    }
    // Staged runs whose record another node has already ended (it took the unit over): take back what they
    // half-published all the same.
    let leftovers: string[] = [];
    try {
      leftovers = await readdir(staging);
    } catch (error) {
      if ((error as { code?: string }).code !== 'ENOENT') throw error;
    }
    for (const runId of leftovers) {
      if (unfinished.some((r) => r.runId === runId)) continue;
      const run = await this.deps.store.getRun(runId);
      // A run recorded succeeded was published: nothing of it is taken back.
      if (!run || run.outcome === 'succeeded') continue;
      const task = run.task ? await this.deps.store.getTask(run.task) : undefined;
      if (task) await this.settleStaged(run, join(staging, runId), task.spec);
    }
    // Anything else under staging belongs to no run: a crash between creating a folder and recording it.
    await rm(staging, { recursive: true, force: true });
    for (const { spec, run } of again) await this.runAgainOnce(spec, run, 'retry');
  }

  /** Judge the staged runs of a run cut off while publishing (takeBackHalfPublished), with the task's destinations. */
  private async settleStaged(run: RunRecord, folder: string, spec: TaskSpec | undefined): Promise<HalfPublished[]> {
    const specs: DestinationSpec[] = spec?.destinations ?? [];
    // Bare drivers, without retries: a destination that is down must not hold up the agent's start.
    const opened = await Promise.allSettled(specs.map((s) => this.deps.registry.openDriver(s)));
    const destinations = opened.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
    try {
      const results = await takeBackHalfPublished(folder, destinations, {
        expected: specs.length,
        key: run.task ? await this.deps.store.getTaskKey(run.task) : undefined,
        log: this.deps.log.child({ run: run.runId }),
      });
      const manifests = results.filter((r) => r.takenBack.length > 0).map((r) => r.staged.manifestKey);
      if (manifests.length > 0) this.deps.log.warn({ run: run.runId, manifests }, 'took back a half-published run');
      return results;
    } finally {
      await Promise.allSettled(destinations.map((d) => d.close()));
    }
  }

  /** A run recovered as succeeded becomes its unit's last full or incremental, unless a newer one is. */
  private async recordRecovered(run: RunRecord): Promise<void> {
    if (!run.task || !run.backupId) return;
    const slot = run.level === 'full' ? 'lastFull' : 'lastIncremental';
    try {
      await this.deps.store.updateUnitStatus(run.task, run.database, (unit) =>
        unit[slot]?.backupId && unit[slot].backupId >= run.backupId! ? unit : { ...unit, [slot]: summarize(run) },
      );
    } catch (error) {
      this.deps.log.warn({ run: run.runId, error: messageOf(error) }, 'could not record a recovered run in its unit');
    }
  }

  /**
   * Run a cut-off run of a unit again, once cluster-wide (the restarted node and the unit's new owner may
   * both try: the first to claim it runs it), with its level and tick.
   */
  private async runAgainOnce(spec: TaskSpec, run: RunRecord, trigger: 'retry' | 'failover'): Promise<void> {
    if (!(await this.deps.store.claimTick(run.task, run.database, run.level, `rerun-${run.runId}`))) return;
    this.deps.log.info(
      { run: run.runId, task: run.task, database: run.database, trigger },
      'running an unfinished run again',
    );
    await this.deps.enqueueTaskRun(spec, run.database, run.level, trigger, run.scheduledAt);
  }

  /**
   * Units this node just became responsible for: a run of one cut off when its owner died (still queued or
   * running under a node that is gone, or ended interrupted by that node's restart) runs again here once,
   * as trigger `failover`; a full cut off must not wait for the next day's full.
   */
  async takeOver(units: { task: string; database: string }[]): Promise<void> {
    // One read of the history (newest first) for all of them: the newest run of each unit.
    const newestOf = new Map<string, RunRecord>();
    for (const run of await this.deps.store.listRuns({ limit: 1000 })) {
      const id = `${run.task}\u0000${run.database}`;
      if (!newestOf.has(id)) newestOf.set(id, run);
    }
    for (const unit of units) {
      if (this.deps.stopping()) return;
      try {
        const newest = newestOf.get(`${unit.task}\u0000${unit.database}`);
        if (!newest || newest.node === this.deps.config.node || newest.trigger === 'one-time') continue;
        const gone = this.deps.cluster.addressOf(newest.node) === undefined;
        const cutOff = newest.outcome === 'interrupted' || (gone && !isTerminal(newest.outcome));
        if (!cutOff) continue;
        if (!isTerminal(newest.outcome)) {
          const ended: RunRecord = {
            ...newest,
            outcome: newest.outcome === 'queued' ? 'cancelled' : 'interrupted',
            finishedAt: this.deps.clock.now().toISOString(),
            error: `node ${newest.node} was gone before this run ended; node ${this.deps.config.node} took its unit over`,
          };
          if (!(await this.deps.store.putRun(ended))) continue;
        }
        const task = await this.deps.store.getTask(unit.task);
        if (task && !task.spec.disabled) await this.runAgainOnce(task.spec, newest, 'failover');
      } catch (error) {
        this.deps.log.warn(
          { task: unit.task, database: unit.database, error: messageOf(error) },
          'could not take a unit over',
        );
      }
    }
  }
}
