// The store: where tasks (spec), unit states (status), tick claims and run history live. The single-node
// embedded default keeps them in a local SQLite file (local-store.ts); the cluster keeps them in etcd.
// The scheduler and the API see only this interface, so the cluster replaces the store without touching them.

import { ValidationError } from '../errors.js';
import type { BackupLevel, BackupType } from '../layout.js';
import type { TaskSpec } from '../task.js';

/** What a tick is for: a backup of a level, or a restore drill (verify --restore of the newest backup). */
export type TickKind = BackupLevel | 'drill';

export interface StoredTask {
  spec: TaskSpec;
  createdAt: string;
  updatedAt: string;
  /** Grows by one on every change of the spec or key. */
  revision: number;
}

/** One destination's part of a run. */
export interface DestinationRecord {
  destination: string;
  ok: boolean;
  uploadedBytes: number;
  reusedPacks: number;
  error?: string;
  /** Retention at this destination after a successful publish failed: the backup stands, old chains stay. */
  retentionError?: string;
  retentionErrorCode?: string;
}

export type RunOutcome = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'interrupted';
/**
 * Why a run exists: its schedule, missed ticks made up (`catch-up`), an operator (`now`, `one-time`), a run
 * of this node cut off by its stop or crash (`retry`), or a run cut off when its node died, run again by the
 * unit's new owner (`failover`).
 */
export type RunTrigger = 'schedule' | 'catch-up' | 'now' | 'one-time' | 'retry' | 'failover';

/** One execution of a unit (or a one-time backup), from queued to its outcome. */
export interface RunRecord {
  runId: string;
  /** Empty for a one-time backup. */
  task: string;
  /** `<source>/<db>` */
  database: string;
  type: BackupType;
  /** The level asked for; `result level` is in backupId (an incremental with no chain becomes a full). */
  level: BackupLevel;
  trigger: RunTrigger;
  /** ISO time of the tick this run serves, for scheduled and catch-up runs. */
  scheduledAt?: string;
  outcome: RunOutcome;
  node: string;
  queuedAt: string;
  startedAt?: string;
  finishedAt?: string;
  chainId?: string;
  backupId?: string;
  rawBytes: number;
  storedBytes: number;
  destinations: DestinationRecord[];
  error?: string;
  errorCode?: string;
  /** The staged run's folder while it is being published; lets a restarted agent take back a half-publish. */
  staging?: string;
  /** What this run did first with its unit's pending publish (the staged backup of an earlier failed run). */
  pending?: PendingPublishOutcome;
  /**
   * Set when this node claimed the run's tick while cut off from etcd and another node had claimed it too
   * (etcd only): the tick ran twice, and this run is the second (docs/CLUSTER.md, "What once means").
   */
  duplicate?: { claimedBy: string };
  /** Its manifest's notes: what a restore of its restore point will not bring back (unlogged tables). */
  notes?: string[];
}

/**
 * A backup a run fully staged but could not publish (a destination failed), kept on the node that staged it
 * so a later run of the unit publishes the same packs and manifest, reusing what destinations already hold.
 */
export interface PendingPublish {
  /** The run that staged it. */
  runId: string;
  /** The node whose disk holds `folder`. */
  node: string;
  /** The staged folder (staged.json, manifest, packs), outside the staging area a restart clears. */
  folder: string;
  chainId: string;
  backupId: string;
  level: BackupLevel;
  rawBytes: number;
  storedBytes: number;
  /** ISO time the run that staged it started. */
  startedAt?: string;
  /** ISO time its publishing failed; dropped once older than the task's orphan grace period. */
  stagedAt: string;
}

export interface PendingPublishOutcome {
  runId: string;
  chainId: string;
  backupId: string;
  outcome: 'published' | 'failed' | 'dropped';
  destinations: DestinationRecord[];
  /** Why it failed again or was dropped. */
  error?: string;
}

/** A run in short, as a unit's status keeps its last full, last incremental and last run. */
export type RunSummary = Pick<
  RunRecord,
  | 'runId'
  | 'level'
  | 'outcome'
  | 'startedAt'
  | 'finishedAt'
  | 'chainId'
  | 'backupId'
  | 'storedBytes'
  | 'error'
  | 'notes'
>;

/** What the operator asked of a unit (backupctl task delay). */
export interface UnitRequest {
  /** Runs are held until this time (ISO), then missed ticks become one run. */
  delayedUntil?: string;
}

/** The scheduler's place in a unit's ticks. */
export interface UnitCursor {
  /**
   * The newest scheduled time (ISO) handled per level. Ticks at or before it were run, claimed or skipped,
   * so a restart neither repeats nor loses them.
   */
  cursor: Partial<Record<TickKind, string>>;
}

