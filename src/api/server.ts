// The agent's gRPC server: the Backupd service (every RPC of proto/backupd/v1), standard health checking and
// server reflection. Each handler checks the token, converts the request, calls Operations, converts the
// answer and maps errors to status codes; it logs the method, duration and outcome, never a request body
// (requests carry encryption keys and destination credentials).

import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
import type { Logger } from 'pino';
import type { Operations } from '../agent/operations.js';
import { BackupdError, clip, type FieldProblem, messageOf, ValidationError } from '../errors.js';
import type { BackupdHandlers } from '../generated/backupd/v1/Backupd.js';
import type { BackupLocation } from '../generated/backupd/v1/BackupLocation.js';
import { type DestinationRegistry, destinations } from '../uploader/registry.js';
import { type AuthConfig, Authenticator, type AuthFailure } from './auth.js';
import { bounded, requiredName } from './convert-fields.js';
import {
  chainToProto,
  hasAdHocSpec,
  locationFromProto,
  oneTimeInputFromProto,
  restoreInputFromProto,
  restoreResultToProto,
  verifyInputFromProto,
  verifyResultToProto,
} from './convert-restore.js';
import {
  backupNowFromProto,
  clusterToProto,
  databaseToProto,
  progressToProto,
  runFilterFromProto,
  runToProto,
  unitToProto,
} from './convert-run.js';
import { taskSpecInput, tasksToProto, taskToProto } from './convert-task.js';
import { loadApi } from './proto.js';
import { ERROR_CODE_KEY, toStatus } from './status-codes.js';

/** The fully qualified name health checks and reflection know the service by. */
export const SERVICE_NAME = 'backupd.v1.Backupd';

/** Progress messages of a stream are sent at most this often; the final message always goes at once. */
export const PROGRESS_INTERVAL_MS = 100;

export interface ApiServerOptions {
  operations: Operations;
  /** `host:port`; port 0 picks a free one. IPv6 hosts in brackets: `[::1]:7443`. */
  listen: string;
  /** PEM contents. `requireClientCert` (mutual TLS) needs `ca`, the authority client certificates chain to. */
  tls?: { cert: string | Buffer; key: string | Buffer; ca?: string | Buffer; requireClientCert?: boolean };
  auth: AuthConfig;
  logger: Logger;
  /**
   * Destination drivers, used only to report every other problem of a task spec together with a config_json
   * that is not JSON (the agent is not called then). The built-in drivers by default.
   */
  registry?: DestinationRegistry;
}

export interface ApiServer {
  /** The port bound (the chosen one when `listen` asked for 0). */
  port: number;
  /** `host:port` as bound (for a wildcard host such as 0.0.0.0, clients use one of the machine's addresses). */
  address: string;
  server: grpc.Server;
  health: HealthImplementation;
  /**
   * Report NOT_SERVING, let calls in flight finish for up to `graceMs` (default 5 s), then cancel the rest
   * (streams see their signal abort). Safe to call twice.
   */
  close(graceMs?: number): Promise<void>;
}

