// A pending publish: a backup a run fully staged but could not publish (a destination failed). Its staged
// folder moves out of the staging area a restart clears, to <dataDir>/pending/<run id>, and the unit's state
// records it. The unit's next run publishes it before reading its source, with the same packs and manifest,
// so destinations that already hold its packs reuse them: a fresh attempt could not (a full gets a new chain
// id, encrypted chunks new nonces). One that is older than the task's orphan grace period, unreadable, or
// staged on another node is dropped; a folder no unit waits for (its task deleted) is removed.

import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Logger } from 'pino';
import type { Progress } from '../backup/requests.js';
import { DEFAULT_ORPHAN_GRACE_HOURS, type RetentionPolicy } from '../backup/retention.js';
import { publishStaged, readStaged } from '../backup/staged.js';
import type { PendingPublish, RunRecord, RunSummary, Store, UnitState } from '../cluster/store.js';
import { isBackupdError, messageOf } from '../errors.js';
import { stampTime } from '../layout.js';
import type { Destination } from '../uploader/destination.js';
import type { DestinationOutcome } from '../uploader/publish.js';
import { asBackupdError, destinationRecord, failedOutcomes, recordRefs } from './outcomes.js';
import type { RunContext } from './run-context.js';

type PendingContext = Pick<RunContext, 'dataDir' | 'node' | 'store' | 'metrics' | 'now'>;

/** Where a node keeps the staged folders of pending publishes: beside `staging`, never inside it. */
export function pendingDir(dataDir: string): string {
  return join(dataDir, 'pending');
}

/**
 * Keep the fully staged folder `staged` of the failed task run `record` (its chainId, backupId, level and
 * sizes set) for the unit's next run, replacing an older pending publish of the unit. The unit's state is
 * written before the folder moves, so a sweep never removes a folder a unit is about to wait for. Never
 * throws: when it cannot keep the folder, it logs why and the folder stays where it is (and is removed with
 * the run's staging).
 */
export async function keepPending(ctx: PendingContext, record: RunRecord, staged: string, log: Logger): Promise<void> {
  const pending: PendingPublish = {
    runId: record.runId,
    node: ctx.node,
    folder: join(pendingDir(ctx.dataDir), record.runId),
    chainId: record.chainId!,
    backupId: record.backupId!,
    level: record.level,
    rawBytes: record.rawBytes,
    storedBytes: record.storedBytes,
    ...(record.startedAt ? { startedAt: record.startedAt } : {}),
    stagedAt: ctx.now().toISOString(),
  };
  let previous: PendingPublish | undefined;
  try {
    await ctx.store.updateUnitStatus(record.task, record.database, (unit) => {
      previous = unit.pendingPublish;
      return { ...unit, pendingPublish: pending };
    });
  } catch (error) {
    log.warn(
      { backupId: pending.backupId, error: messageOf(error) },
      'could not keep the staged backup for a later run',
    );
    return;
  }
  try {
    await mkdir(dirname(pending.folder), { recursive: true });
    await rename(staged, pending.folder);
  } catch (error) {
    log.warn(
      { backupId: pending.backupId, error: messageOf(error) },
      'could not keep the staged backup for a later run',
    );
    // Put back what the unit waited for before; if this fails too, the next run finds no folder and drops it.
    await forget(ctx.store, record, pending, previous).catch((e: unknown) =>
      log.warn({ error: messageOf(e) }, 'could not forget a pending backup'),
    );
    return;
  }
  log.info(
    { backupId: pending.backupId, chainId: pending.chainId, folder: pending.folder },
    'kept the staged backup: the next run of the unit publishes it',
  );
  if (previous && previous.runId !== pending.runId) {
    // One pending publish per unit: the newer backup holds the newer data. The older one's packs at the
    // destinations are leftovers that retention removes after the grace period.
    log.warn(
      { pendingRun: previous.runId, backupId: previous.backupId },
      'a newer pending backup replaced an older one',
    );
    if (previous.node === ctx.node) await removeFolder(ctx.dataDir, previous.folder, log);
  }
}

