// The runs of this node: at most `concurrency` at once, a unit never overlapping itself, and at most one run
// waiting per unit (a second one asked for while it waits is the same backup, so it coalesces into it).

import { EventEmitter } from 'node:events';
import { BackupdError } from '../errors.js';
import type { BackupLevel } from '../layout.js';

export interface QueueJob {
  /** Unique among the jobs the queue holds; cancel() names a job by it. */
  id: string;
  /** The unit (task x database); jobs of one unit run one after the other. */
  unitKey: string;
  level: BackupLevel;
}

export type RunQueueEvents<J extends QueueJob> = {
  queued: [job: J];
  /** `job` was not queued: `kept`, already waiting for the same unit, serves it. */
  coalesced: [kept: J, job: J];
  started: [job: J];
  /** `error` is what execute rejected with (undefined when it resolved); `aborted` when it was cancelled. */
  finished: [job: J, outcome: { error?: unknown; aborted: boolean }];
  /** A waiting job left without running (cancel or stop). */
  removed: [job: J];
  idle: [];
};

export interface RunQueueOptions<J extends QueueJob> {
  /** Runs at once; at least 1. */
  concurrency: number;
  /** Runs one job; it should stop soon after `signal` aborts. Its rejections are reported by 'finished'. */
  execute: (job: J, signal: AbortSignal) => Promise<void>;
}

interface Running<J> {
  job: J;
  controller: AbortController;
  done: Promise<void>;
}

export class RunQueue<J extends QueueJob> extends EventEmitter<RunQueueEvents<J>> {
  private readonly concurrency: number;
  private readonly execute: (job: J, signal: AbortSignal) => Promise<void>;
  private readonly queue: J[] = [];
  private readonly active = new Map<string, Running<J>>();
  private idleWaiters: (() => void)[] = [];
  private stopped = false;

  constructor(options: RunQueueOptions<J>) {
    super();
    if (!Number.isInteger(options.concurrency) || options.concurrency < 1) {
      throw new BackupdError(
        'INVALID_ARGUMENT',
        `run queue concurrency must be a whole number >= 1, got ${options.concurrency}`,
      );
    }
    this.concurrency = options.concurrency;
    this.execute = options.execute;
  }

  /**
   * Queue a job, or coalesce it into the job of the same unit already waiting: that one is kept (upgraded to
   * a full when the new job is a full, since a full covers an incremental) and returned as `kept`.
   * Throws ALREADY_EXISTS for an id the queue holds, CANCELLED once the queue is stopped.
   */
  enqueue(job: J): { status: 'queued' } | { status: 'coalesced'; kept: J } {
    if (this.stopped) throw new BackupdError('CANCELLED', `run queue is stopped; job ${job.id} not queued`);
    if (this.active.has(job.id) || this.queue.some((j) => j.id === job.id)) {
      throw new BackupdError('ALREADY_EXISTS', `job ${job.id} is already queued or running`);
    }
    const index = this.queue.findIndex((j) => j.unitKey === job.unitKey);
    const waiting = this.queue[index];
    if (waiting) {
      const kept = job.level === 'full' && waiting.level !== 'full' ? { ...waiting, level: job.level } : waiting;
      this.queue[index] = kept;
      this.emit('coalesced', kept, job);
      return { status: 'coalesced', kept };
    }
    this.queue.push(job);
    this.emit('queued', job);
    this.pump();
    return { status: 'queued' };
  }

  /** Abort a running job's signal ('aborted'; it stays running until execute returns), or drop a waiting one. */
  cancel(id: string): 'aborted' | 'removed' | 'unknown' {
    const running = this.active.get(id);
    if (running) {
      running.controller.abort(new BackupdError('CANCELLED', `run ${id} was cancelled`));
      return 'aborted';
    }
    const index = this.queue.findIndex((j) => j.id === id);
    const [job] = index >= 0 ? this.queue.splice(index, 1) : [];
    if (!job) return 'unknown';
    this.emit('removed', job);
    this.settleIdle();
    return 'removed';
  }

  running(): J[] {
    return [...this.active.values()].map((r) => r.job);
  }

  /** Waiting jobs in the order they will be considered. */
  waiting(): J[] {
    return [...this.queue];
  }

  /** Resolves once nothing runs and nothing waits (at once when that is already so). */
  onIdle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Abort every running job, drop the waiting ones, and resolve once the running ones have returned. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const job of this.queue.splice(0)) this.emit('removed', job);
    const running = [...this.active.values()];
    for (const r of running) r.controller.abort(new BackupdError('CANCELLED', 'run queue stopped'));
    await Promise.all(running.map((r) => r.done));
    this.settleIdle();
  }

  /** Start waiting jobs, oldest first, while there is room and their unit is not already running. */
  private pump(): void {
    if (this.stopped) return;
    for (let i = 0; i < this.queue.length && this.active.size < this.concurrency; ) {
      const job = this.queue[i]!;
      if (this.unitRunning(job.unitKey)) {
        i += 1;
        continue;
      }
      this.queue.splice(i, 1);
      this.begin(job);
    }
  }

  private begin(job: J): void {
    const controller = new AbortController();
    // Started on a later microtask so execute never re-enters enqueue/cancel while the queue is mid-update;
    // a throw inside execute becomes a rejection like any other.
    const done = Promise.resolve()
      .then(() => this.execute(job, controller.signal))
      .then(
        () => ({ aborted: controller.signal.aborted }),
        // Reported through 'finished', never left unhandled: what a failed run means is the caller's business.
        (error: unknown) => ({ error, aborted: controller.signal.aborted }),
      )
      .then((outcome) => {
        this.active.delete(job.id);
        try {
          this.emit('finished', job, outcome);
        } finally {
          // Even a throwing listener must not leave the unit blocked or the next jobs unstarted.
          this.pump();
          this.settleIdle();
        }
      });
    this.active.set(job.id, { job, controller, done });
    this.emit('started', job);
  }

  private unitRunning(unitKey: string): boolean {
    for (const r of this.active.values()) if (r.job.unitKey === unitKey) return true;
    return false;
  }

  private isIdle(): boolean {
    return this.active.size === 0 && this.queue.length === 0;
  }

  private settleIdle(): void {
    if (!this.isIdle()) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
    this.emit('idle');
  }
}