/**
 * One restore drill at one destination: verify --restore of the unit's newest restore point there.
 * 'skipped': nothing could be drilled (no restore point yet, a Glacier destination); `problem` says why.
 */
export interface DrillResult {
  destination: string;
  outcome: 'passed' | 'failed' | 'skipped';
  /** The drill tick it served (ISO), and when it finished. */
  scheduledAt: string;
  finishedAt: string;
  chainId?: string;
  backupId?: string;
  /** The drill's duration: restore and checks. */
  seconds: number;
  /** The restore's own duration (the measured time to recover), when it restored. */
  restoreSeconds?: number;
  /** The first difference from the backup's fingerprint or the first problem (naming the table or file), or why it was skipped. */
  problem?: string;
}

/** What a unit's runs left: observed results, and what later runs need of them. */
export interface UnitResults {
  lastFull?: RunSummary;
  lastIncremental?: RunSummary;
  lastRun?: RunSummary & { destinations: DestinationRecord[] };
  /**
   * References destinations returned for objects they cannot find by key (Glacier archive ids), by
   * destination name then object key, for every chain still kept. Reused by later runs, restore, retention.
   */
  refs: Record<string, Record<string, string>>;
  /** A backup of this unit staged on `node` whose publishing failed: the unit's next run publishes it first. */
  pendingPublish?: PendingPublish;
  /** The last restore drill at each destination, by destination name. */
  drills?: Record<string, DrillResult>;
  /** How many drills the unit has started: the next drills the task's drill destinations[drillTurn % length]. */
  drillTurn?: number;
}

/**
 * What a unit's responsible node reports of it: the scheduler's cursor and the results. Stored apart from the
 * operator's request (etcd: the unit's `status` key beside its `request` key), and written only by
 * Store.updateUnitStatus.
 */
export interface UnitStatus extends UnitCursor, UnitResults {
  task: string;
  database: string;
  /**
   * The assignment this status was reported under (etcd only): etcd takes a report only while it is still
   * the unit's assignment, so an old owner's late report never overwrites the new owner's status.
   */
  reportedUnder?: ReportFence;
}

/**
 * A unit (task x database) as the store answers for it: the operator's request and the status, each stored
 * and written apart; the API adds what is computed (next times).
 */
export interface UnitState extends UnitRequest, UnitStatus {}

/** An assignment as a fencing token: the term of the leader that wrote it and the etcd revision of the write. */
export interface ReportFence {
  term: number;
  /** 0: reported under no assignment (a single node, or a unit this node does not hold). */
  revision: number;
}

export interface RunFilter {
  task?: string;
  database?: string;
  outcome?: RunOutcome;
  node?: string;
  /** Newest first; 50 by default. */
  limit?: number;
}

export type StoreEvent =
  | { kind: 'task'; name: string }
  | { kind: 'run'; run: RunRecord }
  /** Another node changed a unit's state (etcd only). */
  | { kind: 'unit'; task: string; database: string }
  /** The leader changed a unit's responsible node (etcd only). */
  | { kind: 'assignment'; task: string; database: string }
  /** Every report this node made while etcd was unreachable is in etcd now (etcd only). */
  | { kind: 'settled' };

export interface Store {
  readonly mode: 'single-node' | 'etcd';

  /** Every task, by name. */
  listTasks(): Promise<StoredTask[]>;
  getTask(name: string): Promise<StoredTask | undefined>;
  /** Store a new task and its key (undefined: unencrypted). ALREADY_EXISTS when the name is taken. */
  createTask(spec: TaskSpec, key: string | undefined): Promise<StoredTask>;
  /**
   * Replace a task's spec; `key` undefined keeps the current key. NOT_FOUND for an unknown task,
   * FAILED_PRECONDITION when `expectedRevision` is set and differs.
   */
  updateTask(spec: TaskSpec, key: string | undefined, expectedRevision?: number): Promise<StoredTask>;
  /** Remove a task, its key and its unit states (run history stays). NOT_FOUND for an unknown task. */
  deleteTask(name: string): Promise<void>;
  /** The task's encryption key, undefined for an unencrypted or unknown task. Never logged. */
  getTaskKey(name: string): Promise<string | undefined>;