/** Start serving; rejects when the address cannot be bound or the TLS or auth settings are unusable. */
export async function startApiServer(options: ApiServerOptions): Promise<ApiServer> {
  const logger = options.logger.child({ component: 'api' });
  const auth = new Authenticator(options.auth);
  const { host } = splitHostPort(options.listen);
  if (!auth.enabled && !isLoopback(host)) {
    logger.warn(
      { listen: options.listen },
      'no API token configured and listening beyond localhost: anyone who can reach this port can change tasks',
    );
  }
  if (auth.enabled && !options.tls && !isLoopback(host)) {
    logger.warn({ listen: options.listen }, 'API token in use without TLS beyond localhost: tokens travel in clear');
  }

  const { api, definition } = loadApi();
  const server = new grpc.Server();
  const context: CallContext = { auth, logger, operations: options.operations };
  server.addService(api.backupd.v1.Backupd.service, backupdHandlers(context, options.registry ?? destinations));

  const health = new HealthImplementation({ '': 'SERVING', [SERVICE_NAME]: 'SERVING' });
  health.addToServer(server);
  new ReflectionService(definition).addToServer(server);

  let port: number;
  try {
    port = await bind(server, options.listen, credentials(options.tls));
  } catch (error) {
    // Nothing is listening yet; this only drops the registered services so nothing lingers.
    server.forceShutdown();
    throw error;
  }
  const address = `${host}:${port}`;
  logger.info({ address, tls: options.tls !== undefined, auth: auth.enabled }, 'API listening');

  let closing: Promise<void> | undefined;
  return {
    port,
    address,
    server,
    health,
    close(graceMs = 5000) {
      closing ??= new Promise<void>((resolve) => {
        health.setStatus('', 'NOT_SERVING');
        health.setStatus(SERVICE_NAME, 'NOT_SERVING');
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        // tryShutdown's error only says the server was not running, which leaves nothing to close.
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      return closing;
    },
  };
}

function credentials(tls: ApiServerOptions['tls']): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  if (tls.requireClientCert && !tls.ca) {
    throw new BackupdError('INVALID_ARGUMENT', 'tls.requireClientCert needs tls.ca to check client certificates');
  }
  return grpc.ServerCredentials.createSsl(
    tls.ca === undefined ? null : Buffer.from(tls.ca),
    [{ private_key: Buffer.from(tls.key), cert_chain: Buffer.from(tls.cert) }],
    tls.requireClientCert ?? false,
  );
}

function bind(server: grpc.Server, listen: string, creds: grpc.ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(listen, creds, (error, port) => {
      if (error) {
        // grpc-js says only "No address added": name the usual causes.
        const hint = 'is the port in use, or the address not one of this machine?';
        reject(
          new BackupdError('UNAVAILABLE', `cannot listen on ${listen}: ${error.message} (${hint})`, { cause: error }),
        );
      } else {
        resolve(port);
      }
    });
  });
}

/** `host:port` split; `[::1]:7443` keeps its brackets in `host`, so the address can be joined back. */
export function splitHostPort(listen: string): { host: string; port: string } {
  const at = listen.lastIndexOf(':');
  if (at <= 0) throw new BackupdError('INVALID_ARGUMENT', `listen: "${listen}" is not host:port`);
  return { host: listen.slice(0, at), port: listen.slice(at + 1) };
}

export function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, '$1');
  return bare === 'localhost' || bare === '::1' || /^127\.\d+\.\d+\.\d+$/.test(bare);
}

// ---- handlers ----

interface CallContext {
  auth: Authenticator;
  logger: Logger;
  operations: Operations;
}

