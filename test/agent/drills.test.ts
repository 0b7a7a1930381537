// The drill runner's own rules, without a database: a drill waits while a backup of its unit runs, a Glacier
// destination is skipped with its note (and the turn moves on), and the turn rotates through the task's drill
// destinations. The restore itself is not faked here beyond a listing that finds no restore point (a drill
// that restores is tested on a real SQLite database in drill-e2e.test.ts); Restores is stubbed because these
// paths never restore, and the Glacier path must not even list.

import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { Drills, GLACIER_DRILL_NOTE } from '../../src/agent/drills.js';
import { AgentMetrics } from '../../src/agent/metrics.js';
import type { Restores } from '../../src/agent/restores.js';
import type { RunJob } from '../../src/agent/run-context.js';
import { BackupdError } from '../../src/errors.js';
import { RunQueue } from '../../src/scheduler/run-queue.js';
import type { TaskSpec } from '../../src/task.js';
import { FakeClock } from '../support/fake-clock.js';
import { MemoryStore } from '../support/memory-store.js';

const spec: TaskSpec = {
  name: 'shop',
  target: { databases: ['main/shop.db'] },
  type: 'backup',
  schedule: { full: '0 0 1 1 *', timeZone: 'UTC' },
  pinToPreferredNode: false,
  destinations: [
    { name: 'disk', kind: 'local', config: { path: '/nowhere' } },
    { name: 'vault', kind: 'glacier', config: { vault: 'v', region: 'us-east-1' } },
  ],
  disabled: false,
  missedRuns: 'run-once',
  encrypted: false,
  drill: { schedule: '* * * * *', destinations: ['vault', 'disk'] },
};

function setup() {
  const store = new MemoryStore();
  const listed: string[] = [];
  const restores = {
    listBackups: async (from: { destination: string }) => {
      listed.push(from.destination);
      return { chains: [], searched: '/nowhere' };
    },
    verify: async () => {
      throw new Error('no restore point: verify must not be called');
    },
  } as unknown as Restores;
  let release: () => void = () => undefined;
  const queue = new RunQueue<RunJob>({
    concurrency: 1,
    execute: () => new Promise<void>((resolve) => (release = resolve)),
  });
  const metrics = new AgentMetrics();
  const drills = new Drills({
    cluster: 'c',
    log: pino({ level: 'silent' }),
    clock: new FakeClock('2026-01-05T10:00:00Z'),
    store,
    restores,
    metrics,
    queue,
  });
  return { store, listed, queue, drills, metrics, release: () => release() };
}

const due = (scheduledAt: string) => ({
  task: 'shop',
  database: 'main/shop.db',
  trigger: 'schedule' as const,
  scheduledAt,
});

async function settled(drills: Drills): Promise<void> {
  while (drills.pending() > 0) await new Promise((r) => setTimeout(r, 5));
}

describe('Drills', () => {
  it('waits for a backup of the unit, skips a Glacier destination with its note, then drills the next in turn', async () => {
    const h = setup();
    await h.store.createTask(spec, undefined);
    h.queue.enqueue({ id: 'r1', unitKey: 'shop/main/shop.db', level: 'full' } as RunJob);
    h.drills.onDrill(due('2026-01-05T10:00:00.000Z'));
    await new Promise((r) => setTimeout(r, 50));
    // The backup still runs: nothing drilled, nothing recorded.
    expect((await h.store.getUnit('shop', 'main/shop.db'))?.drills).toBeUndefined();
    h.release();
    await settled(h.drills);
    const first = (await h.store.getUnit('shop', 'main/shop.db'))!;
    expect(first.drills?.vault).toMatchObject({ outcome: 'skipped', problem: GLACIER_DRILL_NOTE });
    expect(first.drillTurn).toBe(1);
    expect(h.listed).toEqual([]);

    h.drills.onDrill(due('2026-01-05T10:01:00.000Z'));
    await settled(h.drills);
    const second = (await h.store.getUnit('shop', 'main/shop.db'))!;
    expect(h.listed).toEqual(['disk']);
    expect(second.drills?.disk).toMatchObject({ outcome: 'skipped', scheduledAt: '2026-01-05T10:01:00.000Z' });
    expect(second.drills?.disk?.problem).toContain('no restore point of main/shop.db at disk yet');
    expect(second.drillTurn).toBe(2);
    const text = await h.metrics.registry.metrics();
    expect(text).toContain('backupd_drill_runs_total{task="shop",destination="vault",outcome="skipped"} 1');
    expect(text).not.toContain('backupd_drill_last_success_timestamp_seconds{');
  });

  it('records nothing for a drill cut off by the agent stopping: no outcome, the turn stays', async () => {
    const store = new MemoryStore();
    await store.createTask({ ...spec, drill: { schedule: '* * * * *', destinations: ['disk'] } }, undefined);
    let verifying: () => void = () => undefined;
    const started = new Promise<void>((resolve) => (verifying = resolve));
    const restores = {
      listBackups: async () => ({
        chains: [
          {
            cluster: 'c',
            database: 'main/shop.db',
            chainId: '20260105T090000Z',
            backups: ['20260105T090000Z-full'],
            bytes: 1,
          },
        ],
        searched: '/nowhere',
      }),
      verify: (_input: unknown, _progress: unknown, signal: AbortSignal) =>
        new Promise((_resolve, reject) => {
          verifying();
          signal.addEventListener('abort', () => reject(new BackupdError('CANCELLED', 'verify cancelled')));
        }),
    } as unknown as Restores;
    const metrics = new AgentMetrics();
    const drills = new Drills({
      cluster: 'c',
      log: pino({ level: 'silent' }),
      clock: new FakeClock('2026-01-05T10:00:00Z'),
      store,
      restores,
      metrics,
      queue: new RunQueue<RunJob>({ concurrency: 1, execute: async () => undefined }),
    });
    drills.onDrill(due('2026-01-05T10:00:00.000Z'));
    await started;
    await drills.stop();
    const unit = await store.getUnit('shop', 'main/shop.db');
    expect(unit?.drills).toBeUndefined();
    expect(unit?.drillTurn).toBeUndefined();
    expect(await metrics.registry.metrics()).not.toContain('backupd_drill_runs_total{');
  });
});
