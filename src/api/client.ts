// A typed client of the backupd gRPC API (proto/backupd/v1): TLS or mutual TLS, a bearer token sent as
// call metadata, a deadline per call, promises for unary calls and async iterators for server streams.
// gRPC failures become RpcError, carrying the status and the details the server put in trailing metadata.

import * as grpc from '@grpc/grpc-js';
import type { FieldProblem } from '../errors.js';
import type { BackupdClient } from '../generated/backupd/v1/Backupd.js';
import type { BackupNowRequest } from '../generated/backupd/v1/BackupNowRequest.js';
import type { BackupNowResponse__Output } from '../generated/backupd/v1/BackupNowResponse.js';
import type { CancelRunRequest } from '../generated/backupd/v1/CancelRunRequest.js';
import type { ClusterStatus__Output } from '../generated/backupd/v1/ClusterStatus.js';
import type { CreateTaskRequest } from '../generated/backupd/v1/CreateTaskRequest.js';
import type { DelayUnitRequest } from '../generated/backupd/v1/DelayUnitRequest.js';
import type { DeleteTaskRequest } from '../generated/backupd/v1/DeleteTaskRequest.js';
import type { DeleteTaskResponse__Output } from '../generated/backupd/v1/DeleteTaskResponse.js';
import type { GetClusterStatusRequest } from '../generated/backupd/v1/GetClusterStatusRequest.js';
import type { GetRunRequest } from '../generated/backupd/v1/GetRunRequest.js';
import type { GetTaskRequest } from '../generated/backupd/v1/GetTaskRequest.js';
import type { GetTaskStatusRequest } from '../generated/backupd/v1/GetTaskStatusRequest.js';
import type { ListBackupsRequest } from '../generated/backupd/v1/ListBackupsRequest.js';
import type { ListBackupsResponse__Output } from '../generated/backupd/v1/ListBackupsResponse.js';
import type { ListDatabasesRequest } from '../generated/backupd/v1/ListDatabasesRequest.js';
import type { ListDatabasesResponse__Output } from '../generated/backupd/v1/ListDatabasesResponse.js';
import type { ListRunsRequest } from '../generated/backupd/v1/ListRunsRequest.js';
import type { ListRunsResponse__Output } from '../generated/backupd/v1/ListRunsResponse.js';
import type { ListTasksRequest } from '../generated/backupd/v1/ListTasksRequest.js';
import type { ListTasksResponse__Output } from '../generated/backupd/v1/ListTasksResponse.js';
import type { OneTimeBackupRequest } from '../generated/backupd/v1/OneTimeBackupRequest.js';
import type { RestoreEvent__Output } from '../generated/backupd/v1/RestoreEvent.js';
import type { RestoreRequest } from '../generated/backupd/v1/RestoreRequest.js';
import type { Run__Output } from '../generated/backupd/v1/Run.js';
import type { RunEvent__Output } from '../generated/backupd/v1/RunEvent.js';
import type { Task__Output } from '../generated/backupd/v1/Task.js';
import type { TaskStatus__Output } from '../generated/backupd/v1/TaskStatus.js';
import type { UnitStatus__Output } from '../generated/backupd/v1/UnitStatus.js';
import type { UpdateTaskRequest } from '../generated/backupd/v1/UpdateTaskRequest.js';
import type { VerifyEvent__Output } from '../generated/backupd/v1/VerifyEvent.js';
import type { VerifyRequest } from '../generated/backupd/v1/VerifyRequest.js';
import type { WatchRunRequest } from '../generated/backupd/v1/WatchRunRequest.js';
import { loadApi } from './proto.js';
import { ERROR_CODE_KEY, PROBLEMS_KEY, parseProblems, RETRYABLE_KEY } from './status-codes.js';

export { parseProblems };