export interface PublishPendingRequest {
  /** The run that publishes it first; its record gets `pending`. */
  record: RunRecord;
  unit: UnitState;
  destinations: Destination[];
  retention?: RetentionPolicy;
  signal: AbortSignal;
  onProgress?: (progress: Progress) => void;
  log: Logger;
}

/**
 * Publish the unit's pending backup, if any, to `destinations` (the task's, opened for this run), all or
 * nothing, reusing the packs they hold (the unit's refs for those that cannot list). On success it is
 * recorded as the unit's last full or incremental (unless a newer one is) and its references are kept; on a
 * publish failure it stays for the next run; one too old, staged elsewhere, or with a damaged folder is
 * dropped. Returns the unit's state afterwards. Throws only when cancelled (it stays pending) or when the
 * store fails.
 */
export async function publishPending(ctx: PendingContext, request: PublishPendingRequest): Promise<UnitState> {
  const { record, unit, log } = request;
  const pending = unit.pendingPublish;
  if (!pending) return unit;
  const about = { runId: pending.runId, chainId: pending.chainId, backupId: pending.backupId };
  const drop = async (reason: string, removeIt: boolean): Promise<UnitState> => {
    record.pending = { ...about, outcome: 'dropped', destinations: [], error: reason };
    log.warn({ pendingRun: pending.runId, backupId: pending.backupId, reason }, 'dropped a pending backup');
    const after = await forget(ctx.store, record, pending, undefined);
    if (removeIt) await removeFolder(ctx.dataDir, pending.folder, log);
    return after;
  };

  if (pending.node !== ctx.node) return drop(`it was staged on node ${pending.node}, not on ${ctx.node}`, false);
  const graceHours = request.retention?.orphanGraceHours ?? DEFAULT_ORPHAN_GRACE_HOURS;
  const ageMs = ctx.now().getTime() - Date.parse(pending.stagedAt);
  // NaN (an unreadable time) fails the test too: what cannot be dated is not published late.
  if (!(ageMs <= graceHours * 3_600_000)) {
    return drop(`staged ${Math.round(ageMs / 3_600_000)} h ago, past the orphan grace period of ${graceHours} h`, true);
  }
  const damage = await damageOf(ctx.dataDir, pending);
  if (damage) return drop(damage, true);

  log.info({ pendingRun: pending.runId, backupId: pending.backupId }, 'publishing a pending backup first');
  let outcomes: DestinationOutcome[];
  try {
    ({ outcomes } = await publishStaged(pending.folder, request.destinations, {
      knownRefs: unit.refs,
      signal: request.signal,
      onProgress: (done, total) => request.onProgress?.({ phase: 'publishing', bytesDone: done, bytesTotal: total }),
    }));
  } catch (error) {
    if (request.signal.aborted) throw error; // the run ends cancelled or interrupted; the backup stays pending
    const failure = asBackupdError(error);
    const failed = failedOutcomes(failure);
    record.pending = {
      ...about,
      outcome: 'failed',
      destinations: failed.map(destinationRecord),
      error: failure.message,
    };
    log.warn(
      { pendingRun: pending.runId, backupId: pending.backupId, code: failure.code, error: failure.message },
      'a pending backup is still not published; kept for the next run',
    );
    // Packs this attempt stored where only references find them (Glacier): kept, as for a failed run.
    await recordRefs(ctx, record, failed);
    return (await ctx.store.getUnit(record.task, record.database)) ?? unit;
  }

  record.pending = { ...about, outcome: 'published', destinations: outcomes.map(destinationRecord) };
  await recordRefs(ctx, record, outcomes);
  const finishedAt = ctx.now().toISOString();
  const summary: RunSummary = {
    runId: pending.runId,
    level: pending.level,
    outcome: 'succeeded',
    startedAt: pending.startedAt,
    finishedAt,
    chainId: pending.chainId,
    backupId: pending.backupId,
    storedBytes: pending.storedBytes,
  };
  const slot = pending.level === 'full' ? 'lastFull' : 'lastIncremental';
  const after = await ctx.store.updateUnitStatus(record.task, record.database, (current) => {
    const { pendingPublish, ...rest } = current;
    return {
      ...rest,
      ...(pendingPublish && pendingPublish.runId !== pending.runId ? { pendingPublish } : {}),
      // A newer restore point published meanwhile stays the unit's last one.
      ...(newer(pending.backupId, current[slot]?.backupId) ? { [slot]: summary } : {}),
    };
  });
  ctx.metrics.lastSuccess.set(
    { task: record.task, database: record.database, level: pending.level },
    Date.parse(finishedAt) / 1000,
  );
  log.info(
    { pendingRun: pending.runId, backupId: pending.backupId, destinations: record.pending.destinations },
    'published a pending backup',
  );
  return after;
}

