// Scheduled restore drills on this node: a claimed drill tick (scheduler.ts, DueDrill) becomes verify --restore
// of the unit's newest restore point at the next of the task's drill destinations in turn (the turn is kept in
// the unit's status, so it moves with the unit), at most DRILL_LIMIT at once, each after any backup of its unit
// has finished. Its result is kept in the unit's status per destination, counted in the metrics, and logged;
// a drill restores into a scratch place only (restores.ts), never into the source database.

import type { Logger } from 'pino';
import type { DrillResult, Store } from '../cluster/store.js';
import { BackupdError, messageOf } from '../errors.js';
import { stampTime } from '../layout.js';
import type { Clock } from '../scheduler/clock.js';
import type { RunQueue } from '../scheduler/run-queue.js';
import type { DueDrill } from '../scheduler/scheduler.js';
import type { FingerprintDifference } from '../sources/fingerprint.js';
import { drillDestinations } from '../task.js';
import type { AgentMetrics } from './metrics.js';
import type { Restores } from './restores.js';
import type { RunJob } from './run-context.js';

/** Drills at once on one node: each restores a whole database into scratch space. */
export const DRILL_LIMIT = 1;

/** What a drill of a Glacier destination says until drills can wait for a retrieval job. */
export const GLACIER_DRILL_NOTE = 'Glacier drills need a retrieval: not yet';

export interface DrillsDeps {
  /** This node's cluster: the folder at the destination a drill reads. */
  cluster: string;
  log: Logger;
  clock: Clock;
  store: Store;
  restores: Restores;
  metrics: AgentMetrics;
  /** The node's run queue: a drill waits while a backup of its unit is queued or running. */
  queue: RunQueue<RunJob>;
}

export class Drills {
  private readonly waiting: DueDrill[] = [];
  private readonly running = new Set<Promise<void>>();
  private readonly controller = new AbortController();
  private stopped = false;

  constructor(private readonly deps: DrillsDeps) {}

  /** A claimed drill tick: run it when a slot is free. */
  onDrill(due: DueDrill): void {
    if (this.stopped) return;
    this.waiting.push(due);
    this.pump();
  }

  /** Abort drills in progress (their scratch is removed) and drop waiting ones; resolves once they ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.waiting.length = 0;
    this.controller.abort(new BackupdError('CANCELLED', 'agent stopping'));
    await Promise.allSettled([...this.running]);
  }

  /** Drills in progress or waiting on this node. */
  pending(): number {
    return this.running.size + this.waiting.length;
  }

  private pump(): void {
    while (!this.stopped && this.running.size < DRILL_LIMIT && this.waiting.length > 0) {
      const due = this.waiting.shift()!;
      const done: Promise<void> = this.run(due)
        .catch((error: unknown) => {
          this.deps.log.error({ err: error, task: due.task, database: due.database }, 'drill could not be recorded');
        })
        .finally(() => {
          this.running.delete(done);
          this.pump();
        });
      this.running.add(done);
    }
  }

  private async run(due: DueDrill): Promise<void> {
    const { task, database } = due;
    const { store, log } = this.deps;
    const stored = await store.getTask(task);
    if (!stored?.spec.drill) return;
    await this.backupsOf(`${task}/${database}`);
    if (this.stopped) return;
    const names = drillDestinations(stored.spec);
    const turn = (await store.getUnit(task, database))?.drillTurn ?? 0;
    const destination = names[turn % names.length]!;
    const spec = stored.spec.destinations.find((d) => d.name === destination);
    const started = performance.now();
    const result =
      spec?.kind === 'glacier'
        ? this.result(due, destination, started, { outcome: 'skipped', problem: GLACIER_DRILL_NOTE })
        : await this.drill(due, destination, started);
    if (!result) {
      // Cut off by the agent's stop: no outcome to record; the turn stays, the next tick drills it again.
      log.info({ task, database, destination }, 'drill cancelled');
      return;
    }
    await store.updateUnitStatus(task, database, (current) => ({
      ...current,
      drills: { ...current.drills, [destination]: result },
      drillTurn: (current.drillTurn ?? 0) + 1,
    }));
    const { metrics } = this.deps;
    metrics.drillRuns.inc({ task, destination, outcome: result.outcome });
    metrics.drillDuration.observe({ outcome: result.outcome }, result.seconds);
    if (result.outcome === 'passed')
      metrics.drillLastSuccess.set({ task, database }, Date.parse(result.finishedAt) / 1000);
    const fields = { task, database, destination, backupId: result.backupId, seconds: result.seconds };
    if (result.outcome === 'failed') log.error({ ...fields, problem: result.problem }, 'drill failed');
    else if (result.outcome === 'skipped') log.warn({ ...fields, problem: result.problem }, 'drill skipped');
    else log.info(fields, 'drill passed');
  }

