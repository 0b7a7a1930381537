// Proto messages <-> domain shapes. Requests become the untrusted input the agent validates (task specs) or
// small typed inputs checked here (runs, restores); answers become messages with '' / 0 / null for absent.
// Answers carry only what Operations returned, which is already redacted: nothing here adds or unmasks data,
// and no encryption key is ever copied into an answer.

import type {
  ChainView,
  ClusterView,
  DatabaseView,
  BackupLocation as DomainLocation,
  OneTimeInput,
  RestoreInput,
  RunView,
  UnitView,
  VerifyInput,
  VerifyOutcome,
} from '../agent/operations.js';
import type { Progress as DomainProgress } from '../backup/requests.js';
import type { RetentionPolicy } from '../backup/retention.js';
import type { DestinationRecord, RunSummary as DomainRunSummary, RunFilter, StoredTask } from '../cluster/store.js';
import { clip, type FieldProblem, ValidationError } from '../errors.js';
import type { BackupLocation } from '../generated/backupd/v1/BackupLocation.js';
import type { BackupNowRequest } from '../generated/backupd/v1/BackupNowRequest.js';
import type { Chain } from '../generated/backupd/v1/Chain.js';
import type { ClusterStatus } from '../generated/backupd/v1/ClusterStatus.js';
import type { Database } from '../generated/backupd/v1/Database.js';
import type { DestinationOutcome } from '../generated/backupd/v1/DestinationOutcome.js';
import type { DestinationSpec as ProtoDestination } from '../generated/backupd/v1/DestinationSpec.js';
import type { ListRunsRequest } from '../generated/backupd/v1/ListRunsRequest.js';
import type { ListTasksResponse } from '../generated/backupd/v1/ListTasksResponse.js';
import type { OneTimeBackupRequest } from '../generated/backupd/v1/OneTimeBackupRequest.js';
import type { Progress, Progress__Output } from '../generated/backupd/v1/Progress.js';
import type { RestoreRequest } from '../generated/backupd/v1/RestoreRequest.js';
import type { RestoreResult } from '../generated/backupd/v1/RestoreResult.js';
import type { Retention } from '../generated/backupd/v1/Retention.js';
import type { Run, Run__Output } from '../generated/backupd/v1/Run.js';
import type { RunSummary } from '../generated/backupd/v1/RunSummary.js';
import type { Task } from '../generated/backupd/v1/Task.js';
import type { TaskSpec as ProtoTaskSpec } from '../generated/backupd/v1/TaskSpec.js';
import type { UnitStatus } from '../generated/backupd/v1/UnitStatus.js';
import type { VerifyRequest } from '../generated/backupd/v1/VerifyRequest.js';
import type { VerifyResult } from '../generated/backupd/v1/VerifyResult.js';
import type { BackupLevel, BackupType } from '../layout.js';
import { parseTaskSpec, type TaskSpec } from '../task.js';
import type { DestinationRegistry, DestinationSpec } from '../uploader/registry.js';
import { configBoundsProblem, MAX_CONFIG_BYTES } from '../validate.js';

// ---- requests -> domain ----

/**
 * A TaskSpec message as the untrusted object Operations.createTask/updateTask validate (parseTaskSpec).
 * proto3 cannot tell "unset" from "empty", so '' and 0 become absent and the agent's defaults apply.
 * A config_json that is not JSON is a field problem; it is reported together with every other problem of the
 * spec (checked with `registry`, without side effects), and the agent is not called.
 */
export function taskSpecInput(spec: ProtoTaskSpec | null | undefined, registry: DestinationRegistry): unknown {
  const jsonProblems: FieldProblem[] = [];
  const input = taskSpecObject(spec ?? {}, jsonProblems);
  if (jsonProblems.length === 0) return input;
  // The config that failed to parse is absent from `input`, so the driver would add its own complaint about
  // the same field ("expected object"); the JSON problem replaces it.
  const broken = jsonProblems.map((p) => p.path);
  let others: FieldProblem[] = [];
  try {
    parseTaskSpec(input, registry);
  } catch (error) {
    if (!(error instanceof ValidationError)) throw error;
    others = error.problems.filter((p) => !broken.some((b) => p.path === b || p.path.startsWith(`${b}.`)));
  }
  throw new ValidationError('task', [...others, ...jsonProblems]);
}

