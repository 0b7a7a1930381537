// Retention at one destination (DESIGN.md "Retention"): whole chains only. A chain goes when its newest
// restore point is older than the retention period, and/or when more than N newer chains are kept; the
// newest chain is always kept. Manifests are deleted newest first, so whatever remains after an
// interruption is still a full plus incrementals that restore. Packs of failed runs (no manifest reads
// them) go once they are older than a grace period, and so do the temp files of puts that never finished
// (drivers that write temp names: local, FTP). A destination that cannot list (Glacier) is judged
// from the object keys and references recorded when its backups were published.

import { BackupdError, messageOf } from '../errors.js';
import { type DatabaseRef, databasePrefix } from '../layout.js';
import type { Destination, ObjectInfo } from '../uploader/destination.js';
import { DestinationError } from '../uploader/failure.js';
import { type ChainListing, chainsAt } from './chain.js';

export interface RetentionPolicy {
  /** Delete chains whose newest restore point is older than this many days. */
  maxAgeDays?: number;
  /** Keep at most this many chains (the newest ones). */
  keepChains?: number;
  /** Packs no manifest can be using are deleted once older than this (default 24 h). */
  orphanGraceHours?: number;
}

/** How long packs of a failed run stay for a later attempt to reuse, unless a task says otherwise. */
export const DEFAULT_ORPHAN_GRACE_HOURS = 24;

export interface RetentionResult {
  deletedChains: string[];
  deletedManifests: number;
  deletedPacks: number;
  /** Bytes of what was deleted; recorded refs carry no sizes, so objects known only from them count 0. */
  freedBytes: number;
  /** Every object key deleted, in deletion order: the caller drops these from its recorded refs. */
  deletedKeys: string[];
  /** Temp files of puts that never finished (a killed upload), removed after the grace period. */
  deletedTemps: string[];
}

/**
 * Retention at a destination failed after it had deleted some objects (`deletedKeys`): the code and retryable
 * flag of the failure (DESTINATION_FAILED, not retryable, for one that had none).
 */
export class RetentionStopped extends DestinationError {
  constructor(
    destination: Pick<Destination, 'name' | 'kind'>,
    readonly deletedKeys: string[],
    cause: unknown,
  ) {
    const known = cause instanceof BackupdError ? cause : undefined;
    super(
      known?.code ?? 'DESTINATION_FAILED',
      `retention at destination ${destination.name} stopped after deleting ${deletedKeys.length} objects: ${messageOf(cause)}`,
      destination.name,
      destination.kind,
      { cause, retryable: known?.retryable ?? false },
    );
    this.name = 'RetentionStopped';
  }
}

/**
 * Apply `policy` to the database's chains at `destination`, judging ages against `now`.
 *
 * A listable destination is listed (`recorded` only supplies a reference to pass to delete, if it has
 * one). A destination that cannot list (Glacier) needs `recorded`: object key -> reference, as publishing
 * returned them for this destination (a unit's `refs[destination.name]`); its chains are rebuilt with
 * chainsFromRefs() and each object is deleted with its reference. Throws UNSUPPORTED for a destination
 * that cannot list when `recorded` is absent. When a delete fails after others succeeded, the error
 * (same code and retryable flag) is a RetentionStopped naming the keys deleted, so the caller can still
 * drop those.
 */
export async function applyRetention(
  destination: Destination,
  ref: DatabaseRef,
  policy: RetentionPolicy,
  now: Date = new Date(),
  recorded?: Record<string, string>,
): Promise<RetentionResult> {
  const result: RetentionResult = {
    deletedChains: [],
    deletedManifests: 0,
    deletedPacks: 0,
    freedBytes: 0,
    deletedKeys: [],
    deletedTemps: [],
  };
  const chains = await chainsAt(destination, ref, recorded);
  const remove = async (object: ObjectInfo): Promise<void> => {
    await destination.delete(object.key, { ref: recorded?.[object.key] });
    result.deletedKeys.push(object.key);
    result.freedBytes += object.size;
  };
  try {
    await deleteExpired(chains, policy, now, remove, result);
    // A put cut off by a kill leaves its temp file, which no listing shows and no retry reuses: gone once
    // older than the grace period (a younger one may be an upload in progress).
    const graceMs = (policy.orphanGraceHours ?? DEFAULT_ORPHAN_GRACE_HOURS) * 3_600_000;
    const stale = await destination.removeStaleTemps?.(databasePrefix(ref), new Date(now.getTime() - graceMs));
    result.deletedTemps.push(...(stale ?? []));
  } catch (error) {
    if (result.deletedKeys.length === 0) throw error;
    // Those deletions happened: a caller keeping refs must learn of them even though the run failed.
    throw new RetentionStopped(destination, result.deletedKeys, error);
  }
  return result;
}

async function deleteExpired(
  chains: ChainListing[],
  policy: RetentionPolicy,
  now: Date,
  remove: (object: ObjectInfo) => Promise<void>,
  result: RetentionResult,
): Promise<void> {
  const complete = chains.filter((c) => c.backups.length > 0).sort((a, b) => b.newestAt - a.newestAt);
  const graceMs = (policy.orphanGraceHours ?? DEFAULT_ORPHAN_GRACE_HOURS) * 3_600_000;

  for (const [rank, chain] of complete.entries()) {
    if (rank === 0) continue; // the newest chain always stays
    const tooOld = policy.maxAgeDays !== undefined && now.getTime() - chain.newestAt > policy.maxAgeDays * 86_400_000;
    const tooMany = policy.keepChains !== undefined && rank >= policy.keepChains;
    if (!tooOld && !tooMany) continue;
    for (const backupId of [...chain.backups].reverse()) {
      await remove(chain.manifests.get(backupId)!);
      result.deletedManifests++;
    }
    for (const pack of chain.packs.values()) {
      await remove(pack);
      result.deletedPacks++;
    }
    result.deletedChains.push(chain.chainId);
  }

  // A chain folder with packs and no manifest is what a failed full leaves behind. From recorded refs a
  // pack's time is its chain id's, when that full started.
  for (const chain of chains) {
    if (chain.backups.length > 0) continue;
    const newest = Math.max(...[...chain.packs.values()].map((p) => p.modifiedAt.getTime()));
    // Younger than the grace period: may be a run still publishing. NaN (a chain id that is not one of
    // our stamps) fails the test too: what cannot be dated is kept.
    if (!(now.getTime() - newest >= graceMs)) continue;
    for (const pack of chain.packs.values()) {
      await remove(pack);
      result.deletedPacks++;
    }
  }
}
