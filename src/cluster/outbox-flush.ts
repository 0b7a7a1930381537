// The outbox flush: what a cluster node reported or claimed while etcd was unreachable (outbox.ts) written to
// etcd once it answers, oldest first, through the etcd store's guarded writes (a unit state only under the
// assignment it was reported under, a run record only forward, a tick claim create-if-absent). A claim that
// meets another node's marks this node's run of that tick a duplicate (docs/CLUSTER.md, "What once means").

import type { Logger } from 'pino';
import { messageOf } from '../errors.js';
import { keys, parseTaskKey } from './etcd-keys.js';
import type { Outbox } from './outbox.js';
import type { RunRecord, UnitStatus } from './store.js';

/** The etcd writes a flush makes: the etcd store's, with their guards. */
export interface GuardedWrites {
  /** Create a tick claim unless one exists: false when one did. */
  claim(key: string, value: string): Promise<boolean>;
  /** The node named by the tick claim etcd holds at `key`, if any. */
  claimant(key: string): Promise<string | undefined>;
  /** Write a run record unless etcd holds one further along: false when ignored. */
  run(key: string, run: RunRecord): Promise<boolean>;
  /** Write a unit state under the assignment it was reported under: false when dropped (another owner's now). */
  unit(key: string, state: UnitStatus): Promise<boolean>;
  /** Write any other key as it is. */
  put(key: string, value: string): Promise<void>;
}

export class OutboxFlush {
  private flushing: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly outbox: Outbox,
    /** This node's name: its own claim met again (a call that timed out but landed) is no duplicate. */
    private readonly node: string,
    private readonly writes: GuardedWrites,
    private readonly log: Logger,
    /** Called when a flush leaves the outbox empty. */
    private readonly settled: () => void,
  ) {}

  /** Flush every `intervalMs` while started. */
  start(intervalMs: number): void {
    this.timer = setInterval(() => void this.flush(), intervalMs);
  }

  /** Stop the timer and wait for a flush under way; later calls to flush do nothing. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.flushing;
  }

  /** Write what the outbox holds, oldest first, stopping at the first failure (also done on a timer). */
  flush(): Promise<void> {
    if (this.flushing || this.stopped || this.outbox.size === 0) return this.flushing ?? Promise.resolve();
    this.flushing = (async () => {
      const pending = this.outbox.pending();
      let flushed = 0;
      try {
        for (const entry of pending) {
          if (entry.kind === 'claim') {
            if (!(await this.writes.claim(entry.key, entry.value))) await this.claimedElsewhere(entry.key);
          } else if (entry.key.startsWith(keys.runs)) {
            // Marked here too: a claim earlier in this flush may have found its tick claimed elsewhere.
            const run = this.markedDuplicate(JSON.parse(entry.value) as RunRecord);
            if (!(await this.writes.run(entry.key, run))) {
              this.log.warn(
                { run: run.runId, outcome: run.outcome },
                'ignored a run record that would move its run back',
              );
            }
          } else if (parseTaskKey(entry.key).kind === 'status') {
            await this.writes.unit(entry.key, JSON.parse(entry.value) as UnitStatus);
          } else {
            await this.writes.put(entry.key, entry.value);
          }
          this.outbox.done(entry.key, entry.seq);
          flushed++;
        }
        this.log.info({ reports: flushed }, 'etcd is back: flushed the local outbox');
        if (this.outbox.size === 0) this.settled();
      } catch (error) {
        if (flushed > 0)
          this.log.info({ reports: flushed, left: pending.length - flushed }, 'flushed part of the outbox');
        this.log.debug({ error: messageOf(error) }, 'etcd still unreachable');
      }
    })().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  /** The run, marked a duplicate when another node had claimed its tick too. */
  markedDuplicate(run: RunRecord): RunRecord {
    if (!run.task || !run.scheduledAt || run.duplicate) return run;
    const claimedBy = this.outbox.duplicateOf({
      task: run.task,
      database: run.database,
      kind: run.level,
      scheduledAt: run.scheduledAt,
    });
    return claimedBy ? { ...run, duplicate: { claimedBy } } : run;
  }

  /**
   * A claim made here while etcd was unreachable met one already in etcd. Another node's claim means the tick
   * ran twice (a partition: docs/CLUSTER.md): this node's run of it is marked a duplicate, in the records
   * still waiting here and in any it reports later. This node's own claim (a call that timed out but landed)
   * is no duplicate.
   */
  private async claimedElsewhere(key: string): Promise<void> {
    const by = await this.writes.claimant(key);
    if (by === this.node) return;
    const claimedBy = by || 'another node';
    this.outbox.markDuplicate(key, claimedBy);
    for (const entry of this.outbox.pending()) {
      if (!entry.key.startsWith(keys.runs)) continue;
      const run = JSON.parse(entry.value) as RunRecord;
      const marked = this.markedDuplicate(run);
      if (marked !== run) this.outbox.add({ key: entry.key, value: JSON.stringify(marked), kind: 'put' });
    }
    this.log.warn(
      { tick: key, claimedBy },
      'a tick claimed while etcd was unreachable had been claimed by another node too: it ran twice; this node’s run is marked a duplicate',
    );
  }
}