function taskSpecObject(spec: ProtoTaskSpec, problems: FieldProblem[]): Record<string, unknown> {
  const schedule = spec.schedule ?? {};
  const retention = retentionFromProto(spec.retention);
  return compact({
    name: spec.name ?? '',
    target: targetFromProto(spec),
    type: nonEmpty(spec.type),
    schedule: compact({
      full: nonEmpty(schedule.full),
      incremental: nonEmpty(schedule.incremental),
      timeZone: nonEmpty(schedule.timeZone),
    }),
    preferredNode: nonEmpty(spec.preferredNode),
    pinToPreferredNode: spec.pinToPreferredNode ?? false,
    retention,
    destinations: destinationsFromProto(spec.destinations ?? [], 'destinations', problems),
    disabled: spec.disabled ?? false,
    missedRuns: nonEmpty(spec.missedRuns),
    encrypted: spec.encrypted ?? false,
  });
}

function targetFromProto(spec: ProtoTaskSpec): unknown {
  // With `oneofs: true` proto-loader names the member that was set; an older client may send neither.
  if (spec.target === 'serverWide' || (spec.target === undefined && spec.serverWide)) {
    return { serverWide: { source: spec.serverWide?.source ?? '', exclude: spec.serverWide?.exclude ?? [] } };
  }
  if (spec.target === 'databases' || spec.databases) return { databases: spec.databases?.names ?? [] };
  return undefined;
}

function retentionFromProto(retention: Retention | null | undefined): RetentionPolicy | undefined {
  if (!retention) return undefined;
  const policy = compact({
    maxAgeDays: positive(retention.maxAgeDays),
    keepChains: positive(retention.keepChains),
    orphanGraceHours: positive(retention.orphanGraceHours),
  });
  return Object.keys(policy).length === 0 ? undefined : policy;
}

/** Destination specs with their config_json parsed; JSON errors are pushed to `problems` under `path[i].config`. */
export function destinationsFromProto(
  list: readonly ProtoDestination[],
  path: string,
  problems: FieldProblem[],
): DestinationSpec[] {
  return list.map((d, i) => destinationFromProto(d, `${path}[${i}]`, problems));
}

function destinationFromProto(d: ProtoDestination, path: string, problems: FieldProblem[]): DestinationSpec {
  const spec: DestinationSpec = { name: d.name ?? '', kind: d.kind ?? '', config: {} };
  // An unset config_json means "no settings": the driver then names each setting it requires.
  const text = d.configJson ?? '';
  if (text.trim() === '') return spec;
  // Measured before parsing: the parse of a large text is the cost the bound is there to refuse.
  if (Buffer.byteLength(text) > MAX_CONFIG_BYTES) {
    problems.push({ path: `${path}.config`, message: `is larger than ${MAX_CONFIG_BYTES / 1024} KiB` });
    spec.config = undefined;
    return spec;
  }
  try {
    spec.config = JSON.parse(text) as unknown;
  } catch (error) {
    // Clipped: V8's message quotes a character of the input, which may be half of one (a lone surrogate).
    const reason = error instanceof SyntaxError ? clip(withoutQuotedInput(error.message)) : 'cannot be parsed';
    problems.push({ path: `${path}.config`, message: `not valid JSON: ${reason}` });
    spec.config = undefined;
    return spec;
  }
  const bounds = configBoundsProblem(spec.config, `${path}.config`);
  if (bounds) {
    problems.push(bounds);
    spec.config = undefined;
  }
  return spec;
}

/** The location gives a destination spec of its own (an ad-hoc destination), not a task's destination. */
export function hasAdHocSpec(from: BackupLocation | null | undefined): boolean {
  const spec = from?.spec;
  return Boolean(spec && (spec.kind || spec.name || spec.configJson));
}