  /** verify --restore of the newest restore point of the unit at `destination`; undefined when cancelled. */
  private async drill(due: DueDrill, destination: string, started: number): Promise<DrillResult | undefined> {
    const from = { task: due.task, destination };
    try {
      const { chains } = await this.deps.restores.listBackups(from, {
        cluster: this.deps.cluster,
        database: due.database,
      });
      let newest: { chainId: string; backupId: string } | undefined;
      for (const chain of chains) {
        for (const backupId of chain.backups) {
          if (!newest || stampTime(backupId) > stampTime(newest.backupId))
            newest = { chainId: chain.chainId, backupId };
        }
      }
      if (!newest) {
        return this.result(due, destination, started, {
          outcome: 'skipped',
          problem: `no restore point of ${due.database} at ${destination} yet`,
        });
      }
      const verified = await this.deps.restores.verify(
        { from, database: due.database, ...newest, restore: true },
        () => undefined,
        this.controller.signal,
      );
      const check = verified.restore;
      const problem = check && (firstDifference(check.differences) ?? check.problems[0]);
      return this.result(due, destination, started, {
        ...newest,
        outcome: check?.ok ? 'passed' : 'failed',
        restoreSeconds: check ? check.restoreMs / 1000 : undefined,
        problem: check ? problem : 'the verify did not restore',
      });
    } catch (error) {
      if (this.controller.signal.aborted) return undefined;
      // What stops the verify itself (a pack missing or corrupt, a wrong key) is a failed drill too.
      const code = error instanceof BackupdError ? `${error.code}: ` : '';
      return this.result(due, destination, started, { outcome: 'failed', problem: `${code}${messageOf(error)}` });
    }
  }

  private result(
    due: DueDrill,
    destination: string,
    started: number,
    fields: Pick<DrillResult, 'outcome'> & Partial<DrillResult>,
  ): DrillResult {
    const result: DrillResult = {
      destination,
      scheduledAt: due.scheduledAt,
      finishedAt: this.deps.clock.now().toISOString(),
      seconds: (performance.now() - started) / 1000,
      ...fields,
    };
    for (const key of Object.keys(result) as (keyof DrillResult)[]) if (result[key] === undefined) delete result[key];
    return result;
  }

  /** Resolves once no backup of the unit is queued or running on this node (drills yield to backups). */
  private backupsOf(unitKey: string): Promise<void> {
    const { queue } = this.deps;
    const busy = () => [...queue.running(), ...queue.waiting()].some((job) => job.unitKey === unitKey);
    if (!busy()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (busy() && !this.stopped) return;
        queue.off('finished', check);
        queue.off('removed', check);
        resolve();
      };
      queue.on('finished', check);
      queue.on('removed', check);
    });
  }
}

/** A fingerprint difference in words, naming its table. */
export function firstDifference(differences: readonly FingerprintDifference[]): string | undefined {
  const d = differences[0];
  if (!d) return undefined;
  const where = d.table ? `table ${d.table}` : 'the database';
  const more = differences.length > 1 ? ` (and ${differences.length - 1} more)` : '';
  return `${where}: ${d.kind} differs: expected ${d.expected}, found ${d.found}${more}`;
}
