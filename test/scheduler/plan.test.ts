// planUnit, rule by rule: what one unit runs at one instant, and how its cursor moves.

import { describe, expect, it } from 'vitest';
import { MAX_LISTED_SKIPS, type Plan, type PlanInput, type PlannedRun, planUnit } from '../../src/scheduler/plan.js';
import type { TaskSchedule } from '../../src/task.js';

const HOURLY: TaskSchedule = { full: '0 * * * *', timeZone: 'UTC' };

function plan(now: string, input: Partial<PlanInput> = {}): Plan {
  return planUnit({
    schedule: HOURLY,
    missedRuns: 'run-once',
    cursor: {},
    now: new Date(now),
    lateToleranceMs: 60_000,
    ...input,
  });
}

function run(level: PlannedRun['level'], scheduledAt: string, trigger: PlannedRun['trigger']): PlannedRun {
  return { level, scheduledAt: new Date(scheduledAt), trigger };
}

/**
 * Plan a unit every `stepMs` from `from` to `to` as the scheduler's wakes would, carrying the cursor from
 * one plan to the next; returns every run planned.
 */
function simulate(schedule: TaskSchedule, from: string, to: string, stepMs: number): PlannedRun[] {
  const runs: PlannedRun[] = [];
  let cursor: Plan['cursor'] = {};
  for (let t = Date.parse(from); t <= Date.parse(to); t += stepMs) {
    const p = planUnit({ schedule, missedRuns: 'run-once', cursor, now: new Date(t), lateToleranceMs: 60_000 });
    if (p.run) runs.push(p.run);
    cursor = p.cursor;
  }
  return runs;
}

