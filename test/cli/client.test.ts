// src/api/client.ts and backupctl against a real gRPC server in this process: the bearer token as call
// metadata, trailing metadata -> RpcError, deadlines, server streams (and cancelling one early), and the
// exit codes of a whole backupctl run over the wire.

import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, RpcError } from '../../src/api/client.js';
import { loadApi } from '../../src/api/proto.js';
import type { BackupdHandlers } from '../../src/generated/backupd/v1/Backupd.js';
import { cli, runMessage } from './support.js';

let server: grpc.Server;
let address: string;
const seen: { authorization: string[]; watchCancelled: boolean } = { authorization: [], watchCancelled: false };

function fail(code: grpc.status, details: string, errorCode?: string, problems?: unknown): Partial<grpc.StatusObject> {
  const metadata = new grpc.Metadata();
  if (errorCode) metadata.set('backupd-error-code', errorCode);
  if (problems !== undefined) metadata.set('backupd-problems', JSON.stringify(problems));
  return { code, details, metadata };
}

const handlers: Partial<BackupdHandlers> = {
  GetTask(call, callback) {
    seen.authorization.push(...call.metadata.get('authorization').map(String));
    if (call.request.name === 'nightly') {
      callback(null, { spec: { name: 'nightly', type: 'backup' }, revision: 3 });
    } else {
      callback(fail(grpc.status.NOT_FOUND, `task "${call.request.name}" does not exist`, 'NOT_FOUND'));
    }
  },
  CreateTask(_call, callback) {
    callback(
      fail(grpc.status.INVALID_ARGUMENT, 'invalid task', 'INVALID_ARGUMENT', [
        { path: 'schedule.full', message: 'not a cron expression' },
        { nonsense: true },
      ]),
    );
  },
  ListTasks(_call, callback) {
    // Never answers in time: the client's deadline must end the call.
    setTimeout(() => callback(null, { tasks: [] }), 5_000).unref();
  },
  WatchRun(call) {
    const { runId } = call.request;
    call.on('cancelled', () => {
      seen.watchCancelled = true;
    });
    if (runId === 'endless') {
      const timer = setInterval(() => call.write({ run: { runId, outcome: 'running' } }), 10);
      call.on('cancelled', () => clearInterval(timer));
      return;
    }
    call.write({ run: { runId, outcome: 'running', progress: { phase: 'reading', bytesDone: 5, bytesTotal: 10 } } });
    call.write({
      run: runMessage({
        runId,
        outcome: runId === 'bad' ? 'failed' : 'succeeded',
        error: runId === 'bad' ? 'boom' : '',
      }),
    });
    call.end();
  },
  Verify(call) {
    call.emit('error', fail(grpc.status.FAILED_PRECONDITION, 'the backup is encrypted: give its key', 'KEY_REQUIRED'));
  },
};

beforeAll(async () => {
  server = new grpc.Server();
  server.addService(loadApi().api.backupd.v1.Backupd.service, handlers as grpc.UntypedServiceImplementation);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, p) =>
      error ? reject(error) : resolve(p),
    ),
  );
  address = `127.0.0.1:${port}`;
});

afterAll(() => {
  server.forceShutdown();
});

describe('createClient', () => {
  it('sends the token as authorization: Bearer on every call', async () => {
    const api = createClient({ address, token: 'tok-123' });
    try {
      const task = await api.unary('GetTask', { name: 'nightly' });
      expect(task.revision).toBe(3);
      expect(task.spec?.name).toBe('nightly');
      expect(seen.authorization).toContain('Bearer tok-123');
    } finally {
      api.close();
    }
  });

  it('turns status and trailing metadata into an RpcError, skipping malformed problems', async () => {
    const api = createClient({ address });
    try {
      const error = await api.unary('CreateTask', { spec: { name: 'x' } }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(RpcError);
      expect(error).toMatchObject({
        status: grpc.status.INVALID_ARGUMENT,
        statusName: 'INVALID_ARGUMENT',
        message: 'invalid task',
        errorCode: 'INVALID_ARGUMENT',
        problems: [{ path: 'schedule.full', message: 'not a cron expression' }],
      });
    } finally {
      api.close();
    }
  });

  it('ends a unary call at its deadline', async () => {
    const api = createClient({ address, timeoutMs: 200 });
    try {
      const error = await api.unary('ListTasks', {}).catch((e: unknown) => e);
      expect(error).toMatchObject({ status: grpc.status.DEADLINE_EXCEEDED, errorCode: undefined });
    } finally {
      api.close();
    }
  });

  it('iterates a server stream and converts its error', async () => {
    const api = createClient({ address });
    try {
      const outcomes: string[] = [];
      for await (const event of api.stream('WatchRun', { runId: 'r1' })) outcomes.push(event.run?.outcome ?? '');
      expect(outcomes).toEqual(['running', 'succeeded']);
      const events = api.stream('Verify', { database: 'a/b' });
      const error = await (async () => {
        for await (const _ of events) {
          // no messages before the error
        }
      })().catch((e: unknown) => e);
      expect(error).toMatchObject({ status: grpc.status.FAILED_PRECONDITION, errorCode: 'KEY_REQUIRED' });
    } finally {
      api.close();
    }
  });

  it('leaving a stream early cancels the call on the server', async () => {
    const api = createClient({ address });
    try {
      let n = 0;
      for await (const _ of api.stream('WatchRun', { runId: 'endless' })) if (++n === 3) break;
      await expect.poll(() => seen.watchCancelled, { timeout: 2_000 }).toBe(true);
    } finally {
      api.close();
    }
  });

  it('refuses a client certificate without its key', () => {
    expect(() => createClient({ address, tls: { cert: Buffer.from('x') } })).toThrow(
      /both a client certificate and its key/,
    );
  });
});

describe('backupctl over the wire', () => {
  const real = { connect: createClient };

  it('task get: 0 with the task, 3 when it does not exist', async () => {
    const ok = await cli(['--server', address, 'task', 'get', 'nightly', '--json'], real);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ spec: { name: 'nightly' }, revision: 3 });
    const missing = await cli(['--server', address, 'task', 'get', 'nope'], real);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toBe('error: task "nope" does not exist\n');
  });

  it('run watch: 0 for a run that succeeded, 1 for one that failed', async () => {
    expect((await cli(['--server', address, 'run', 'watch', 'good'], real)).code).toBe(0);
    const bad = await cli(['--server', address, 'run', 'watch', 'bad'], real);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('run bad failed: full backup of main/orders: boom');
  });

  it('--timeout ends a slow call with exit 4', async () => {
    const result = await cli(['--server', address, '--timeout', '0.2', 'task', 'list'], real);
    expect(result.code).toBe(4);
    expect(result.stderr).toContain('the deadline was 0.2 s');
  });

  it('an address where nothing listens: exit 4 and what to check', async () => {
    const closed = new grpc.Server();
    const port = await new Promise<number>((resolve, reject) =>
      closed.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    closed.forceShutdown();
    const result = await cli(['--server', `127.0.0.1:${port}`, 'cluster'], real);
    expect(result.code).toBe(4);
    expect(result.stderr).toMatch(
      /^error: cannot reach backupd at 127\.0\.0\.1:\d+: [\s\S]*--server HOST:PORT or BACKUPD_SERVER/,
    );
  });
});