/** Where to read backups from; both forms at once, or neither, is a field problem. */
export function locationFromProto(
  from: BackupLocation | null | undefined,
  path: string,
  problems: FieldProblem[],
): DomainLocation {
  const task = from?.task ?? '';
  const destination = from?.destination ?? '';
  const spec = from?.spec;
  if (spec && hasAdHocSpec(from)) {
    if (task || destination) {
      problems.push({ path, message: 'give either task and destination, or spec, not both' });
    }
    return { spec: destinationFromProto(spec, `${path}.spec`, problems) };
  }
  if (!task) problems.push({ path: `${path}.task`, message: 'must name a task (or give spec)' });
  if (!destination) problems.push({ path: `${path}.destination`, message: "must name one of the task's destinations" });
  return {
    task: bounded(task, `${path}.task`, problems),
    destination: bounded(destination, `${path}.destination`, problems),
  };
}

export function restoreInputFromProto(request: RestoreRequest): RestoreInput {
  const problems: FieldProblem[] = [];
  const input: RestoreInput = {
    from: locationFromProto(request.from, 'from', problems),
    database: required(request.database, 'database', problems),
    chainId: required(request.chainId, 'chainId', problems),
    backupId: required(request.backupId, 'backupId', problems),
    target: required(request.target, 'target', problems),
    ...optional('key', request.encryptionKey),
    ...optional('cluster', bounded(request.cluster ?? '', 'cluster', problems)),
    ...optional('into', bounded(request.intoSource ?? '', 'intoSource', problems)),
  };
  return checked('restore request', input, problems);
}

export function verifyInputFromProto(request: VerifyRequest): VerifyInput {
  const problems: FieldProblem[] = [];
  const input: VerifyInput = {
    from: locationFromProto(request.from, 'from', problems),
    database: required(request.database, 'database', problems),
    chainId: required(request.chainId, 'chainId', problems),
    backupId: required(request.backupId, 'backupId', problems),
    ...optional('key', request.encryptionKey),
    ...(request.restore ? { restore: true } : {}),
  };
  return checked('verify request', input, problems);
}

/** A restore as another node is asked for it (forwarding to a node that has the source). */
export function restoreInputToProto(input: RestoreInput): RestoreRequest {
  return {
    from: locationToProto(input.from),
    database: input.database,
    chainId: input.chainId,
    backupId: input.backupId,
    target: input.target,
    encryptionKey: input.key ?? '',
    cluster: input.cluster ?? '',
    intoSource: input.into ?? '',
  };
}

/** A one-time backup as another node is asked for it (forwarding to a node that has the source). */
export function oneTimeInputToProto(input: OneTimeInput): OneTimeBackupRequest {
  return {
    database: input.database,
    type: input.type,
    encryptionKey: input.key ?? '',
    destinations: input.destinations.map(destinationToProto),
  };
}

function locationToProto(from: DomainLocation): BackupLocation {
  return 'spec' in from
    ? { task: '', destination: '', spec: destinationToProto(from.spec) }
    : { task: from.task, destination: from.destination };
}

export function oneTimeInputFromProto(request: OneTimeBackupRequest): OneTimeInput {
  const problems: FieldProblem[] = [];
  const input: OneTimeInput = {
    database: required(request.database, 'database', problems),
    type: backupType(request.type, 'type', problems),
    destinations: destinationsFromProto(request.destinations ?? [], 'destinations', problems),
    ...optional('key', request.encryptionKey),
  };
  if (input.destinations.length === 0)
    problems.push({ path: 'destinations', message: 'needs at least one destination' });
  return checked('one-time backup', input, problems);
}

export function backupNowFromProto(request: BackupNowRequest): {
  task: string;
  database?: string;
  level?: BackupLevel;
} {
  const problems: FieldProblem[] = [];
  const task = required(request.task, 'task', problems);
  const database = nonEmpty(bounded(request.database ?? '', 'database', problems));
  const level = nonEmpty(bounded(request.level ?? '', 'level', problems));
  if (level !== undefined && level !== 'full' && level !== 'incr') {
    problems.push({ path: 'level', message: `must be "full" or "incr" (or empty for what the schedule would choose)` });
  }
  return checked('backup-now request', { task, database, level: level as BackupLevel | undefined }, problems);
}

