// RunQueue: the concurrency limit, no overlap within a unit, coalescing, cancel and stop. Jobs finish when
// the test releases them; the test waits on the queue's events, never on time.

import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { isBackupdError } from '../../src/errors.js';
import type { BackupLevel } from '../../src/layout.js';
import { type QueueJob, RunQueue } from '../../src/scheduler/run-queue.js';

interface Job extends QueueJob {
  trigger: string;
}

function job(id: string, unitKey: string, level: BackupLevel = 'incr'): Job {
  return { id, unitKey, level, trigger: 'schedule' };
}

/** A queue whose jobs run until the test calls release(id) or fail(id), or until their signal aborts. */
function gatedQueue(concurrency: number) {
  const gates = new Map<string, { resolve: () => void; reject: (e: unknown) => void }>();
  const executed: string[] = [];
  const signals = new Map<string, AbortSignal>();
  let inFlight = 0;
  let most = 0;
  const unitsInFlight = new Set<string>();
  const overlaps: string[] = [];
  const queue = new RunQueue<Job>({
    concurrency,
    execute: (j, signal) => {
      executed.push(j.id);
      signals.set(j.id, signal);
      if (unitsInFlight.has(j.unitKey)) overlaps.push(j.unitKey);
      unitsInFlight.add(j.unitKey);
      inFlight += 1;
      most = Math.max(most, inFlight);
      return new Promise<void>((resolve, reject) => {
        const done = () => {
          inFlight -= 1;
          unitsInFlight.delete(j.unitKey);
        };
        gates.set(j.id, {
          resolve: () => {
            done();
            resolve();
          },
          reject: (e) => {
            done();
            reject(e);
          },
        });
        signal.addEventListener('abort', () => {
          done();
          reject(signal.reason);
        });
      });
    },
  });
  queues.push(queue);
  return {
    queue,
    executed,
    signals,
    overlaps,
    most: () => most,
    /** Let a running job return, and wait until the queue has recorded it. */
    async release(id: string): Promise<void> {
      await started(queue, id);
      const finished = finishedOf(queue, id);
      gates.get(id)?.resolve();
      await finished;
    },
    async fail(id: string, error: unknown): Promise<unknown> {
      await started(queue, id);
      const finished = finishedOf(queue, id);
      gates.get(id)?.reject(error);
      return (await finished).error;
    },
  };
}

/** Resolves once execute has been called for the job (it is started on a microtask after 'started'). */
async function started(queue: RunQueue<Job>, id: string): Promise<void> {
  while (!queue.running().some((j) => j.id === id)) await once(queue, 'started');
  await Promise.resolve();
  await Promise.resolve();
}

async function finishedOf(queue: RunQueue<Job>, id: string): Promise<{ error?: unknown; aborted: boolean }> {
  for (;;) {
    const [finished, outcome] = (await once(queue, 'finished')) as [Job, { error?: unknown; aborted: boolean }];
    if (finished.id === id) return outcome;
  }
}

const queues: RunQueue<Job>[] = [];
afterEach(async () => {
  for (const q of queues.splice(0)) await q.stop();
});

const ids = (jobs: Job[]) => jobs.map((j) => j.id);

