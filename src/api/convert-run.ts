// Runs, their progress, units, databases and the cluster between proto and domain. Answers carry only
// what the agent's operations returned, already redacted; absent values become '' / 0 / null.

import type { ClusterView, DatabaseView, RunView, UnitView } from '../agent/operations.js';
import type { Progress as DomainProgress } from '../backup/requests.js';
import type { DestinationRecord, RunSummary as DomainRunSummary, RunFilter } from '../cluster/store.js';
import type { FieldProblem } from '../errors.js';
import type { BackupNowRequest } from '../generated/backupd/v1/BackupNowRequest.js';
import type { ClusterStatus } from '../generated/backupd/v1/ClusterStatus.js';
import type { Database } from '../generated/backupd/v1/Database.js';
import type { DestinationOutcome } from '../generated/backupd/v1/DestinationOutcome.js';
import type { ListRunsRequest } from '../generated/backupd/v1/ListRunsRequest.js';
import type { Progress, Progress__Output } from '../generated/backupd/v1/Progress.js';
import type { Run, Run__Output } from '../generated/backupd/v1/Run.js';
import type { RunSummary } from '../generated/backupd/v1/RunSummary.js';
import type { UnitStatus } from '../generated/backupd/v1/UnitStatus.js';
import type { BackupLevel } from '../layout.js';
import { bounded, checked, compact, nonEmpty, optional, positive, required } from './convert-fields.js';
import { retentionToProto } from './convert-task.js';

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
    drills: Object.values(unit.drills ?? {})
      .sort((a, b) => a.destination.localeCompare(b.destination))
      .map((d) => ({
        destination: d.destination,
        outcome: d.outcome,
        scheduledAt: d.scheduledAt,
        finishedAt: d.finishedAt,
        chainId: d.chainId ?? '',
        backupId: d.backupId ?? '',
        seconds: d.seconds,
        restoreSeconds: d.restoreSeconds ?? 0,
        problem: d.problem ?? '',
      })),
    nextDrillAt: unit.nextDrillAt ?? '',
  };
}

export function progressToProto(progress: DomainProgress): Progress {
  return { phase: progress.phase, bytesDone: progress.bytesDone, bytesTotal: progress.bytesTotal ?? 0 };
}

export function databaseToProto(db: DatabaseView): Database {
  return { source: db.source, name: db.name, engine: db.engine, sizeBytes: db.sizeBytes ?? 0, types: [...db.types] };
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
