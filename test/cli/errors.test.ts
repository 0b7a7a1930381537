// Errors from the agent -> message and exit code (problems of INVALID_ARGUMENT one per line, UNAVAILABLE
// with what to check), failed runs -> exit 1, secrets never in any output, and what the commands print.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, describe, expect, it } from 'vitest';
import { RpcError } from '../../src/api/client.js';
import { EXIT, exitCodeFor, RunFailedError, UsageError } from '../../src/cli/ctl/errors.js';
import { cli, fakeApi, runMessage } from './support.js';

const failWith = (error: unknown) => () => Promise.reject(error);

describe('gRPC status -> exit code', () => {
  const cases: [status, number][] = [
    [status.INVALID_ARGUMENT, 2],
    [status.NOT_FOUND, 3],
    [status.UNAVAILABLE, 4],
    [status.DEADLINE_EXCEEDED, 4],
    [status.UNAUTHENTICATED, 5],
    [status.PERMISSION_DENIED, 5],
    [status.ALREADY_EXISTS, 6],
    [status.FAILED_PRECONDITION, 6],
    [status.ABORTED, 1],
    [status.DATA_LOSS, 1],
    [status.INTERNAL, 1],
    [status.UNKNOWN, 1],
  ];
  for (const [code, exit] of cases) {
    it(`${status[code]} -> ${exit}`, async () => {
      expect(exitCodeFor(new RpcError(code, 'x', 'SOME_CODE'))).toBe(exit);
      const fake = fakeApi({ GetTask: failWith(new RpcError(code, 'it went wrong', 'SOME_CODE')) });
      const result = await cli(['task', 'get', 'nightly'], { connect: fake.connect });
      expect(result.code).toBe(exit);
      expect(result.stderr.split('\n')[0]).toMatch(/^error: .*it went wrong/);
      expect(result.stdout).toBe('');
    });
  }

  it('usage errors, failed runs and anything else', () => {
    expect(exitCodeFor(new UsageError('x'))).toBe(EXIT.usage);
    expect(exitCodeFor(new RunFailedError('x'))).toBe(EXIT.failed);
    expect(exitCodeFor(new Error('x'))).toBe(EXIT.failed);
  });
});

describe('messages', () => {
  it('INVALID_ARGUMENT prints one line per problem, and --json carries them', async () => {
    const message = 'invalid task: schedule.full: not a cron expression; destinations[0].config.bucket: required';
    const error = new RpcError(status.INVALID_ARGUMENT, message, 'INVALID_ARGUMENT', [
      { path: 'schedule.full', message: 'not a cron expression' },
      { path: 'destinations[0].config.bucket', message: 'required' },
    ]);
    const fake = fakeApi({ CreateTask: failWith(error) });
    const argv = ['task', 'create', 'n', '--database', 'a/b', '--type', 'backup', '--full', 'x', '--dest', 'd:s3:{}'];
    const result = await cli(argv, { connect: fake.connect });
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      'error: invalid task\n  schedule.full: not a cron expression\n  destinations[0].config.bucket: required\n',
    );
    const json = await cli([...argv, '--json'], { connect: fake.connect });
    expect(JSON.parse(json.stdout)).toEqual({
      error: {
        code: 'INVALID_ARGUMENT',
        status: 'INVALID_ARGUMENT',
        message,
        problems: [
          { path: 'schedule.full', message: 'not a cron expression' },
          { path: 'destinations[0].config.bucket', message: 'required' },
        ],
      },
    });
  });

  it('UNAVAILABLE from the transport says how to check the server address', async () => {
    const error = new RpcError(
      status.UNAVAILABLE,
      'No connection established. Last error: connect ECONNREFUSED. Resolution note: ',
    );
    const fake = fakeApi({ GetClusterStatus: failWith(error) });
    const result = await cli(['--server', 'db9:50051', 'cluster'], { connect: fake.connect });
    expect(result.code).toBe(4);
    const [first, ...hints] = result.stderr.trim().split('\n');
    expect(first).toBe(
      'error: cannot reach backupd at db9:50051: No connection established. Last error: connect ECONNREFUSED.',
    );
    expect(hints.join('\n')).toMatch(/--server HOST:PORT or BACKUPD_SERVER/);
  });

  it('UNAVAILABLE from the agent (no leader) is shown as the agent said it', async () => {
    const error = new RpcError(status.UNAVAILABLE, 'the cluster has no leader: tasks cannot change now', 'UNAVAILABLE');
    const fake = fakeApi({ DeleteTask: failWith(error) });
    const result = await cli(['task', 'delete', 'n'], { connect: fake.connect });
    expect(result.code).toBe(4);
    expect(result.stderr).toBe('error: the cluster has no leader: tasks cannot change now\n');
  });

  it('DEADLINE_EXCEEDED names the deadline and --timeout', async () => {
    const fake = fakeApi({ ListTasks: failWith(new RpcError(status.DEADLINE_EXCEEDED, 'Deadline exceeded')) });
    const result = await cli(['task', 'list', '--timeout', '3'], { connect: fake.connect });
    expect(result.code).toBe(4);
    expect(result.stderr).toMatch(/did not answer in time[\s\S]*the deadline was 3 s; raise it with --timeout SECONDS/);
  });

  it('UNAUTHENTICATED says where the token comes from', async () => {
    const fake = fakeApi({
      ListTasks: failWith(new RpcError(status.UNAUTHENTICATED, 'missing bearer token', 'UNAUTHENTICATED')),
    });
    const result = await cli(['task', 'list'], { connect: fake.connect });
    expect(result.code).toBe(5);
    expect(result.stderr).toContain('give a token with BACKUPD_TOKEN');
  });
});

