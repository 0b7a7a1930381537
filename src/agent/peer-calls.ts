// Calls this node makes to another node of the cluster, in the agent's own types: any node answers every
// API call, and a call about a unit owned elsewhere (backup now, cancel, delay, a run's progress, a restore
// into a source this node lacks) goes to the responsible node. The API layer implements it over gRPC
// (api/forward.ts); the agent is handed a factory, so it knows nothing of the wire.

import type { Progress } from '../backup/requests.js';
import type { BackupLevel } from '../layout.js';
import type { OneTimeInput, RestoreInput, RunView } from './operations.js';

export interface PeerOptions {
  /** The gRPC address of a live member, undefined for an unknown or dead one. */
  addressOf(node: string): string | undefined;
  /** The operator token every node of the cluster accepts. */
  token?: string;
  tls?: { certFile: string; keyFile: string; caFile?: string };
  timeoutMs?: number;
  /** Deadline of a health check (default 2 s). */
  healthTimeoutMs?: number;
}

/** A call's failure is a BackupdError naming the node, with the code, retryable flag and bad fields it answered. */
export interface PeerCalls {
  backupNow(node: string, task: string, database: string, level: BackupLevel): Promise<RunView[]>;
  oneTimeBackup(node: string, input: OneTimeInput): Promise<RunView>;
  cancelRun(node: string, runId: string): Promise<RunView>;
  delayUnit(node: string, task: string, database: string, seconds: number): Promise<void>;
  getRun(node: string, runId: string): Promise<RunView>;
  /** The run's states as the node running it reports them, until it ends. */
  watchRun(node: string, runId: string): AsyncIterable<RunView>;
  /** A restore run on `node`: its progress, then its result. */
  restore(
    node: string,
    input: RestoreInput,
    onProgress: (progress: Progress) => void,
    signal?: AbortSignal,
  ): Promise<{ location: string; note?: string; bytes: number; seconds: number }>;
  /**
   * Whether `node` answers the standard gRPC health check now: 'serving', 'not-serving' (it is stopping), or
   * 'unreachable: <why>'. Never throws.
   */
  health(node: string): Promise<string>;
  close(): void;
}

export type PeerFactory = (options: PeerOptions) => PeerCalls;
