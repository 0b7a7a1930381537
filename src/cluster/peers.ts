// Calls to other nodes: any node answers every API call, and a call about a unit owned elsewhere (backup now,
// cancel, delay, a run's progress) goes to the responsible node over the same gRPC API, with the cluster's
// operator token and the node's own TLS certificate (mutual TLS when the peers require it). A peer's
// answer keeps its error code, so the operator sees the responsible node's error as it is.

import { readFileSync } from 'node:fs';
import { type BackupdApi, createClient, RpcError } from '../api/client.js';
import { BackupdError, type ErrorCode, messageOf } from '../errors.js';

export interface PeerOptions {
  /** The gRPC address of a live member, undefined for an unknown or dead one. */
  addressOf(node: string): string | undefined;
  /** The operator token every node of the cluster accepts. */
  token?: string;
  tls?: { certFile: string; keyFile: string; caFile?: string };
  timeoutMs?: number;
}

const CODES = new Set<string>([
  'INVALID_ARGUMENT',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'UNSUPPORTED',
  'PERMISSION_DENIED',
  'UNAVAILABLE',
  'TIMEOUT',
  'CANCELLED',
  'INTERNAL',
]);

export class Peers {
  private readonly clients = new Map<string, { address: string; api: BackupdApi }>();
  private readonly tls: { ca?: Buffer; cert?: Buffer; key?: Buffer } | undefined;

  constructor(private readonly options: PeerOptions) {
    const tls = options.tls;
    this.tls = tls && {
      ...(tls.caFile ? { ca: readFileSync(tls.caFile) } : {}),
      cert: readFileSync(tls.certFile),
      key: readFileSync(tls.keyFile),
    };
  }

  /** Run `call` against `node`; its failures become BackupdErrors naming the node. */
  async call<T>(node: string, what: string, call: (api: BackupdApi) => Promise<T>): Promise<T> {
    const api = this.client(node);
    try {
      return await call(api);
    } catch (error) {
      throw peerError(node, what, error);
    }
  }

  /** Iterate a stream from `node`; its failures become BackupdErrors naming the node. */
  async *stream<T>(node: string, what: string, open: (api: BackupdApi) => AsyncIterable<T>): AsyncIterable<T> {
    const api = this.client(node);
    try {
      yield* open(api);
    } catch (error) {
      throw peerError(node, what, error);
    }
  }

  close(): void {
    for (const { api } of this.clients.values()) api.close();
    this.clients.clear();
  }

  private client(node: string): BackupdApi {
    const address = this.options.addressOf(node);
    if (!address) {
      throw new BackupdError(
        'UNAVAILABLE',
        `node ${node} is not a live member of the cluster; try again once it is back or its units have moved`,
      );
    }
    const known = this.clients.get(node);
    if (known?.address === address) return known.api;
    known?.api.close();
    const api = createClient({
      address,
      token: this.options.token,
      tls: this.tls,
      timeoutMs: this.options.timeoutMs ?? 30_000,
    });
    this.clients.set(node, { address, api });
    return api;
  }
}

function peerError(node: string, what: string, error: unknown): BackupdError {
  if (error instanceof BackupdError) return error;
  if (error instanceof RpcError && error.fromServer) {
    const code = (CODES.has(error.errorCode ?? '') ? error.errorCode : 'INTERNAL') as ErrorCode;
    return new BackupdError(code, `${error.message} (answered by node ${node})`, { cause: error });
  }
  return new BackupdError('UNAVAILABLE', `${what}: node ${node} did not answer (${messageOf(error)})`, {
    cause: error,
  });
}
