// A unit this node takes over from another node waits while that node's run of the unit is still queued or
// running in the records: the other node may only be paused (or cut off) and publish that run when it wakes
// up, and a run started here meanwhile would continue the chain from the same parent, forking it. The wait
// is bounded by a grace (a dead node's record stays `running` until it restarts); docs/CLUSTER.md.

import type { RunRecord } from '../cluster/store.js';

export interface UnitRef {
  task: string;
  database: string;
}

export class Takeovers {
  /** Units held, by key, since when (ms). */
  private readonly since = new Map<string, number>();

  constructor(
    private readonly node: string,
    private readonly graceMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Of the units this node newly owns, those to hold now, each with the run it waits for. `inFlight` are the
   * queued and running records cluster-wide, undefined when they cannot be read (every unit then waits,
   * within its grace).
   */
  hold(fresh: UnitRef[], inFlight: RunRecord[] | undefined): Map<string, RunRecord | undefined> {
    const held = new Map<string, RunRecord | undefined>();
    const at = this.now();
    const keys = new Set<string>();
    for (const unit of fresh) {
      const key = unitKey(unit);
      keys.add(key);
      const other = inFlight
        ? inFlight.find((r) => r.task === unit.task && r.database === unit.database && r.node !== this.node)
        : undefined;
      if (inFlight && !other) {
        this.since.delete(key);
        continue;
      }
      const since = this.since.get(key) ?? at;
      this.since.set(key, since);
      if (at - since < this.graceMs) held.set(key, other);
    }
    // Forget units no longer new here (scheduled, or gone).
    for (const key of this.since.keys()) if (!keys.has(key)) this.since.delete(key);
    return held;
  }
}

export const unitKey = (unit: UnitRef) => `${unit.task}\u0000${unit.database}`;