/** Every unary RPC: [request, answer]. */
export interface UnaryMethods {
  CreateTask: [CreateTaskRequest, Task__Output];
  UpdateTask: [UpdateTaskRequest, Task__Output];
  DeleteTask: [DeleteTaskRequest, DeleteTaskResponse__Output];
  GetTask: [GetTaskRequest, Task__Output];
  ListTasks: [ListTasksRequest, ListTasksResponse__Output];
  GetTaskStatus: [GetTaskStatusRequest, TaskStatus__Output];
  BackupNow: [BackupNowRequest, BackupNowResponse__Output];
  OneTimeBackup: [OneTimeBackupRequest, Run__Output];
  CancelRun: [CancelRunRequest, Run__Output];
  DelayUnit: [DelayUnitRequest, UnitStatus__Output];
  GetRun: [GetRunRequest, Run__Output];
  ListRuns: [ListRunsRequest, ListRunsResponse__Output];
  ListDatabases: [ListDatabasesRequest, ListDatabasesResponse__Output];
  ListBackups: [ListBackupsRequest, ListBackupsResponse__Output];
  GetClusterStatus: [GetClusterStatusRequest, ClusterStatus__Output];
}

/** Every server-streaming RPC: [request, one message of the stream]. */
export interface StreamMethods {
  WatchRun: [WatchRunRequest, RunEvent__Output];
  Restore: [RestoreRequest, RestoreEvent__Output];
  Verify: [VerifyRequest, VerifyEvent__Output];
}

export interface ClientOptions {
  /** `host:port` of a backupd agent. */
  address: string;
  /** PEM contents. With none of them the channel is plaintext; `cert` and `key` go together (mutual TLS). */
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
  /** Sent on every call as `authorization: Bearer <token>`. */
  token?: string;
  /** Deadline of each unary call (default 30 s). */
  timeoutMs?: number;
  /** Deadline of a whole server stream (default none: a restore or a watched run may take hours). */
  streamTimeoutMs?: number;
}

export interface CallOverrides {
  /** This call's deadline in ms; `null` for none. */
  timeoutMs?: number | null;
}

/** The API as promises and async iterators. Every method rejects / throws RpcError on a gRPC failure. */
export interface BackupdApi {
  unary<M extends keyof UnaryMethods>(
    method: M,
    request: UnaryMethods[M][0],
    overrides?: CallOverrides,
  ): Promise<UnaryMethods[M][1]>;
  /** The messages of a server stream; leaving the loop early cancels the call. */
  stream<M extends keyof StreamMethods>(
    method: M,
    request: StreamMethods[M][0],
    overrides?: CallOverrides,
  ): AsyncIterable<StreamMethods[M][1]>;
  /** Close the channel; calls in flight fail with CANCELLED. */
  close(): void;
}

/** A failed gRPC call: its status, the server's message, and the backupd details from trailing metadata. */
export class RpcError extends Error {
  readonly status: grpc.status;
  /** `NOT_FOUND`, `UNAVAILABLE`, ...: the grpc status name. */
  readonly statusName: string;
  /** The server's BackupdError code (`WRONG_KEY`, `INVALID_ARGUMENT`, ...) when it set one. */
  readonly errorCode: string | undefined;
  /** Every bad field of an INVALID_ARGUMENT answer, when the server listed them. */
  readonly problems: FieldProblem[];
  /** The server's BackupdError retryable flag, when it sent one. */
  readonly retryable: boolean | undefined;

  constructor(
    status: grpc.status,
    message: string,
    errorCode?: string,
    problems: FieldProblem[] = [],
    retryable?: boolean,
  ) {
    super(message);
    this.name = 'RpcError';
    this.status = status;
    this.statusName = grpc.status[status] ?? `STATUS_${status}`;
    this.errorCode = errorCode;
    this.problems = problems;
    this.retryable = retryable;
  }

  /** True when the server itself answered (it sets backupd-error-code), false for transport failures. */
  get fromServer(): boolean {
    return this.errorCode !== undefined;
  }
}

function isServiceError(error: unknown): error is grpc.ServiceError {
  return (
    error instanceof Error &&
    typeof (error as Partial<grpc.ServiceError>).code === 'number' &&
    (error as Partial<grpc.ServiceError>).metadata instanceof grpc.Metadata
  );
}

