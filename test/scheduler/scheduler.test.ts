// The scheduler loop on a fake clock and an in-memory store: exact run counts over simulated hours,
// restarts, claims made elsewhere, wall-clock jumps, disabled units, delays and store failures.

import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { type DueDrill, type DueRun, type ScheduledUnit, Scheduler } from '../../src/scheduler/scheduler.js';
import { FakeClock } from '../support/fake-clock.js';
import { MemoryStore } from '../support/memory-store.js';

const T0 = '2026-01-05T09:50:00Z';
const MAX_SLEEP = 30_000;
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

function unit(overrides: Partial<ScheduledUnit> = {}): ScheduledUnit {
  return {
    task: 'nightly',
    database: 'local/app',
    schedule: { full: '0 0 * * *', incremental: '*/15 * * * *', timeZone: 'UTC' },
    missedRuns: 'run-once',
    disabled: false,
    ...overrides,
  };
}

interface Harness {
  clock: FakeClock;
  store: MemoryStore;
  runs: (DueRun & { at: string })[];
  logs: Record<string, unknown>[];
  scheduler: Scheduler;
  /** A new scheduler on the same clock and store, as after a restart. */
  restart(): Scheduler;
}

const open: Scheduler[] = [];
afterEach(async () => {
  for (const s of open.splice(0)) await s.stop();
});

function harness(start = T0, store = new MemoryStore()): Harness {
  const clock = new FakeClock(start);
  const runs: Harness['runs'] = [];
  const logs: Record<string, unknown>[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => logs.push(JSON.parse(line)) });
  const make = () => {
    const s = new Scheduler({
      store,
      clock,
      logger,
      maxSleepMs: MAX_SLEEP,
      onDue: (run) => runs.push({ ...run, at: clock.now().toISOString() }),
    });
    open.push(s);
    return s;
  };
  return { clock, store, runs, logs, scheduler: make(), restart: make };
}

async function started(h: Harness, units: ScheduledUnit[]): Promise<void> {
  h.scheduler.setUnits(units);
  h.scheduler.start();
  await h.clock.advance(0);
}

const times = (runs: DueRun[]) => runs.map((r) => r.scheduledAt);

