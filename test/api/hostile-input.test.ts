// Requests built to hurt the agent, over a real connection: half characters (lone UTF-16 surrogates) in what
// the status message quotes, huge names, configs nested thousands deep, a read-only token pointing the agent
// at an endpoint of its choosing, and a handler whose error cannot be mapped. Each call must end with a
// proper status and the server must keep serving. The agent is the fake of support/fake-operations (its
// tasks go through the real parseTaskSpec); the same requests against a real agent are in
// test/agent/fuzz.test.ts.

import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeProblems, ERROR_CODE_KEY, MAX_STATUS_MESSAGE_BYTES } from '../../src/api/status-codes.js';
import { BackupdError } from '../../src/errors.js';
import type { TaskSpec } from '../../src/generated/backupd/v1/TaskSpec.js';
import { fakeOperations } from './support/fake-operations.js';
import { auth, collect, failure, startTestServer, type TestServer } from './support/harness.js';

const FULL = 'full-token-0123456789';
const READ_ONLY = 'read-only-token-0123456789';
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
// A deadline far beyond an answer's time, so a call that gets no status shows as DEADLINE_EXCEEDED.
const deadline = () => ({ deadline: Date.now() + 5000 });

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

function taskSpec(configJson: string, overrides: Partial<TaskSpec> = {}): TaskSpec {
  return {
    name: 'nightly',
    databases: { names: ['main/app'] },
    type: 'backup',
    schedule: { full: '0 3 * * *' },
    destinations: [{ name: 'disk', kind: 'local', configJson }],
    ...overrides,
  };
}

/** The server still answers: a task list over the same connection. */
async function stillServing(s: TestServer): Promise<void> {
  const client = s.client();
  await new Promise<void>((resolve, reject) =>
    client.listTasks({}, auth(FULL), deadline(), (error) => (error ? reject(error) : resolve())),
  );
}

describe('half characters in what a status quotes', () => {
  it('ListBackups with a config_json of one emoji answers INVALID_ARGUMENT with well-formed text', async () => {
    server = await startTestServer(fakeOperations(), { auth: { token: FULL, readOnlyToken: READ_ONLY } });
    const client = server.client();
    const error = await failure((cb) =>
      client.listBackups(
        { from: { spec: { name: 'x', kind: 'local', configJson: '\u{1F600}' } }, database: 'main/app' },
        auth(FULL),
        deadline(),
        cb,
      ),
    );
    expect(error.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error.details).toContain('from.spec.config: not valid JSON');
    expect(error.details).not.toMatch(LONE_SURROGATE);
    await stillServing(server);
  });

  it('a streaming Verify with the same spec ends with INVALID_ARGUMENT, not at its deadline', async () => {
    server = await startTestServer(fakeOperations());
    const { error } = await collect(
      server.client().verify(
        {
          from: { spec: { name: 'x', kind: 'local', configJson: '\u{1F600}' } },
          database: 'a/b',
          chainId: 'c',
          backupId: 'b',
        },
        new grpc.Metadata(),
        deadline(),
      ),
    );
    expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error?.details).toContain('from.spec.config: not valid JSON');
  });

  it('CreateTask with a config key written as the escape \\ud800 names the key with a replacement character', async () => {
    const ops = fakeOperations();
    server = await startTestServer(ops);
    const client = server.client();
    const error = await failure((cb) =>
      client.createTask({ spec: taskSpec('{"path":"/backups","\\ud800":1}') }, new grpc.Metadata(), deadline(), cb),
    );
    expect(error.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error.details).toContain('unknown field(s): \uFFFD');
    expect(error.details).not.toMatch(LONE_SURROGATE);
    const problems = decodeProblems(error.metadata);
    expect(problems.map((p) => p.message).join(' ')).toContain('\uFFFD');
    expect(JSON.stringify(problems)).not.toMatch(LONE_SURROGATE);
    await stillServing(server);
  });

  it('an operation failing with a lone surrogate in its message: unary and streaming calls get their status', async () => {
    const broken = new BackupdError('NOT_FOUND', 'no backup "\uD83D" here');
    server = await startTestServer(
      fakeOperations({
        async getTask() {
          throw broken;
        },
        async verify() {
          throw broken;
        },
      }),
    );
    const client = server.client();
    const unary = await failure((cb) => client.getTask({ name: 'nightly' }, new grpc.Metadata(), deadline(), cb));
    expect(unary.code).toBe(grpc.status.NOT_FOUND);
    expect(unary.details).toBe('no backup "\uFFFD" here');
    const { error } = await collect(
      client.verify(
        { from: { task: 'nightly', destination: 'disk' }, database: 'a/b', chainId: 'c', backupId: 'b' },
        new grpc.Metadata(),
        deadline(),
      ),
    );
    expect(error?.code).toBe(grpc.status.NOT_FOUND);
    expect(error?.details).toBe('no backup "\uFFFD" here');
    await stillServing(server);
  });
});

