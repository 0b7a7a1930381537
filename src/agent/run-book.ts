// Run bookkeeping on this node: a run's first record, queueing it (a unit's waiting run absorbs another
// request), executing it through the runner with its live progress kept and announced ('run' events), and
// the failed record of a claimed tick that could not be queued.

import { randomBytes } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { Progress } from '../backup/requests.js';
import type { Cluster } from '../cluster/cluster.js';
import { type RunRecord, type Store, summarize } from '../cluster/store.js';
import { BackupdError, messageOf } from '../errors.js';
import { type BackupLevel, utcStamp } from '../layout.js';
import type { Clock } from '../scheduler/clock.js';
import type { RunQueue } from '../scheduler/run-queue.js';
import type { DueRun } from '../scheduler/scheduler.js';
import type { Source } from '../sources/source.js';
import type { TaskSpec } from '../task.js';
import type { DestinationRegistry } from '../uploader/registry.js';
import type { AgentConfig } from './config.js';
import type { AgentMetrics } from './metrics.js';
import type { RunView } from './operations.js';
import type { RunContext, RunJob } from './run-context.js';
import { executeRun } from './runner.js';

/** Tries to store the failed record of a tick that could not be queued (the store itself was failing). */
const UNQUEUED_RECORD_ATTEMPTS = 5;

export interface RunEvents {
  run: [RunView];
}

export interface RunBookDeps {
  config: AgentConfig;
  log: Logger;
  clock: Clock;
  store: Store;
  registry: DestinationRegistry;
  cluster: Cluster;
  sources: Map<string, Source>;
  metrics: AgentMetrics;
  queue: RunQueue<RunJob>;
  /** 'run' fires at every change of a run's state or progress. */
  events: EventEmitter<RunEvents>;
  stopping(): boolean;
  /** The task's backup type as the units were last given out, for a tick whose task could not be read. */
  taskType(task: string): RunRecord['type'] | undefined;
}

export class RunBook {
  /** Runs queued or running on this node, with their latest progress. */
  readonly progress = new Map<string, { record: RunRecord; progress?: Progress }>();

  constructor(private readonly deps: RunBookDeps) {}

  newRecord(
    task: string,
    database: string,
    type: RunRecord['type'],
    level: BackupLevel,
    trigger: RunRecord['trigger'],
    scheduledAt?: string,
  ): RunRecord {
    const now = this.deps.clock.now();
    return {
      runId: `${utcStamp(now)}-${randomBytes(3).toString('hex')}`,
      task,
      database,
      type,
      level,
      trigger,
      ...(scheduledAt ? { scheduledAt } : {}),
      outcome: 'queued',
      node: this.deps.config.node,
      queuedAt: now.toISOString(),
      rawBytes: 0,
      storedBytes: 0,
      destinations: [],
    };
  }

  async enqueueTaskRun(
    spec: TaskSpec,
    database: string,
    level: BackupLevel,
    trigger: RunRecord['trigger'],
    scheduledAt?: string,
    /** Called once the store gave what the run needs, just before it enters the queue. */
    onQueueing?: () => void,
  ): Promise<RunView> {
    const record = this.newRecord(spec.name, database, spec.type, level, trigger, scheduledAt);
    const key = await this.deps.store.getTaskKey(spec.name);
    onQueueing?.();
    return this.enqueue({
      id: record.runId,
      unitKey: `${spec.name}/${database}`,
      level,
      record,
      destinations: spec.destinations,
      key,
      retention: spec.retention,
    });
  }

  async enqueue(job: RunJob): Promise<RunView> {
    const queued = this.deps.queue.enqueue(job);
    if (queued.status === 'coalesced') {
      // The unit already waits to run: that run covers this request too (a full request upgrades it).
      const kept = queued.kept;
      kept.record.level = kept.level;
      await this.deps.store.putRun(kept.record);
      this.deps.log.info({ run: kept.id, coalesced: job.record.trigger }, 'request joined a waiting run');
      return kept.record;
    }
    await this.deps.store.putRun(job.record);
    this.progress.set(job.id, { record: job.record });
    this.announceRun(job.record);
    return job.record;
  }

