// Executing one run on this node: open the unit's source and destinations, run the backup (staged, then
// published to every destination or none), then record what happened: the run, the unit's last full /
// incremental, the references destinations returned (Glacier archive ids), and retention at each
// destination. A run's staging folder is recorded first, so a restarted agent can take back a half-publish.
// A task run whose publishing failed keeps its staged backup pending (pending.ts): the unit's next run
// publishes it first.

import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { BackupFailure, runBackup } from '../backup/backup.js';
import { KeyRing, listChains, loadManifest } from '../backup/chain.js';
import type { Progress } from '../backup/requests.js';
import { applyRetention, type RetentionPolicy, RetentionStopped } from '../backup/retention.js';
import { readStaged, StagedPublishError, type StagedRun } from '../backup/staged.js';
import type { RunRecord, UnitState } from '../cluster/store.js';
import { summarize } from '../cluster/store.js';
import { BackupdError, findError, isBackupdError, messageOf } from '../errors.js';
import { stampTime } from '../layout.js';
import { splitDatabase } from '../task.js';
import type { Destination } from '../uploader/destination.js';
import { type DestinationOutcome, PublishError } from '../uploader/publish.js';
import type { RetryListener } from '../uploader/registry.js';
import type { AgentMetrics } from './metrics.js';
import { asBackupdError, destinationRecord, recordRefs } from './outcomes.js';
import { keepPending, publishPending } from './pending.js';
import type { RunContext, RunJob } from './run-context.js';

/** Run `job` to its end; never throws: the outcome and error are in the returned record (also stored). */
export async function executeRun(
  ctx: RunContext,
  job: RunJob,
  signal: AbortSignal,
  onUpdate: (record: RunRecord, progress?: Progress) => void,
): Promise<RunRecord> {
  const record: RunRecord = {
    ...job.record,
    level: job.level,
    outcome: 'running',
    startedAt: ctx.now().toISOString(),
    staging: join(ctx.dataDir, 'staging', job.record.runId),
  };
  // `backupLevel`, never `level`: pino writes its numeric severity as `level`, and a second key would hide it.
  const log = ctx.logger.child({
    run: record.runId,
    task: record.task,
    database: record.database,
    backupLevel: job.level,
  });
  await ctx.store.putRun(record);
  onUpdate(record);
  ctx.metrics.runningRuns.inc();
  const destinations: Destination[] = [];
  try {
    const { source: sourceName, database } = splitDatabase(record.database);
    const source = ctx.sourceFor(sourceName);
    if (!source) throw new BackupdError('NOT_FOUND', `source ${sourceName} is not on node ${ctx.node}`);
    for (const [i, spec] of job.destinations.entries()) {
      // Opened with the spec's retry (transient errors, with backoff inside a budget) and limits settings.
      const onRetry: RetryListener = ({ op, attempt, delayMs, error }) =>
        log.warn(
          { destination: spec.name, op, attempt, delayMs, code: error.code, error: error.message },
          'destination call failed, retrying',
        );
      destinations.push(await ctx.registry.open(spec, `destinations[${i}]`, { onRetry, signal }));
    }
    let unit = record.task ? await ctx.store.getUnit(record.task, record.database) : undefined;
    log.info({ trigger: record.trigger, scheduledAt: record.scheduledAt }, 'run started');
    if (unit?.pendingPublish) {
      // An earlier run's backup first: this run then continues its chain and reuses its packs.
      unit = await publishPending(ctx, {
        record,
        unit,
        destinations,
        retention: job.retention,
        signal,
        onProgress: (progress) => onUpdate(record, progress),
        log,
      });
    }
    const result = await runBackup({
      ref: { cluster: ctx.cluster, source: sourceName, database },
      source,
      type: record.type,
      level: job.level,
      destinations,
      stagingDir: record.staging!,
      keepStaged: true,
      key: job.key,
      node: ctx.node,
      task: record.task || 'one-time',
      term: record.task ? ctx.term(record.task, record.database) : 0,
      knownRefs: unit?.refs,
      signal,
      onProgress: (progress) => onUpdate(record, progress),
      logger: log,
      now: ctx.now,
    });
    Object.assign(record, {
      outcome: 'succeeded',
      level: result.level,
      chainId: result.chainId,
      backupId: result.backupId,
      rawBytes: result.rawBytes,
      storedBytes: result.storedBytes,
      destinations: result.destinations.map(destinationRecord),
      ...(result.notes ? { notes: result.notes } : {}),
      // The backup ended here; retention below is housekeeping. Set now, so the unit's last full /
      // incremental (copied from this record) carries it.
      finishedAt: ctx.now().toISOString(),
    } satisfies Partial<RunRecord>);
    if (record.task) await recordSuccess(ctx, record, result.destinations, destinations, job.retention, log);
  } catch (error) {
    const failure = stagingFull(error, record.staging!) ?? asBackupdError(error);
    const aborted = signal.aborted;
    record.outcome = aborted ? (ctx.stopping() ? 'interrupted' : 'cancelled') : 'failed';
    record.error = failure.message;
    record.errorCode = failure.code;
    const backup = failedBackup(failure);
    if (backup) Object.assign(record, backup);
    const published = findError(failure, PublishError);
    if (published) {
      record.destinations = published.outcomes.map(destinationRecord);
      // Packs a failed run stored at destinations that cannot list (Glacier) are found again only through
      // their references: keep them, so a later run reuses them or retention removes them as orphans.
      if (record.task) await recordRefs(ctx, record, published.outcomes);
    }
    log.warn({ code: failure.code, error: failure.message }, 'run failed');
    // Fully staged, not published: keep it for the unit's next run, which publishes the same packs.
    const staged = findError(failure, StagedPublishError)?.folder;
    if (record.task && record.outcome === 'failed' && backup && staged !== undefined) {
      await keepPending(ctx, record, staged, log);
    }
  } finally {
    ctx.metrics.runningRuns.dec();
    await Promise.allSettled(destinations.map((d) => d.close()));
  }
  // A failed run's packs stay at the destinations (reused by a later run of the chain, or removed as orphans
  // by retention after the grace period); its local staging copy goes, unless kept pending above. It goes
  // only once the outcome is recorded: a kill in between leaves the staged run beside a record still
  // running, so the next start can tell a published restore point from a half-published one.
  const staging = record.staging;
  record.staging = undefined;
  record.finishedAt ??= ctx.now().toISOString();
  if (record.outcome === 'interrupted') {
    // Left recorded as running: the next start treats it exactly like a run cut off by a crash (runs it again).
    if (staging) await rm(staging, { recursive: true, force: true });
    onUpdate(record);
    return record;
  }
  // A store that fails here leaves the staging folder for the next start's recovery to judge.
  await ctx.store.putRun(record);
  if (staging) await rm(staging, { recursive: true, force: true });
  if (record.task) {
    await ctx.store.updateUnitStatus(record.task, record.database, (unit) => ({
      ...unit,
      lastRun: { ...summarize(record), destinations: record.destinations },
    }));
  }
  observe(ctx.metrics, record);
  log.info(
    { outcome: record.outcome, backupId: record.backupId, storedBytes: record.storedBytes, error: record.error },
    'run finished',
  );
  onUpdate(record);
  return record;
}

