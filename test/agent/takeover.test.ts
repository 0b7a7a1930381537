// Units taken over from another node wait for its runs of them still in flight, within a grace, on an
// injected clock.

import { describe, expect, it } from 'vitest';
import { Takeovers, unitKey } from '../../src/agent/takeover.js';
import type { RunRecord } from '../../src/cluster/store.js';

const unit = { task: 't', database: 'shop/a.db' };
const other = { task: 't', database: 'shop/b.db' };

function inFlight(node: string, outcome: RunRecord['outcome'] = 'running'): RunRecord {
  return {
    runId: `run-on-${node}`,
    ...unit,
    type: 'backup',
    level: 'incr',
    trigger: 'schedule',
    outcome,
    node,
    queuedAt: '2026-12-07T23:57:45.000Z',
    rawBytes: 0,
    storedBytes: 0,
    destinations: [],
  };
}

describe('Takeovers', () => {
  it('holds a unit while another node’s run of it is queued or running, up to the grace', () => {
    let now = 0;
    const takeovers = new Takeovers('n2', 6000, () => now);
    expect([...takeovers.hold([unit, other], [inFlight('n1')]).keys()]).toEqual([unitKey(unit)]);
    now = 5999;
    expect(takeovers.hold([unit], [inFlight('n1', 'queued')]).get(unitKey(unit))?.node).toBe('n1');
    now = 6000;
    expect(takeovers.hold([unit], [inFlight('n1')]).size).toBe(0);
  });

  it('releases a unit as soon as the run has ended, and ignores this node’s own runs', () => {
    let now = 0;
    const takeovers = new Takeovers('n2', 6000, () => now);
    expect(takeovers.hold([unit], [inFlight('n1')]).size).toBe(1);
    now = 100;
    expect(takeovers.hold([unit], []).size).toBe(0);
    expect(takeovers.hold([unit], [inFlight('n2')]).size).toBe(0);
  });

  it('holds every unit within the grace while the runs in flight cannot be read', () => {
    let now = 0;
    const takeovers = new Takeovers('n2', 6000, () => now);
    expect(takeovers.hold([unit, other], undefined).size).toBe(2);
    now = 6000;
    expect(takeovers.hold([unit, other], undefined).size).toBe(0);
  });
});
