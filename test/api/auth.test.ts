// Bearer tokens on a real server, and the services that stay open without one: health checking and server
// reflection, each queried with a client built from that service's own proto. The agent behind the API is
// a fake (support/fake-operations): only the API layer is under test here.

import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { afterEach, describe, expect, it } from 'vitest';
import { SERVICE_NAME } from '../../src/api/server.js';
import { ERROR_CODE_KEY } from '../../src/api/status-codes.js';
import type { ClusterStatus__Output } from '../../src/generated/backupd/v1/ClusterStatus.js';
import type { ListTasksResponse__Output } from '../../src/generated/backupd/v1/ListTasksResponse.js';
import type { Task__Output } from '../../src/generated/backupd/v1/Task.js';
import { fakeOperations } from './support/fake-operations.js';
import { auth, call, failure, methodOf, rawUnary, startTestServer, type TestServer } from './support/harness.js';

const TOKEN = 'full-access-token-0123456789';
const READ_ONLY = 'read-only-token-9876543210';
const spec = {
  name: 'nightly',
  databases: { names: ['main/app'] },
  type: 'backup',
  schedule: { full: '0 3 * * *' },
  destinations: [{ name: 'disk', kind: 'local', configJson: '{"path":"/var/backups"}' }],
};

let server: TestServer | undefined;
const extraClients: grpc.Client[] = [];
afterEach(async () => {
  for (const client of extraClients.splice(0)) client.close();
  await server?.close();
  server = undefined;
});

function rawClient(address: string): grpc.Client {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  extraClients.push(client);
  return client;
}

