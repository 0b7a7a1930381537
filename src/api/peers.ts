// gRPC clients of the other nodes: a call about a unit owned elsewhere (backup now, cancel, delay, a run's
// progress) goes to the responsible node over the same gRPC API (api/forward.ts says which calls), with the cluster's
// operator token and the node's own TLS certificate (mutual TLS when the peers require it). A peer's
// answer keeps its error code, retryable flag and bad fields, so the operator sees the responsible node's
// error as it is. `health` asks a member the standard gRPC health check, for the cluster status.

import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import type { PeerOptions } from '../agent/peer-calls.js';
import { BackupdError, type ErrorCode, messageOf, ValidationError } from '../errors.js';
import { type BackupdApi, createClient, RpcError } from './client.js';

/** Every code a peer may answer with; a Record, so a new ErrorCode does not compile until it is listed here. */
const CODES: Record<ErrorCode, true> = {
  INVALID_ARGUMENT: true,
  NOT_FOUND: true,
  ALREADY_EXISTS: true,
  WRONG_KEY: true,
  KEY_REQUIRED: true,
  PACK_MISSING: true,
  PACK_CORRUPT: true,
  MANIFEST_CORRUPT: true,
  UNSUPPORTED_FORMAT: true,
  UNSUPPORTED: true,
  SOURCE_FAILED: true,
  DESTINATION_FAILED: true,
  PERMISSION_DENIED: true,
  NO_SPACE: true,
  UNAVAILABLE: true,
  TIMEOUT: true,
  CANCELLED: true,
  INTERNAL: true,
};

/** How long a health check of another member may take before it counts as unreachable. */
const HEALTH_TIMEOUT_MS = 2_000;

const HealthClient = grpc.makeGenericClientConstructor(healthService, 'Health');

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

  /**
   * Whether `node` answers the standard gRPC health check now: 'serving', 'not-serving' (it is stopping), or
   * 'unreachable: <why>' (down, hung, or cut off from this node). Never throws.
   */
  async health(node: string): Promise<string> {
    const address = this.options.addressOf(node);
    if (!address) return 'unreachable: not a live member';
    const tls = this.tls;
    const credentials = tls
      ? grpc.credentials.createSsl(tls.ca ?? null, tls.key ?? null, tls.cert ?? null)
      : grpc.credentials.createInsecure();
    const client = new HealthClient(address, credentials);
    try {
      const answer = await new Promise<unknown>((resolve, reject) =>
        client.makeUnaryRequest(
          healthService.Check!.path,
          healthService.Check!.requestSerialize,
          healthService.Check!.responseDeserialize,
          { service: '' },
          new grpc.Metadata(),
          { deadline: Date.now() + (this.options.healthTimeoutMs ?? HEALTH_TIMEOUT_MS) },
          (error, value) => (error ? reject(error) : resolve(value)),
        ),
      );
      const status = (answer as { status?: unknown } | undefined)?.status;
      return status === 'SERVING' ? 'serving' : 'not-serving';
    } catch (error) {
      // A gRPC error's `details` is the server's own message.
      const details = error instanceof Error && 'details' in error ? error.details : undefined;
      return `unreachable: ${typeof details === 'string' && details ? details : messageOf(error)}`;
    } finally {
      client.close();
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

function isErrorCode(code: string | undefined): code is ErrorCode {
  return code !== undefined && Object.hasOwn(CODES, code);
}

/** A peer's answer as the BackupdError it was there: same code, retryable flag and bad fields. */
function peerError(node: string, what: string, error: unknown): BackupdError {
  if (error instanceof BackupdError) return error;
  if (error instanceof RpcError && error.fromServer) {
    // The peer's API refused this node's token (set by its auth check, not a BackupdError): the cluster's
    // token is misconfigured, which trying again does not fix.
    const refused = error.errorCode === 'UNAUTHENTICATED' || error.errorCode === 'READ_ONLY_TOKEN';
    const code: ErrorCode = isErrorCode(error.errorCode) ? error.errorCode : refused ? 'PERMISSION_DENIED' : 'INTERNAL';
    const message = `${error.message} (answered by node ${node})`;
    const options = { cause: error, ...(error.retryable === undefined ? {} : { retryable: error.retryable }) };
    if (error.problems.length > 0) return new ValidationError('request', error.problems, { ...options, code, message });
    return new BackupdError(code, message, options);
  }
  return new BackupdError('UNAVAILABLE', `${what}: node ${node} did not answer (${messageOf(error)})`, {
    cause: error,
  });
}
