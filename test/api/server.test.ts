// The gRPC server over a real connection. The agent behind it is replaced by a fake (support/fake-operations)
// so the API layer is tested alone: conversions, error mapping, streams and cancellation; the agent is tested
// end to end elsewhere.

import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import type { RunView } from '../../src/agent/operations.js';
import { loadApi } from '../../src/api/proto.js';
import { decodeProblems, ERROR_CODE_KEY } from '../../src/api/status-codes.js';
import type { Progress } from '../../src/backup/requests.js';
import { BackupdError } from '../../src/errors.js';
import type { BackupNowResponse__Output } from '../../src/generated/backupd/v1/BackupNowResponse.js';
import type { ClusterStatus__Output } from '../../src/generated/backupd/v1/ClusterStatus.js';
import type { DeleteTaskResponse__Output } from '../../src/generated/backupd/v1/DeleteTaskResponse.js';
import type { ListBackupsResponse__Output } from '../../src/generated/backupd/v1/ListBackupsResponse.js';
import type { ListDatabasesResponse__Output } from '../../src/generated/backupd/v1/ListDatabasesResponse.js';
import type { ListRunsResponse__Output } from '../../src/generated/backupd/v1/ListRunsResponse.js';
import type { ListTasksResponse__Output } from '../../src/generated/backupd/v1/ListTasksResponse.js';
import type { Run__Output } from '../../src/generated/backupd/v1/Run.js';
import type { Task__Output } from '../../src/generated/backupd/v1/Task.js';
import type { TaskSpec } from '../../src/generated/backupd/v1/TaskSpec.js';
import type { TaskStatus__Output } from '../../src/generated/backupd/v1/TaskStatus.js';
import type { UnitStatus__Output } from '../../src/generated/backupd/v1/UnitStatus.js';
import { fakeOperations, NOW, sampleRun } from './support/fake-operations.js';
import { call, collect, failure, startTestServer, type TestServer } from './support/harness.js';