describe('bearer token', () => {
  it('refuses a call without a token, with a wrong one, and a write with the read-only one', async () => {
    const ops = fakeOperations();
    server = await startTestServer(ops, { auth: { token: TOKEN, readOnlyToken: READ_ONLY } });
    const client = server.client();

    const none = await failure((cb) => client.listTasks({}, cb));
    expect(none.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(none.details).toBe('no token: pass --token or set BACKUPD_TOKEN');
    expect(none.metadata.get(ERROR_CODE_KEY)).toEqual(['UNAUTHENTICATED']);

    const wrong = await failure((cb) => client.listTasks({}, auth('not-the-token'), cb));
    expect(wrong.code).toBe(grpc.status.UNAUTHENTICATED);

    const readOnlyWrite = await failure((cb) => client.createTask({ spec }, auth(READ_ONLY), cb));
    expect(readOnlyWrite.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(readOnlyWrite.details).toContain('CreateTask');
    expect(readOnlyWrite.metadata.get(ERROR_CODE_KEY)).toEqual(['READ_ONLY_TOKEN']);
    // Refused calls never reach the agent.
    expect(ops.calls).toEqual([]);

    const created = await call<Task__Output>((cb) => client.createTask({ spec }, auth(TOKEN), cb));
    expect(created.spec?.name).toBe('nightly');
    const listed = await call<ListTasksResponse__Output>((cb) => client.listTasks({}, auth(READ_ONLY), cb));
    expect(listed.tasks.map((t) => t.spec?.name)).toEqual(['nightly']);

    // A read-only token may watch and verify (streams), but not restore.
    const watch = client.watchRun({ runId: 'run-1' }, auth(READ_ONLY));
    const watched = await new Promise<grpc.StatusObject>((resolve) => {
      watch.on('data', () => undefined);
      watch.on('error', () => undefined);
      watch.on('status', resolve);
    });
    expect(watched.code).toBe(grpc.status.OK);
    const restore = client.restore(
      {
        from: { task: 'nightly', destination: 'disk' },
        database: 'main/app',
        chainId: 'c',
        backupId: 'b',
        target: 'x',
      },
      auth(READ_ONLY),
    );
    const restored = await new Promise<grpc.StatusObject>((resolve) => {
      restore.on('data', () => undefined);
      restore.on('error', () => undefined);
      restore.on('status', resolve);
    });
    expect(restored.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(ops.calls).not.toContain('restore');

    // Tokens are not logged.
    expect(server.logText()).not.toMatch(new RegExp(`${TOKEN}|${READ_ONLY}`));
  });

  it('lets every call through when no token is configured (the local demo)', async () => {
    server = await startTestServer(fakeOperations());
    const answer = await call<ClusterStatus__Output>((cb) => server?.client().getClusterStatus({}, cb));
    expect(answer?.mode).toBe('single-node');
    // Listening on loopback only: no warning about the open API.
    expect(server.logs.filter((l) => l.level === 40)).toEqual([]);
  });

  it('warns when it listens beyond localhost without a token', async () => {
    server = await startTestServer(fakeOperations(), { listen: '0.0.0.0:0' });
    expect(server.logs.find((l) => l.level === 40)?.msg).toMatch(/no API token configured/);
  });
});

describe('health checking', () => {
  const definition = protoLoader.loadSync(healthProtoPath, { keepCase: false, defaults: true, enums: String });
  const check = methodOf(definition, 'grpc.health.v1.Health', 'Check');
  const watch = methodOf(definition, 'grpc.health.v1.Health', 'Watch');

  it('answers SERVING for the server and the service, without a token', async () => {
    server = await startTestServer(fakeOperations(), { auth: { token: TOKEN } });
    const client = rawClient(server.api.address);
    expect(await rawUnary(client, check, { service: '' })).toEqual({ status: 'SERVING' });
    expect(await rawUnary(client, check, { service: SERVICE_NAME })).toEqual({ status: 'SERVING' });
  });

  it('reports NOT_SERVING to watchers when the server closes', async () => {
    server = await startTestServer(fakeOperations());
    const client = rawClient(server.api.address);
    const statuses: unknown[] = [];
    const stream = client.makeServerStreamRequest(watch.path, watch.requestSerialize, watch.responseDeserialize, {
      service: SERVICE_NAME,
    });
    const ended = new Promise<void>((resolve) => {
      stream.on('data', (message: unknown) => statuses.push(message));
      stream.on('error', () => undefined);
      stream.on('status', () => resolve());
    });
    await expect.poll(() => statuses.length).toBe(1);
    await server.api.close(200);
    await ended;
    expect(statuses).toEqual([{ status: 'SERVING' }, { status: 'NOT_SERVING' }]);
  });
});

describe('server reflection', () => {
  // The reflection package ships its own proto; a client built from it asks like grpcurl would.
  const reflectionProto = join(
    dirname(createRequire(import.meta.url).resolve('@grpc/reflection')),
    '..',
    'proto',
    'grpc',
    'reflection',
    'v1',
    'reflection.proto',
  );
  const definition = protoLoader.loadSync(reflectionProto, { keepCase: false, defaults: true, oneofs: true });
  const info = methodOf(definition, 'grpc.reflection.v1.ServerReflection', 'ServerReflectionInfo');

  function ask(address: string, request: object): Promise<Record<string, unknown>> {
    const client = rawClient(address);
    const stream = client.makeBidiStreamRequest(info.path, info.requestSerialize, info.responseDeserialize);
    return new Promise((resolve, reject) => {
      stream.on('data', (message: Record<string, unknown>) => {
        resolve(message);
        stream.end();
      });
      stream.on('error', reject);
      stream.write(request);
    });
  }

  it('lists backupd.v1.Backupd and describes it, without a token', async () => {
    server = await startTestServer(fakeOperations(), { auth: { token: TOKEN } });
    const listed = await ask(server.api.address, { listServices: '*' });
    const services = (listed.listServicesResponse as { service: { name: string }[] }).service.map((s) => s.name);
    expect(services).toContain(SERVICE_NAME);

    const described = await ask(server.api.address, { fileContainingSymbol: SERVICE_NAME });
    const files = (described.fileDescriptorResponse as { fileDescriptorProto: Buffer[] }).fileDescriptorProto;
    expect(files.length).toBeGreaterThan(0);
    // The descriptor names the service's methods, so grpcurl can call them.
    expect(Buffer.concat(files).toString('latin1')).toContain('WatchRun');
  });
});