export function runFilterFromProto(request: ListRunsRequest): RunFilter {
  const problems: FieldProblem[] = [];
  const filter = compact({
    task: nonEmpty(bounded(request.task ?? '', 'task', problems)),
    database: nonEmpty(bounded(request.database ?? '', 'database', problems)),
    limit: positive(request.limit),
  });
  return checked('list-runs request', filter, problems);
}

/** A name a request must carry (task, run id), or a ValidationError naming the field. */
export function requiredName(value: string | undefined, field: string): string {
  const problems: FieldProblem[] = [];
  const name = required(value, field, problems);
  return checked('request', name, problems);
}

// ---- domain -> answers ----

export function taskToProto(task: StoredTask): Task {
  return {
    spec: taskSpecToProto(task.spec),
    createdAt: task.createdAt ?? '',
    updatedAt: task.updatedAt ?? '',
    revision: task.revision,
  };
}

export function tasksToProto(tasks: readonly StoredTask[]): ListTasksResponse {
  return { tasks: tasks.map(taskToProto) };
}

export function taskSpecToProto(spec: TaskSpec): ProtoTaskSpec {
  const target: Pick<ProtoTaskSpec, 'databases' | 'serverWide'> =
    'databases' in spec.target
      ? { databases: { names: [...spec.target.databases] } }
      : { serverWide: { source: spec.target.serverWide.source, exclude: [...spec.target.serverWide.exclude] } };
  return {
    name: spec.name,
    ...target,
    type: spec.type,
    schedule: {
      full: spec.schedule.full ?? '',
      incremental: spec.schedule.incremental ?? '',
      timeZone: spec.schedule.timeZone ?? '',
    },
    preferredNode: spec.preferredNode ?? '',
    pinToPreferredNode: spec.pinToPreferredNode,
    retention: retentionToProto(spec.retention),
    destinations: spec.destinations.map(destinationToProto),
    disabled: spec.disabled,
    missedRuns: spec.missedRuns,
    encrypted: spec.encrypted,
  };
}

/** The config exactly as Operations gave it (already masked), as JSON text. */
export function destinationToProto(spec: DestinationSpec): ProtoDestination {
  return { name: spec.name, kind: spec.kind, configJson: JSON.stringify(spec.config ?? {}) };
}

function retentionToProto(policy: RetentionPolicy | undefined): Retention | null {
  if (!policy) return null;
  return {
    maxAgeDays: policy.maxAgeDays ?? 0,
    keepChains: policy.keepChains ?? 0,
    orphanGraceHours: policy.orphanGraceHours ?? 0,
  };
}

export function runToProto(run: RunView): Run {
  return {
    runId: run.runId,
    task: run.task ?? '',
    database: run.database,
    type: run.type,
    level: run.level,
    trigger: run.trigger,
    scheduledAt: run.scheduledAt ?? '',
    outcome: run.outcome,
    node: run.node ?? '',
    startedAt: run.startedAt ?? '',
    finishedAt: run.finishedAt ?? '',
    chainId: run.chainId ?? '',
    backupId: run.backupId ?? '',
    rawBytes: run.rawBytes ?? 0,
    storedBytes: run.storedBytes ?? 0,
    destinations: (run.destinations ?? []).map(outcomeToProto),
    error: run.error ?? '',
    errorCode: run.errorCode ?? '',
    progress: run.progress ? progressToProto(run.progress) : null,
    queuedAt: run.queuedAt ?? '',
    notes: [...(run.notes ?? [])],
  };
}