describe('RunQueue', () => {
  it('runs at most `concurrency` jobs at once, starting waiting ones in order as others finish', async () => {
    const q = gatedQueue(2);
    for (const id of ['a', 'b', 'c', 'd', 'e'])
      expect(q.queue.enqueue(job(id, `unit-${id}`))).toEqual({ status: 'queued' });
    expect(ids(q.queue.running())).toEqual(['a', 'b']);
    expect(ids(q.queue.waiting())).toEqual(['c', 'd', 'e']);

    await q.release('b');
    expect(ids(q.queue.running())).toEqual(['a', 'c']);
    for (const id of ['a', 'c', 'd', 'e']) await q.release(id);
    await q.queue.onIdle();
    expect(q.executed).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(q.most()).toBe(2);
    expect(q.queue.running()).toEqual([]);
  });

  it('never runs two jobs of one unit at once, while other units go past the waiting one', async () => {
    const q = gatedQueue(3);
    q.queue.enqueue(job('a1', 'A'));
    q.queue.enqueue(job('a2', 'A'));
    q.queue.enqueue(job('b1', 'B'));
    expect(ids(q.queue.running())).toEqual(['a1', 'b1']);
    expect(ids(q.queue.waiting())).toEqual(['a2']);

    await q.release('a1');
    expect(ids(q.queue.running())).toEqual(['b1', 'a2']);
    await q.release('a2');
    await q.release('b1');
    await q.queue.onIdle();
    expect(q.overlaps).toEqual([]);
    expect(q.executed).toEqual(['a1', 'b1', 'a2']);
  });

  it('coalesces into the waiting job of a unit, upgrading it to a full when a full is asked for', async () => {
    const q = gatedQueue(1);
    q.queue.enqueue(job('a1', 'A', 'incr')); // running
    expect(q.queue.enqueue(job('a2', 'A', 'incr'))).toEqual({ status: 'queued' });
    const coalesced: [string, string][] = [];
    q.queue.on('coalesced', (kept, dropped) => coalesced.push([kept.id, dropped.id]));

    const upgraded = q.queue.enqueue(job('a3', 'A', 'full'));
    expect(upgraded).toEqual({ status: 'coalesced', kept: { ...job('a2', 'A'), level: 'full' } });
    // A later incremental does not downgrade the waiting full.
    const again = q.queue.enqueue(job('a4', 'A', 'incr'));
    expect(again).toEqual({ status: 'coalesced', kept: { ...job('a2', 'A'), level: 'full' } });
    expect(q.queue.waiting()).toEqual([{ ...job('a2', 'A'), level: 'full' }]);
    expect(coalesced).toEqual([
      ['a2', 'a3'],
      ['a2', 'a4'],
    ]);

    await q.release('a1');
    await q.release('a2');
    await q.queue.onIdle();
    expect(q.executed).toEqual(['a1', 'a2']);
  });

  it('does not coalesce into a running job: the next one waits for it', async () => {
    const q = gatedQueue(2);
    q.queue.enqueue(job('a1', 'A', 'full'));
    expect(q.queue.enqueue(job('a2', 'A', 'full'))).toEqual({ status: 'queued' });
    expect(ids(q.queue.waiting())).toEqual(['a2']);
  });

  it('cancels a running job through its signal and removes a waiting one', async () => {
    const q = gatedQueue(1);
    const removed: string[] = [];
    q.queue.on('removed', (j) => removed.push(j.id));
    q.queue.enqueue(job('a1', 'A'));
    q.queue.enqueue(job('b1', 'B'));
    q.queue.enqueue(job('c1', 'C'));

    expect(q.queue.cancel('b1')).toBe('removed');
    expect(removed).toEqual(['b1']);
    expect(ids(q.queue.waiting())).toEqual(['c1']);

    await started(q.queue, 'a1');
    const finished = finishedOf(q.queue, 'a1');
    expect(q.queue.cancel('a1')).toBe('aborted');
    const outcome = await finished;
    expect(outcome.aborted).toBe(true);
    expect(isBackupdError(outcome.error, 'CANCELLED')).toBe(true);
    expect(isBackupdError(q.signals.get('a1')?.reason, 'CANCELLED')).toBe(true);

    expect(q.queue.cancel('nope')).toBe('unknown');
    await q.release('c1');
    await q.queue.onIdle();
    expect(q.executed).toEqual(['a1', 'c1']);
  });

  it('reports a failing execute through "finished" and keeps going', async () => {
    const q = gatedQueue(1);
    q.queue.enqueue(job('a1', 'A'));
    q.queue.enqueue(job('a2', 'A'));
    const error = await q.fail('a1', new Error('disk full'));
    expect(error).toEqual(new Error('disk full'));
    await q.release('a2');
    await q.queue.onIdle();
    expect(q.executed).toEqual(['a1', 'a2']);
  });

  it('turns an execute that throws synchronously into a reported failure', async () => {
    const queue = new RunQueue<Job>({
      concurrency: 1,
      execute: () => {
        throw new Error('bad job');
      },
    });
    queues.push(queue);
    const finished = once(queue, 'finished');
    queue.enqueue(job('a1', 'A'));
    const [, outcome] = await finished;
    expect(outcome).toEqual({ error: new Error('bad job'), aborted: false });
    await queue.onIdle();
  });

  it('refuses a job id it already holds', () => {
    const q = gatedQueue(1);
    q.queue.enqueue(job('a1', 'A'));
    expect(() => q.queue.enqueue(job('a1', 'B'))).toThrow(expect.objectContaining({ code: 'ALREADY_EXISTS' }));
  });

  it('stop aborts running jobs, drops waiting ones, waits for the running ones, and refuses new jobs', async () => {
    const q = gatedQueue(2);
    for (const id of ['a', 'b', 'c']) q.queue.enqueue(job(id, id));
    await started(q.queue, 'a');
    await started(q.queue, 'b');
    const finished: string[] = [];
    q.queue.on('finished', (j, outcome) => finished.push(`${j.id}:${outcome.aborted}`));

    await q.queue.stop();
    expect(finished.sort()).toEqual(['a:true', 'b:true']);
    expect(q.queue.running()).toEqual([]);
    expect(q.queue.waiting()).toEqual([]);
    expect(q.executed).toEqual(['a', 'b']);
    await q.queue.onIdle();
    expect(() => q.queue.enqueue(job('d', 'd'))).toThrow(expect.objectContaining({ code: 'CANCELLED' }));
  });

  it('rejects a concurrency below one', () => {
    expect(() => new RunQueue<Job>({ concurrency: 0, execute: async () => {} })).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
  });
});
