// What one unit must run now, decided from its schedule, its cursor and the clock alone (no I/O), so every
// rule about late timers, missed ticks, clock jumps and delays is in one place and tested without timers.

import type { TickKind } from '../cluster/store.js';
import { CronSchedule } from '../cron.js';
import type { BackupLevel } from '../layout.js';
import type { MissedRunPolicy, TaskSchedule } from '../task.js';

export interface PlanInput {
  schedule: TaskSchedule;
  /** Cron of the unit's restore drills (in the schedule's time zone), planned beside the backups. */
  drill?: string;
  missedRuns: MissedRunPolicy;
  /** The unit's cursor (UnitCursor.cursor): the newest tick (ISO) handled per level, and of drills. */
  cursor: Partial<Record<TickKind, string>>;
  /** Runs are held until this instant (ISO). */
  delayedUntil?: string;
  now: Date;
  /** A tick at most this old is a late timer, not a missed run. */
  lateToleranceMs: number;
}

export interface PlannedRun {
  level: BackupLevel;
  /** The tick the run serves; with the unit and level it is the cluster-wide claim key. */
  scheduledAt: Date;
  trigger: 'schedule' | 'catch-up';
}

/** A drill due now: its own tick, apart from the backups' (a drill never consumes a backup's tick). */
export interface PlannedDrill {
  scheduledAt: Date;
  trigger: 'schedule' | 'catch-up';
}

export interface Plan {
  run?: PlannedRun;
  drill?: PlannedDrill;
  /** The cursor to persist: every level with a cron has one, and drills when the unit has them. */
  cursor: Partial<Record<TickKind, string>>;
  /** Missed ticks dropped by the 'skip' policy, oldest first, at most MAX_LISTED_SKIPS per level. */
  skipped: { level: TickKind; scheduledAt: Date }[];
  nextFull?: Date;
  nextIncremental?: Date;
  nextDrill?: Date;
  /** When the unit needs to be planned again: its next tick, or the end of its delay. */
  wakeAt?: Date;
}

/** Cron fire times read per step; a cursor months behind is walked in steps of this many, never all at once. */
const ENUMERATION_LIMIT = 256;
/** Enough skipped ticks to say what was dropped without a months-old cursor listing thousands. */
export const MAX_LISTED_SKIPS = 100;

interface LevelPlan {
  level: TickKind;
  cursor: Date;
  run?: { scheduledAt: Date; trigger: 'schedule' | 'catch-up' };
  skipped: Date[];
  next?: Date;
}

/** Parsed schedules by expression and time zone: thousands of units share a few, and parsing dominates a plan. */
const parsed = new Map<string, CronSchedule>();
const PARSED_MAX = 1000;

function cronFor(expression: string, timeZone: string): CronSchedule {
  const key = `${timeZone} ${expression}`;
  let cron = parsed.get(key);
  if (!cron) {
    if (parsed.size >= PARSED_MAX) parsed.clear();
    cron = new CronSchedule(expression, timeZone);
    parsed.set(key, cron);
  }
  return cron;
}

export function planUnit(input: PlanInput): Plan {
  const { schedule, now } = input;
  const delayEnd = parseTime(input.delayedUntil);
  const delayed = delayEnd !== undefined && now.getTime() < delayEnd.getTime();

  const levels: LevelPlan[] = [];
  for (const [level, expression] of [
    ['full', schedule.full],
    ['incr', schedule.incremental],
    ['drill', input.drill],
  ] as const) {
    if (expression === undefined) continue;
    const cron = cronFor(expression, schedule.timeZone);
    // A level never handled starts now: a new unit (or a newly added cron) misses nothing.
    const cursor = parseTime(input.cursor[level]) ?? now;
    levels.push(delayed ? heldLevel(level, cron, cursor, now) : planLevel(level, cron, cursor, { ...input, delayEnd }));
  }

  const full = levels.find((l) => l.level === 'full');
  const incr = levels.find((l) => l.level === 'incr');
  const drill = levels.find((l) => l.level === 'drill');
  // A full due together with (or while) an incremental covers it: the incremental's ticks are consumed.
  const backup = full?.run
    ? { level: 'full' as const, ...full.run }
    : incr?.run && { level: 'incr' as const, ...incr.run };
  const plan: Plan = {
    run: backup,
    drill: drill?.run,
    cursor: { ...input.cursor },
    skipped: [],
    nextFull: full?.next,
    nextIncremental: incr?.next,
    nextDrill: drill?.next,
  };
  for (const l of levels) {
    plan.cursor[l.level] = l.cursor.toISOString();
    plan.skipped.push(...l.skipped.map((scheduledAt) => ({ level: l.level, scheduledAt })));
  }
  plan.wakeAt = earliest([full?.next, incr?.next, drill?.next, delayed ? delayEnd : undefined]);
  return plan;
}