function backupdHandlers(context: CallContext, registry: DestinationRegistry): BackupdHandlers {
  const ops = context.operations;
  const unary = <Req, Res>(method: string, run: (request: Req) => Promise<Res>, fullAccessFor?: FullAccessFor<Req>) =>
    unaryHandler(context, method, run, fullAccessFor);
  const stream = <Req, Res>(method: string, run: StreamRun<Req, Res>, fullAccessFor?: FullAccessFor<Req>) =>
    streamHandler(context, method, run, fullAccessFor);

  return {
    CreateTask: unary('CreateTask', async (req) =>
      taskToProto(await ops.createTask(taskSpecInput(req.spec, registry), req.encryptionKey || undefined)),
    ),
    UpdateTask: unary('UpdateTask', async (req) => {
      const input = taskSpecInput(req.spec, registry);
      // 0 is proto3's "unset": no revision check.
      const expected = Number(req.expectedRevision) || undefined;
      return taskToProto(await ops.updateTask(input, req.encryptionKey || undefined, expected));
    }),
    DeleteTask: unary('DeleteTask', async (req) => {
      await ops.deleteTask(requiredName(req.name, 'name'));
      return {};
    }),
    GetTask: unary('GetTask', async (req) => taskToProto(await ops.getTask(requiredName(req.name, 'name')))),
    ListTasks: unary('ListTasks', async () => tasksToProto(await ops.listTasks())),
    GetTaskStatus: unary('GetTaskStatus', async (req) => {
      const name = requiredName(req.name, 'name');
      return { name, units: (await ops.taskStatus(name)).map(unitToProto) };
    }),

    BackupNow: unary('BackupNow', async (req) => {
      const { task, database, level } = backupNowFromProto(req);
      return { runs: (await ops.backupNow(task, database, level)).map(runToProto) };
    }),
    OneTimeBackup: unary('OneTimeBackup', async (req) =>
      runToProto(await ops.oneTimeBackup(oneTimeInputFromProto(req))),
    ),
    CancelRun: unary('CancelRun', async (req) => runToProto(await ops.cancelRun(requiredName(req.runId, 'runId')))),
    DelayUnit: unary('DelayUnit', async (req) => {
      const problems: FieldProblem[] = [];
      if (!req.task) problems.push({ path: 'task', message: 'must not be empty' });
      if (!req.database) problems.push({ path: 'database', message: 'must not be empty' });
      bounded(req.task, 'task', problems);
      bounded(req.database, 'database', problems);
      if (problems.length > 0) throw new ValidationError('delay request', problems);
      return unitToProto(await ops.delayUnit(req.task, req.database, req.seconds));
    }),
    GetRun: unary('GetRun', async (req) => runToProto(await ops.getRun(requiredName(req.runId, 'runId')))),
    ListRuns: unary('ListRuns', async (req) => ({
      runs: (await ops.listRuns(runFilterFromProto(req))).map(runToProto),
    })),
    WatchRun: stream('WatchRun', async (req, send, signal) => {
      const runId = requiredName(req.runId, 'runId');
      const finished = await ops.watchRun(runId, (run) => send({ run: runToProto(run) }), signal);
      return { run: runToProto(finished) };
    }),

    ListDatabases: unary('ListDatabases', async () => {
      // Asked at once: a postgres source answers both from one psql.
      const [databases, leftOut] = await Promise.all([ops.listDatabases(), ops.listLeftOut()]);
      return { databases: databases.map(databaseToProto), leftOut };
    }),
    ListBackups: unary(
      'ListBackups',
      async (req) => {
        const problems: FieldProblem[] = [];
        const from = locationFromProto(req.from, 'from', problems);
        bounded(req.database, 'database', problems);
        bounded(req.cluster, 'cluster', problems);
        if (problems.length > 0) throw new ValidationError('list-backups request', problems);
        const found = await ops.listBackups(from, {
          ...(req.database ? { database: req.database } : {}),
          ...(req.cluster ? { cluster: req.cluster } : {}),
        });
        return { chains: found.chains.map(chainToProto), searched: found.searched };
      },
      adHocSpec,
    ),
    Restore: stream('Restore', async (req, send, signal) => {
      const input = restoreInputFromProto(req);
      let last: ReturnType<typeof progressToProto> | null = null;
      const result = await ops.restore(
        input,
        (progress) => {
          last = progressToProto(progress);
          send({ progress: last, result: null });
        },
        signal,
      );
      return { progress: last, result: restoreResultToProto(result) };
    }),
    Verify: stream(
      'Verify',
      async (req, send, signal) => {
        const input = verifyInputFromProto(req);
        let last: ReturnType<typeof progressToProto> | null = null;
        const result = await ops.verify(
          input,
          (progress) => {
            last = progressToProto(progress);
            send({ progress: last, result: null });
          },
          signal,
        );
        return { progress: last, result: verifyResultToProto(result) };
      },
      adHocSpec,
    ),

    GetClusterStatus: unary('GetClusterStatus', async () => clusterToProto(await ops.clusterStatus())),
  };
}

