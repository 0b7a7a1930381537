// The timer loop for the units this node is responsible for: plan each unit (plan.ts), claim its tick in the
// store so it runs once cluster-wide, move its cursor, and hand the run to the caller. It sleeps until the
// next tick but never longer than maxSleepMs, so a wall-clock jump or a suspend is noticed soon after.

import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { Store, UnitCursor } from '../cluster/store.js';
import type { BackupLevel } from '../layout.js';
import type { MissedRunPolicy, TaskSchedule } from '../task.js';
import type { Clock, Timer } from './clock.js';
import { type Plan, planUnit } from './plan.js';

/** Units planned between two yields to the event loop. */
const YIELD_EVERY = 100;

export interface ScheduledUnit {
  task: string;
  /** `<source>/<db>` */
  database: string;
  schedule: TaskSchedule;
  /** Cron of the unit's restore drills (TaskSpec.drill.schedule), when it has them. */
  drill?: string;
  missedRuns: MissedRunPolicy;
  disabled: boolean;
}

/** A drill tick claimed cluster-wide: verify --restore of the unit's newest restore point. */
export interface DueDrill {
  task: string;
  database: string;
  trigger: 'schedule' | 'catch-up';
  /** ISO time of the tick, as claimed in the store (kind 'drill'). */
  scheduledAt: string;
}

export interface DueRun {
  task: string;
  database: string;
  level: BackupLevel;
  trigger: 'schedule' | 'catch-up';
  /** ISO time of the tick, as claimed in the store. */
  scheduledAt: string;
}

export interface SchedulerOptions {
  store: Store;
  clock: Clock;
  logger: Logger;
  /** Called once per claimed tick; it should queue the run and return (its errors are logged, not thrown). */
  onDue: (run: DueRun) => void;
  /** Called once per claimed drill tick, as onDue; drills of units without one are never planned. */
  onDrill?: (drill: DueDrill) => void;
  /** A tick at most this old when its timer fires runs as 'schedule', older as a missed run. */
  lateToleranceMs?: number;
  /** The longest the loop sleeps, i.e. how late a wall-clock jump or a resume from suspend is noticed. */
  maxSleepMs?: number;
}

export type SchedulerEvents = {
  /** One pass over every unit finished; the loop sleeps `sleepMs` unless woken. */
  evaluated: [{ at: Date; sleepMs: number }];
  /** A claimed tick was handed to onDue. */
  due: [DueRun];
  /** A claimed drill tick was handed to onDrill. */
  drill: [DueDrill];
};

interface Known {
  unit: ScheduledUnit;
  /** Next times from the newest plan of this exact unit definition. */
  next?: NextTimes;
}

export interface NextTimes {
  full?: Date;
  incremental?: Date;
  drill?: Date;
}

export class Scheduler extends EventEmitter<SchedulerEvents> {
  private readonly store: Store;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly onDue: (run: DueRun) => void;
  private readonly onDrill: ((drill: DueDrill) => void) | undefined;
  private readonly lateToleranceMs: number;
  private readonly maxSleepMs: number;

  private units = new Map<string, Known>();
  private started = false;
  private timer: Timer | undefined;
  /** The evaluation in progress; evaluations never overlap. */
  private evaluating: Promise<void> | undefined;
  /** Something changed during the evaluation in progress: evaluate again as soon as it ends. */
  private again = false;

  constructor(options: SchedulerOptions) {
    super();
    this.store = options.store;
    this.clock = options.clock;
    this.logger = options.logger;
    this.onDue = options.onDue;
    this.onDrill = options.onDrill;
    this.lateToleranceMs = options.lateToleranceMs ?? 60_000;
    this.maxSleepMs = Math.max(1, options.maxSleepMs ?? 30_000);
  }

  /** Replace the units this node schedules and plan them at once (when started). */
  setUnits(units: ScheduledUnit[]): void {
    const next = new Map<string, Known>();
    for (const unit of units) {
      const key = unitKey(unit.task, unit.database);
      const known = this.units.get(key);
      // Next times stay valid only while the definition they were computed from is unchanged.
      const same = known && sameDefinition(known.unit, unit);
      next.set(key, { unit, next: same ? known.next : undefined });
    }
    this.units = next;
    this.wake();
  }