/**
 * Remove every folder under <dataDir>/pending that no unit of an existing task waits for on this node:
 * the pending publishes of deleted tasks, and leftovers of a crash. Folders are listed before the units are
 * read, so a run keeping a folder meanwhile (state first, then the folder) is never caught. Never throws.
 */
export async function sweepPending(dataDir: string, node: string, store: Store, log: Logger): Promise<void> {
  const dir = pendingDir(dataDir);
  try {
    let entries: string[];
    try {
      entries = await readdir(dir);
    } catch (error) {
      if ((error as { code?: string }).code === 'ENOENT') return;
      throw error;
    }
    if (entries.length === 0) return;
    const tasks = new Set((await store.listTasks()).map((t) => t.spec.name));
    const waited = new Set(
      (await store.listUnits())
        .flatMap((u) => (u.pendingPublish && tasks.has(u.task) ? [u.pendingPublish] : []))
        .filter((p) => p.node === node && dirname(p.folder) === dir)
        .map((p) => basename(p.folder)),
    );
    for (const entry of entries) {
      if (waited.has(entry)) continue;
      await rm(join(dir, entry), { recursive: true, force: true });
      log.info({ folder: join(dir, entry) }, 'removed a pending backup no unit waits for');
    }
  } catch (error) {
    log.warn({ folder: dir, error: messageOf(error) }, 'could not sweep pending backups');
  }
}

/** Why the pending folder cannot be published as it is, or undefined when it is complete. */
async function damageOf(dataDir: string, pending: PendingPublish): Promise<string | undefined> {
  if (dirname(pending.folder) !== pendingDir(dataDir)) return `its folder ${pending.folder} is not a pending folder`;
  try {
    const staged = await readStaged(pending.folder);
    if (staged.chainId !== pending.chainId || staged.backupId !== pending.backupId) {
      return `its folder holds ${staged.chainId}/${staged.backupId}, not ${pending.chainId}/${pending.backupId}`;
    }
    await stat(join(pending.folder, 'manifest'));
    for (const pack of staged.packs) {
      if (!pack.localPath) continue;
      const size = (await stat(pack.localPath)).size;
      if (size !== pack.size) return `its pack ${basename(pack.localPath)} holds ${size} bytes, not ${pack.size}`;
    }
    return undefined;
  } catch (error) {
    if (isBackupdError(error) || (error as { code?: string }).code === 'ENOENT') {
      return `its folder ${pending.folder} is missing or incomplete: ${messageOf(error)}`;
    }
    throw error;
  }
}

/** Clear the unit's pending publish if it still is `pending`, putting `instead` in its place. */
function forget(
  store: Store,
  record: Pick<RunRecord, 'task' | 'database'>,
  pending: PendingPublish,
  instead: PendingPublish | undefined,
): Promise<UnitState> {
  return store.updateUnitStatus(record.task, record.database, (current) => {
    if (current.pendingPublish?.runId !== pending.runId) return current;
    const { pendingPublish: _dropped, ...rest } = current;
    return instead ? { ...rest, pendingPublish: instead } : rest;
  });
}

/** Remove a pending folder, only ever one directly under <dataDir>/pending. */
async function removeFolder(dataDir: string, folder: string, log: Logger): Promise<void> {
  if (dirname(folder) !== pendingDir(dataDir)) return;
  try {
    await rm(folder, { recursive: true, force: true });
  } catch (error) {
    log.warn({ folder, error: messageOf(error) }, 'could not remove a pending backup folder');
  }
}

/** Whether backup id `candidate` is newer than `current` (or there is none). */
function newer(candidate: string, current: string | undefined): boolean {
  if (!current) return true;
  const [a, b] = [stampTime(candidate), stampTime(current)];
  return !(b >= a);
}
