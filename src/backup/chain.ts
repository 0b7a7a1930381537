// Reading what a destination holds for one database: its chains, their restore points and packs, and
// the manifests themselves (with the chain's keys derived once per chain).

import type { Readable } from 'node:stream';
import { BackupdError } from '../errors.js';
import {
  assertSegment,
  type BackupType,
  type DatabaseRef,
  databasePrefix,
  manifestKey,
  parseChainKey,
  stampTime,
} from '../layout.js';
import type { Destination, ObjectInfo } from '../uploader/destination.js';
import { type ChainKeys, deriveKeys, type KdfParams } from './chain-keys.js';
import { decodeManifest, type Manifest } from './manifest.js';

export interface ChainListing {
  chainId: string;
  type: BackupType | undefined;
  /** Backup ids of committed restore points, oldest first. */
  backups: string[];
  manifests: Map<string, ObjectInfo>;
  packs: Map<string, ObjectInfo>;
  /** Bytes of packs plus manifests (0 when built from recorded refs: see chainsFromRefs). */
  bytes: number;
  /** Time of the newest restore point (ms since the epoch), 0 when there is none. */
  newestAt: number;
}

/** Every chain at the destination for the database, oldest first (chains with packs but no manifest too). */
export async function listChains(destination: Destination, ref: DatabaseRef): Promise<ChainListing[]> {
  if (!destination.capabilities.listable) {
    throw new BackupdError(
      'UNSUPPORTED',
      `destination ${destination.name} (${destination.kind}) cannot list its backups`,
    );
  }
  const prefix = databasePrefix(ref);
  const chains = chainGrouper(prefix);
  for await (const object of destination.list(prefix)) chains.add(object);
  return chains.done();
}

/**
 * The chains a destination that cannot list (Glacier) holds for the database, from the object keys
 * recorded when they were published (`refs`: object key -> reference; keys of other databases are
 * ignored). Same shape and order as listChains(), with what only a listing could tell replaced: every
 * size is 0 (so `bytes` is 0), a manifest's modifiedAt is the time of its backup id and a pack's the
 * time of its chain id (when its chain's full started; a pack of a later incremental is younger).
 */
export function chainsFromRefs(ref: DatabaseRef, refs: Record<string, string>): ChainListing[] {
  const prefix = databasePrefix(ref);
  const chains = chainGrouper(prefix);
  for (const key of Object.keys(refs)) {
    if (!key.startsWith(prefix)) continue;
    const parsed = parseChainKey(key.slice(prefix.length));
    if (!parsed) continue;
    const at = stampTime(parsed.kind === 'manifest' ? parsed.backupId : parsed.chainId);
    chains.add({ key, size: 0, modifiedAt: new Date(at) });
  }
  return chains.done();
}

/** The chains of one database at a destination, with the cluster and database they belong to. */
export interface DatabaseChains {
  ref: DatabaseRef;
  chains: ChainListing[];
}

/**
 * Every database a destination holds backups of, whatever cluster wrote them, with their chains (listed, or
 * from recorded refs for a destination that cannot list), sorted by cluster, source and database. `cluster`
 * narrows the listing to one cluster's folder. Keys that are not `<cluster>/<source>/<db>/<chain>/...` are
 * ignored.
 */
export async function databasesAt(
  destination: Destination,
  options: { cluster?: string; recorded?: Record<string, string> } = {},
): Promise<DatabaseChains[]> {
  const prefix = options.cluster === undefined ? '' : `${assertSegment('cluster', options.cluster)}/`;
  const groups = new Map<string, { ref: DatabaseRef; grouper: ReturnType<typeof chainGrouper> }>();
  const add = (object: ObjectInfo) => {
    const [cluster = '', source = '', database = '', ...rest] = object.key.split('/');
    if (rest.length < 2 || !object.key.startsWith(prefix)) return;
    const dbPrefix = `${cluster}/${source}/${database}/`;
    let group = groups.get(dbPrefix);
    if (!group) {
      group = { ref: { cluster, source, database }, grouper: chainGrouper(dbPrefix) };
      groups.set(dbPrefix, group);
    }
    group.grouper.add(object);
  };
  if (destination.capabilities.listable) {
    for await (const object of destination.list(prefix)) add(object);
  } else {
    if (options.recorded === undefined) {
      throw new BackupdError(
        'UNSUPPORTED',
        `destination ${destination.name} (${destination.kind}) cannot list its backups: read them from a task's destination, whose references were recorded`,
      );
    }
    for (const key of Object.keys(options.recorded)) {
      const parsed = parseChainKey(key.split('/').slice(3).join('/'));
      if (!parsed) continue;
      const at = stampTime(parsed.kind === 'manifest' ? parsed.backupId : parsed.chainId);
      add({ key, size: 0, modifiedAt: new Date(at) });
    }
  }
  return [...groups.keys()]
    .sort()
    .map((k) => groups.get(k)!)
    .map(({ ref, grouper }) => ({ ref, chains: grouper.done() }));
}

