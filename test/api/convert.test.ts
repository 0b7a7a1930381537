// Proto <-> domain conversions without a server: task specs through the real parseTaskSpec, empty proto
// fields as absent, config_json errors reported with every other problem, answers carrying only what they
// were given.

import { describe, expect, it } from 'vitest';
import { chainToProto, oneTimeInputFromProto, restoreInputFromProto } from '../../src/api/convert-restore.js';
import {
  clusterToProto,
  databaseToProto,
  runFilterFromProto,
  runFromProto,
  runToProto,
  unitToProto,
} from '../../src/api/convert-run.js';
import { destinationToProto, taskSpecInput, taskSpecToProto, taskToProto } from '../../src/api/convert-task.js';
import type { StoredTask } from '../../src/cluster/store.js';
import { ValidationError } from '../../src/errors.js';
import type { TaskSpec as ProtoTaskSpec } from '../../src/generated/backupd/v1/TaskSpec.js';
import { parseTaskSpec } from '../../src/task.js';
import { destinations } from '../../src/uploader/registry.js';
import { NOW, sampleRun, sampleUnit } from './support/fake-operations.js';

const fullSpec: ProtoTaskSpec = {
  name: 'nightly',
  databases: { names: ['main/app', 'main/billing'] },
  type: 'snapshot',
  schedule: { full: '0 3 * * 0', incremental: '*/15 * * * *', timeZone: 'Europe/Berlin' },
  preferredNode: 'node2',
  pinToPreferredNode: true,
  retention: { maxAgeDays: 30, keepChains: 4, orphanGraceHours: 12 },
  destinations: [
    { name: 'disk', kind: 'local', configJson: '{"path":"/var/backups"}' },
    { name: 'cloud', kind: 's3', configJson: '{"bucket":"backups-eu","prefix":"db","region":"eu-central-1"}' },
  ],
  disabled: true,
  missedRuns: 'skip',
  encrypted: true,
  drill: { schedule: '*/10 * * * *', destinations: ['cloud', 'disk'] },
};

function problemsOf(fn: () => unknown): { path: string; message: string }[] {
  try {
    fn();
  } catch (error) {
    if (error instanceof ValidationError) return error.problems;
    throw error;
  }
  throw new Error('expected a ValidationError');
}