/** A run as another node answered it (forwarding), back in domain terms. */
export function runFromProto(run: Run__Output): RunView {
  return {
    runId: run.runId,
    task: run.task,
    database: run.database,
    type: run.type as RunView['type'],
    level: run.level as RunView['level'],
    trigger: run.trigger as RunView['trigger'],
    ...optional('scheduledAt', run.scheduledAt),
    outcome: run.outcome as RunView['outcome'],
    node: run.node,
    queuedAt: run.queuedAt || run.startedAt,
    ...optional('startedAt', run.startedAt),
    ...optional('finishedAt', run.finishedAt),
    ...optional('chainId', run.chainId),
    ...optional('backupId', run.backupId),
    rawBytes: Number(run.rawBytes),
    storedBytes: Number(run.storedBytes),
    destinations: run.destinations.map((d) => ({
      destination: d.destination,
      ok: d.ok,
      uploadedBytes: Number(d.uploadedBytes),
      reusedPacks: Number(d.reusedPacks),
      ...optional('error', d.error),
      ...optional('retentionError', d.retentionError),
      ...optional('retentionErrorCode', d.retentionErrorCode),
    })),
    ...optional('error', run.error),
    ...optional('errorCode', run.errorCode),
    ...(run.progress ? { progress: progressFromProto(run.progress) } : {}),
    ...(run.notes.length > 0 ? { notes: [...run.notes] } : {}),
  };
}

/** Progress as another node sent it, back in domain terms (0 total = unknown). */
export function progressFromProto(progress: Progress__Output): DomainProgress {
  return {
    phase: progress.phase as DomainProgress['phase'],
    bytesDone: Number(progress.bytesDone),
    ...(Number(progress.bytesTotal) > 0 ? { bytesTotal: Number(progress.bytesTotal) } : {}),
  };
}

function outcomeToProto(d: DestinationRecord): DestinationOutcome {
  return {
    destination: d.destination,
    ok: d.ok,
    uploadedBytes: d.uploadedBytes ?? 0,
    reusedPacks: d.reusedPacks ?? 0,
    error: d.error ?? '',
    retentionError: d.retentionError ?? '',
    retentionErrorCode: d.retentionErrorCode ?? '',
  };
}

function summaryToProto(summary: DomainRunSummary | undefined): RunSummary | null {
  if (!summary) return null;
  return {
    runId: summary.runId,
    level: summary.level,
    outcome: summary.outcome,
    startedAt: summary.startedAt ?? '',
    finishedAt: summary.finishedAt ?? '',
    chainId: summary.chainId ?? '',
    backupId: summary.backupId ?? '',
    storedBytes: summary.storedBytes ?? 0,
    error: summary.error ?? '',
    notes: [...(summary.notes ?? [])],
  };
}

export function unitToProto(unit: UnitView): UnitStatus {
  return {
    task: unit.task,
    database: unit.database,
    state: unit.state,
    responsibleNode: unit.responsibleNode ?? '',
    destinations: [...(unit.destinations ?? [])],
    lastFull: summaryToProto(unit.lastFull),
    lastIncremental: summaryToProto(unit.lastIncremental),
    lastRun: summaryToProto(unit.lastRun),
    lastRunDestinations: (unit.lastRun?.destinations ?? []).map(outcomeToProto),
    nextFullAt: unit.nextFullAt ?? '',
    nextIncrementalAt: unit.nextIncrementalAt ?? '',
    nextEstimatedAt: unit.nextEstimatedAt ?? '',
    nextEstimatedLevel: unit.nextEstimatedLevel ?? '',
    retention: retentionToProto(unit.retention),
    delayedUntil: unit.delayedUntil ?? '',
    currentRun: unit.currentRun ? runToProto(unit.currentRun) : null,
  };
}

export function progressToProto(progress: DomainProgress): Progress {
  return { phase: progress.phase, bytesDone: progress.bytesDone, bytesTotal: progress.bytesTotal ?? 0 };
}

export function databaseToProto(db: DatabaseView): Database {
  return { source: db.source, name: db.name, engine: db.engine, sizeBytes: db.sizeBytes ?? 0, types: [...db.types] };
}

export function chainToProto(chain: ChainView): Chain {
  return {
    cluster: chain.cluster,
    database: chain.database,
    chainId: chain.chainId,
    type: chain.type ?? '',
    backups: [...chain.backups],
    bytes: chain.bytes,
    newestAt: chain.newestAt ?? '',
  };
}

