// The etcd connection: an etcd3 client tuned for a service that must notice an unreachable etcd quickly and
// keep working without it. Unary calls get a deadline and no retry or circuit breaker (the caller decides:
// task changes fail with UNAVAILABLE, status reports go to the outbox); streams (watches, lease keepalives)
// have no deadline and reconnect on their own, at most a second after etcd is back. Failures are told apart:
// bad credentials or permissions are PERMISSION_DENIED, only unreachability is UNAVAILABLE (retryable).

import { readFileSync } from 'node:fs';
import { ExponentialBackoff, noop } from 'cockatiel';
import {
  Etcd3,
  EtcdAuthenticationFailedError,
  EtcdInvalidAuthTokenError,
  EtcdPermissionDeniedError,
  EtcdRoleNotGrantedError,
  EtcdUserNotFoundError,
  GRPCUnauthenticatedError,
  type IOptions,
  isRecoverableError,
  type Namespace,
} from 'etcd3';
import { BackupdError, messageOf } from '../errors.js';
import { clusterPrefix } from './etcd-keys.js';

export interface EtcdConfig {
  endpoints: string[];
  /** Lease TTL of a member (and of the leader's campaign): a dead node's units move after about this long. */
  leaseTtlSeconds: number;
  /** Deadline of one etcd call. */
  callTimeoutSeconds: number;
  /** How long the agent waits for etcd at start before giving up. */
  startTimeoutSeconds: number;
  username?: string;
  password?: string;
  tls?: { caFile: string; certFile?: string; keyFile?: string };
}

export interface EtcdConnection {
  client: Etcd3;
  /** The client namespaced under `/backupd/<cluster>/`. */
  ns: Namespace;
  config: EtcdConfig;
  close(): void;
}

export function connectEtcd(config: EtcdConfig, cluster: string): EtcdConnection {
  const options: IOptions = {
    hosts: config.endpoints,
    dialTimeout: config.callTimeoutSeconds * 1000,
    defaultCallOptions: (context) =>
      context.isStream ? {} : { deadline: Date.now() + config.callTimeoutSeconds * 1000 },
    // etcd3's defaults retry three times and then open a circuit breaker that fails every call for 5 s:
    // both would hide when etcd is back. One attempt per call; the callers decide what failure means.
    // Watches reconnect with a backoff: etcd3's default grows to 30 s while etcd is down, which left a node
    // blind to assignment changes for up to that long after etcd returned. Capped at 1 s.
    // gRPC's default reconnect backoff grows to minutes (1 s, 1.6 s, 2.6 s, ... 120 s): after an etcd outage of
    // 12 s a node would reconnect up to 6 s after etcd is back, when the leases etcd kept alive across its
    // restart have expired. Reconnect within a second instead (docs/CLUSTER.md, "etcd outages").
    grpcOptions: { 'grpc.initial_reconnect_backoff_ms': 250, 'grpc.max_reconnect_backoff_ms': 1000 },
    faultHandling: {
      host: () => noop,
      global: noop,
      // etcd3 takes the first step of a backoff and steps from there (its own default is the factory itself).
      watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 1000 }).next(),
    },
  };
  if (config.username) options.auth = { username: config.username, password: config.password ?? '' };
  if (config.tls) {
    options.credentials = {
      rootCertificate: readFileSync(config.tls.caFile),
      ...(config.tls.certFile ? { certChain: readFileSync(config.tls.certFile) } : {}),
      ...(config.tls.keyFile ? { privateKey: readFileSync(config.tls.keyFile) } : {}),
    };
  }
  const client = new Etcd3(options);
  return { client, ns: client.namespace(clusterPrefix(cluster)), config, close: () => client.close() };
}

/** An etcd failure as the UNAVAILABLE error an operator sees, saying what it means for them. */
export function etcdUnavailable(config: EtcdConfig, what: string, error: unknown): BackupdError {
  return new BackupdError(
    'UNAVAILABLE',
    `${what}: etcd at ${config.endpoints.join(', ')} is unreachable or has no quorum (${messageOf(error)}). ` +
      'Task changes need etcd; units already owned keep running and report when etcd returns.',
    { cause: error },
  );
}

/** etcd refused this node's credentials or its role lacks a permission: trying again does not help. */
export function isPermissionFailure(error: unknown): boolean {
  return (
    error instanceof EtcdPermissionDeniedError ||
    error instanceof EtcdAuthenticationFailedError ||
    error instanceof EtcdInvalidAuthTokenError ||
    error instanceof EtcdRoleNotGrantedError ||
    error instanceof EtcdUserNotFoundError ||
    error instanceof GRPCUnauthenticatedError
  );
}

/** etcd could not be reached or could not answer now (no connection, deadline, no leader): it may later. */
export function isUnreachable(error: unknown): boolean {
  if (!(error instanceof Error) || isPermissionFailure(error)) return false;
  if (error instanceof BackupdError) return error.code === 'UNAVAILABLE';
  return (
    isRecoverableError(error) ||
    /etcdserver: (request timed out|no leader|leader changed|too many requests|server stopped)/.test(error.message)
  );
}

/**
 * An etcd failure as the error an operator sees: PERMISSION_DENIED (not retryable) for credentials and
 * permissions, UNAVAILABLE (retryable) when etcd cannot be reached, INTERNAL for a request etcd rejected.
 */
export function etcdFailure(config: EtcdConfig, what: string, error: unknown): BackupdError {
  if (error instanceof BackupdError) return error;
  const at = `etcd at ${config.endpoints.join(', ')}`;
  if (isPermissionFailure(error)) {
    return new BackupdError(
      'PERMISSION_DENIED',
      `${what}: ${at} refused this node (${messageOf(error)}): check etcd.username, etcd.passwordFile and the user's role`,
      { retryable: false, cause: error },
    );
  }
  if (isUnreachable(error)) return etcdUnavailable(config, what, error);
  return new BackupdError('INTERNAL', `${what}: ${at} rejected the request (${messageOf(error)})`, {
    retryable: false,
    cause: error,
  });
}

/**
 * Run `attempt` until it succeeds, retrying while etcd is unreachable, up to the start timeout; throws
 * UNAVAILABLE naming the endpoints once it is spent, any other failure (PERMISSION_DENIED) at once, and
 * CANCELLED when `signal` aborts (a SIGTERM while starting).
 */
export async function untilEtcdAnswers<T>(
  config: EtcdConfig,
  attempt: () => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  const deadline = Date.now() + config.startTimeoutSeconds * 1000;
  for (;;) {
    if (signal?.aborted) throw new BackupdError('CANCELLED', 'stopped while waiting for etcd');
    try {
      return await attempt();
    } catch (error) {
      if (!isUnreachable(error)) throw etcdFailure(config, 'starting', error);
      if (Date.now() >= deadline) {
        throw etcdUnavailable(config, `cannot start after ${config.startTimeoutSeconds} s`, error);
      }
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, Math.min(500, Math.max(0, deadline - Date.now())));
      function done() {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      }
      signal?.addEventListener('abort', done, { once: true });
    });
  }
}

/** Wait until etcd answers (a read), up to the start timeout; throws UNAVAILABLE naming the endpoints. */
export async function waitForEtcd(connection: EtcdConnection, signal?: AbortSignal): Promise<void> {
  await untilEtcdAnswers(
    connection.config,
    async () => {
      await connection.ns.get('members/').exec();
    },
    signal,
  );
}
