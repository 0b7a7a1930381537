// The soak's judge on made-up evidence: it passes a clean history and names each kind of breakage, so a
// passing soak (test/cluster/soak.test.ts) means the rules held, not that the judge looked at nothing.

import { describe, expect, it } from 'vitest';
import {
  checkSoak,
  runStateInvariant,
  type SoakEvidence,
  type SoakManifest,
  type SoakRun,
} from '../harness/soak-check.js';

const T0 = Date.parse('2026-12-07T22:00:00.000Z');
const at = (s: number) => new Date(T0 + s * 1000).toISOString();
const DB = 'shop/a.db';

function run(s: number, overrides: Partial<SoakRun> = {}): SoakRun {
  return {
    runId: `r${s}`,
    task: 'soak',
    database: DB,
    level: s === 0 ? 'full' : 'incr',
    trigger: 'schedule',
    scheduledAt: at(s),
    outcome: 'succeeded',
    node: 'n1',
    queuedAt: at(s),
    startedAt: at(s),
    chainId: 'c1',
    backupId: `b${s}`,
    ...overrides,
  };
}

function manifest(s: number, parent: number | undefined, overrides: Partial<SoakManifest> = {}): SoakManifest {
  return {
    database: DB,
    chainId: 'c1',
    backupId: `b${s}`,
    parent: parent === undefined ? undefined : `b${parent}`,
    level: parent === undefined ? 'full' : 'incr',
    node: 'n1',
    term: 1,
    startedAt: at(s),
    finishedAt: at(s + 1),
    ...overrides,
  };
}

/** Ticks every 3 s from 0 to 30 s, each run once, one linear chain. */
function clean(): SoakEvidence {
  const ticks = Array.from({ length: 11 }, (_, i) => i * 3);
  return {
    manifests: ticks.map((s, i) => manifest(s, i === 0 ? undefined : ticks[i - 1])),
    runs: ticks.map((s) => run(s)),
    claims: ticks.map((s) => ({ task: 'soak', database: DB, level: 'incr', scheduledAt: at(s), node: 'n1' })),
    databases: [DB],
    from: new Date(T0),
    to: new Date(T0 + 30_000),
    everySeconds: 3,
    maxDelayMs: 6000,
  };
}

describe('the soak judge', () => {
  it('passes a clean history', () => {
    expect(checkSoak(clean())).toEqual({});
  });

  it('names a tick that ran twice, also when the second run was marked a duplicate', () => {
    const e = clean();
    e.runs.push(run(9, { runId: 'again', node: 'n2', backupId: 'b9x', duplicate: { claimedBy: 'n1' } }));
    expect(Object.keys(checkSoak(e))).toEqual(['no tick ran twice']);
  });

  it('names ticks nobody served, and claimed ticks that never ran', () => {
    const e = clean();
    e.runs = e.runs.filter((r) => !['r12', 'r15', 'r18'].includes(r.runId));
    const failed = checkSoak(e);
    expect(failed['no tick was missed']?.length).toBeGreaterThan(0);
    expect(failed['every claimed tick ran, or a later tick of its unit did']).toBeUndefined();
    e.runs = e.runs.filter((r) => Date.parse(r.scheduledAt!) < T0 + 12_000);
    expect(checkSoak(e)['every claimed tick ran, or a later tick of its unit did']?.length).toBeGreaterThan(0);
  });

  it('names a run cut off and never run again', () => {
    const e = clean();
    e.runs = e.runs.filter((r) => r.runId !== 'r30');
    e.runs.push(run(30, { outcome: 'interrupted', backupId: undefined }));
    expect(checkSoak(e)['no run was cut off without a rerun']).toHaveLength(1);
  });

  it('names a fork, a missing parent and a chain with two fulls', () => {
    const e = clean();
    e.manifests.push(manifest(10, 9, { backupId: 'b10', node: 'n2' }));
    e.manifests.push(manifest(40, 37));
    e.manifests.push(manifest(41, undefined, { backupId: 'b41' }));
    const failed = checkSoak(e)['every chain is linear: one full, every parent present, one child per parent'];
    expect(failed).toHaveLength(3);
  });

  it('names a run record whose state went back, and passes one that only moved forward', () => {
    const e = clean();
    e.runHistory = new Map([
      ['fine', ['queued', 'running', 'succeeded']],
      ['back', ['queued', 'running', 'queued', 'succeeded']],
      ['rewritten', ['running', 'succeeded', 'interrupted']],
    ]);
    const failed = checkSoak(e, [runStateInvariant])['no run record’s state goes backwards'];
    expect(failed).toHaveLength(2);
    expect(failed?.join('\n')).toMatch(/run back went from running to queued/);
    expect(failed?.join('\n')).toMatch(/run rewritten went from succeeded to interrupted/);
    expect(checkSoak({ ...e, runHistory: undefined }, [runStateInvariant])).toEqual({
      'no run record’s state goes backwards': ['no history of the run records was read'],
    });
  });
});