describe('planUnit', () => {
  it('starts a new unit at now: it misses nothing and waits for its next tick', () => {
    const p = plan('2026-01-05T10:00:30Z');
    expect(p.run).toBeUndefined();
    expect(p.cursor).toEqual({ full: '2026-01-05T10:00:30.000Z' });
    expect(p.skipped).toEqual([]);
    expect(p.nextFull).toEqual(new Date('2026-01-05T11:00:00Z'));
    expect(p.nextIncremental).toBeUndefined();
    expect(p.wakeAt).toEqual(new Date('2026-01-05T11:00:00Z'));
  });

  it('runs a tick that is due exactly now on schedule and moves the cursor to it', () => {
    const p = plan('2026-01-05T11:00:00Z', { cursor: { full: '2026-01-05T10:00:00.000Z' } });
    expect(p.run).toEqual(run('full', '2026-01-05T11:00:00Z', 'schedule'));
    expect(p.cursor).toEqual({ full: '2026-01-05T11:00:00.000Z' });
    expect(p.wakeAt).toEqual(new Date('2026-01-05T12:00:00Z'));
  });

  it('with only an incremental cron runs incrementals and reports no next full', () => {
    const p = plan('2026-01-05T10:15:00Z', {
      schedule: { incremental: '*/15 * * * *', timeZone: 'UTC' },
      cursor: { incr: '2026-01-05T10:00:00.000Z' },
    });
    expect(p.run).toEqual(run('incr', '2026-01-05T10:15:00Z', 'schedule'));
    expect(p.cursor).toEqual({ incr: '2026-01-05T10:15:00.000Z' });
    expect(p.nextFull).toBeUndefined();
    expect(p.nextIncremental).toEqual(new Date('2026-01-05T10:30:00Z'));
  });

  it('runs one full when a full and an incremental fall due together, consuming both ticks', () => {
    const p = plan('2026-01-05T11:00:00Z', {
      schedule: { full: '0 * * * *', incremental: '*/15 * * * *', timeZone: 'UTC' },
      cursor: { full: '2026-01-05T10:00:00.000Z', incr: '2026-01-05T10:45:00.000Z' },
    });
    expect(p.run).toEqual(run('full', '2026-01-05T11:00:00Z', 'schedule'));
    expect(p.cursor).toEqual({ full: '2026-01-05T11:00:00.000Z', incr: '2026-01-05T11:00:00.000Z' });
    expect(p.nextFull).toEqual(new Date('2026-01-05T12:00:00Z'));
    expect(p.nextIncremental).toEqual(new Date('2026-01-05T11:15:00Z'));
    expect(p.wakeAt).toEqual(new Date('2026-01-05T11:15:00Z'));
  });

  it('lets a missed full supersede pending incrementals: one catch-up full', () => {
    const p = plan('2026-01-05T10:20:00Z', {
      schedule: { full: '0 1 * * *', incremental: '*/15 * * * *', timeZone: 'UTC' },
      cursor: { full: '2026-01-03T01:00:00.000Z', incr: '2026-01-05T09:45:00.000Z' },
    });
    expect(p.run).toEqual(run('full', '2026-01-05T01:00:00Z', 'catch-up'));
    expect(p.cursor).toEqual({ full: '2026-01-05T01:00:00.000Z', incr: '2026-01-05T10:15:00.000Z' });
  });

  it('treats a late timer within the tolerance as on schedule, and one beyond it as a catch-up', () => {
    const cursor = { full: '2026-01-05T10:00:00.000Z' };
    expect(plan('2026-01-05T11:00:59Z', { cursor }).run).toEqual(run('full', '2026-01-05T11:00:00Z', 'schedule'));
    expect(plan('2026-01-05T11:01:00Z', { cursor }).run).toEqual(run('full', '2026-01-05T11:00:00Z', 'schedule'));
    expect(plan('2026-01-05T11:01:01Z', { cursor }).run).toEqual(run('full', '2026-01-05T11:00:00Z', 'catch-up'));
    expect(plan('2026-01-05T11:01:01Z', { cursor, lateToleranceMs: 120_000 }).run?.trigger).toBe('schedule');
  });

  it('collapses missed ticks into one catch-up run at the newest of them (run-once)', () => {
    const p = plan('2026-01-05T05:30:00Z', { cursor: { full: '2026-01-05T00:00:00.000Z' } });
    expect(p.run).toEqual(run('full', '2026-01-05T05:00:00Z', 'catch-up'));
    expect(p.skipped).toEqual([]);
    expect(p.cursor).toEqual({ full: '2026-01-05T05:00:00.000Z' });
    // The next plan finds nothing left to catch up.
    expect(plan('2026-01-05T05:31:00Z', { cursor: p.cursor }).run).toBeUndefined();
  });

  it('runs an on-time tick once even when older ticks were missed (run-once)', () => {
    const p = plan('2026-01-05T05:00:10Z', { cursor: { full: '2026-01-05T02:00:00.000Z' } });
    expect(p.run).toEqual(run('full', '2026-01-05T05:00:00Z', 'schedule'));
    expect(p.skipped).toEqual([]);
  });

  it('drops missed ticks under the skip policy and lists them', () => {
    const p = plan('2026-01-05T05:30:00Z', { missedRuns: 'skip', cursor: { full: '2026-01-05T02:00:00.000Z' } });
    expect(p.run).toBeUndefined();
    expect(p.skipped).toEqual(
      ['03', '04', '05'].map((h) => ({ level: 'full', scheduledAt: new Date(`2026-01-05T${h}:00:00Z`) })),
    );
    expect(p.cursor).toEqual({ full: '2026-01-05T05:00:00.000Z' });
  });

  it('under the skip policy still runs the on-time tick, skipping only the older ones', () => {
    const p = plan('2026-01-05T05:00:10Z', { missedRuns: 'skip', cursor: { full: '2026-01-05T03:00:00.000Z' } });
    expect(p.run).toEqual(run('full', '2026-01-05T05:00:00Z', 'schedule'));
    expect(p.skipped).toEqual([{ level: 'full', scheduledAt: new Date('2026-01-05T04:00:00Z') }]);
  });

  it('runs nothing twice when the clock jumps backwards', () => {
    const cursor = { full: '2026-01-05T05:00:00.000Z' };
    const back = plan('2026-01-05T03:30:00Z', { cursor });
    expect(back.run).toBeUndefined();
    expect(back.cursor).toEqual(cursor);
    // The next tick is the first one after the cursor, not the next one after the (earlier) clock.
    expect(back.nextFull).toEqual(new Date('2026-01-05T06:00:00Z'));
    // The clock passes 04:00 and 05:00 a second time: already handled.
    expect(plan('2026-01-05T04:00:00Z', { cursor }).run).toBeUndefined();
    expect(plan('2026-01-05T05:00:00Z', { cursor }).run).toBeUndefined();
    expect(plan('2026-01-05T06:00:00Z', { cursor }).run).toEqual(run('full', '2026-01-05T06:00:00Z', 'schedule'));
  });

  it('catches up once when the clock jumps forward over several ticks', () => {
    const p = plan('2026-01-05T09:30:00Z', { cursor: { full: '2026-01-05T05:00:00.000Z' } });
    expect(p.run).toEqual(run('full', '2026-01-05T09:00:00Z', 'catch-up'));
    expect(p.cursor).toEqual({ full: '2026-01-05T09:00:00.000Z' });
    expect(p.wakeAt).toEqual(new Date('2026-01-05T10:00:00Z'));
  });

  it('finds the newest tick of a months-old cursor without walking every tick', () => {
    const schedule = { incremental: '*/20 * * * * *', timeZone: 'UTC' };
    const cursor = { incr: '2025-06-01T00:00:00.000Z' };
    const started = performance.now();
    const p = plan('2026-01-05T10:00:07Z', { schedule, cursor });
    expect(p.run).toEqual(run('incr', '2026-01-05T10:00:00Z', 'schedule'));
    const skipped = plan('2026-01-05T10:05:07Z', { schedule, cursor, missedRuns: 'skip' });
    expect(skipped.run).toEqual(run('incr', '2026-01-05T10:05:00Z', 'schedule'));
    expect(skipped.skipped).toHaveLength(MAX_LISTED_SKIPS);
    expect(skipped.skipped[0]?.scheduledAt).toEqual(new Date('2025-06-01T00:00:20Z'));
    expect(skipped.cursor).toEqual({ incr: '2026-01-05T10:05:00.000Z' });
    // Over a million ticks lie in between; enumerating them would take far longer than this.
    expect(performance.now() - started).toBeLessThan(2000);
  });

  describe('a delay', () => {
    const cursor = { full: '2026-01-05T00:00:00.000Z' };
    const daily: TaskSchedule = { full: '0 * * * *', timeZone: 'UTC' };

    it('holds runs and consumes no tick while it lasts', () => {
      const p = plan('2026-01-05T02:10:00Z', { schedule: daily, cursor, delayedUntil: '2026-01-05T02:45:00.000Z' });
      expect(p.run).toBeUndefined();
      expect(p.skipped).toEqual([]);
      expect(p.cursor).toEqual(cursor);
      expect(p.wakeAt).toEqual(new Date('2026-01-05T02:45:00Z'));
      expect(p.nextFull).toEqual(new Date('2026-01-05T03:00:00Z'));
    });

    it('wakes at the next tick when that comes before the end of the delay', () => {
      const p = plan('2026-01-05T02:10:00Z', { cursor, delayedUntil: '2026-01-05T05:00:00.000Z' });
      expect(p.wakeAt).toEqual(new Date('2026-01-05T03:00:00Z'));
    });

    it('releases the ticks held during the delay as one catch-up run, even under the skip policy', () => {
      const input = { cursor, delayedUntil: '2026-01-05T03:30:00.000Z', missedRuns: 'skip' as const };
      const p = plan('2026-01-05T03:30:00Z', input);
      expect(p.run).toEqual(run('full', '2026-01-05T03:00:00Z', 'catch-up'));
      expect(p.skipped).toEqual([]);
      expect(p.cursor).toEqual({ full: '2026-01-05T03:00:00.000Z' });
      // Afterwards the delay is history: the skip policy applies again to ticks missed after it.
      const later = plan('2026-01-05T06:30:00Z', { ...input, cursor: p.cursor });
      expect(later.run).toBeUndefined();
      expect(later.skipped.map((s) => s.scheduledAt.toISOString())).toEqual([
        '2026-01-05T04:00:00.000Z',
        '2026-01-05T05:00:00.000Z',
        '2026-01-05T06:00:00.000Z',
      ]);
    });

    it('starts the cursor of a new unit at now while delayed, so it owes only what falls due after', () => {
      const p = plan('2026-01-05T02:10:00Z', { delayedUntil: '2026-01-05T05:00:00.000Z' });
      expect(p.cursor).toEqual({ full: '2026-01-05T02:10:00.000Z' });
      const released = plan('2026-01-05T05:00:00Z', { cursor: p.cursor, delayedUntil: '2026-01-05T05:00:00.000Z' });
      // 03:00, 04:00 and 05:00 fell due: one run, at the newest (on time, as 05:00 is due right now).
      expect(released.run).toEqual(run('full', '2026-01-05T05:00:00Z', 'schedule'));
    });
  });

  it('reads 6-field crons to the second: every 20 s runs three times a minute', () => {
    const runs = simulate(
      { incremental: '*/20 * * * * *', timeZone: 'UTC' },
      '2026-01-05T10:00:00Z',
      '2026-01-05T10:01:00Z',
      1000,
    );
    expect(runs.map((r) => r.scheduledAt.toISOString())).toEqual([
      '2026-01-05T10:00:20.000Z',
      '2026-01-05T10:00:40.000Z',
      '2026-01-05T10:01:00.000Z',
    ]);
    expect(runs.every((r) => r.level === 'incr' && r.trigger === 'schedule')).toBe(true);
  });

  describe('daylight saving time (Europe/Berlin)', () => {
    const berlin = (cron: string): TaskSchedule => ({ full: cron, timeZone: 'Europe/Berlin' });

    it('runs a daily 02:30 job exactly once on the spring-forward day, when 02:30 does not exist', () => {
      // 2026-03-29 in Berlin: 00:00 CET = 2026-03-28T23:00Z to 24:00 CEST = 2026-03-29T22:00Z.
      const runs = simulate(berlin('30 2 * * *'), '2026-03-28T23:00:00Z', '2026-03-29T22:00:00Z', 60_000);
      expect(runs).toHaveLength(1);
      // Clocks go from 02:00 straight to 03:00: the job runs at 03:00 CEST.
      expect(runs[0]).toEqual(run('full', '2026-03-29T01:00:00Z', 'schedule'));
    });

    it('runs a daily 02:30 job exactly once on the fall-back day, when 02:30 happens twice', () => {
      // 2026-10-25 in Berlin: 00:00 CEST = 2026-10-24T22:00Z to 24:00 CET = 2026-10-25T23:00Z (25 hours).
      const runs = simulate(berlin('30 2 * * *'), '2026-10-24T22:00:00Z', '2026-10-25T23:00:00Z', 60_000);
      expect(runs).toHaveLength(1);
      expect(runs[0]).toEqual(run('full', '2026-10-25T00:30:00Z', 'schedule'));
    });

    it('runs an hourly job once per real hour across the fall-back night', () => {
      const runs = simulate(berlin('0 * * * *'), '2026-10-24T22:30:00Z', '2026-10-25T04:30:00Z', 60_000);
      const times = runs.map((r) => r.scheduledAt.getTime());
      // 01:00 CEST, 02:00 CEST, 02:00 CET, 03:00, 04:00, 05:00 local: six real hours, six runs.
      expect(times).toHaveLength(6);
      expect(new Set(times).size).toBe(6);
      for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBe(3_600_000);
    });
  });

  it('keeps the cursor of a level that has no cron', () => {
    const p = plan('2026-01-05T10:00:30Z', {
      cursor: { full: '2026-01-05T10:00:00.000Z', incr: '2026-01-01T00:00:00.000Z' },
    });
    expect(p.cursor.incr).toBe('2026-01-01T00:00:00.000Z');
    expect(p.nextIncremental).toBeUndefined();
  });
});