async function recordSuccess(
  ctx: RunContext,
  record: RunRecord,
  outcomes: DestinationOutcome[],
  destinations: Destination[],
  retention: RetentionPolicy | undefined,
  log: Logger,
): Promise<void> {
  const summary = summarize(record);
  await recordRefs(ctx, record, outcomes);
  let unit = await ctx.store.updateUnitStatus(record.task, record.database, (current) => ({
    ...current,
    ...(record.level === 'full' ? { lastFull: summary } : { lastIncremental: summary }),
  }));
  ctx.metrics.lastSuccess.set(
    { task: record.task, database: record.database, level: record.level },
    Date.parse(record.finishedAt ?? ctx.now().toISOString()) / 1000 || ctx.now().getTime() / 1000,
  );
  if (!retention) return;
  const { source, database } = splitDatabase(record.database);
  for (const destination of destinations) {
    let deletedKeys: readonly string[];
    try {
      const result = await applyRetention(
        destination,
        { cluster: ctx.cluster, source, database },
        retention,
        ctx.now(),
        unit.refs[destination.name],
      );
      if (result.deletedChains.length > 0) {
        log.info({ destination: destination.name, chains: result.deletedChains }, 'retention deleted chains');
      }
      if (result.deletedTemps.length > 0) {
        log.info({ destination: destination.name, files: result.deletedTemps }, 'retention removed stale temp files');
      }
      deletedKeys = result.deletedKeys;
    } catch (error) {
      // Retention is housekeeping: the backup itself succeeded and stays reported as such; the next run
      // tries again. What it deleted before failing is gone all the same, and its refs go below: kept, they
      // would list restore points that no longer exist and send restores after deleted archives.
      // It is recorded on the run's entry for the destination (and so in the unit's last run) and counted.
      deletedKeys = deletedKeysOf(error);
      const failure = asBackupdError(error);
      const entry = record.destinations.find((d) => d.destination === destination.name);
      if (entry) Object.assign(entry, { retentionError: failure.message, retentionErrorCode: failure.code });
      ctx.metrics.retentionFailures.inc({ task: record.task, destination: destination.name });
      log.warn(
        {
          destination: destination.name,
          code: failure.code,
          error: failure.message,
          deletedObjects: deletedKeys.length,
        },
        'retention failed',
      );
    }
    if (deletedKeys.length === 0 || !unit.refs[destination.name]) continue;
    const gone = new Set(deletedKeys);
    try {
      unit = await ctx.store.updateUnitStatus(record.task, record.database, (current) =>
        pruneRefs(current, destination.name, gone),
      );
    } catch (error) {
      // Not fatal to the run either: the next retention here deletes those objects again (deleting a
      // missing object succeeds) and drops their refs then.
      log.warn(
        { destination: destination.name, error: messageOf(error), deletedObjects: gone.size },
        'could not drop the refs of deleted objects',
      );
    }
  }
}