/** A delayed unit runs nothing and consumes nothing: what falls due during the delay runs once it ends. */
function heldLevel(level: TickKind, cron: CronSchedule, cursor: Date, now: Date): LevelPlan {
  return { level, cursor, skipped: [], next: cron.next(later(now, cursor)) };
}

function planLevel(
  level: TickKind,
  cron: CronSchedule,
  cursor: Date,
  input: PlanInput & { delayEnd: Date | undefined },
): LevelPlan {
  const { now } = input;
  // A cursor at or ahead of now (the clock went back) has handled every tick up to it: none runs twice.
  if (cursor >= now) return { level, cursor, skipped: [], next: cron.next(cursor) };
  const oldest = cron.next(cursor);
  if (!oldest || oldest > now) return { level, cursor, skipped: [], next: oldest };
  const newest = newestTick(cron, oldest, now);
  const next = cron.next(now);

  const onTime = now.getTime() - newest.getTime() <= input.lateToleranceMs;
  // Ticks that fell due while the unit was delayed are owed one run whatever the policy.
  const { delayEnd } = input;
  const owedByDelay = delayEnd !== undefined && oldest <= delayEnd;
  const runs = onTime || owedByDelay || input.missedRuns === 'run-once';
  const run: LevelPlan['run'] = runs ? { scheduledAt: newest, trigger: onTime ? 'schedule' : 'catch-up' } : undefined;

  let skipped: Date[] = [];
  if (input.missedRuns === 'skip') {
    // Dropped: missed ticks after any delay, except the newest when a run serves it.
    const from = delayEnd && delayEnd > cursor ? delayEnd : cursor;
    skipped = cron
      .between(from, newest, MAX_LISTED_SKIPS + 1)
      .filter((t) => !run || t.getTime() !== newest.getTime())
      .slice(0, MAX_LISTED_SKIPS);
  }
  return { level, cursor: newest, run, skipped, next };
}

/**
 * The newest fire time in [oldest, until], `oldest` being a due tick, without enumerating from a cursor that
 * may be months old: look back over a window that doubles until it holds a tick, then walk that window only.
 */
function newestTick(cron: CronSchedule, oldest: Date, until: Date): Date {
  // Usually exactly one tick is due: one more cron step says so, no search.
  const second = cron.next(oldest);
  if (!second || second > until) return oldest;
  for (let span = 1000; ; span *= 2) {
    const start = new Date(Math.max(oldest.getTime(), until.getTime() - span));
    let newest: Date | undefined;
    for (let from = start; ; ) {
      const batch = cron.between(from, until, ENUMERATION_LIMIT);
      newest = batch.at(-1) ?? newest;
      if (batch.length < ENUMERATION_LIMIT || !newest) break;
      from = newest;
    }
    if (newest) return newest;
    // The window reached the oldest due tick and found nothing after it: it is the newest.
    if (start.getTime() <= oldest.getTime()) return oldest;
  }
}

function parseTime(iso: string | undefined): Date | undefined {
  if (iso === undefined) return undefined;
  const t = new Date(iso);
  // An unreadable stored time is treated as absent rather than poisoning every comparison with NaN.
  return Number.isNaN(t.getTime()) ? undefined : t;
}

function later(a: Date, b: Date): Date {
  return a.getTime() >= b.getTime() ? a : b;
}

function earliest(times: (Date | undefined)[]): Date | undefined {
  let best: Date | undefined;
  for (const t of times) if (t && (!best || t < best)) best = t;
  return best;
}