  /** Evaluate every unit now (a delay or a claim changed elsewhere); no-op when not started. */
  wake(): void {
    if (!this.started) return;
    if (this.evaluating) {
      this.again = true;
      return;
    }
    this.timer?.cancel();
    this.timer = undefined;
    this.evaluating = this.loop();
  }

  /** Whether this scheduler has the unit. */
  has(task: string, database: string): boolean {
    return this.units.has(unitKey(task, database));
  }

  /**
   * The next full and incremental times of a unit ({} for a disabled one), undefined for a unit this
   * scheduler does not have.
   */
  nextTimes(task: string, database: string): NextTimes | undefined {
    const known = this.units.get(unitKey(task, database));
    if (!known) return undefined;
    if (known.unit.disabled) return {};
    if (known.next) return known.next;
    // Not planned yet: an estimate from now, which is what the first plan will say unless a delay holds it.
    return nextOf(this.plan(known.unit, {}, undefined));
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    this.wake();
  }

  /** Cancel the timer and wait for an evaluation in progress; afterwards nothing is scheduled. */
  async stop(): Promise<void> {
    this.started = false;
    this.timer?.cancel();
    this.timer = undefined;
    await this.evaluating;
  }

  private async loop(): Promise<void> {
    let wakeAt: Date | undefined;
    try {
      do {
        this.again = false;
        wakeAt = await this.evaluateAll();
      } while (this.again && this.started);
    } finally {
      this.evaluating = undefined;
    }
    if (!this.started) return;
    const now = this.clock.now();
    const untilWake = wakeAt ? wakeAt.getTime() - now.getTime() : Number.POSITIVE_INFINITY;
    const sleepMs = Math.max(0, Math.min(this.maxSleepMs, untilWake));
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.wake();
    }, sleepMs);
    this.emit('evaluated', { at: now, sleepMs });
  }

  /** One pass over every unit, serially; returns the earliest instant a unit needs planning again. */
  private async evaluateAll(): Promise<Date | undefined> {
    let wakeAt: Date | undefined;
    let count = 0;
    for (const known of [...this.units.values()]) {
      // Between units only: a unit whose tick was claimed is always finished (onDue called) before stopping.
      if (!this.started) break;
      // Thousands of units plan in seconds of CPU: let timers (the cluster lease's keepalive) and I/O in.
      if (++count % YIELD_EVERY === 0) await new Promise((resolve) => setImmediate(resolve));
      const { task, database } = known.unit;
      try {
        const unitWake = await this.evaluateUnit(known);
        if (unitWake && (!wakeAt || unitWake < wakeAt)) wakeAt = unitWake;
      } catch (error) {
        // Nothing was consumed that was not also claimed and handed on; the next wake retries this unit.
        this.logger.error({ err: error, task, database }, 'scheduler could not evaluate unit; retrying at next wake');
      }
    }
    return wakeAt;
  }

  private async evaluateUnit(known: Known): Promise<Date | undefined> {
    const { unit } = known;
    const { task, database } = unit;
    const state = await this.store.getUnit(task, database);
    const cursor = state?.cursor ?? {};

    if (unit.disabled) {
      // Keep the cursor moving while disabled, so enabling the task later does not catch up on everything
      // it would have run; planning with 'skip' moves it to the newest passed tick, and the run is ignored.
      const plan = planUnit({
        schedule: unit.schedule,
        drill: this.drillOf(unit),
        missedRuns: 'skip',
        cursor,
        now: this.clock.now(),
        lateToleranceMs: this.lateToleranceMs,
      });
      known.next = {};
      if (cursorChanged(cursor, plan.cursor)) await this.persistCursor(task, database, plan);
      return undefined;
    }

    const plan = this.plan(unit, cursor, state?.delayedUntil);
    known.next = nextOf(plan);
    for (const s of plan.skipped) {
      this.logger.info(
        { task, database, backupLevel: s.level, scheduledAt: s.scheduledAt.toISOString() },
        'missed tick skipped (missedRuns: skip)',
      );
    }

    const run = plan.run;
    const due: DueRun | undefined = run && {
      task,
      database,
      level: run.level,
      trigger: run.trigger,
      scheduledAt: run.scheduledAt.toISOString(),
    };
    const drill: DueDrill | undefined = plan.drill && {
      task,
      database,
      trigger: plan.drill.trigger,
      scheduledAt: plan.drill.scheduledAt.toISOString(),
    };
    const claimed = due ? await this.store.claimTick(task, database, due.level, due.scheduledAt) : false;
    let drillClaimed = false;
    try {
      drillClaimed = drill ? await this.store.claimTick(task, database, 'drill', drill.scheduledAt) : false;
      if (cursorChanged(cursor, plan.cursor)) await this.persistCursor(task, database, plan);
    } finally {
      // A claimed tick is handed on even when the cursor could not be saved: the next plan finds the same
      // tick, its claim fails, and so it is neither lost nor run twice.
      if (due && claimed) this.handOn(due);
      else if (due) this.logger.debug(logFields(due), 'tick already claimed; not running it again');
      if (drill && drillClaimed) this.handOnDrill(drill);
      else if (drill) this.logger.debug({ ...drill }, 'drill tick already claimed; not running it again');
    }
    return plan.wakeAt;
  }

  private handOnDrill(drill: DueDrill): void {
    this.logger.info({ ...drill }, 'drill due');
    try {
      this.onDrill?.(drill);
    } catch (error) {
      this.logger.error({ err: error, ...drill }, 'onDrill failed');
    }
    this.emit('drill', drill);
  }

  /** The unit's drill cron, when this scheduler hands drills on at all. */
  private drillOf(unit: ScheduledUnit): string | undefined {
    return this.onDrill ? unit.drill : undefined;
  }

  private handOn(due: DueRun): void {
    this.logger.info(logFields(due), 'tick due');
    try {
      this.onDue(due);
    } catch (error) {
      // The caller's failure to queue one run must not stop the loop for every other unit.
      this.logger.error({ err: error, ...logFields(due) }, 'onDue failed');
    }
    this.emit('due', due);
  }

  private plan(unit: ScheduledUnit, cursor: UnitCursor['cursor'], delayedUntil: string | undefined): Plan {
    return planUnit({
      schedule: unit.schedule,
      drill: this.drillOf(unit),
      missedRuns: unit.missedRuns,
      cursor,
      delayedUntil,
      now: this.clock.now(),
      lateToleranceMs: this.lateToleranceMs,
    });
  }

  private async persistCursor(task: string, database: string, plan: Plan): Promise<void> {
    await this.store.updateUnitStatus(task, database, (current) => ({
      ...current,
      cursor: laterCursor(current.cursor, plan.cursor),
    }));
  }
}