describe('Scheduler', () => {
  it('runs every tick on time over a simulated day, a full where full and incremental collide', async () => {
    const h = harness('2026-01-04T23:50:00Z');
    const sleeps: number[] = [];
    h.scheduler.on('evaluated', (e) => sleeps.push(e.sleepMs));
    await started(h, [unit()]);
    await h.clock.set('2026-01-06T00:00:00Z');

    // Incrementals every 15 min from 00:00 on the 5th to 00:00 on the 6th: 97 ticks, two of them fulls.
    expect(h.runs).toHaveLength(97);
    expect(h.runs.filter((r) => r.level === 'full').map((r) => r.scheduledAt)).toEqual([
      '2026-01-05T00:00:00.000Z',
      '2026-01-06T00:00:00.000Z',
    ]);
    expect(new Set(times(h.runs)).size).toBe(97);
    // Each run is handed on at its tick, on schedule.
    for (const r of h.runs) {
      expect(r.at).toBe(r.scheduledAt);
      expect(r.trigger).toBe('schedule');
    }
    expect(h.store.claimed).toHaveLength(97);
    expect(Math.max(...sleeps)).toBeLessThanOrEqual(MAX_SLEEP);
    const state = await h.store.getUnit('nightly', 'local/app');
    expect(state?.cursor).toEqual({ full: '2026-01-06T00:00:00.000Z', incr: '2026-01-06T00:00:00.000Z' });
  });

  it('runs a 6-field cron every 20 s exactly three times a minute', async () => {
    const h = harness('2026-01-05T10:00:00Z');
    await started(h, [unit({ schedule: { incremental: '*/20 * * * * *', timeZone: 'UTC' } })]);
    await h.clock.advance(10 * MINUTE);
    expect(h.runs).toHaveLength(30);
    expect(h.runs.every((r) => r.at === r.scheduledAt && r.level === 'incr')).toBe(true);
  });

  it('continues after a restart without repeating or losing a tick', async () => {
    const h = harness('2026-01-05T10:00:00Z');
    await started(h, [unit()]);
    await h.clock.advance(HOUR + 7 * MINUTE); // 10:15 .. 11:00
    await h.scheduler.stop();
    expect(times(h.runs)).toEqual(['10:15', '10:30', '10:45', '11:00'].map((t) => `2026-01-05T${t}:00.000Z`));

    const second = h.restart();
    second.setUnits([unit()]);
    second.start();
    await h.clock.advance(30 * MINUTE); // 11:07 .. 11:37
    expect(times(h.runs).slice(4)).toEqual(['2026-01-05T11:15:00.000Z', '2026-01-05T11:30:00.000Z']);
  });

  it('after a node was down, a restart catches up once and then runs on schedule', async () => {
    const h = harness('2026-01-05T10:00:00Z');
    await started(h, [unit()]);
    await h.clock.advance(20 * MINUTE); // 10:15
    await h.scheduler.stop();
    await h.clock.advance(HOUR); // down until 11:20: 10:30 .. 11:15 missed

    const second = h.restart();
    second.setUnits([unit()]);
    second.start();
    await h.clock.advance(20 * MINUTE); // 11:20 .. 11:40
    expect(h.runs.map((r) => [r.scheduledAt, r.trigger, r.at])).toEqual([
      ['2026-01-05T10:15:00.000Z', 'schedule', '2026-01-05T10:15:00.000Z'],
      ['2026-01-05T11:15:00.000Z', 'catch-up', '2026-01-05T11:20:00.000Z'],
      ['2026-01-05T11:30:00.000Z', 'schedule', '2026-01-05T11:30:00.000Z'],
    ]);
  });

  it('does not hand on a tick another node has claimed, and still moves past it', async () => {
    const h = harness('2026-01-05T10:00:00Z');
    await h.store.claimTick('nightly', 'local/app', 'incr', '2026-01-05T10:15:00.000Z');
    await started(h, [unit()]);
    await h.clock.advance(31 * MINUTE);
    expect(times(h.runs)).toEqual(['2026-01-05T10:30:00.000Z']);
    expect(h.logs.some((l) => l.msg === 'tick already claimed; not running it again')).toBe(true);
  });

  it('hands on a claimed tick once even when saving the cursor fails, and not again on retry', async () => {
    const h = harness('2026-01-05T10:14:50Z');
    await started(h, [unit()]);
    h.store.failNext('updateUnitStatus');
    await h.clock.advance(10_000); // 10:15: claimed, cursor not saved
    expect(times(h.runs)).toEqual(['2026-01-05T10:15:00.000Z']);
    expect((await h.store.getUnit('nightly', 'local/app'))?.cursor.incr).not.toBe('2026-01-05T10:15:00.000Z');

    await h.clock.advance(MAX_SLEEP); // the retry finds the claim taken and saves the cursor
    expect(h.runs).toHaveLength(1);
    expect((await h.store.getUnit('nightly', 'local/app'))?.cursor.incr).toBe('2026-01-05T10:15:00.000Z');
  });

  it('notices a wall-clock jump forward within maxSleepMs and catches up once', async () => {
    const h = harness('2026-01-05T10:00:30Z');
    await started(h, [unit({ schedule: { full: '0 * * * *', timeZone: 'UTC' } })]);
    h.clock.jump(2 * HOUR + 30 * MINUTE); // wall 12:30:30; the sleeping timer still has its own time to run
    expect(h.runs).toHaveLength(0);
    await h.clock.advance(MAX_SLEEP);
    expect(h.runs.map((r) => [r.scheduledAt, r.trigger])).toEqual([['2026-01-05T12:00:00.000Z', 'catch-up']]);
  });

  it('runs nothing twice when the wall clock jumps backwards', async () => {
    const h = harness('2026-01-05T10:00:00Z');
    await started(h, [unit({ schedule: { incremental: '*/15 * * * *', timeZone: 'UTC' } })]);
    await h.clock.advance(HOUR); // 10:15 .. 11:00
    h.clock.jump(-HOUR); // back to 10:00
    await h.clock.advance(HOUR + 20 * MINUTE); // wall 10:00 .. 11:20
    expect(times(h.runs)).toEqual(['10:15', '10:30', '10:45', '11:00', '11:15'].map((t) => `2026-01-05T${t}:00.000Z`));
  });

  it('runs nothing for a disabled unit, keeps its cursor current, and does not burst when enabled', async () => {
    const h = harness('2026-01-05T10:00:00Z');
    await started(h, [unit({ disabled: true })]);
    await h.clock.advance(5 * HOUR + 5 * MINUTE); // 15:05
    expect(h.runs).toHaveLength(0);
    expect(h.scheduler.nextTimes('nightly', 'local/app')).toEqual({});
    expect((await h.store.getUnit('nightly', 'local/app'))?.cursor.incr).toBe('2026-01-05T15:00:00.000Z');

    h.scheduler.setUnits([unit()]);
    await h.clock.advance(0);
    expect(h.runs).toHaveLength(0);
    await h.clock.advance(10 * MINUTE);
    expect(h.runs.map((r) => [r.scheduledAt, r.trigger])).toEqual([['2026-01-05T15:15:00.000Z', 'schedule']]);
  });

  it('stops scheduling a unit dropped from the set', async () => {
    const h = harness('2026-01-05T10:00:00Z');
    const other = unit({ database: 'local/other' });
    await started(h, [unit(), other]);
    await h.clock.advance(16 * MINUTE);
    expect(h.runs.map((r) => r.database).sort()).toEqual(['local/app', 'local/other']);
    h.scheduler.setUnits([other]);
    await h.clock.advance(HOUR);
    expect(h.runs.filter((r) => r.database === 'local/app')).toHaveLength(1);
    expect(h.runs.filter((r) => r.database === 'local/other')).toHaveLength(5);
    expect(h.scheduler.nextTimes('nightly', 'local/app')).toBeUndefined();
  });

  it('holds runs while a unit is delayed and releases the missed ticks as one catch-up', async () => {
    const h = harness('2026-01-05T10:00:00Z');
    await started(h, [unit({ missedRuns: 'skip' })]);
    await h.store.setUnitRequest('nightly', 'local/app', { delayedUntil: '2026-01-05T11:05:00.000Z' });
    h.scheduler.wake();
    await h.clock.advance(HOUR); // 11:00
    expect(h.runs).toHaveLength(0);
    await h.clock.advance(5 * MINUTE); // the delay ends at 11:05
    expect(h.runs.map((r) => [r.scheduledAt, r.trigger, r.at])).toEqual([
      ['2026-01-05T11:00:00.000Z', 'catch-up', '2026-01-05T11:05:00.000Z'],
    ]);
    await h.clock.advance(10 * MINUTE);
    expect(times(h.runs).slice(1)).toEqual(['2026-01-05T11:15:00.000Z']);
  });

  it('logs a failing store with named fields and recovers at the next wake', async () => {
    const h = harness('2026-01-05T10:14:40Z');
    await started(h, [unit()]);
    h.store.failNext('getUnit', 2);
    h.store.failNext('claimTick');
    await h.clock.advance(MINUTE); // 10:15 and 10:15:30 fail: getUnit
    expect(h.runs).toHaveLength(0);
    await h.clock.advance(MAX_SLEEP); // 10:16 fails: claimTick; nothing consumed
    expect(h.runs).toHaveLength(0);
    expect((await h.store.getUnit('nightly', 'local/app'))?.cursor.incr).not.toBe('2026-01-05T10:15:00.000Z');

    await h.clock.advance(MAX_SLEEP); // 10:16:30: recovered; the tick is 90 s late, so a catch-up
    expect(h.runs.map((r) => [r.scheduledAt, r.trigger])).toEqual([['2026-01-05T10:15:00.000Z', 'catch-up']]);
    const errors = h.logs.filter((l) => l.level === 50);
    expect(errors).toHaveLength(3);
    expect(errors[0]).toMatchObject({
      task: 'nightly',
      database: 'local/app',
      err: { message: 'store getUnit failed', code: 'UNAVAILABLE' },
    });
  });

  it('reports the next full and incremental times per unit', async () => {
    const h = harness('2026-01-05T10:07:00Z');
    h.scheduler.setUnits([unit()]);
    // Before the first plan: an estimate from now.
    expect(h.scheduler.nextTimes('nightly', 'local/app')).toEqual({
      full: new Date('2026-01-06T00:00:00Z'),
      incremental: new Date('2026-01-05T10:15:00Z'),
    });
    h.scheduler.start();
    await h.clock.advance(10 * MINUTE);
    expect(h.scheduler.nextTimes('nightly', 'local/app')).toEqual({
      full: new Date('2026-01-06T00:00:00Z'),
      incremental: new Date('2026-01-05T10:30:00Z'),
    });
    expect(h.scheduler.nextTimes('nightly', 'local/none')).toBeUndefined();
  });

  it('leaves no timer after stop and runs nothing afterwards', async () => {
    const h = harness('2026-01-05T10:15:00Z');
    await h.store.updateUnitStatus('nightly', 'local/app', (u) => ({
      ...u,
      cursor: { full: '2026-01-05T00:00:00.000Z', incr: '2026-01-05T10:00:00.000Z' },
    }));
    h.scheduler.setUnits([unit()]);
    h.scheduler.start();
    // stop() while the first evaluation is in progress waits for it: its due tick is handed on.
    await h.scheduler.stop();
    expect(times(h.runs)).toEqual(['2026-01-05T10:15:00.000Z']);
    expect(h.clock.pendingTimers).toBe(0);
    await h.clock.advance(HOUR);
    expect(h.runs).toHaveLength(1);
  });
});