describe('task spec: proto -> domain input', () => {
  it('maps every field of a full spec so the agent accepts it, and back again unchanged', () => {
    const input = taskSpecInput(fullSpec, destinations);
    const spec = parseTaskSpec(input, destinations);
    expect(spec).toEqual({
      name: 'nightly',
      target: { databases: ['main/app', 'main/billing'] },
      type: 'snapshot',
      schedule: { full: '0 3 * * 0', incremental: '*/15 * * * *', timeZone: 'Europe/Berlin' },
      preferredNode: 'node2',
      pinToPreferredNode: true,
      retention: { maxAgeDays: 30, keepChains: 4, orphanGraceHours: 12 },
      destinations: [
        { name: 'disk', kind: 'local', config: { path: '/var/backups' } },
        { name: 'cloud', kind: 's3', config: { bucket: 'backups-eu', prefix: 'db', region: 'eu-central-1' } },
      ],
      disabled: true,
      missedRuns: 'skip',
      encrypted: true,
      drill: { schedule: '*/10 * * * *', destinations: ['cloud', 'disk'] },
    });
    expect(taskSpecToProto(spec)).toEqual({
      name: 'nightly',
      databases: { names: ['main/app', 'main/billing'] },
      type: 'snapshot',
      schedule: fullSpec.schedule,
      preferredNode: 'node2',
      pinToPreferredNode: true,
      retention: fullSpec.retention,
      destinations: fullSpec.destinations,
      disabled: true,
      missedRuns: 'skip',
      encrypted: true,
      drill: fullSpec.drill,
    });
  });

  it('maps a server-wide target with its exclusions', () => {
    const proto: ProtoTaskSpec = {
      ...fullSpec,
      databases: null,
      serverWide: { source: 'pg1', exclude: ['template1', 'scratch'] },
      target: 'serverWide',
    };
    const spec = parseTaskSpec(taskSpecInput(proto, destinations), destinations);
    expect(spec.target).toEqual({ serverWide: { source: 'pg1', exclude: ['template1', 'scratch'] } });
    const back = taskSpecToProto(spec);
    expect(back.serverWide).toEqual({ source: 'pg1', exclude: ['template1', 'scratch'] });
    expect(back.databases).toBeUndefined();
  });

  it('turns proto3 empties into absent fields so the agent applies its defaults', () => {
    const input = taskSpecInput(
      {
        name: 'small',
        databases: { names: ['main/app'] },
        type: 'backup',
        schedule: { full: '', incremental: '0 * * * *', timeZone: '' },
        preferredNode: '',
        retention: { maxAgeDays: 0, keepChains: 0, orphanGraceHours: 0 },
        destinations: [{ name: 'disk', kind: 'local', configJson: '{"path":"/b"}' }],
        missedRuns: '',
      },
      destinations,
    );
    expect(input).toEqual({
      name: 'small',
      target: { databases: ['main/app'] },
      type: 'backup',
      schedule: { incremental: '0 * * * *' },
      pinToPreferredNode: false,
      destinations: [{ name: 'disk', kind: 'local', config: { path: '/b' } }],
      disabled: false,
      encrypted: false,
    });
    const spec = parseTaskSpec(input, destinations);
    expect(spec.schedule.timeZone).toBe('UTC');
    expect(spec.missedRuns).toBe('run-once');
    expect(spec.retention).toBeUndefined();
    expect(spec.preferredNode).toBeUndefined();
  });

  it('keeps only the retention fields that are set', () => {
    const input = taskSpecInput({ ...fullSpec, retention: { maxAgeDays: 7, keepChains: 0 } }, destinations);
    expect((input as { retention: unknown }).retention).toEqual({ maxAgeDays: 7 });
  });

  it('reports a config_json that is not JSON together with every other problem, and nothing twice', () => {
    const problems = problemsOf(() =>
      taskSpecInput(
        {
          ...fullSpec,
          type: 'tarball',
          destinations: [
            { name: 'disk', kind: 'local', configJson: '{"path": "/b",}' },
            { name: 'cloud', kind: 's3', configJson: '{"bucket":"x"}' },
            { name: 'third', kind: 's3', configJson: 'secretAccessKey=hunter2' },
            // Long input: V8 quotes an excerpt of it after "...".
            { name: 'fourth', kind: 's3', configJson: '{"bucket": "backups-eu", "secretAccessKey": hunter3}' },
          ],
        },
        destinations,
      ),
    );
    const paths = problems.map((p) => p.path).sort();
    expect(paths).toContain('type');
    expect(paths).toContain('destinations[0].config');
    expect(paths).toContain('destinations[2].config');
    // The second destination's bucket name is too short: its driver still reports it.
    expect(paths).toContain('destinations[1].config.bucket');
    // The driver's own complaint about the unparsable config is replaced by the JSON problem, not added.
    expect(paths.filter((p) => p.startsWith('destinations[0].config'))).toEqual(['destinations[0].config']);
    const json = problems.find((p) => p.path === 'destinations[0].config');
    expect(json?.message).toMatch(/^not valid JSON: .*position 14/);
    // V8 quotes the input in some JSON errors; the text may hold credentials and must not be echoed.
    expect(paths).toContain('destinations[3].config');
    expect(JSON.stringify(problems)).not.toMatch(/hunter2|hunter3/);
  });

  it('reads an empty config_json as no settings, so the driver names what is missing', () => {
    const input = taskSpecInput(
      { ...fullSpec, drill: null, destinations: [{ name: 'disk', kind: 'local', configJson: '' }] },
      destinations,
    );
    const problems = problemsOf(() => parseTaskSpec(input, destinations));
    expect(problems.map((p) => p.path)).toEqual(['destinations[0].config.path']);
  });

  it('passes an absent spec on as an empty one for the agent to reject field by field', () => {
    const problems = problemsOf(() => parseTaskSpec(taskSpecInput(null, destinations), destinations));
    expect(problems.map((p) => p.path)).toEqual(
      expect.arrayContaining(['name', 'target', 'type', 'schedule', 'destinations']),
    );
  });
});