describe('no error escapes a handler', () => {
  it('an error that breaks the mapping itself still ends the call, as INTERNAL with an id in the log', async () => {
    // Reading the message throws: whatever goes wrong while the status is built, the call must end.
    const unmappable = new BackupdError('NOT_FOUND', 'unused');
    Object.defineProperty(unmappable, 'message', {
      get() {
        throw new Error('a message that cannot be read');
      },
    });
    server = await startTestServer(
      fakeOperations({
        async getTask() {
          throw unmappable;
        },
        async restore() {
          throw unmappable;
        },
      }),
    );
    const client = server.client();
    const unary = await failure((cb) => client.getTask({ name: 'nightly' }, new grpc.Metadata(), deadline(), cb));
    expect(unary.code).toBe(grpc.status.INTERNAL);
    const { error } = await collect(
      client.restore(
        { from: { task: 'nightly', destination: 'disk' }, database: 'a/b', chainId: 'c', backupId: 'b', target: 't' },
        new grpc.Metadata(),
        deadline(),
      ),
    );
    expect(error?.code).toBe(grpc.status.INTERNAL);
    const errorId = /errorId ([0-9a-f-]{36})/.exec(unary.details)?.[1];
    expect(errorId).toBeDefined();
    expect(server.logText()).toContain(errorId);
    await stillServing(server);
  });
});

describe('echoed input is capped', () => {
  it('a 1 MB name in any name field is refused without being echoed, and the agent is not called', async () => {
    const ops = fakeOperations();
    server = await startTestServer(ops);
    const client = server.client();
    const name = 'x'.repeat(1 << 20);
    const refusals = [
      await failure((cb) => client.getTask({ name }, new grpc.Metadata(), deadline(), cb)),
      await failure((cb) => client.listRuns({ task: name }, new grpc.Metadata(), deadline(), cb)),
      await failure((cb) => client.backupNow({ task: 'nightly', database: name }, new grpc.Metadata(), deadline(), cb)),
      await failure((cb) =>
        client.delayUnit({ task: name, database: 'a/b', seconds: 1 }, new grpc.Metadata(), deadline(), cb),
      ),
      await failure((cb) =>
        client.listBackups(
          { from: { task: name, destination: 'd' }, database: 'a/b' },
          new grpc.Metadata(),
          deadline(),
          cb,
        ),
      ),
    ];
    for (const error of refusals) {
      expect(error.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(error.details).toMatch(/must be at most 512 characters/);
      expect(error.details.length).toBeLessThan(300);
    }
    expect(ops.calls).toEqual([]);
    expect(server.logText().length).toBeLessThan(16 * 1024);
  });

  it('a 1 MB message from the agent is cut to fit a status, and says so', async () => {
    server = await startTestServer(
      fakeOperations({
        async getTask(name) {
          throw new BackupdError('NOT_FOUND', `task "${name}${'y'.repeat(1 << 20)}" does not exist`);
        },
      }),
    );
    const error = await failure((cb) => server?.client().getTask({ name: 'n' }, new grpc.Metadata(), deadline(), cb));
    expect(error.code).toBe(grpc.status.NOT_FOUND);
    expect(Buffer.byteLength(encodeURI(error.details))).toBeLessThanOrEqual(MAX_STATUS_MESSAGE_BYTES);
    expect(error.details).toMatch(/^task "nyyy.*\.\.\. \(\d+ more characters cut\)$/);
    expect(server.logText().length).toBeLessThan(64 * 1024);
  });

  it('a 1 MB destination name and kind and 10,000 unknown keys: every problem clipped, the trailers fit', async () => {
    const ops = fakeOperations();
    server = await startTestServer(ops);
    const client = server.client();
    const big = 'y'.repeat(1 << 20);
    const keys = Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`key${i}`, i]));
    const spec = taskSpec(JSON.stringify({ path: '/b', ...keys }), {
      destinations: [
        { name: 'disk', kind: 'local', configJson: JSON.stringify({ path: '/b', ...keys }) },
        { name: big, kind: big, configJson: '{}' },
      ],
    });
    const error = await failure((cb) => client.createTask({ spec }, new grpc.Metadata(), deadline(), cb));
    expect(error.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error.details.length).toBeLessThanOrEqual(MAX_STATUS_MESSAGE_BYTES);
    const problems = decodeProblems(error.metadata);
    expect(problems.length).toBeGreaterThan(0);
    for (const p of problems) expect(p.path.length + p.message.length).toBeLessThan(1200);
    expect(problems.map((p) => p.path)).toContain('destinations[1].name');
    expect(server.logText().length).toBeLessThan(64 * 1024);
  });
});