describe('Scheduler: drills', () => {
  function drillHarness(store = new MemoryStore()) {
    const clock = new FakeClock(T0);
    const runs: DueRun[] = [];
    const drills: DueDrill[] = [];
    const make = () => {
      const s = new Scheduler({
        store,
        clock,
        logger: pino({ level: 'silent' }),
        maxSleepMs: MAX_SLEEP,
        onDue: (run) => runs.push(run),
        onDrill: (drill) => drills.push(drill),
      });
      open.push(s);
      return s;
    };
    return { clock, store, runs, drills, make };
  }

  it('hands on each drill tick once beside the backups, with its own cursor, and not again after a restart', async () => {
    const h = drillHarness();
    const first = h.make();
    const u = unit({ drill: '5 * * * *' });
    first.setUnits([u]);
    first.start();
    await h.clock.advance(0);
    await h.clock.set('2026-01-05T12:00:00Z');
    // Drills at 10:05 and 11:05; the backups' ticks are all still handed on (00, 15, 30, 45 each hour).
    expect(h.drills.map((d) => d.scheduledAt)).toEqual(['2026-01-05T10:05:00.000Z', '2026-01-05T11:05:00.000Z']);
    expect(h.drills.every((d) => d.trigger === 'schedule')).toBe(true);
    expect(h.runs).toHaveLength(9);
    expect((await h.store.getUnit('nightly', 'local/app'))?.cursor.drill).toBe('2026-01-05T11:05:00.000Z');
    expect(first.nextTimes('nightly', 'local/app')?.drill?.toISOString()).toBe('2026-01-05T12:05:00.000Z');

    // A second scheduler on the same store (a restart, or the unit's new owner) runs no drill tick again.
    await first.stop();
    const second = h.make();
    second.setUnits([u]);
    second.start();
    await h.clock.advance(0);
    expect(h.drills).toHaveLength(2);
    await h.clock.set('2026-01-05T12:06:00Z');
    expect(h.drills.map((d) => d.scheduledAt).at(-1)).toBe('2026-01-05T12:05:00.000Z');
    expect(h.drills).toHaveLength(3);
  });

  it('does not hand on a drill tick another node has claimed', async () => {
    const h = drillHarness();
    await h.store.claimTick('nightly', 'local/app', 'drill', '2026-01-05T10:05:00.000Z');
    const s = h.make();
    s.setUnits([unit({ drill: '5 * * * *' })]);
    s.start();
    await h.clock.advance(0);
    await h.clock.set('2026-01-05T10:30:00Z');
    expect(h.drills).toEqual([]);
    // The backups' tick at the same minute is another claim: a drill claim never takes it.
    expect(h.runs.map((r) => r.scheduledAt)).toEqual([
      '2026-01-05T10:00:00.000Z',
      '2026-01-05T10:15:00.000Z',
      '2026-01-05T10:30:00.000Z',
    ]);
  });
});