describe('secrets never appear in output', () => {
  const dir = mkdtempSync(join(tmpdir(), 'backupctl-secrets-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const keyFile = join(dir, 'key');
  writeFileSync(keyFile, 'k3y"with\\quotes\n');

  it('not the token, even when the server echoes it, in text and --json', async () => {
    const echo = failWith(new RpcError(status.UNAUTHENTICATED, 'token s3cr3t-t0ken is not valid', 'UNAUTHENTICATED'));
    for (const argv of [
      ['task', 'list'],
      ['task', 'list', '--json'],
    ]) {
      const fake = fakeApi({ ListTasks: echo });
      const result = await cli(argv, { connect: fake.connect, env: { BACKUPD_TOKEN: 's3cr3t-t0ken' } });
      expect(result.stdout + result.stderr).not.toContain('s3cr3t-t0ken');
      expect(result.stdout + result.stderr).toContain('token *** is not valid');
    }
  });

  it('not a token given as a flag, even in a usage error', async () => {
    const result = await cli(['--token', 'flag-t0ken', 'task', 'get', 'flag-t0ken', 'extra']);
    expect(result.code).toBe(2);
    expect(result.stderr).not.toContain('flag-t0ken');
  });

  it('not the encryption key, also in its JSON-escaped form', async () => {
    const key = 'k3y"with\\quotes';
    const fake = fakeApi({ OneTimeBackup: (request) => runMessage({ error: `bad key ${request.encryptionKey}` }) });
    const argv = [
      'backup',
      'one-time',
      '--database',
      'a/b',
      '--type',
      'backup',
      '--dest',
      'd:local:{"path":"/b"}',
      '--key-file',
      keyFile,
    ];
    const text = await cli(argv, { connect: fake.connect });
    const json = await cli([...argv, '--json'], { connect: fake.connect });
    expect(fake.calls[0]?.request).toMatchObject({ encryptionKey: key });
    expect(text.stdout + json.stdout).not.toContain('k3y');
    expect(JSON.parse(json.stdout).error).toBe('bad key ***');
  });
});

describe('runs and their exit codes', () => {
  const progress = (phase: string, done: number) => ({
    run: runMessage({ outcome: 'running', progress: { phase, bytesDone: done, bytesTotal: 100 } }),
  });

  it('run watch draws progress and exits 0 for a run that succeeded', async () => {
    let t = 0;
    const fake = fakeApi(
      {},
      { WatchRun: () => [progress('reading', 10), progress('publishing', 60), { run: runMessage() }] },
    );
    const result = await cli(['run', 'watch', 'r1'], { connect: fake.connect, now: () => (t += 1000) });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('reading   10%  10 B / 100 B');
    expect(result.stdout).toContain('publishing   60%');
    expect(result.stdout).toContain(
      'run r1 succeeded: full backup of main/orders, chain 20261122T050000Z-backup-node1, restore point 20261122T050000Z-full, 12.3 MB stored of 45.6 MB read in 3.5 s on node1',
    );
  });

  it('run watch exits 1 for a failed run and names the failing destination', async () => {
    const failed = runMessage({
      outcome: 'failed',
      error: 'destination offsite failed',
      errorCode: 'DESTINATION_FAILED',
      destinations: [
        {
          destination: 'offsite',
          ok: false,
          uploadedBytes: 0,
          reusedPacks: 0,
          error: 'access denied',
          retentionError: '',
          retentionErrorCode: '',
        },
      ],
    });
    const fake = fakeApi({}, { WatchRun: () => [{ run: failed }] });
    const result = await cli(['run', 'watch', 'r1'], { connect: fake.connect });
    expect(result.code).toBe(1);
    expect(result.stdout).toContain('  destination offsite: access denied');
    expect(result.stderr).toBe(
      'error: run r1 failed: full backup of main/orders: destination offsite failed [DESTINATION_FAILED]\n',
    );
  });

  it('a watch that ends before the run does is an error', async () => {
    const fake = fakeApi({}, { WatchRun: () => [progress('reading', 1)] });
    const result = await cli(['run', 'watch', 'r1'], { connect: fake.connect });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('ended before the run did');
  });

  it('backup now --wait watches every run; one failure makes exit 1; --json gives JSON lines', async () => {
    const runs = [runMessage({ runId: 'a', outcome: 'queued' }), runMessage({ runId: 'b', outcome: 'queued' })];
    const make = () =>
      fakeApi(
        { BackupNow: () => ({ runs }) },
        {
          WatchRun: ({ runId }) => [
            { run: runMessage({ runId: runId ?? '', outcome: runId === 'b' ? 'failed' : 'succeeded' }) },
          ],
        },
      );
    const text = await cli(['backup', 'now', 'nightly', '--wait'], { connect: make().connect });
    expect(text.code).toBe(1);
    expect(text.stdout).toContain('started 2 runs: a, b');
    expect(text.stdout).toContain('run a succeeded');
    expect(text.stderr).toContain('run b failed');
    const fake = make();
    const json = await cli(['backup', 'now', 'nightly', '--wait', '--json'], { connect: fake.connect });
    expect(json.code).toBe(1);
    const lines = json.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.run?.runId ?? 'error')).toEqual(['a', 'b', 'error']);
    expect(fake.calls.map((c) => c.method)).toEqual(['BackupNow', 'WatchRun', 'WatchRun']);
  });

  it('backup now without --wait prints the queued runs; --json is one document', async () => {
    const fake = fakeApi({ BackupNow: () => ({ runs: [runMessage({ outcome: 'queued', finishedAt: '' })] }) });
    const text = await cli(['backup', 'now', 'nightly'], { connect: fake.connect });
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^RUN\s+TASK\s+DATABASE/);
    const json = await cli(['backup', 'now', 'nightly', '--json'], { connect: fake.connect });
    expect(JSON.parse(json.stdout).runs[0].runId).toBe('r1');
  });
});