const TICK_KINDS = ['full', 'incr', 'drill'] as const;

function unitKey(task: string, database: string): string {
  return JSON.stringify([task, database]);
}

function sameDefinition(a: ScheduledUnit, b: ScheduledUnit): boolean {
  return (
    a.disabled === b.disabled &&
    a.missedRuns === b.missedRuns &&
    a.schedule.full === b.schedule.full &&
    a.schedule.incremental === b.schedule.incremental &&
    a.schedule.timeZone === b.schedule.timeZone &&
    a.drill === b.drill
  );
}

/** The next full, incremental and drill times a plan says. */
export function nextOf(plan: Plan): NextTimes {
  return { full: plan.nextFull, incremental: plan.nextIncremental, drill: plan.nextDrill };
}

function cursorChanged(stored: UnitCursor['cursor'], planned: UnitCursor['cursor']): boolean {
  return TICK_KINDS.some((level) => planned[level] !== undefined && planned[level] !== stored[level]);
}

/**
 * Per level, the later of the stored and the planned cursor: a cursor only moves forward, even when another
 * node (or a clock that went back) planned from an older reading.
 */
function laterCursor(stored: UnitCursor['cursor'], planned: UnitCursor['cursor']): UnitCursor['cursor'] {
  const merged = { ...stored };
  for (const level of TICK_KINDS) {
    const p = planned[level];
    if (p === undefined) continue;
    const s = stored[level];
    const sTime = s === undefined ? Number.NaN : Date.parse(s);
    if (Number.isNaN(sTime) || Date.parse(p) > sTime) merged[level] = p;
  }
  return merged;
}

/** A due run as log fields: its level as `backupLevel`, since pino's own `level` (the severity) must stay. */
function logFields(due: DueRun): Record<string, string> {
  const { level, ...rest } = due;
  return { ...rest, backupLevel: level };
}
