// Glacier's SHA-256 tree hash: SHA-256 of every 1 MiB chunk, then hashes of concatenated pairs, level
// by level, until one remains (an odd one out moves up a level unchanged). Multipart parts are whole
// powers of two MiB, so each part's tree hash is a node of the archive's tree.

import { createHash } from 'node:crypto';

export const TREE_HASH_CHUNK = 1 << 20;

/** SHA-256 of each 1 MiB chunk of `data` (one hash of nothing for an empty buffer). */
export function leafHashes(data: Buffer): Buffer[] {
  if (data.length === 0) return [createHash('sha256').digest()];
  const leaves: Buffer[] = [];
  for (let at = 0; at < data.length; at += TREE_HASH_CHUNK) {
    leaves.push(
      createHash('sha256')
        .update(data.subarray(at, at + TREE_HASH_CHUNK))
        .digest(),
    );
  }
  return leaves;
}

/** Combine hashes pairwise up to the root. */
export function treeHashOf(leaves: readonly Buffer[]): Buffer {
  if (leaves.length === 0) throw new Error('a tree hash needs at least one leaf');
  let level = [...leaves];
  while (level.length > 1) {
    const next: Buffer[] = [];
    for (let i = 0; i < level.length; i += 2) {
      const left = level[i] as Buffer;
      const right = level[i + 1];
      next.push(right ? createHash('sha256').update(left).update(right).digest() : left);
    }
    level = next;
  }
  return level[0] as Buffer;
}

/** The tree hash of `data` as Glacier's hex string. */
export function treeHash(data: Buffer): string {
  return treeHashOf(leafHashes(data)).toString('hex');
}
