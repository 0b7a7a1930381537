// Retention at one destination (DESIGN.md "Retention"): whole chains only. A chain goes when its newest
// restore point is older than the retention period, and/or when more than N newer chains are kept; the
// newest chain is always kept. Manifests are deleted newest first, so whatever remains after an
// interruption is still a full plus incrementals that restore. Packs of failed runs (no manifest reads
// them) go once they are older than a grace period.

import { listChains } from '../backup/chain.js';
import { BackupdError } from '../errors.js';
import type { DatabaseRef } from '../layout.js';
import type { Destination } from './destination.js';

export interface RetentionPolicy {
  /** Delete chains whose newest restore point is older than this many days. */
  maxAgeDays?: number;
  /** Keep at most this many chains (the newest ones). */
  keepChains?: number;
  /** Packs no manifest can be using are deleted once older than this (default 24 h). */
  orphanGraceHours?: number;
}

export interface RetentionResult {
  deletedChains: string[];
  deletedManifests: number;
  deletedPacks: number;
  freedBytes: number;
}

export async function applyRetention(
  destination: Destination,
  ref: DatabaseRef,
  policy: RetentionPolicy,
  now: Date = new Date(),
): Promise<RetentionResult> {
  if (!destination.capabilities.listable) {
    throw new BackupdError(
      'UNSUPPORTED',
      `destination ${destination.name} cannot list: its retention runs from recorded archive ids`,
    );
  }
  const result: RetentionResult = { deletedChains: [], deletedManifests: 0, deletedPacks: 0, freedBytes: 0 };
  const chains = await listChains(destination, ref);
  const complete = chains.filter((c) => c.backups.length > 0).sort((a, b) => b.newestAt - a.newestAt);
  const graceMs = (policy.orphanGraceHours ?? 24) * 3_600_000;

  for (const [rank, chain] of complete.entries()) {
    if (rank === 0) continue; // the newest chain always stays
    const tooOld = policy.maxAgeDays !== undefined && now.getTime() - chain.newestAt > policy.maxAgeDays * 86_400_000;
    const tooMany = policy.keepChains !== undefined && rank >= policy.keepChains;
    if (!tooOld && !tooMany) continue;
    for (const backupId of [...chain.backups].reverse()) {
      const manifest = chain.manifests.get(backupId)!;
      await destination.delete(manifest.key);
      result.deletedManifests++;
      result.freedBytes += manifest.size;
    }
    for (const pack of chain.packs.values()) {
      await destination.delete(pack.key);
      result.deletedPacks++;
      result.freedBytes += pack.size;
    }
    result.deletedChains.push(chain.chainId);
  }

  // A chain folder with packs and no manifest is what a failed full leaves behind.
  for (const chain of chains) {
    if (chain.backups.length > 0) continue;
    const newest = Math.max(...[...chain.packs.values()].map((p) => p.modifiedAt.getTime()));
    if (now.getTime() - newest < graceMs) continue; // may be a run still publishing
    for (const pack of chain.packs.values()) {
      await destination.delete(pack.key);
      result.deletedPacks++;
      result.freedBytes += pack.size;
    }
  }
  return result;
}