/** What a failed backup was, as runBackup() says in its error (a BackupFailure), when it got that far. */
function failedBackup(
  error: BackupdError,
): Pick<RunRecord, 'chainId' | 'backupId' | 'level' | 'rawBytes' | 'storedBytes'> | undefined {
  const b = findError(error, BackupFailure)?.backup;
  if (!b) return undefined;
  return {
    chainId: b.chainId,
    backupId: b.backupId,
    level: b.level,
    rawBytes: b.rawBytes,
    storedBytes: b.storedBytes ?? 0,
  };
}

/**
 * A run that filled the disk its staging folder is on fails with NO_SPACE naming that folder, not as a bug
 * (INTERNAL). Destinations convert their own full disks (DESTINATION_FAILED), so only errors no layer
 * converted are looked at.
 */
function stagingFull(error: unknown, staging: string): BackupdError | undefined {
  if (isBackupdError(error) && error.code !== 'INTERNAL') return undefined;
  for (let e: unknown = error, depth = 0; e !== undefined && depth < 8; e = causeOf(e), depth++) {
    if ((e as { code?: unknown } | null)?.code === 'ENOSPC') {
      return new BackupdError(
        'NO_SPACE',
        `no space left on the disk of the staging folder ${staging}: free space there, or put the data dir on a larger disk (${messageOf(e)})`,
        { cause: error },
      );
    }
  }
  return undefined;
}

function causeOf(error: unknown): unknown {
  return error instanceof Error ? error.cause : undefined;
}

/** The keys a failed applyRetention() deleted before it stopped (a RetentionStopped's). */
function deletedKeysOf(error: unknown): string[] {
  return error instanceof RetentionStopped ? error.deletedKeys : [];
}

function pruneRefs(unit: UnitState, destination: string, gone: Set<string>): UnitState {
  const kept = Object.fromEntries(Object.entries(unit.refs[destination] ?? {}).filter(([key]) => !gone.has(key)));
  return { ...unit, refs: { ...unit.refs, [destination]: kept } };
}

function observe(metrics: AgentMetrics, record: RunRecord): void {
  const task = record.task || 'one-time';
  metrics.runs.inc({ task, outcome: record.outcome });
  if (record.startedAt && record.finishedAt) {
    const seconds = (Date.parse(record.finishedAt) - Date.parse(record.startedAt)) / 1000;
    metrics.runDuration.observe({ type: record.type, level: record.level, outcome: record.outcome }, seconds);
  }
  metrics.bytesRead.inc({ task }, record.rawBytes);
  metrics.bytesWritten.inc({ task }, record.storedBytes);
  for (const d of record.destinations) {
    metrics.bytesUploaded.inc({ task, destination: d.destination }, d.uploadedBytes);
    if (!d.ok) metrics.destinationFailures.inc({ task, destination: d.destination });
  }
}

/** What became of one staged restore point of a run cut off while publishing. */
export interface HalfPublished {
  staged: StagedRun;
  /** Its manifest is at every destination: a published restore point, recorded as such. */
  complete: boolean;
  /** Destinations its manifest was taken back from. */
  takenBack: string[];
  /** A later restore point that names it as its parent (or one that could not be read): it was left alone. */
  parentOf?: string;
  /** Destinations that could not say whether they hold it (down, or not opened): it was left alone. */
  unsure?: string[];
}