function unaryHandler<Req, Res>(
  context: CallContext,
  method: string,
  run: (request: Req) => Promise<Res>,
  fullAccessFor?: FullAccessFor<Req>,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    const started = performance.now();
    // grpc-js calls handlers from its own event handlers: anything thrown here, or by grpc-js while it sends
    // the status, would end the process. Every way out goes through `answer`, and nothing escapes it.
    const answer = (status: Partial<grpc.StatusObject> | null, value?: Res) => {
      try {
        callback(status, value);
      } catch (error) {
        lastResort(context, method, error, (fallback) => callback(fallback));
      }
    };
    let refused: AuthFailure | undefined;
    try {
      refused = context.auth.check(call.metadata, method, fullAccessFor?.(call.request));
    } catch (error) {
      answer(failure(context, method, started, error));
      return;
    }
    if (refused) {
      answer(refusal(context, method, refused, call.getPeer()));
      return;
    }
    // Conversions throw synchronously; starting from a resolved promise routes them to the same mapping.
    Promise.resolve()
      .then(() => run(call.request))
      .then(
        (value) => {
          context.logger.debug({ method, ms: elapsed(started) }, 'call done');
          answer(null, value);
        },
        (error: unknown) => answer(failure(context, method, started, error)),
      )
      // Only a bug in the mapping itself lands here; the call still gets its status.
      .catch((error: unknown) => lastResort(context, method, error, (fallback) => callback(fallback)));
  };
}

/** What makes a call of a read method need the full-access token anyway (a field of the request), if anything. */
type FullAccessFor<Req> = (request: Req) => string | undefined;

/** ListBackups and Verify given an ad-hoc destination: the agent would connect wherever the caller says. */
const adHocSpec = <Req extends { from?: BackupLocation | null }>(request: Req) =>
  hasAdHocSpec(request.from) ? 'from.spec (an ad-hoc destination)' : undefined;

/** A streaming RPC's work: `send` progress (throttled), resolve with the final message. */
type StreamRun<Req, Res> = (request: Req, send: (message: Res) => void, signal: AbortSignal) => Promise<Res>;

function streamHandler<Req, Res>(
  context: CallContext,
  method: string,
  run: StreamRun<Req, Res>,
  fullAccessFor?: FullAccessFor<Req>,
): grpc.handleServerStreamingCall<Req, Res> {
  return (call) => {
    const started = performance.now();
    // As for unary calls: nothing thrown may leave the handler, and every stream ends with a status. grpc-js
    // sends the status of an 'error' from the stream's _final, where a throw is swallowed and the client
    // waits forever: the status must be sendable before it is handed over (status-codes' statusMessage).
    const fail = (status: Partial<grpc.StatusObject>) => {
      try {
        call.emit('error', status);
      } catch (error) {
        lastResort(context, method, error, (fallback) => call.emit('error', fallback));
      }
    };
    let refused: AuthFailure | undefined;
    try {
      refused = context.auth.check(call.metadata, method, fullAccessFor?.(call.request));
    } catch (error) {
      fail(failure(context, method, started, error));
      return;
    }
    if (refused) {
      fail(refusal(context, method, refused, call.getPeer()));
      return;
    }
    const abort = new AbortController();
    // The client went away (cancel, deadline, closed channel, server force-shutdown): stop the work.
    const cancel = () => abort.abort(new BackupdError('CANCELLED', `${method} cancelled by the client`));
    call.on('cancelled', cancel);
    // 'cancelled' fires once; a call cancelled before this handler ran has already missed it.
    if (call.cancelled) cancel();
    const throttle = new ProgressThrottle<Res>((message) => {
      // Runs from a timer too, where a throw would end the process; a lost progress message is harmless.
      try {
        if (!call.cancelled) call.write(message);
      } catch (error) {
        context.logger.warn({ method, error: clip(messageOf(error)) }, 'could not send progress');
      }
    }, PROGRESS_INTERVAL_MS);

    Promise.resolve()
      .then(() => run(call.request, (message) => throttle.push(message), abort.signal))
      .then(
        (final) => {
          throttle.stop();
          if (call.cancelled) {
            context.logger.debug({ method, ms: elapsed(started) }, 'stream cancelled by the client');
            return;
          }
          call.write(final);
          call.end();
          context.logger.debug({ method, ms: elapsed(started) }, 'call done');
        },
        (error: unknown) => {
          throttle.stop();
          if (call.cancelled) {
            // Nobody is listening for the status; the operation's error is only the echo of the abort.
            context.logger.debug({ method, ms: elapsed(started) }, 'stream cancelled by the client');
            return;
          }
          fail(failure(context, method, started, error));
        },
      )
      .catch((error: unknown) => lastResort(context, method, error, (fallback) => call.emit('error', fallback)));
  };
}

