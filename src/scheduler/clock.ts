// The scheduler's view of time: the wall clock it plans against and the timers it sleeps on, injected so
// tests drive both (test/support/fake-clock.ts) and a wall-clock jump can be simulated apart from timers.

/** A pending timer; cancelling an already fired or cancelled timer does nothing. */
export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** The wall clock: cron ticks, cursors and delays are compared against it. It may jump either way. */
  now(): Date;
  /**
   * Run `fn` once after `ms` milliseconds of elapsed time (not wall-clock time: a wall-clock jump neither
   * fires nor postpones it, which is why the scheduler caps its sleeps).
   */
  setTimeout(fn: () => void, ms: number): Timer;
}

export const systemClock: Clock = {
  now: () => new Date(),
  setTimeout(fn, ms) {
    const handle = setTimeout(fn, Math.max(0, ms));
    return { cancel: () => clearTimeout(handle) };
  },
};