/**
 * After a crash: a run that was publishing may have written its manifest to some destinations and not
 * others, and left the temp file of a manifest put it was in the middle of. A manifest at every destination of the task (`expected` of them, all opened) is a published restore
 * point and stays. One at only some is taken back, so no restore point exists at only some destinations,
 * unless a later restore point of its chain names it as its parent (another node continued the chain from
 * it meanwhile): then removing it would cut that chain, and it stays. A destination that cannot say whether
 * it holds the manifest (stat fails, or it could not be opened) leaves the manifest alone: it may be a published
 * restore point. A destination that answers it does not (Glacier, which cannot look up without a reference)
 * does not hold it. The staging
 * folder is removed once judged. `key` is the task's key, to read the later manifests of an encrypted chain.
 */
export async function takeBackHalfPublished(
  staging: string,
  destinations: Destination[],
  options: { expected: number; key?: string; log: Logger },
): Promise<HalfPublished[]> {
  const { log } = options;
  const results: HalfPublished[] = [];
  let folders: string[] = [];
  try {
    folders = await readdir(staging);
  } catch (error) {
    if ((error as { code?: string }).code !== 'ENOENT') throw error;
  }
  for (const folder of folders) {
    let staged: StagedRun;
    try {
      staged = await readStaged(join(staging, folder));
    } catch (error) {
      // No staged.json: the run died before its manifest existed, so nothing of it can be published.
      if (!(error instanceof BackupdError && error.code === 'NOT_FOUND')) throw error;
      continue;
    }
    const key = staged.manifestKey;
    // A manifest put cut off by the kill leaves its temp file (`<key>.partial-*`), which no listing shows:
    // this run's own manifest key, so any such file is the dead put's.
    await Promise.all(
      destinations.map((d) =>
        d
          .removeStaleTemps?.(key, new Date(Date.now() + 1000))
          .catch((error: unknown) =>
            log.warn({ destination: d.name, manifest: key, error: messageOf(error) }, 'could not remove a temp file'),
          ),
      ),
    );
    const holds = await Promise.all(
      destinations.map((d) =>
        d.stat(key).then(
          (info) => info !== undefined,
          () => undefined,
        ),
      ),
    );
    if (destinations.length === options.expected && destinations.length > 0 && holds.every((h) => h === true)) {
      results.push({ staged, complete: true, takenBack: [] });
      continue;
    }
    if (destinations.length < options.expected || holds.some((h) => h === undefined)) {
      // It may be published everywhere: taking it back on a guess could remove a restore point.
      const unsure = destinations.filter((_, i) => holds[i] === undefined).map((d) => d.name);
      log.warn(
        { manifest: key, unsure, opened: destinations.length, expected: options.expected },
        'left a possibly half-published manifest alone: not every destination could say whether it holds it',
      );
      results.push({ staged, complete: false, takenBack: [], unsure });
      continue;
    }
    const child = await childOf(
      staged,
      destinations.filter((_, i) => holds[i] === true),
      options.key,
      log,
    );
    if (child) {
      log.warn(
        { manifest: key, child },
        'kept a half-published manifest: a later restore point of its chain names it as its parent',
      );
      results.push({ staged, complete: false, takenBack: [], parentOf: child });
      continue;
    }
    const takenBack: string[] = [];
    await Promise.all(
      destinations.map(async (d) => {
        try {
          await d.delete(key);
          takenBack.push(d.name);
        } catch (error) {
          log.warn({ destination: d.name, manifest: key, error: messageOf(error) }, 'could not take back a manifest');
        }
      }),
    );
    results.push({ staged, complete: false, takenBack });
  }
  await rm(staging, { recursive: true, force: true });
  return results;
}

/**
 * A restore point later than `staged` in its chain, at one of `holders` (listable ones), that names it as
 * its parent, or one that cannot be read (it may): undefined when there is none.
 */
async function childOf(
  staged: StagedRun,
  holders: Destination[],
  key: string | undefined,
  log: Logger,
): Promise<string | undefined> {
  const keyring = new KeyRing(key);
  const after = stampTime(staged.backupId);
  for (const destination of holders.filter((d) => d.capabilities.listable)) {
    const chain = (await listChains(destination, staged.ref)).find((c) => c.chainId === staged.chainId);
    for (const backupId of chain?.backups ?? []) {
      if (backupId === staged.backupId || !(stampTime(backupId) >= after)) continue;
      try {
        const { manifest } = await loadManifest(destination, staged.ref, staged.chainId, backupId, keyring);
        if (manifest.parent === staged.backupId) return backupId;
      } catch (error) {
        log.warn(
          { destination: destination.name, backupId, error: messageOf(error) },
          'could not read a later manifest of the chain: keeping the earlier one it may build on',
        );
        return backupId;
      }
    }
  }
  return undefined;
}