describe('what commands print', () => {
  it('status: one row per unit', async () => {
    const unit = {
      task: 'nightly',
      database: 'main/orders',
      state: 'active',
      responsibleNode: 'node1',
      destinations: ['disk'],
      lastFull: {
        runId: 'r1',
        level: 'full',
        outcome: 'succeeded',
        startedAt: '',
        finishedAt: '2026-11-22T05:00:03Z',
        chainId: '',
        backupId: '',
        storedBytes: 1,
        error: '',
        notes: [],
      },
      lastIncremental: null,
      lastRun: {
        runId: 'r2',
        level: 'incr',
        outcome: 'failed',
        startedAt: '',
        finishedAt: '2026-11-22T06:00:00Z',
        chainId: '',
        backupId: '',
        storedBytes: 0,
        error: 'source failed',
        notes: [],
      },
      lastRunDestinations: [],
      nextFullAt: '',
      nextIncrementalAt: '',
      nextEstimatedAt: '2026-11-23T02:00:00Z',
      nextEstimatedLevel: 'full',
      retention: null,
      delayedUntil: '',
      currentRun: null,
      drills: [],
      nextDrillAt: '',
    };
    const fake = fakeApi({ GetTaskStatus: () => ({ name: 'nightly', units: [unit] }) });
    const result = await cli(['status', 'nightly'], { connect: fake.connect });
    expect(result.stdout).toBe(
      [
        'DATABASE     STATE   NODE   LAST FULL             LAST INCR  NEXT                       LAST ERROR',
        'main/orders  active  node1  2026-11-22 05:00:03Z  never      2026-11-23 02:00:00Z full  source failed',
        '',
      ].join('\n'),
    );
  });

  it('restore: progress, then where the database is and the note', async () => {
    const fake = fakeApi(
      {},
      {
        Restore: () => [
          { progress: { phase: 'restoring', bytesDone: 50, bytesTotal: 100 }, result: null },
          {
            progress: { phase: 'restoring', bytesDone: 100, bytesTotal: 100 },
            result: {
              location: '/data/main/orders_copy.db',
              note: 'indexes were rebuilt',
              bytes: 2_000_000,
              seconds: 1.5,
            },
          },
        ],
      },
    );
    const argv = [
      'restore',
      '--task',
      'n',
      '--destination',
      'disk',
      '--database',
      'main/orders',
      '--chain',
      'c',
      '--backup',
      'b',
      '--target',
      'orders_copy',
    ];
    const result = await cli(argv, { connect: fake.connect });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('restoring   50%');
    expect(result.stdout).toContain(
      'restored main/orders c/b: 2.00 MB in 1.5 s\nthe database is now at /data/main/orders_copy.db\nindexes were rebuilt\n',
    );
    const json = await cli([...argv, '--json'], { connect: fake.connect });
    expect(
      json.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).result?.location ?? null),
    ).toEqual([null, '/data/main/orders_copy.db']);
  });

  it('backups list: chains and their restore points', async () => {
    const fake = fakeApi({
      ListBackups: () => ({
        searched: 'd (local): /b/',
        chains: [
          {
            cluster: 'prod',
            database: 'a/b',
            chainId: 'c1',
            type: 'backup',
            backups: ['b1-full', 'b2-incr'],
            bytes: 5_000_000,
            newestAt: '2026-11-22T06:00:00Z',
          },
        ],
      }),
    });
    const result = await cli(['backups', 'list', '--dest', 'd:local:{"path":"/b"}', '--database', 'a/b'], {
      connect: fake.connect,
    });
    expect(result.stdout).toBe(
      [
        'at d (local): /b/',
        'CLUSTER  DATABASE  CHAIN  TYPE    RESTORE POINT  CHAIN SIZE  NEWEST',
        'prod     a/b       c1     backup  b1-full           5.00 MB  2026-11-22 06:00:00Z',
        '                                  b2-incr',
        '',
      ].join('\n'),
    );
  });

  it('backups list: nothing found names the path searched', async () => {
    const fake = fakeApi({ ListBackups: () => ({ searched: 'd (local): /b/', chains: [] }) });
    const result = await cli(['backups', 'list', '--dest', 'd:local:{"path":"/b"}', '--database', 'a/b'], {
      connect: fake.connect,
    });
    expect(result.stdout).toBe('no backups of a/b at d (local): /b/\n');
    expect(result.code).toBe(0);
  });

  it('a restore stream with no result is an error', async () => {
    const fake = fakeApi({}, { Restore: () => [] });
    const argv = [
      'restore',
      '--task',
      'n',
      '--destination',
      'disk',
      '--database',
      'a/b',
      '--chain',
      'c',
      '--backup',
      'b',
      '--target',
      't',
    ];
    const result = await cli(argv, { connect: fake.connect });
    expect(result.code).toBe(1);
  });
});