function metadataString(metadata: grpc.Metadata, key: string): string | undefined {
  const [value] = metadata.get(key);
  if (value === undefined) return undefined;
  return typeof value === 'string' ? value : value.toString('utf8');
}

/**
 * The problems the server listed (src/api/status-codes.ts writes them), ignoring entries that are not
 * `{ path, message }` strings. Unlike a test helper, this never throws: the status itself still counts.
 */

/** A gRPC ServiceError as an RpcError; anything else unchanged. */
export function toRpcError(error: unknown): unknown {
  if (!isServiceError(error)) return error;
  // grpc-js prefixes the message with "<code> <NAME>: "; `details` is the server's own message.
  const message = error.details || error.message;
  return new RpcError(
    error.code,
    message,
    metadataString(error.metadata, ERROR_CODE_KEY),
    parseProblems(metadataString(error.metadata, PROBLEMS_KEY)),
    flag(metadataString(error.metadata, RETRYABLE_KEY)),
  );
}

function flag(value: string | undefined): boolean | undefined {
  return value === 'true' ? true : value === 'false' ? false : undefined;
}

function channelCredentials(tls: ClientOptions['tls']): grpc.ChannelCredentials {
  if (!tls || (!tls.ca && !tls.cert && !tls.key)) return grpc.credentials.createInsecure();
  if (Boolean(tls.cert) !== Boolean(tls.key)) {
    throw new Error('mutual TLS needs both a client certificate and its key');
  }
  return grpc.credentials.createSsl(tls.ca ?? null, tls.key ?? null, tls.cert ?? null);
}

type UnaryFn = (
  request: unknown,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, response?: unknown) => void,
) => grpc.ClientUnaryCall;
type StreamFn = (
  request: unknown,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
) => grpc.ClientReadableStream<unknown>;

/** A client for one agent. Creating it does not connect; the first call does. */
export function createClient(options: ClientOptions): BackupdApi {
  const { api } = loadApi();
  const raw: BackupdClient = new api.backupd.v1.Backupd(options.address, channelCredentials(options.tls));
  // The generated client has one overloaded method per RPC; the method tables above give each name its
  // request and answer types, so looking a method up by name loses no checking for callers.
  const method = <F>(name: string): F => {
    const fn = (raw as unknown as Record<string, unknown>)[name];
    if (typeof fn !== 'function') throw new Error(`the backupd client has no RPC ${name}`);
    return fn as F;
  };

  const metadata = (): grpc.Metadata => {
    const md = new grpc.Metadata();
    if (options.token) md.set('authorization', `Bearer ${options.token}`);
    return md;
  };
  const callOptions = (fallback: number | undefined, overrides?: CallOverrides): grpc.CallOptions => {
    const ms = overrides?.timeoutMs === undefined ? fallback : overrides.timeoutMs;
    return ms === null || ms === undefined ? {} : { deadline: new Date(Date.now() + ms) };
  };

  return {
    unary(name, request, overrides) {
      const fn = method<UnaryFn>(name);
      return new Promise((resolve, reject) => {
        fn.call(raw, request, metadata(), callOptions(options.timeoutMs ?? 30_000, overrides), (error, response) => {
          if (error) reject(toRpcError(error));
          // The method table fixes the answer type of `method`; grpc-js decoded it with the same proto.
          else resolve(response as UnaryMethods[typeof name][1]);
        });
      });
    },

    stream<M extends keyof StreamMethods>(
      name: M,
      request: StreamMethods[M][0],
      overrides?: CallOverrides,
    ): AsyncIterable<StreamMethods[M][1]> {
      const fn = method<StreamFn>(name);
      return {
        async *[Symbol.asyncIterator]() {
          const call = fn.call(raw, request, metadata(), callOptions(options.streamTimeoutMs, overrides));
          let ended = false;
          try {
            for await (const message of call) yield message as StreamMethods[M][1];
            ended = true;
          } catch (error) {
            ended = true;
            throw toRpcError(error);
          } finally {
            // The consumer left the loop early (break, return or its own error): stop the server's work.
            if (!ended) call.cancel();
          }
        },
      };
    },

    close() {
      raw.close();
    },
  };
}