const spec: TaskSpec = {
  name: 'nightly',
  databases: { names: ['main/app'] },
  type: 'backup',
  schedule: { full: '0 3 * * 0', incremental: '*/15 * * * *', timeZone: 'UTC' },
  retention: { keepChains: 4 },
  destinations: [
    { name: 'disk', kind: 'local', configJson: '{"path":"/var/backups"}' },
    {
      name: 'cloud',
      kind: 's3',
      configJson: JSON.stringify({
        bucket: 'backups-eu',
        endpoint: 'http://127.0.0.1:9000',
        accessKeyId: 'AKIAEXAMPLE',
        secretAccessKey: 'S3-SECRET-do-not-echo',
      }),
    },
  ],
  encrypted: true,
};
const KEY = 'ENCRYPTION-KEY-do-not-echo';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe('tasks', () => {
  it('creates a task and answers with the spec converted back, secrets masked, key kept by the agent only', async () => {
    const ops = fakeOperations();
    server = await startTestServer(ops);
    const client = server.client();
    const task = await call<Task__Output>((cb) => client.createTask({ spec, encryptionKey: KEY }, cb));
    expect(task.revision).toBe(1);
    expect(task.createdAt).toBe(NOW);
    expect(task.spec?.serverWide).toBeUndefined();
    expect(task.spec).toMatchObject({
      name: 'nightly',
      databases: { names: ['main/app'] },
      target: 'databases',
      type: 'backup',
      schedule: spec.schedule,
      preferredNode: '',
      pinToPreferredNode: false,
      retention: { maxAgeDays: 0, keepChains: 4, orphanGraceHours: 0 },
      disabled: false,
      missedRuns: 'run-once',
      encrypted: true,
    });
    const cloud = JSON.parse(task.spec?.destinations[1]?.configJson ?? '{}') as Record<string, unknown>;
    expect(cloud.secretAccessKey).toBe('***');
    expect(cloud.accessKeyId).toBe('AKIAEXAMPLE');
    expect(ops.keys.get('nightly')).toBe(KEY);

    // Neither secret appears in any answer, nor in the server's log.
    const got = await call<Task__Output>((cb) => client.getTask({ name: 'nightly' }, cb));
    const listed = await call<ListTasksResponse__Output>((cb) => client.listTasks({}, cb));
    for (const text of [JSON.stringify(task), JSON.stringify(got), JSON.stringify(listed), server.logText()]) {
      expect(text).not.toContain('S3-SECRET');
      expect(text).not.toContain('ENCRYPTION-KEY');
    }
  });

  it('round-trips a server-wide task', async () => {
    server = await startTestServer(fakeOperations());
    const client = server.client();
    const serverWide: TaskSpec = {
      ...spec,
      name: 'everything',
      databases: undefined,
      serverWide: { source: 'pg1', exclude: ['template1'] },
      type: 'snapshot',
      encrypted: false,
    };
    const task = await call<Task__Output>((cb) => client.createTask({ spec: serverWide }, cb));
    expect(task.spec?.target).toBe('serverWide');
    expect(task.spec?.serverWide).toEqual({ source: 'pg1', exclude: ['template1'] });
    // The oneof member that is not set is left out of the message altogether.
    expect(task.spec?.databases).toBeUndefined();
  });

  it('updates with a revision check; 0 means no check and an empty key keeps the current one', async () => {
    const ops = fakeOperations();
    server = await startTestServer(ops);
    const client = server.client();
    await call<Task__Output>((cb) => client.createTask({ spec, encryptionKey: KEY }, cb));
    const updated = await call<Task__Output>((cb) =>
      client.updateTask({ spec: { ...spec, disabled: true }, expectedRevision: 0 }, cb),
    );
    expect(updated.revision).toBe(2);
    expect(updated.spec?.disabled).toBe(true);
    expect(ops.keys.get('nightly')).toBe(KEY);
    const stale = await failure((cb) => client.updateTask({ spec, expectedRevision: 1 }, cb));
    expect(stale.code).toBe(grpc.status.FAILED_PRECONDITION);
  });

  it('answers INVALID_ARGUMENT naming every bad field, in the message and in the trailers', async () => {
    const ops = fakeOperations();
    server = await startTestServer(ops);
    const client = server.client();
    const error = await failure((cb) =>
      client.createTask(
        {
          spec: {
            ...spec,
            name: '../etc',
            type: 'tarball',
            schedule: { full: 'every day' },
            destinations: [{ name: 'cloud', kind: 's3', configJson: '{"bucket":"B"}' }],
          },
        },
        cb,
      ),
    );
    expect(error.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error.metadata.get(ERROR_CODE_KEY)).toEqual(['INVALID_ARGUMENT']);
    const paths = decodeProblems(error.metadata).map((p) => p.path);
    expect(paths).toEqual(expect.arrayContaining(['name', 'type', 'schedule.full', 'destinations[0].config.bucket']));
    for (const path of paths) expect(error.details).toContain(path);
  });

  it('answers INVALID_ARGUMENT naming the config that is not JSON, without calling the agent', async () => {
    const ops = fakeOperations();
    server = await startTestServer(ops);
    const client = server.client();
    const error = await failure((cb) =>
      client.createTask(
        {
          spec: {
            ...spec,
            type: '',
            destinations: [{ name: 'cloud', kind: 's3', configJson: '{"secretAccessKey": S3-SECRET}' }],
          },
        },
        cb,
      ),
    );
    expect(error.code).toBe(grpc.status.INVALID_ARGUMENT);
    const problems = decodeProblems(error.metadata);
    expect(problems.map((p) => p.path).sort()).toEqual(['destinations[0].config', 'type']);
    expect(problems.find((p) => p.path === 'destinations[0].config')?.message).toMatch(/^not valid JSON/);
    expect(ops.calls).not.toContain('createTask');
    expect(JSON.stringify(problems) + error.details + server.logText()).not.toContain('S3-SECRET');
  });

  it('maps NOT_FOUND and ALREADY_EXISTS, with the code in the trailers', async () => {
    server = await startTestServer(fakeOperations());
    const client = server.client();
    const missing = await failure((cb) => client.getTask({ name: 'nope' }, cb));
    expect(missing.code).toBe(grpc.status.NOT_FOUND);
    expect(missing.details).toBe('task "nope" does not exist');
    expect(missing.metadata.get(ERROR_CODE_KEY)).toEqual(['NOT_FOUND']);
    await call<Task__Output>((cb) => client.createTask({ spec }, cb));
    const twice = await failure((cb) => client.createTask({ spec }, cb));
    expect(twice.code).toBe(grpc.status.ALREADY_EXISTS);
    const emptyName = await failure((cb) => client.deleteTask({ name: '' }, cb));
    expect(emptyName.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(decodeProblems(emptyName.metadata)).toEqual([{ path: 'name', message: 'must not be empty' }]);
  });

  it('answers a bug with a generic INTERNAL and logs the real error under the same id', async () => {
    server = await startTestServer(
      fakeOperations({
        listDatabases: async () => {
          throw new TypeError('cannot read properties of undefined (reading "sources")');
        },
      }),
    );
    const client = server.client();
    const error = await failure((cb) => client.listDatabases({}, cb));
    expect(error.code).toBe(grpc.status.INTERNAL);
    expect(error.details).not.toContain('sources');
    const id = /errorId ([0-9a-f-]+)/.exec(error.details)?.[1];
    const logged = server.logs.find((l) => l.errorId === id);
    expect(logged).toMatchObject({ method: 'ListDatabases', code: 'INTERNAL' });
    expect(JSON.stringify(logged)).toContain('reading \\"sources\\"');
  });

  it('logs each call with its method and duration, and failures at warn with their code', async () => {
    server = await startTestServer(fakeOperations());
    const client = server.client();
    await call<ClusterStatus__Output>((cb) => client.getClusterStatus({}, cb));
    await failure((cb) => client.getRun({ runId: '' }, cb));
    const done = server.logs.find((l) => l.method === 'GetClusterStatus');
    expect(done).toMatchObject({ level: 20, msg: 'call done' });
    expect(typeof done?.ms).toBe('number');
    expect(server.logs.find((l) => l.method === 'GetRun')).toMatchObject({
      level: 40,
      code: 'INVALID_ARGUMENT',
      errorCode: 'INVALID_ARGUMENT',
    });
  });
});

describe('every RPC', () => {
  it('is registered and converts its answer', async () => {
    server = await startTestServer(fakeOperations());
    const client = server.client();
    await call<Task__Output>((cb) => client.createTask({ spec }, cb));
    const status = await call<TaskStatus__Output>((cb) => client.getTaskStatus({ name: 'nightly' }, cb));
    expect(status.units[0]).toMatchObject({ task: 'nightly', database: 'main/app', state: 'active' });
    const now = await call<BackupNowResponse__Output>((cb) => client.backupNow({ task: 'nightly', level: 'full' }, cb));
    expect(now.runs[0]).toMatchObject({ level: 'full', outcome: 'queued' });
    const badLevel = await failure((cb) => client.backupNow({ task: 'nightly', level: 'big' }, cb));
    expect(decodeProblems(badLevel.metadata).map((p) => p.path)).toEqual(['level']);
    const oneTime = await call<Run__Output>((cb) =>
      client.oneTimeBackup(
        {
          database: 'main/app',
          type: 'snapshot',
          destinations: [{ name: 'd', kind: 'local', configJson: '{"path":"/b"}' }],
        },
        cb,
      ),
    );
    expect(oneTime).toMatchObject({ task: '', type: 'snapshot', trigger: 'one-time' });
    expect((await call<Run__Output>((cb) => client.cancelRun({ runId: 'r9' }, cb))).outcome).toBe('cancelled');
    const delayed = await call<UnitStatus__Output>((cb) =>
      client.delayUnit({ task: 'nightly', database: 'main/app', seconds: 60 }, cb),
    );
    expect(delayed.delayedUntil).toBe('2026-11-22T05:01:00.000Z');
    expect((await call<Run__Output>((cb) => client.getRun({ runId: 'r9' }, cb))).runId).toBe('r9');
    expect((await call<ListRunsResponse__Output>((cb) => client.listRuns({ task: 'nightly' }, cb))).runs).toHaveLength(
      1,
    );
    const listed = await call<ListDatabasesResponse__Output>((cb) => client.listDatabases({}, cb));
    expect(listed.databases[0]).toEqual({
      source: 'main',
      name: 'app',
      engine: 'sqlite',
      sizeBytes: 4096,
      types: ['backup', 'snapshot'],
    });
    expect(listed.leftOut).toEqual([
      { source: 'main', name: 'my app.db', reason: 'its name is not a safe path segment' },
    ]);
    const chains = await call<ListBackupsResponse__Output>((cb) =>
      client.listBackups({ from: { task: 'nightly', destination: 'disk' }, database: 'main/app' }, cb),
    );
    expect(chains.chains[0]).toMatchObject({ chainId: '20261122T050000Z-backup-node1', newestAt: '' });
    const cluster = await call<ClusterStatus__Output>((cb) => client.getClusterStatus({}, cb));
    expect(cluster).toMatchObject({ mode: 'single-node', leader: 'node1', term: 1 });
    const verify = await collect(
      client.verify({
        from: { task: 'nightly', destination: 'disk' },
        database: 'main/app',
        chainId: 'c',
        backupId: 'b',
      }),
    );
    expect(verify.error).toBeUndefined();
    expect(verify.messages.at(-1)?.result).toEqual({
      packs: 1,
      chunks: 2,
      rawBytes: 10,
      packBytes: 12,
      seconds: 0.1,
      restore: null,
    });
    const restoring = await collect(
      client.verify({
        from: { task: 'nightly', destination: 'disk' },
        database: 'main/app',
        chainId: 'c',
        backupId: 'b',
        restore: true,
      }),
    );
    expect(restoring.messages.at(-1)?.result?.restore).toEqual({
      ok: false,
      fingerprinted: true,
      tables: 2,
      differences: [{ table: 'orders', kind: 'rows', expected: '3', found: '2' }],
      problems: [],
      notes: ['amcheck is not installed on this machine: the indexes were not checked'],
      bytes: 10,
      restoreSeconds: 0.5,
      checkSeconds: 0.25,
      bytesPerSecond: 20,
    });
    await call<DeleteTaskResponse__Output>((cb) => client.deleteTask({ name: 'nightly' }, cb));

    // Every method of the service definition answers something other than UNIMPLEMENTED.
    const methods = Object.keys(loadApi().api.backupd.v1.Backupd.service);
    expect(methods).toHaveLength(18);
    const generic = new grpc.Client(server.api.address, grpc.credentials.createInsecure());
    try {
      for (const method of methods) {
        const definition = loadApi().api.backupd.v1.Backupd.service[method as 'GetRun'];
        const code = await new Promise<number>((resolve) => {
          const serialize = definition.requestSerialize as (value: object) => Buffer;
          if (definition.responseStream) {
            const stream = generic.makeServerStreamRequest(definition.path, serialize, (b) => b, {});
            stream.on('data', () => undefined);
            // Most methods refuse an empty request; the status below is what counts.
            stream.on('error', () => undefined);
            stream.on('status', (s: grpc.StatusObject) => resolve(s.code));
          } else {
            generic.makeUnaryRequest(
              definition.path,
              serialize,
              (b) => b,
              {},
              (error) => resolve(error?.code ?? 0),
            );
          }
        });
        expect.soft(code, method).not.toBe(grpc.status.UNIMPLEMENTED);
      }
    } finally {
      generic.close();
    }
  });
});

describe('streams', () => {
  it('WatchRun streams the run at most ~10 times a second and ends with the finished run', async () => {
    let updates = 0;
    server = await startTestServer(
      fakeOperations({
        async watchRun(runId, onUpdate) {
          // 60 updates over about 300 ms: the client sees a handful, then the finished run.
          for (let i = 1; i <= 60; i++) {
            onUpdate(sampleRun({ runId, progress: { phase: 'reading', bytesDone: i } }));
            updates++;
            await new Promise((r) => setTimeout(r, 5));
          }
          return sampleRun({ runId, outcome: 'succeeded', finishedAt: NOW, rawBytes: 60 });
        },
      }),
    );
    const started = Date.now();
    const { messages, error } = await collect(server.client().watchRun({ runId: 'run-7' }));
    const seconds = (Date.now() - started) / 1000;
    expect(error).toBeUndefined();
    expect(updates).toBe(60);
    expect(messages.length).toBeGreaterThanOrEqual(2);
    // At most one progress message per 100 ms, plus the first and the final one.
    expect(messages.length).toBeLessThanOrEqual(Math.ceil(seconds * 10) + 2);
    expect(messages[0]?.run?.progress?.bytesDone).toBe(1);
    const last = messages.at(-1)?.run;
    expect(last).toMatchObject({ runId: 'run-7', outcome: 'succeeded', finishedAt: NOW, rawBytes: 60, progress: null });
    const done = messages.slice(0, -1).map((m) => m.run?.progress?.bytesDone ?? 0);
    expect(done).toEqual([...done].sort((a, b) => a - b));
  });

  it('a client cancelling a Restore aborts the operation', async () => {
    let reportAbort: (reason: unknown) => void = () => undefined;
    const abortReason = new Promise<unknown>((resolve) => {
      reportAbort = resolve;
    });
    server = await startTestServer(
      fakeOperations({
        restore(_input, onProgress: (p: Progress) => void, signal) {
          onProgress({ phase: 'restoring', bytesDone: 1, bytesTotal: 100 });
          return new Promise((_resolve, reject) => {
            signal?.addEventListener('abort', () => {
              reportAbort(signal.reason);
              reject(signal.reason);
            });
          });
        },
      }),
    );
    const stream = server.client().restore({
      from: { task: 'nightly', destination: 'disk' },
      database: 'main/app',
      chainId: 'c',
      backupId: 'b',
      target: 'x',
    });
    stream.on('data', () => stream.cancel());
    // The client's own CANCELLED status is expected; what matters is the server side.
    stream.on('error', () => undefined);
    const reason = await abortReason;
    expect(reason).toBeInstanceOf(BackupdError);
    expect((reason as BackupdError).code).toBe('CANCELLED');
    await expect.poll(() => server?.logs.some((l) => l.msg === 'stream cancelled by the client')).toBe(true);
  });

  it('ends a stream with the mapped status when the operation fails, after the progress sent', async () => {
    server = await startTestServer(
      fakeOperations({
        async restore(_input, onProgress) {
          onProgress({ phase: 'restoring', bytesDone: 5, bytesTotal: 10 });
          throw new BackupdError('WRONG_KEY', 'the key does not open backup 20261122T050000Z-full');
        },
      }),
    );
    const { messages, error } = await collect(
      server.client().restore({
        from: { task: 'nightly', destination: 'disk' },
        database: 'main/app',
        chainId: 'c',
        backupId: 'b',
        target: 'x',
      }),
    );
    expect(messages.map((m) => m.progress?.bytesDone)).toEqual([5]);
    expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error?.details).toContain('the key does not open');
    expect(error?.metadata.get(ERROR_CODE_KEY)).toEqual(['WRONG_KEY']);
  });

  it('validates a stream request before calling the agent', async () => {
    const ops = fakeOperations();
    server = await startTestServer(ops);
    const { error } = await collect(server.client().restore({ database: 'main/app' }));
    expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(
      decodeProblems(error?.metadata)
        .map((p) => p.path)
        .sort(),
    ).toEqual(['backupId', 'chainId', 'from.destination', 'from.task', 'target'].sort());
    expect(ops.calls).not.toContain('restore');
  });

  it('close() ends a stream still running by cancelling it', async () => {
    let signal: AbortSignal | undefined;
    server = await startTestServer(
      fakeOperations({
        watchRun(_runId, onUpdate, s) {
          signal = s;
          onUpdate(sampleRun());
          return new Promise<RunView>((resolve) => s?.addEventListener('abort', () => resolve(sampleRun())));
        },
      }),
    );
    const stream = server.client().watchRun({ runId: 'run-1' });
    const ended = collect(stream);
    await new Promise<void>((resolve) => stream.once('data', () => resolve()));
    await server.api.close(200);
    const { error } = await ended;
    expect(signal?.aborted).toBe(true);
    expect(error?.code).toBeDefined();
  });
});

describe('listening', () => {
  it('rejects an address already in use, naming it', async () => {
    server = await startTestServer(fakeOperations());
    const taken = `127.0.0.1:${server.api.port}`;
    await expect(startTestServer(fakeOperations(), { listen: taken })).rejects.toThrow(`cannot listen on ${taken}`);
  });
});