describe('config bounds', () => {
  it('GCS credentials nested 10,000 deep: INVALID_ARGUMENT naming the field, the agent is not called', async () => {
    const ops = fakeOperations();
    server = await startTestServer(ops);
    const deep = `{"bucket":"b","credentials":${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}}`;
    const error = await failure((cb) =>
      server
        ?.client()
        .createTask(
          { spec: taskSpec('', { destinations: [{ name: 'g', kind: 'gcs', configJson: deep }] }) },
          new grpc.Metadata(),
          deadline(),
          cb,
        ),
    );
    expect(error.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(decodeProblems(error.metadata)).toContainEqual({
      path: 'destinations[0].config.credentials',
      message: 'is nested deeper than 32 levels',
    });
    expect(ops.calls).not.toContain('createTask');
  });

  it('a config_json over 64 KiB is refused before it is parsed, in every request that takes one', async () => {
    const ops = fakeOperations();
    server = await startTestServer(ops);
    const client = server.client();
    const huge = JSON.stringify({ path: '/b', pad: 'p'.repeat(70 * 1024) });
    const create = await failure((cb) =>
      client.createTask({ spec: taskSpec(huge) }, new grpc.Metadata(), deadline(), cb),
    );
    expect(decodeProblems(create.metadata)).toContainEqual({
      path: 'destinations[0].config',
      message: 'is larger than 64 KiB',
    });
    const oneTime = await failure((cb) =>
      client.oneTimeBackup(
        { database: 'main/app', type: 'backup', destinations: [{ name: 'd', kind: 'local', configJson: huge }] },
        new grpc.Metadata(),
        deadline(),
        cb,
      ),
    );
    expect(decodeProblems(oneTime.metadata)).toContainEqual({
      path: 'destinations[0].config',
      message: 'is larger than 64 KiB',
    });
    expect(ops.calls).toEqual([]);
  });
});

describe('ad-hoc destinations need the full-access token', () => {
  const spec = { name: 'elsewhere', kind: 's3', configJson: '{"bucket":"b","endpoint":"http://169.254.169.254"}' };

  it('refuses ListBackups and Verify with from.spec for the read-only token, before reading the spec', async () => {
    const ops = fakeOperations();
    server = await startTestServer(ops, { auth: { token: FULL, readOnlyToken: READ_ONLY } });
    const client = server.client();
    const list = await failure((cb) =>
      client.listBackups({ from: { spec }, database: 'main/app' }, auth(READ_ONLY), deadline(), cb),
    );
    expect(list.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(list.details).toContain('from.spec');
    expect(list.metadata.get(ERROR_CODE_KEY)).toEqual(['READ_ONLY_TOKEN']);
    const { error } = await collect(
      client.verify({ from: { spec }, database: 'main/app', chainId: 'c', backupId: 'b' }, auth(READ_ONLY), deadline()),
    );
    expect(error?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(error?.metadata.get(ERROR_CODE_KEY)).toEqual(['READ_ONLY_TOKEN']);
    expect(ops.calls).toEqual([]);
  });

  it("lets the read-only token name a task's destination, and the full token give a spec", async () => {
    const ops = fakeOperations();
    server = await startTestServer(ops, { auth: { token: FULL, readOnlyToken: READ_ONLY } });
    const client = server.client();
    const byTask = { from: { task: 'nightly', destination: 'disk' }, database: 'main/app' };
    await new Promise<void>((resolve, reject) =>
      client.listBackups(byTask, auth(READ_ONLY), deadline(), (e) => (e ? reject(e) : resolve())),
    );
    const verified = await collect(
      client.verify({ ...byTask, chainId: 'c', backupId: 'b' }, auth(READ_ONLY), deadline()),
    );
    expect(verified.error).toBeUndefined();
    await new Promise<void>((resolve, reject) =>
      client.listBackups({ from: { spec }, database: 'main/app' }, auth(FULL), deadline(), (e) =>
        e ? reject(e) : resolve(),
      ),
    );
    expect(ops.calls).toEqual(['listBackups', 'verify', 'listBackups']);
  });
});