describe('planUnit: drills', () => {
  it('plans a drill beside a backup due at the same tick, each with its own cursor, and wakes for the next drill', () => {
    const p = plan('2026-01-05T10:00:00Z', {
      drill: '0 */2 * * *',
      cursor: { full: '2026-01-05T09:00:00.000Z', drill: '2026-01-05T08:00:00.000Z' },
    });
    expect(p.run).toEqual(run('full', '2026-01-05T10:00:00Z', 'schedule'));
    expect(p.drill).toEqual({ scheduledAt: new Date('2026-01-05T10:00:00Z'), trigger: 'schedule' });
    expect(p.cursor).toEqual({ full: '2026-01-05T10:00:00.000Z', drill: '2026-01-05T10:00:00.000Z' });
    expect(p.nextDrill?.toISOString()).toBe('2026-01-05T12:00:00.000Z');
    expect(p.wakeAt?.toISOString()).toBe('2026-01-05T11:00:00.000Z');
  });

  it('collapses missed drills into one catch-up, or skips them with the unit, and holds them during a delay', () => {
    const cursor = { full: '2026-01-05T10:00:00.000Z', drill: '2026-01-05T06:00:00.000Z' };
    const caught = plan('2026-01-05T10:30:00Z', { drill: '0 * * * *', cursor });
    expect(caught.drill).toEqual({ scheduledAt: new Date('2026-01-05T10:00:00Z'), trigger: 'catch-up' });
    expect(caught.run).toBeUndefined();
    const skipped = plan('2026-01-05T10:30:00Z', { drill: '0 * * * *', cursor, missedRuns: 'skip' });
    expect(skipped.drill).toBeUndefined();
    expect(skipped.cursor.drill).toBe('2026-01-05T10:00:00.000Z');
    expect(skipped.skipped.filter((s) => s.level === 'drill')).toHaveLength(4);
    const held = plan('2026-01-05T10:30:00Z', { drill: '0 * * * *', cursor, delayedUntil: '2026-01-05T11:00:00Z' });
    expect(held.drill).toBeUndefined();
    expect(held.cursor.drill).toBe('2026-01-05T06:00:00.000Z');
  });

  it('plans no drill and keeps no drill cursor for a unit without one', () => {
    const p = plan('2026-01-05T10:00:00Z', { cursor: { full: '2026-01-05T09:00:00.000Z' } });
    expect(p.drill).toBeUndefined();
    expect(p.nextDrill).toBeUndefined();
    expect('drill' in p.cursor).toBe(false);
  });
});