/**
 * The last way to end a call after sending its status failed (a bug): send a plain INTERNAL naming an error id
 * and log the error under it. Never throws: what cannot be sent or logged is given up, and a call that still
 * has no status is left to its deadline, but the agent keeps running.
 */
function lastResort(
  context: CallContext,
  method: string,
  error: unknown,
  send: (status: Partial<grpc.StatusObject>) => void,
): void {
  const errorId = randomUUID();
  let sent = true;
  try {
    const metadata = new grpc.Metadata();
    metadata.set(ERROR_CODE_KEY, 'INTERNAL');
    send({
      code: grpc.status.INTERNAL,
      details: `internal error; the agent's log has the details under errorId ${errorId}`,
      metadata,
    });
  } catch {
    // Said in the log line below; rethrowing would end the process.
    sent = false;
  }
  try {
    context.logger.error(
      { method, errorId, sent, error: clip(messageOf(error), 1000), stack: clip(stackOf(error), 4000) },
      sent ? 'call failed: could not send its status' : 'call left without a status',
    );
  } catch {
    // The error cannot even be described (a throwing getter): there is nothing left to report it with.
  }
}

function stackOf(error: unknown): string {
  return error instanceof Error && typeof error.stack === 'string' ? error.stack : '';
}

function refusal(
  context: CallContext,
  method: string,
  refused: { code: grpc.status; details: string },
  peer: string,
): Partial<grpc.StatusObject> {
  context.logger.warn({ method, code: grpc.status[refused.code], peer }, refused.details);
  const metadata = new grpc.Metadata();
  // Tells the client the agent itself refused (not a proxy or the transport), and a read-only token apart
  // from a destination's rejected credentials, which also map to PERMISSION_DENIED.
  metadata.set(ERROR_CODE_KEY, refused.code === grpc.status.UNAUTHENTICATED ? 'UNAUTHENTICATED' : 'READ_ONLY_TOKEN');
  return { ...refused, metadata };
}

function failure(context: CallContext, method: string, started: number, error: unknown): Partial<grpc.StatusObject> {
  const mapped = toStatus(error);
  const fields = { method, code: grpc.status[mapped.status.code], errorCode: mapped.errorCode, ms: elapsed(started) };
  if (mapped.errorId) {
    // Clipped like every echo: an unexpected error's message may quote a request.
    const detail = { error: clip(messageOf(error), 1000), stack: clip(stackOf(error), 4000) };
    context.logger.error({ ...fields, errorId: mapped.errorId, ...detail }, 'call failed: internal error');
  } else {
    context.logger.warn({ ...fields, error: mapped.status.details }, 'call failed');
  }
  return mapped.status;
}

function elapsed(started: number): number {
  return Math.round(performance.now() - started);
}

/**
 * At most one message per `intervalMs`: the first goes at once, later ones within the interval are held and
 * only the newest is sent when it ends (progress is a state, older states are worth nothing).
 */
export class ProgressThrottle<T> {
  private lastSent = Number.NEGATIVE_INFINITY;
  private pending: { message: T } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly send: (message: T) => void,
    private readonly intervalMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  push(message: T): void {
    if (this.stopped) return;
    const wait = this.lastSent + this.intervalMs - this.now();
    if (wait <= 0 && this.timer === undefined) {
      this.emit(message);
      return;
    }
    this.pending = { message };
    this.timer ??= setTimeout(() => this.flush(), Math.max(0, wait));
  }

  /** Drop what is held and send nothing more; the caller sends the final message itself. */
  stop(): void {
    this.stopped = true;
    this.pending = undefined;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private flush(): void {
    this.timer = undefined;
    const held = this.pending;
    this.pending = undefined;
    if (held && !this.stopped) this.emit(held.message);
  }

  private emit(message: T): void {
    this.lastSent = this.now();
    this.send(message);
  }
}