describe('requests -> domain inputs', () => {
  it('names every missing field of a restore request at once', () => {
    const problems = problemsOf(() =>
      restoreInputFromProto({ from: null, database: '', chainId: '', backupId: 'b', target: '', encryptionKey: '' }),
    );
    expect(problems.map((p) => p.path).sort()).toEqual(
      ['chainId', 'database', 'from.destination', 'from.task', 'target'].sort(),
    );
  });

  it('keeps an empty key absent and a given one as is', () => {
    const base = { database: 'main/app', chainId: 'c', backupId: 'b', target: 'app2' };
    const withoutKey = restoreInputFromProto({
      ...base,
      from: { task: 'nightly', destination: 'disk' },
      encryptionKey: '',
    });
    expect(withoutKey).toEqual({ ...base, from: { task: 'nightly', destination: 'disk' } });
    expect('key' in withoutKey).toBe(false);
    const withKey = restoreInputFromProto({
      ...base,
      from: { task: 'nightly', destination: 'disk' },
      encryptionKey: 'k',
    });
    expect(withKey.key).toBe('k');
  });

  it('reads a destination given in full, and refuses both forms at once', () => {
    const spec = { name: 'adhoc', kind: 'local', configJson: '{"path":"/b"}' };
    const input = restoreInputFromProto({
      from: { spec },
      database: 'main/app',
      chainId: 'c',
      backupId: 'b',
      target: 'app2',
    });
    expect(input.from).toEqual({ spec: { name: 'adhoc', kind: 'local', config: { path: '/b' } } });
    const problems = problemsOf(() =>
      restoreInputFromProto({
        from: { task: 't', spec },
        database: 'main/app',
        chainId: 'c',
        backupId: 'b',
        target: 'x',
      }),
    );
    expect(problems).toEqual([{ path: 'from', message: 'give either task and destination, or spec, not both' }]);
  });

  it('checks a one-time backup: type, destinations and their JSON', () => {
    const problems = problemsOf(() =>
      oneTimeInputFromProto({
        database: 'main/app',
        type: 'dump',
        encryptionKey: '',
        destinations: [{ name: 'd', kind: 'local', configJson: '{' }],
      }),
    );
    expect(problems.map((p) => p.path)).toEqual(['type', 'destinations[0].config']);
  });

  it('leaves unset run filters absent', () => {
    expect(runFilterFromProto({ task: '', database: 'main/app', limit: 0 })).toEqual({ database: 'main/app' });
  });
});

