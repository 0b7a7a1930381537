// What an operator can ask of a node, in the words of DESIGN.md and in domain types. The gRPC layer
// (src/api/) converts messages to these calls and BackupdError codes to status codes; the agent
// (agent.ts) implements them. Secrets go in, never come out: every answer is already redacted.

import type { Progress } from '../backup/requests.js';
import type { RetentionPolicy } from '../backup/retention.js';
import type { VerifyRestoreResult } from '../backup/verify-restore.js';
import type { RunFilter, RunRecord, StoredTask, UnitState } from '../cluster/store.js';
import type { BackupLevel, BackupType } from '../layout.js';
import type { DestinationSpec } from '../uploader/registry.js';

/** A unit's state with what the agent computes: whether it runs here, and when it runs next. */
export interface UnitView extends UnitState {
  state: 'active' | 'disabled' | 'not-on-this-node';
  responsibleNode: string;
  destinations: string[];
  retention?: RetentionPolicy;
  nextFullAt?: string;
  nextIncrementalAt?: string;
  nextDrillAt?: string;
  nextEstimatedAt?: string;
  nextEstimatedLevel?: BackupLevel;
  /** The run in progress, with its progress. */
  currentRun?: RunView;
}

export interface RunView extends RunRecord {
  progress?: Progress;
}

/** Where backups are read from: a destination of a task by name, or one given in full. */
export type BackupLocation = { task: string; destination: string } | { spec: DestinationSpec };

export interface DatabaseView {
  source: string;
  name: string;
  engine: string;
  sizeBytes?: number;
  types: BackupType[];
}

/** A database a source holds that no task can back up, and why. */
export interface LeftOutView {
  source: string;
  name: string;
  reason: string;
}

export interface ChainView {
  /** The cluster that wrote the chain, and the database (`<source>/<db>`) it holds. */
  cluster: string;
  database: string;
  chainId: string;
  type?: BackupType;
  backups: string[];
  bytes: number;
  newestAt?: string;
}

/** What ListBackups found, and where it looked (so an empty answer says which path was searched). */
export interface BackupsView {
  chains: ChainView[];
  searched: string;
}

export interface RestoreInput {
  from: BackupLocation;
  /** `<source>/<db>` the backup was taken of. */
  database: string;
  chainId: string;
  backupId: string;
  /** The cluster that wrote the backup; absent: the one cluster at the destination that holds the restore point. */
  cluster?: string;
  /** The source to restore into (of the backup's engine); absent: the backup's own source. */
  into?: string;
  /** Name of the new database in the source restored into. */
  target: string;
  /** Defaults to the task's key when `from` names a task. */
  key?: string;
}

export interface VerifyInput {
  from: BackupLocation;
  database: string;
  chainId: string;
  backupId: string;
  key?: string;
  /** Restore into a scratch place on this node and compare fingerprints (verifyByRestoring), not only read. */
  restore?: boolean;
}

/** What a verify found: packs and chunks read, or with `restore` what restoring showed. */
export interface VerifyOutcome {
  packs: number;
  chunks: number;
  rawBytes: number;
  packBytes: number;
  seconds: number;
  restore?: VerifyRestoreResult;
}

export interface OneTimeInput {
  database: string;
  type: BackupType;
  key?: string;
  destinations: DestinationSpec[];
}

export interface ClusterView {
  cluster: string;
  node: string;
  mode: 'single-node' | 'etcd';
  leader: string;
  term: number;
  members: {
    node: string;
    address: string;
    version: string;
    /** True only when the member answered a health check (this node: while in contact with etcd). */
    healthy: boolean;
    /** 'serving', 'not-serving', 'unreachable: <why>', or for this node 'lost contact with etcd'. */
    state: string;
    databases: string[];
  }[];
  assignments: { task: string; database: string; node: string; reason: string; term: number }[];
  leaderChanges: { node: string; term: number; at: string }[];
  pendingReports: number;
}

/**
 * Every method throws BackupdError: INVALID_ARGUMENT (a ValidationError naming every bad field),
 * NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION-like conditions as UNSUPPORTED, UNAVAILABLE.
 */
export interface Operations {
  /** Validate and store a task; `spec` is untrusted (parseTaskSpec). `key` given iff spec.encrypted. */
  createTask(spec: unknown, key: string | undefined): Promise<StoredTask>;
  /** Replace a task's spec; `key` undefined keeps the current key. */
  updateTask(spec: unknown, key: string | undefined, expectedRevision?: number): Promise<StoredTask>;
  deleteTask(name: string): Promise<void>;
  getTask(name: string): Promise<StoredTask>;
  listTasks(): Promise<StoredTask[]>;
  taskStatus(name: string): Promise<UnitView[]>;

  /** Queue a run of every unit of the task (or one database) now; the schedule stays. */
  backupNow(task: string, database?: string, level?: BackupLevel): Promise<RunView[]>;
  oneTimeBackup(input: OneTimeInput): Promise<RunView>;
  /** Cancel a queued or running run; nothing of it is published. */
  cancelRun(runId: string): Promise<RunView>;
  /** Cancel the unit's run in progress and hold its runs for `seconds`. */
  delayUnit(task: string, database: string, seconds: number): Promise<UnitView>;
  getRun(runId: string): Promise<RunView>;
  listRuns(filter: RunFilter): Promise<RunView[]>;
  /**
   * Call `onUpdate` with the run now and at every change of its progress or outcome until it ends;
   * resolves with the finished run. Stops early (resolving with the latest state) when `signal` aborts.
   */
  watchRun(runId: string, onUpdate: (run: RunView) => void, signal?: AbortSignal): Promise<RunView>;

  listDatabases(): Promise<DatabaseView[]>;
  /** The databases the sources hold but leave out, so none is skipped unseen. */
  listLeftOut(): Promise<LeftOutView[]>;
  /**
   * The chains at a destination, of every cluster and database unless `cluster` / `database` narrow it,
   * and the path searched.
   */
  listBackups(from: BackupLocation, filter: { cluster?: string; database?: string }): Promise<BackupsView>;
  restore(
    input: RestoreInput,
    onProgress: (progress: Progress) => void,
    signal?: AbortSignal,
  ): Promise<{ location: string; note?: string; bytes: number; seconds: number }>;
  verify(input: VerifyInput, onProgress: (progress: Progress) => void, signal?: AbortSignal): Promise<VerifyOutcome>;

  clusterStatus(): Promise<ClusterView>;
}