  async execute(job: RunJob, signal: AbortSignal): Promise<void> {
    try {
      const ctx: RunContext = {
        cluster: this.deps.config.cluster,
        node: this.deps.config.node,
        dataDir: this.deps.config.dataDir,
        store: this.deps.store,
        metrics: this.deps.metrics,
        registry: this.deps.registry,
        logger: this.deps.log,
        sourceFor: (name) => this.deps.sources.get(name),
        term: (task, database) => this.deps.cluster.owner(task, database)?.term ?? 0,
        now: () => this.deps.clock.now(),
        stopping: () => this.deps.stopping(),
      };
      await executeRun(ctx, job, signal, (record, progress) => {
        this.progress.set(record.runId, { record: { ...record }, progress });
        this.announceRun({ ...record, progress });
      });
    } catch (error) {
      // executeRun records its own failures; this is the store itself failing, which the next run retries.
      this.deps.log.error({ run: job.id, error: messageOf(error) }, 'could not record a run');
    } finally {
      this.progress.delete(job.id);
    }
  }

  announceRun(run: RunView): void {
    this.deps.events.emit('run', run);
  }

  /**
   * A claimed tick whose run could not be queued (the store failed to give the task or its key): the scheduler
   * has moved on, so it gets a failed run record, the unit's last run says so, and a metric counts it.
   */
  private async recordUnqueued(
    due: DueRun,
    type: RunRecord['type'] | undefined,
    queued: boolean,
    error: unknown,
  ): Promise<void> {
    const failure =
      error instanceof BackupdError ? error : new BackupdError('INTERNAL', messageOf(error), { cause: error });
    const fields = { task: due.task, database: due.database, backupLevel: due.level, scheduledAt: due.scheduledAt };
    if (queued) {
      // In the queue (or joined a waiting run of the unit), then its first record failed: the run goes on
      // and records its own outcome.
      this.deps.log.error({ ...fields, code: failure.code, error: failure.message }, 'could not record a queued run');
      return;
    }
    this.deps.metrics.ticksNotQueued.inc({ task: due.task });
    const record: RunRecord = {
      // When reading the task failed, its type is the one it had when its units were last given out.
      ...this.newRecord(
        due.task,
        due.database,
        type ?? this.deps.taskType(due.task) ?? 'backup',
        due.level,
        due.trigger,
        due.scheduledAt,
      ),
      outcome: 'failed',
      finishedAt: this.deps.clock.now().toISOString(),
      error: `could not queue the run of the tick at ${due.scheduledAt}: ${failure.message}`,
      errorCode: failure.code,
    };
    this.deps.log.error(
      { ...fields, run: record.runId, code: failure.code, error: failure.message },
      'could not queue a run',
    );
    this.deps.metrics.runs.inc({ task: due.task, outcome: 'failed' });
    // The store is what failed, and may fail again at once (a locked file stays locked a while): try a few
    // times, 1, 2, 4 and 8 s apart. Past that, the log line above and the metric are what remains.
    for (let attempt = 1; ; attempt++) {
      try {
        await this.deps.store.putRun(record);
        await this.deps.store.updateUnitStatus(due.task, due.database, (unit) => ({
          ...unit,
          lastRun: { ...summarize(record), destinations: [] },
        }));
        break;
      } catch (recordError) {
        const last = attempt >= UNQUEUED_RECORD_ATTEMPTS || this.deps.stopping();
        this.deps.log.error(
          { ...fields, run: record.runId, attempt, error: messageOf(recordError) },
          last ? 'could not record an unqueued run' : 'could not record an unqueued run yet; trying again',
        );
        if (last) break;
        await new Promise<void>((resolve) => this.deps.clock.setTimeout(resolve, 1000 * 2 ** (attempt - 1)));
      }
    }
    this.announceRun(record);
  }

  onDue(due: DueRun): void {
    void (async () => {
      let type: RunRecord['type'] | undefined;
      let queued = false;
      try {
        const task = await this.deps.store.getTask(due.task);
        if (!task || task.spec.disabled) return;
        type = task.spec.type;
        await this.enqueueTaskRun(task.spec, due.database, due.level, due.trigger, due.scheduledAt, () => {
          queued = true;
        });
      } catch (error) {
        await this.recordUnqueued(due, type, queued, error);
      }
    })().catch((error: unknown) =>
      this.deps.log.error({ task: due.task, error: messageOf(error) }, 'could not queue a run'),
    );
  }
}