describe('domain -> answers', () => {
  it('writes a destination config exactly as given, adding nothing', () => {
    const config = { bucket: 'b', secretAccessKey: '***', accessKeyId: 'AKIAEXAMPLE' };
    const proto = destinationToProto({ name: 'cloud', kind: 's3', config });
    expect(proto).toEqual({ name: 'cloud', kind: 's3', configJson: JSON.stringify(config) });
    expect(JSON.parse(proto.configJson ?? '')).toEqual(config);
  });

  it('never carries an encryption key: a task answer has no field for one', () => {
    const stored: StoredTask = {
      spec: parseTaskSpec(taskSpecInput(fullSpec, destinations), destinations),
      createdAt: NOW,
      updatedAt: NOW,
      revision: 3,
    };
    // A key smuggled onto the domain object (a bug elsewhere) is still not copied into the answer: the
    // conversion names each field it writes instead of spreading what it was given.
    const withKey = { ...stored, spec: { ...stored.spec, key: 'sekrit-key' }, key: 'sekrit-key' };
    const answer = taskToProto(withKey);
    expect(JSON.stringify(answer)).not.toContain('sekrit-key');
    expect(answer).toEqual({ spec: taskSpecToProto(stored.spec), createdAt: NOW, updatedAt: NOW, revision: 3 });
  });

  it('reads a run another node answered back into the same domain run (forwarding)', () => {
    const run = sampleRun({
      outcome: 'failed',
      scheduledAt: NOW,
      finishedAt: NOW,
      chainId: 'c1',
      backupId: 'b1',
      error: 'boom',
      errorCode: 'DESTINATION_FAILED',
      destinations: [{ destination: 'a', ok: false, uploadedBytes: 3, reusedPacks: 1, error: 'down' }],
      progress: { phase: 'publishing', bytesDone: 7, bytesTotal: 9 },
    });
    const wire = runToProto(run) as Parameters<typeof runFromProto>[0];
    expect(runFromProto(wire)).toEqual(run);
  });

  it('writes runs with absent times and errors as empty strings', () => {
    const run = sampleRun({ progress: { phase: 'reading', bytesDone: 5 } });
    expect(runToProto(run)).toEqual({
      runId: 'run-1',
      task: 'nightly',
      database: 'main/app',
      type: 'backup',
      level: 'incr',
      trigger: 'now',
      scheduledAt: '',
      outcome: 'running',
      node: 'node1',
      queuedAt: NOW,
      startedAt: NOW,
      finishedAt: '',
      chainId: '',
      backupId: '',
      rawBytes: 0,
      storedBytes: 0,
      destinations: [],
      error: '',
      errorCode: '',
      progress: { phase: 'reading', bytesDone: 5, bytesTotal: 0 },
      notes: [],
    });
  });

  it("carries a run's notes (what its restore will not bring back) both ways", () => {
    const run = sampleRun({ notes: ['unlogged tables come back empty: shop.public.sessions'] });
    const wire = runToProto(run) as Parameters<typeof runFromProto>[0];
    expect(wire.notes).toEqual(['unlogged tables come back empty: shop.public.sessions']);
    expect(runFromProto(wire)).toEqual(run);
  });

  it('writes a unit with its last runs, destinations outcomes and current run', () => {
    const unit = sampleUnit({
      lastFull: { runId: 'f', level: 'full', outcome: 'succeeded', storedBytes: 100, finishedAt: NOW },
      lastRun: {
        runId: 'r',
        level: 'incr',
        outcome: 'failed',
        storedBytes: 0,
        error: 'cloud: access denied',
        destinations: [
          { destination: 'disk', ok: true, uploadedBytes: 10, reusedPacks: 1 },
          { destination: 'cloud', ok: false, uploadedBytes: 0, reusedPacks: 0, error: 'access denied' },
        ],
      },
      retention: { keepChains: 3 },
      nextEstimatedAt: NOW,
      nextEstimatedLevel: 'incr',
      currentRun: sampleRun(),
    });
    const proto = unitToProto(unit);
    const noRetentionError = { retentionError: '', retentionErrorCode: '' };
    expect(proto.lastFull).toMatchObject({ runId: 'f', level: 'full', startedAt: '', finishedAt: NOW, error: '' });
    expect(proto.lastIncremental).toBeNull();
    expect(proto.lastRun).toMatchObject({ runId: 'r', error: 'cloud: access denied' });
    expect(proto.lastRunDestinations).toEqual([
      { destination: 'disk', ok: true, uploadedBytes: 10, reusedPacks: 1, error: '', ...noRetentionError },
      {
        destination: 'cloud',
        ok: false,
        uploadedBytes: 0,
        reusedPacks: 0,
        error: 'access denied',
        ...noRetentionError,
      },
    ]);
    expect(proto.retention).toEqual({ maxAgeDays: 0, keepChains: 3, orphanGraceHours: 0 });
    expect(proto.nextFullAt).toBe('');
    expect(proto.nextEstimatedLevel).toBe('incr');
    expect(proto.currentRun?.runId).toBe('run-1');
    // The scheduler's cursor and destination references are the agent's internals, not part of the answer.
    expect(JSON.stringify(proto)).not.toContain('cursor');
  });

  it('writes databases, chains and the cluster with absent numbers and times as zero and empty', () => {
    expect(databaseToProto({ source: 'main', name: 'app', engine: 'sqlite', types: ['backup'] })).toEqual({
      source: 'main',
      name: 'app',
      engine: 'sqlite',
      sizeBytes: 0,
      types: ['backup'],
    });
    expect(chainToProto({ cluster: 'prod', database: 'a/b', chainId: 'c', backups: ['b1', 'b2'], bytes: 7 })).toEqual({
      cluster: 'prod',
      database: 'a/b',
      chainId: 'c',
      type: '',
      backups: ['b1', 'b2'],
      bytes: 7,
      newestAt: '',
    });
    const cluster = {
      cluster: 'prod',
      node: 'n1',
      mode: 'etcd' as const,
      leader: 'n2',
      term: 9,
      members: [
        {
          node: 'n1',
          address: 'a:1',
          version: '0.1.0',
          healthy: false,
          state: 'lost contact with etcd',
          databases: ['pg/x'],
        },
      ],
      assignments: [{ task: 't', database: 'pg/x', node: 'n1', reason: 'preferred', term: 7 }],
      leaderChanges: [{ node: 'n1', term: 7, at: '2026-11-22T05:00:00.000Z' }],
      pendingReports: 2,
    };
    expect(clusterToProto(cluster)).toEqual(cluster);
  });
});
