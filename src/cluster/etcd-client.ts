// The etcd connection: an etcd3 client tuned for a service that must notice an unreachable etcd quickly and
// keep working without it. Unary calls get a deadline and no retry or circuit breaker (the caller decides:
// task changes fail with UNAVAILABLE, status reports go to the outbox); streams (watches, lease keepalives)
// have no deadline and reconnect on their own.

import { readFileSync } from 'node:fs';
import { noop } from 'cockatiel';
import { Etcd3, type IOptions, type Namespace } from 'etcd3';
import { BackupdError, messageOf } from '../errors.js';
import { clusterPrefix } from './keys.js';

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
    faultHandling: { host: () => noop, global: noop },
    // gRPC's default reconnect backoff grows to minutes (1 s, 1.6 s, 2.6 s, ... 120 s): after an etcd outage of
    // 12 s a node would reconnect up to 6 s after etcd is back, when the leases etcd kept alive across its
    // restart have expired. Reconnect within a second instead (docs/CLUSTER.md, "etcd outages").
    grpcOptions: { 'grpc.initial_reconnect_backoff_ms': 250, 'grpc.max_reconnect_backoff_ms': 1000 },
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

/** Wait until etcd answers (a read), up to the start timeout; throws UNAVAILABLE naming the endpoints. */
export async function waitForEtcd(connection: EtcdConnection): Promise<void> {
  const deadline = Date.now() + connection.config.startTimeoutSeconds * 1000;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      await connection.ns.get('members/').exec();
      return;
    } catch (error) {
      last = error;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
  throw etcdUnavailable(connection.config, `cannot start after ${connection.config.startTimeoutSeconds} s`, last);
}
