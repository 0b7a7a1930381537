// `backupctl status` names a retention that failed at a destination after a successful run (issue 21): the
// run succeeded, so without this the LAST ERROR column would stay empty while old chains pile up there.

import { expect, it } from 'vitest';
import { cli, fakeApi } from './support.js';

const summary = (runId: string, finishedAt: string) => ({
  runId,
  level: 'full',
  outcome: 'succeeded',
  startedAt: '2026-11-22T05:00:00Z',
  finishedAt,
  chainId: 'c',
  backupId: 'b',
  storedBytes: 1,
  error: '',
  notes: [],
});

it("status: LAST FULL is the run's end, and LAST ERROR names a destination's failed retention", async () => {
  const unit = {
    task: 'nightly',
    database: 'main/orders',
    state: 'active',
    responsibleNode: 'node1',
    destinations: ['disk', 'offsite'],
    lastFull: summary('r1', '2026-11-22T05:00:03Z'),
    lastIncremental: null,
    lastRun: summary('r1', '2026-11-22T05:00:03Z'),
    lastRunDestinations: [
      {
        destination: 'disk',
        ok: true,
        uploadedBytes: 1,
        reusedPacks: 0,
        error: '',
        retentionError: '',
        retentionErrorCode: '',
      },
      {
        destination: 'offsite',
        ok: true,
        uploadedBytes: 1,
        reusedPacks: 0,
        error: '',
        retentionError: 'delete x: access denied',
        retentionErrorCode: 'PERMISSION_DENIED',
      },
    ],
    nextFullAt: '',
    nextIncrementalAt: '',
    nextEstimatedAt: '',
    nextEstimatedLevel: '',
    retention: null,
    delayedUntil: '',
    currentRun: null,
    drills: [],
    nextDrillAt: '',
  };
  const fake = fakeApi({ GetTaskStatus: () => ({ name: 'nightly', units: [unit] }) });
  const result = await cli(['status', 'nightly'], { connect: fake.connect });
  expect(result.code).toBe(0);
  const [header, row] = result.stdout.split('\n');
  expect(header).toMatch(/LAST FULL .*LAST ERROR/);
  expect(row).toContain('2026-11-22 05:00:03Z');
  expect(row).toContain('offsite: retention failed: delete x: access denied');
  expect(row).not.toContain('disk: retention');
});

it('status: a failed drill is in LAST ERROR, and the drills table shows the last drill per destination', async () => {
  const drill = (destination: string, outcome: string, problem: string) => ({
    destination,
    outcome,
    scheduledAt: '2026-11-22T06:00:00Z',
    finishedAt: '2026-11-22T06:00:02Z',
    chainId: 'c',
    backupId: 'b',
    seconds: 2,
    restoreSeconds: 1,
    problem,
  });
  const unit = {
    task: 'nightly',
    database: 'main/orders',
    state: 'active',
    responsibleNode: 'node1',
    destinations: ['disk', 'offsite'],
    lastFull: summary('r1', '2026-11-22T05:00:03Z'),
    lastIncremental: null,
    lastRun: summary('r1', '2026-11-22T05:00:03Z'),
    lastRunDestinations: [],
    nextFullAt: '',
    nextIncrementalAt: '',
    nextEstimatedAt: '',
    nextEstimatedLevel: '',
    retention: null,
    delayedUntil: '',
    currentRun: null,
    drills: [
      drill('disk', 'passed', ''),
      drill('offsite', 'failed', 'table orders: rows differs: expected 3, found 2'),
    ],
    nextDrillAt: '',
  };
  const fake = fakeApi({ GetTaskStatus: () => ({ name: 'nightly', units: [unit] }) });
  const result = await cli(['status', 'nightly'], { connect: fake.connect });
  expect(result.code).toBe(0);
  const lines = result.stdout.split('\n');
  expect(lines[1]).toContain('drill at offsite failed: table orders: rows differs');
  const drills = lines.slice(lines.findIndex((l) => l.startsWith('DATABASE  ') && l.includes('DRILL ')));
  expect(drills[0]).toMatch(/DRILLED AT .*DRILL .*RESTORE POINT .*PROBLEM/);
  expect(drills.find((l) => l.includes('disk'))).toMatch(/passed .*c\/b/);
  expect(drills.find((l) => l.includes('offsite'))).toMatch(/FAILED .*table orders/);
});
