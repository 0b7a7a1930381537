// A Clock for tests: elapsed time (what timers follow) and wall time (what now() says) move only when a
// test says so. advance() fires due timers in order and lets the async work they start settle in between;
// jump() moves only the wall clock, as an NTP step or a laptop suspend does.

import type { Clock, Timer } from '../../src/scheduler/clock.js';

interface Pending {
  /** Elapsed-time instant at which the timer fires. */
  due: number;
  /** Creation order, so timers due at the same instant fire in the order they were set. */
  seq: number;
  fn: () => void;
}

export class FakeClock implements Clock {
  /** Elapsed (monotonic) milliseconds since construction. */
  private elapsed = 0;
  /** Wall time = offset + elapsed; jump() changes only the offset. */
  private offset: number;
  private seq = 0;
  private readonly timers = new Set<Pending>();

  constructor(start: Date | string | number) {
    this.offset = new Date(start).getTime();
  }

  now(): Date {
    return new Date(this.offset + this.elapsed);
  }

  setTimeout(fn: () => void, ms: number): Timer {
    const timer: Pending = { due: this.elapsed + Math.max(0, ms), seq: this.seq++, fn };
    this.timers.add(timer);
    return { cancel: () => this.timers.delete(timer) };
  }

  /** Timers set and neither fired nor cancelled. */
  get pendingTimers(): number {
    return this.timers.size;
  }

  /**
   * Let `ms` elapse: fire every timer due by then in time order, the clock reading each timer's due time
   * while it runs, and settle promise chains after each one (timers they set are fired too when due).
   */
  async advance(ms: number): Promise<void> {
    if (ms < 0) throw new RangeError('advance() cannot go back; use jump() for a wall clock set backwards');
    const target = this.elapsed + ms;
    await this.flush();
    for (let next = this.nextDue(target); next; next = this.nextDue(target)) {
      this.timers.delete(next);
      this.elapsed = Math.max(this.elapsed, next.due);
      next.fn();
      await this.flush();
    }
    this.elapsed = target;
    await this.flush();
  }

  /** advance() until the wall clock reads `at`. */
  async set(at: Date | string): Promise<void> {
    await this.advance(new Date(at).getTime() - this.now().getTime());
  }

  /** Move the wall clock by `ms` (negative: backwards) without any time elapsing: no timer fires. */
  jump(ms: number): void {
    this.offset += ms;
  }

  /**
   * Settle work queued on promises. A macrotask turn drains the whole microtask queue, including what
   * those microtasks queue; a few turns cover code that hops through setImmediate or nextTick too.
   */
  async flush(): Promise<void> {
    for (let i = 0; i < 2; i++) await new Promise<void>((resolve) => setImmediate(resolve));
  }

  private nextDue(target: number): Pending | undefined {
    let best: Pending | undefined;
    for (const t of this.timers) {
      if (t.due > target) continue;
      if (!best || t.due < best.due || (t.due === best.due && t.seq < best.seq)) best = t;
    }
    return best;
  }
}
