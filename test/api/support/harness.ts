// Starts the real API server on 127.0.0.1:0 with a fake agent and a log kept in memory, and gives tests
// real gRPC clients built from the same proto (loadApi), plus promise helpers for unary and streaming calls.

import * as grpc from '@grpc/grpc-js';
import type * as protoLoader from '@grpc/proto-loader';
import { pino } from 'pino';
import type { Operations } from '../../../src/agent/operations.js';
import type { AuthConfig } from '../../../src/api/auth.js';
import { loadApi } from '../../../src/api/proto.js';
import { type ApiServer, type ApiServerOptions, startApiServer } from '../../../src/api/server.js';
import type { BackupdClient } from '../../../src/generated/backupd/v1/Backupd.js';

export interface TestServer {
  api: ApiServer;
  /** Every log line the server wrote, as parsed JSON and as raw text. */
  logs: Record<string, unknown>[];
  logText(): string;
  /** A client of this server; closed by `close()`. */
  client(options?: { credentials?: grpc.ChannelCredentials; address?: string }): BackupdClient;
  close(): Promise<void>;
}

export async function startTestServer(
  operations: Operations,
  options: { auth?: AuthConfig; tls?: ApiServerOptions['tls']; listen?: string } = {},
): Promise<TestServer> {
  const lines: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(line) });
  const api = await startApiServer({
    operations,
    listen: options.listen ?? '127.0.0.1:0',
    auth: options.auth ?? {},
    logger,
    ...(options.tls ? { tls: options.tls } : {}),
  });
  const clients: grpc.Client[] = [];
  return {
    api,
    get logs() {
      return lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    logText: () => lines.join(''),
    client(clientOptions = {}) {
      const { api: typed } = loadApi();
      const credentials = clientOptions.credentials ?? grpc.credentials.createInsecure();
      const client = new typed.backupd.v1.Backupd(clientOptions.address ?? api.address, credentials);
      clients.push(client);
      return client;
    },
    async close() {
      for (const client of clients) client.close();
      await api.close(1000);
    },
  };
}

/** Metadata carrying `authorization: Bearer <token>`, or empty. */
export function auth(token?: string): grpc.Metadata {
  const metadata = new grpc.Metadata();
  if (token !== undefined) metadata.set('authorization', `Bearer ${token}`);
  return metadata;
}

/** A unary call as a promise: `call<Task__Output>((cb) => client.getTask({ name }, cb))`. */
export function call<T>(start: (callback: grpc.requestCallback<T>) => unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    start((error, value) => (error ? reject(error) : resolve(value as T)));
  });
}

/** A unary call that must fail: its ServiceError. */
export async function failure(start: (callback: grpc.requestCallback<unknown>) => unknown): Promise<grpc.ServiceError> {
  try {
    await call(start);
  } catch (error) {
    if (isServiceError(error)) return error;
    throw error;
  }
  throw new Error('the call succeeded; a failure was expected');
}

/** Every message of a server stream and how it ended (`error` undefined for OK). */
export function collect<T>(
  stream: grpc.ClientReadableStream<T>,
): Promise<{ messages: T[]; error: grpc.ServiceError | undefined }> {
  return new Promise((resolve) => {
    const messages: T[] = [];
    let error: grpc.ServiceError | undefined;
    stream.on('data', (message: T) => messages.push(message));
    stream.on('error', (e: unknown) => {
      if (isServiceError(e)) error = e;
    });
    // 'status' comes last, after 'end' or 'error'.
    stream.on('status', () => resolve({ messages, error }));
  });
}

export function isServiceError(error: unknown): error is grpc.ServiceError {
  return error instanceof Error && typeof (error as Partial<grpc.ServiceError>).code === 'number';
}

/** One method of a service in a package definition loaded by proto-loader (health, reflection). */
export function methodOf(
  definition: protoLoader.PackageDefinition,
  service: string,
  method: string,
): protoLoader.MethodDefinition<object, object> {
  const found = definition[service];
  // Messages and enums carry `format`; services are maps of method definitions.
  if (!found || 'format' in found) throw new Error(`${service} is not a service of this package`);
  const definitionOfMethod = (found as protoLoader.ServiceDefinition)[method];
  if (!definitionOfMethod) throw new Error(`${service} has no method ${method}`);
  return definitionOfMethod as protoLoader.MethodDefinition<object, object>;
}

/** A unary call by definition, for services we have no generated client of. */
export function rawUnary(
  client: grpc.Client,
  method: protoLoader.MethodDefinition<object, object>,
  request: object,
  metadata = new grpc.Metadata(),
): Promise<unknown> {
  return call((cb) =>
    client.makeUnaryRequest(method.path, method.requestSerialize, method.responseDeserialize, request, metadata, cb),
  );
}