/**
 * The chains at a destination: listed when it can list, else from the recorded refs (object key ->
 * reference). UNSUPPORTED for a destination that cannot list when nothing was recorded.
 */
export async function chainsAt(
  destination: Destination,
  ref: DatabaseRef,
  recorded?: Record<string, string>,
): Promise<ChainListing[]> {
  if (destination.capabilities.listable) return listChains(destination, ref);
  if (recorded === undefined) {
    throw new BackupdError(
      'UNSUPPORTED',
      `destination ${destination.name} (${destination.kind}) cannot list its backups: pass the references recorded when they were published`,
    );
  }
  return chainsFromRefs(ref, recorded);
}

/** Groups objects below `prefix` into chains: the one place listing and recorded refs both go through. */
function chainGrouper(prefix: string): { add(object: ObjectInfo): void; done(): ChainListing[] } {
  const chains = new Map<string, ChainListing>();
  return {
    add(object) {
      const parsed = parseChainKey(object.key.slice(prefix.length));
      if (!parsed) return;
      let chain = chains.get(parsed.chainId);
      if (!chain) {
        const type = /-(backup|snapshot)-/.exec(parsed.chainId)?.[1] as BackupType | undefined;
        chain = {
          chainId: parsed.chainId,
          type,
          backups: [],
          manifests: new Map(),
          packs: new Map(),
          bytes: 0,
          newestAt: 0,
        };
        chains.set(parsed.chainId, chain);
      }
      chain.bytes += object.size;
      if (parsed.kind === 'manifest') {
        chain.backups.push(parsed.backupId);
        chain.manifests.set(parsed.backupId, object);
        chain.newestAt = Math.max(chain.newestAt, stampTime(parsed.backupId));
      } else {
        chain.packs.set(parsed.packId, object);
      }
    },
    done() {
      for (const chain of chains.values()) chain.backups.sort((a, b) => stampTime(a) - stampTime(b));
      return [...chains.values()].sort((a, b) => stampTime(a.chainId) - stampTime(b.chainId));
    },
  };
}

/** Derives chain keys from the task key once per salt (scrypt is deliberately slow). */
export class KeyRing {
  private readonly cache = new Map<string, Promise<ChainKeys>>();

  constructor(private readonly taskKey: string | undefined) {}

  get hasKey(): boolean {
    return this.taskKey !== undefined;
  }

  keysFor = async (kdf: KdfParams): Promise<ChainKeys | undefined> => {
    if (this.taskKey === undefined) return undefined;
    let keys = this.cache.get(kdf.salt);
    if (!keys) {
      keys = deriveKeys(this.taskKey, kdf);
      this.cache.set(kdf.salt, keys);
    }
    return keys;
  };
}

export interface LoadedManifest {
  manifest: Manifest;
  keys: ChainKeys | undefined;
  kdf: KdfParams | undefined;
  bytes: number;
}

export async function loadManifest(
  destination: Destination,
  ref: DatabaseRef,
  chainId: string,
  backupId: string,
  keyring: KeyRing,
  refs: Record<string, string> = {},
): Promise<LoadedManifest> {
  const key = manifestKey(ref, chainId, backupId);
  let bytes: Buffer;
  try {
    bytes = await readAll(await destination.get(key, { ref: refs[key] }));
  } catch (error) {
    if (error instanceof BackupdError && error.code === 'NOT_FOUND') {
      throw new BackupdError('NOT_FOUND', `backup ${chainId}/${backupId} not found at destination ${destination.name}`);
    }
    throw error;
  }
  const decoded = await decodeManifest(bytes, `${chainId}/${backupId}`, keyring.keysFor);
  const m = decoded.manifest;
  if (m.chainId !== chainId || m.backupId !== backupId || m.database !== ref.database || m.source !== ref.source) {
    throw new BackupdError(
      'MANIFEST_CORRUPT',
      `manifest ${chainId}/${backupId} describes ${m.source}/${m.database} ${m.chainId}/${m.backupId}`,
    );
  }
  return { ...decoded, bytes: bytes.length };
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}