export function clusterToProto(cluster: ClusterView): ClusterStatus {
  return {
    cluster: cluster.cluster,
    node: cluster.node,
    mode: cluster.mode,
    leader: cluster.leader,
    term: cluster.term,
    members: cluster.members.map((m) => ({
      node: m.node,
      address: m.address,
      version: m.version,
      healthy: m.healthy,
      state: m.state,
      databases: [...m.databases],
    })),
    assignments: cluster.assignments.map((a) => ({
      task: a.task,
      database: a.database,
      node: a.node,
      reason: a.reason,
      term: a.term,
    })),
    leaderChanges: cluster.leaderChanges.map((c) => ({ node: c.node, term: c.term, at: c.at })),
    pendingReports: cluster.pendingReports,
  };
}

export function restoreResultToProto(result: {
  location: string;
  note?: string;
  bytes: number;
  seconds: number;
}): RestoreResult {
  return { location: result.location, note: result.note ?? '', bytes: result.bytes, seconds: result.seconds };
}

export function verifyResultToProto(result: VerifyOutcome): VerifyResult {
  const check = result.restore;
  return {
    packs: result.packs,
    chunks: result.chunks,
    rawBytes: result.rawBytes,
    packBytes: result.packBytes,
    seconds: result.seconds,
    restore: check
      ? {
          ok: check.ok,
          fingerprinted: check.fingerprinted,
          tables: check.tables,
          differences: check.differences,
          problems: check.problems,
          bytes: check.bytes,
          restoreSeconds: check.restoreMs / 1000,
          checkSeconds: check.checkMs / 1000,
          bytesPerSecond: check.bytesPerSecond,
        }
      : null,
  };
}

// ---- helpers ----

/**
 * V8 quotes the input in some JSON errors (`Unexpected token 'a', ..."<the text>" is not valid JSON`); the
 * text may hold credentials and the message is logged, so only what comes before the quote is kept, and any
 * other quoted part is dropped too.
 */
function withoutQuotedInput(message: string): string {
  const quote = message.search(/, (\.\.\.)?"/);
  const head = quote >= 0 ? message.slice(0, quote) : message;
  return head.replace(/"[\s\S]*"/g, '(input)');
}

function nonEmpty(value: string | undefined | null): string | undefined {
  return value === undefined || value === null || value === '' ? undefined : value;
}

function positive(value: unknown): number | undefined {
  return typeof value === 'number' && value !== 0 ? value : undefined;
}

function required(value: string | undefined, path: string, problems: FieldProblem[]): string {
  if (!value) problems.push({ path, message: 'must not be empty' });
  return bounded(value ?? '', path, problems);
}

/**
 * The longest name a request may give (task, database, run, chain, backup, restore target). Every real one is
 * far shorter (safe names are at most 200 characters); a longer one is refused here, so no message or log
 * line further on echoes it whole.
 */
export const MAX_NAME_CHARS = 512;

/** `value`, with a problem pushed when it is longer than MAX_NAME_CHARS. */
export function bounded(value: string, path: string, problems: FieldProblem[]): string {
  if (value.length > MAX_NAME_CHARS) problems.push({ path, message: `must be at most ${MAX_NAME_CHARS} characters` });
  return value;
}

function backupType(value: string | undefined, path: string, problems: FieldProblem[]): BackupType {
  if (value === 'backup' || value === 'snapshot') return value;
  problems.push({ path, message: 'must be "backup" (logical) or "snapshot" (raw files)' });
  return 'backup';
}

/** `{ [key]: value }` for a non-empty secret, `{}` otherwise, so an absent key stays absent. */
function optional<K extends string>(key: K, value: string | undefined): Partial<Record<K, string>> {
  return value ? ({ [key]: value } as Partial<Record<K, string>>) : {};
}

function checked<T>(what: string, value: T, problems: FieldProblem[]): T {
  if (problems.length > 0) throw new ValidationError(what, problems);
  return value;
}

/** The object without its undefined members, so optional fields are absent rather than undefined. */
function compact<T extends Record<string, unknown>>(object: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(object).filter(([, v]) => v !== undefined)) as {
    [K in keyof T]?: Exclude<T[K], undefined>;
  };
}
