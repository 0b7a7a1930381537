// Every object-store path backupd writes, built in one place (etcd keys are cluster/etcd-keys.ts's).
// A destination holds one folder per chain:
//   <cluster>/<source>/<db>/<chain id>/packs/<pack id>.pack
//   <cluster>/<source>/<db>/<chain id>/<backup id>.manifest

import { BackupdError } from './errors.js';

const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** Reject anything that could escape a folder or collide with our own file names. */
export function assertSegment(kind: string, value: string): string {
  if (!SEGMENT.test(value) || value.includes('..') || value.length > 200) {
    throw new BackupdError(
      'INVALID_ARGUMENT',
      `${kind} "${value}" is not a valid name: use letters, digits, ".", "_" and "-", starting with a letter or digit`,
    );
  }
  return value;
}

export interface DatabaseRef {
  cluster: string;
  source: string;
  database: string;
}

export const MANIFEST_SUFFIX = '.manifest';
export const PACK_SUFFIX = '.pack';

export function databasePrefix(ref: DatabaseRef): string {
  return `${assertSegment('cluster', ref.cluster)}/${assertSegment('source', ref.source)}/${assertSegment('database', ref.database)}/`;
}

export function chainPrefix(ref: DatabaseRef, chainId: string): string {
  return `${databasePrefix(ref)}${assertSegment('chain id', chainId)}/`;
}

export function packKey(ref: DatabaseRef, chainId: string, packId: string): string {
  if (!/^[0-9a-f]{64}$/.test(packId)) throw new BackupdError('INVALID_ARGUMENT', `pack id "${packId}" is not a sha256`);
  return `${chainPrefix(ref, chainId)}packs/${packId}${PACK_SUFFIX}`;
}

export function manifestKey(ref: DatabaseRef, chainId: string, backupId: string): string {
  return `${chainPrefix(ref, chainId)}${assertSegment('backup id', backupId)}${MANIFEST_SUFFIX}`;
}

/** Split a listed key below databasePrefix() into its chain and file, or undefined if it is not ours. */
export function parseChainKey(
  relative: string,
):
  | { chainId: string; kind: 'manifest'; backupId: string }
  | { chainId: string; kind: 'pack'; packId: string }
  | undefined {
  const manifest = /^([^/]+)\/([^/]+)\.manifest$/.exec(relative);
  if (manifest?.[1] && manifest[2]) return { chainId: manifest[1], kind: 'manifest', backupId: manifest[2] };
  const pack = /^([^/]+)\/packs\/([0-9a-f]{64})\.pack$/.exec(relative);
  if (pack?.[1] && pack[2]) return { chainId: pack[1], kind: 'pack', packId: pack[2] };
  return undefined;
}

/**
 * `20261122T050000Z` for a UTC time, the sortable stamp used in chain and backup ids; milliseconds are
 * kept (`20261122T050000.250Z`) only when non-zero, so runs started within one second stay distinct.
 */
export function utcStamp(at: Date): string {
  return at
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.000Z$/, 'Z');
}

export type BackupType = 'backup' | 'snapshot';
export type BackupLevel = 'full' | 'incr';

/** Chain id: UTC time of its full, backup type and node, e.g. 20261122T050000Z-backup-node2. */
export function chainIdFor(at: Date, type: BackupType, node: string): string {
  return `${utcStamp(at)}-${type}-${assertSegment('node', node)}`;
}

/** Backup id: UTC time and level, e.g. 20261122T051500Z-incr. */
export function backupIdFor(at: Date, level: BackupLevel): string {
  return `${utcStamp(at)}-${level}`;
}

/** The time a chain or backup id starts with, in ms since the epoch (ids sort by this, not as strings). */
export function stampTime(id: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(?:\.(\d{3}))?Z/.exec(id);
  if (!m) return Number.NaN;
  return Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!, m[7] ? +m[7] : 0);
}