  /** A unit's request and status; undefined when neither was written. */
  getUnit(task: string, database: string): Promise<UnitState | undefined>;
  /** Every unit with a request or a status (of one task when named), ordered by task then database. */
  listUnits(task?: string): Promise<UnitState[]>;
  /**
   * Read-modify-write one unit's status atomically; `change` gets the current status (a fresh one when none
   * exists) and returns the new one. The request is never written here (request fields in what `change`
   * returns are dropped). Answers the unit with its request. INTERNAL when `change` returns another unit's.
   */
  updateUnitStatus(task: string, database: string, change: (current: UnitStatus) => UnitStatus): Promise<UnitState>;
  /**
   * Replace what the operator asked of a unit (its status stays as it is). Answers the unit with its status.
   * The etcd store writes it to etcd or fails UNAVAILABLE, as it does task changes.
   */
  setUnitRequest(task: string, database: string, request: UnitRequest): Promise<UnitState>;

  /**
   * Claim the tick (unit, level, scheduled time): true for exactly one caller cluster-wide, false for every
   * later one. A claimed tick is run once even if several nodes believe they own the unit.
   */
  claimTick(task: string, database: string, level: TickKind, scheduledAt: string): Promise<boolean>;

  /**
   * Insert or replace a run record; a record only moves forward (queued -> running -> its outcome, see
   * runMovesForward): one that would move the stored record back is ignored and the call answers false.
   * History is bounded: the oldest finished runs are dropped.
   */
  putRun(run: RunRecord): Promise<boolean>;
  getRun(runId: string): Promise<RunRecord | undefined>;
  /** Newest first (queued time, then run id); INVALID_ARGUMENT when the limit is not a positive integer. */
  listRuns(filter?: RunFilter): Promise<RunRecord[]>;

  /** Changes made through this store (and, for etcd, by other nodes). Returns an unsubscribe function. */
  subscribe(listener: (event: StoreEvent) => void): () => void;

  close(): Promise<void>;
}

/** Whether a run passes a filter's fields (not its limit). */
export function runMatches(run: RunRecord, filter: RunFilter): boolean {
  return (
    (filter.task === undefined || run.task === filter.task) &&
    (filter.database === undefined || run.database === filter.database) &&
    (filter.outcome === undefined || run.outcome === filter.outcome) &&
    (filter.node === undefined || run.node === filter.node)
  );
}

/** Runs listed when a filter names no limit. */
export const DEFAULT_RUN_LIMIT = 50;

/** A filter's limit (50 when it names none); INVALID_ARGUMENT when it is not a positive integer. */
export function runLimit(filter: RunFilter): number {
  const limit = filter.limit ?? DEFAULT_RUN_LIMIT;
  if (!Number.isInteger(limit) || limit < 1) {
    throw new ValidationError('run filter', [{ path: 'limit', message: `must be a positive integer, not ${limit}` }]);
  }
  return limit;
}

/** Whether a run has its outcome (anything but queued or running). */
export function runFinished(outcome: RunOutcome): boolean {
  return outcome !== 'queued' && outcome !== 'running';
}

/**
 * Whether `next` may replace the stored record `stored` of the same run: run records only move forward,
 * queued -> running -> an outcome; a queued or running record may be written again (progress, a coalesced
 * request), an outcome is final.
 */
export function runMovesForward(stored: RunRecord | undefined, next: RunRecord): boolean {
  if (!stored) return true;
  const rank = (outcome: RunOutcome) => (outcome === 'queued' ? 0 : outcome === 'running' ? 1 : 2);
  const [from, to] = [rank(stored.outcome), rank(next.outcome)];
  return to > from || (to === from && to < 2);
}

/** A fresh unit status: nothing handled yet. */
export function emptyUnit(task: string, database: string): UnitStatus {
  return { task, database, cursor: {}, refs: {} };
}

/** The status part of a unit: what `updateUnitStatus` stores of the state a change returned. */
export function statusOf(unit: UnitStatus & UnitRequest): UnitStatus {
  const { delayedUntil: _request, ...status } = unit;
  return status;
}

/** The order units are listed in: by task, then database. */
export function unitOrder(a: UnitState, b: UnitState): number {
  return a.task.localeCompare(b.task) || a.database.localeCompare(b.database);
}

/** A unit as a store answers for it: its status (or a fresh one) with its request (or none). */
export function unitOf(
  task: string,
  database: string,
  status: UnitStatus | undefined,
  request: UnitRequest | undefined,
): UnitState {
  return { ...(status ?? emptyUnit(task, database)), ...request };
}

export function summarize(run: RunRecord): RunSummary {
  return {
    runId: run.runId,
    level: run.level,
    outcome: run.outcome,
    startedAt: run.startedAt,
    finishedAt: run.finishedAt,
    chainId: run.chainId,
    backupId: run.backupId,
    storedBytes: run.storedBytes,
    error: run.error,
    ...(run.notes ? { notes: run.notes } : {}),
  };
}
