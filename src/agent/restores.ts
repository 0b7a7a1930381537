// Reading backups back, for any node's caller: listing the chains at a destination, restoring (here, or on a
// node that has the source to restore into), and verifying (reading every pack, or restoring into a scratch
// place and comparing fingerprints). A location is a task's destination, with its key and recorded refs, or
// a destination given in full.

import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { databasesAt } from '../backup/chain.js';
import type { Progress } from '../backup/requests.js';
import { restoreBackup } from '../backup/restore.js';
import { verifyBackup } from '../backup/verify.js';
import { verifyByRestoring } from '../backup/verify-restore.js';
import type { Cluster } from '../cluster/cluster.js';
import type { StoredTask } from '../cluster/store.js';
import { BackupdError, ValidationError } from '../errors.js';
import { assertSegment, manifestKey } from '../layout.js';
import type { Source } from '../sources/source.js';
import { destinationProblems, splitDatabase } from '../task.js';
import type { Destination } from '../uploader/destination.js';
import type { DestinationRegistry, DestinationSpec } from '../uploader/registry.js';
import { safeName } from '../validate.js';
import type { AgentConfig } from './config.js';
import { searchedPath } from './location.js';
import type { BackupLocation, BackupsView, ChainView, RestoreInput, VerifyInput, VerifyOutcome } from './operations.js';
import type { PeerCalls } from './peer-calls.js';

/** The data dir's folder of verify --restore scratch places; removed at every start. */
const SCRATCH_DIR = 'scratch';

export interface RestoresDeps {
  config: AgentConfig;
  log: Logger;
  registry: DestinationRegistry;
  cluster: Cluster;
  sources: Map<string, Source>;
  peers: PeerCalls;
  /** The stored task, NOT_FOUND when there is none. */
  requireTask(name: string): Promise<StoredTask>;
}

export class Restores {
  constructor(private readonly deps: RestoresDeps) {}

  async listBackups(from: BackupLocation, filter: { cluster?: string; database?: string }): Promise<BackupsView> {
    const wanted = filter.database === undefined ? undefined : this.databaseRef(filter.database);
    if (filter.cluster !== undefined) assertSegment('cluster', filter.cluster);
    const place = await this.openLocation(from);
    try {
      const prefix = filter.cluster === undefined ? '' : `${filter.cluster}/`;
      const found = await databasesAt(place.destination, { cluster: filter.cluster, recorded: place.refs });
      const chains: ChainView[] = [];
      for (const { ref, chains: listed } of found) {
        if (wanted && (ref.source !== wanted.source || ref.database !== wanted.database)) continue;
        for (const c of listed) {
          if (c.backups.length === 0) continue;
          chains.push({
            cluster: ref.cluster,
            database: `${ref.source}/${ref.database}`,
            chainId: c.chainId,
            type: c.type,
            backups: c.backups,
            bytes: c.bytes,
            newestAt: c.newestAt ? new Date(c.newestAt).toISOString() : undefined,
          });
        }
      }
      return { chains, searched: searchedPath(place.spec, prefix) };
    } finally {
      await place.destination.close();
    }
  }

  async restore(input: RestoreInput, onProgress: (progress: Progress) => void, signal?: AbortSignal) {
    const { source, database } = this.databaseRef(input.database);
    const into = input.into ?? source;
    assertSegment('source to restore into', into);
    if (input.cluster !== undefined) assertSegment('cluster', input.cluster);
    const engine = this.deps.sources.get(into);
    if (!engine) return this.restoreElsewhere(into, input, onProgress, signal);
    const place = await this.openLocation(input.from);
    const cacheDir = join(this.deps.config.dataDir, 'cache', `restore-${randomBytes(6).toString('hex')}`);
    const started = performance.now();
    try {
      const cluster =
        input.cluster ?? (await this.clusterHolding(place, { source, database }, input.chainId, input.backupId));
      const result = await restoreBackup({
        ref: { cluster, source, database },
        source: engine,
        from: place.destination,
        chainId: input.chainId,
        backupId: input.backupId,
        target: input.target,
        key: input.key || place.key,
        refs: place.refs,
        cacheDir,
        signal,
        onProgress,
        logger: this.deps.log.child({ restore: input.target }),
      });
      this.deps.log.info(
        { cluster, database: input.database, backupId: input.backupId, into, target: input.target },
        'restored',
      );
      return {
        location: result.location,
        note: result.note,
        bytes: result.bytes,
        seconds: (performance.now() - started) / 1000,
      };
    } finally {
      await place.destination.close();
      await rm(cacheDir, { recursive: true, force: true });
    }
  }

  /**
   * The cluster whose folder at the destination holds the restore point: this node's own when it is there,
   * else the one other cluster that has it. NOT_FOUND naming the path searched when none does;
   * INVALID_ARGUMENT when several do (the caller names one).
   */
  private async clusterHolding(
    place: Awaited<ReturnType<Restores['openLocation']>>,
    backup: { source: string; database: string },
    chainId: string,
    backupId: string,
  ): Promise<string> {
    const own = this.deps.config.cluster;
    const { destination } = place;
    const ownKey = manifestKey({ cluster: own, ...backup }, chainId, backupId);
    if (!destination.capabilities.listable && place.refs === undefined) return own;
    if (destination.capabilities.listable ? await destination.stat(ownKey) : place.refs?.[ownKey]) return own;
    const holders = (await databasesAt(destination, { recorded: place.refs }))
      .filter(({ ref, chains }) => {
        if (ref.source !== backup.source || ref.database !== backup.database) return false;
        return chains.some((c) => c.chainId === chainId && c.backups.includes(backupId));
      })
      .map(({ ref }) => ref.cluster);
    if (holders.length === 1) return holders[0]!;
    const point = `${backup.source}/${backup.database} ${chainId}/${backupId}`;
    if (holders.length === 0) {
      throw new BackupdError(
        'NOT_FOUND',
        `restore point ${point} not found at ${searchedPath(place.spec, '')} (any cluster): list them with \`backupctl backups list\``,
      );
    }
    throw new BackupdError(
      'INVALID_ARGUMENT',
      `restore point ${point} is held by clusters ${holders.join(', ')} at destination ${destination.name}: name one (--cluster)`,
    );
  }

  /** A restore into a source this node does not have runs on a node that has it. */
  private async restoreElsewhere(
    source: string,
    input: RestoreInput,
    onProgress: (progress: Progress) => void,
    signal?: AbortSignal,
  ): Promise<{ location: string; note?: string; bytes: number; seconds: number }> {
    const node = this.deps.cluster.nodesWith(source)[0];
    if (!node) throw new BackupdError('NOT_FOUND', `no node of the cluster has source ${source}`);
    const result = await this.deps.peers.restore(node, input, onProgress, signal);
    return { ...result, note: [`restored on node ${node}`, result.note].filter(Boolean).join('; ') };
  }

  async verify(input: VerifyInput, onProgress: (progress: Progress) => void, signal?: AbortSignal) {
    const { source, database } = this.databaseRef(input.database);
    if (input.restore) return this.verifyRestoring(input, onProgress, signal);
    const place = await this.openLocation(input.from);
    const started = performance.now();
    try {
      const result = await verifyBackup({
        ref: { cluster: this.deps.config.cluster, source, database },
        from: place.destination,
        chainId: input.chainId,
        backupId: input.backupId,
        key: input.key || place.key,
        refs: place.refs,
        signal,
        onProgress,
      });
      return { ...result, seconds: (performance.now() - started) / 1000 };
    } finally {
      await place.destination.close();
    }
  }

  /** verify --restore: into a scratch place under `<dataDir>/scratch`, made by this node's source. */
  private async verifyRestoring(
    input: VerifyInput,
    onProgress: (progress: Progress) => void,
    signal?: AbortSignal,
  ): Promise<VerifyOutcome> {
    const { source, database } = this.databaseRef(input.database);
    const engine = this.deps.sources.get(source);
    if (!engine) {
      const nodes = this.deps.cluster.nodesWith(source);
      throw new BackupdError(
        'NOT_FOUND',
        `this node has no source ${source} to restore into: ask ${nodes.length ? `node ${nodes.join(' or ')}` : 'a node that has it'}`,
      );
    }
    const place = await this.openLocation(input.from);
    const cacheDir = join(this.deps.config.dataDir, 'cache', `verify-${randomBytes(6).toString('hex')}`);
    const started = performance.now();
    try {
      const result = await verifyByRestoring({
        ref: { cluster: this.deps.config.cluster, source, database },
        source: engine,
        from: place.destination,
        chainId: input.chainId,
        backupId: input.backupId,
        key: input.key || place.key,
        refs: place.refs,
        scratchDir: join(this.deps.config.dataDir, SCRATCH_DIR),
        cacheDir,
        signal,
        onProgress,
        logger: this.deps.log,
      });
      return {
        packs: 0,
        chunks: 0,
        rawBytes: result.bytes,
        packBytes: 0,
        seconds: (performance.now() - started) / 1000,
        restore: result,
      };
    } finally {
      await place.destination.close();
      await rm(cacheDir, { recursive: true, force: true });
    }
  }

  /**
   * Scratch places a verify --restore left when this process was killed: the folder, and what the sources
   * keep elsewhere (scratch databases on a server). Logged, not fatal: the next start tries again.
   */
  async sweepScratch(): Promise<void> {
    const dir = join(this.deps.config.dataDir, SCRATCH_DIR);
    await rm(dir, { recursive: true, force: true });
    for (const source of this.deps.sources.values()) {
      await source.sweepScratch?.(dir).catch((error: unknown) => {
        this.deps.log.warn({ source: source.name, err: error }, 'scratch places of a killed verify not taken back');
      });
    }
  }

  private databaseRef(name: string): { source: string; database: string } {
    const parts = splitDatabase(name);
    if (!safeName.safeParse(parts.source).success || !safeName.safeParse(parts.database).success) {
      throw new ValidationError('request', [
        { path: 'database', message: 'must be "<source>/<database>", each a safe name' },
      ]);
    }
    return parts;
  }

  /** Open a backup location: a task's destination (with its key and recorded refs) or one given in full. */
  async openLocation(
    from: BackupLocation,
  ): Promise<{ destination: Destination; spec: DestinationSpec; key?: string; refs?: Record<string, string> }> {
    if ('spec' in from) {
      const problems = destinationProblems(this.deps.registry, from.spec, 'from.spec');
      if (problems.length > 0) throw new ValidationError('destination', problems);
      return { destination: await this.deps.registry.open(from.spec, 'from.spec'), spec: from.spec };
    }
    const task = await this.deps.requireTask(from.task);
    const spec = task.spec.destinations.find((d) => d.name === from.destination);
    if (!spec) {
      throw new BackupdError(
        'NOT_FOUND',
        `task ${from.task} has no destination ${from.destination} (it has: ${task.spec.destinations.map((d) => d.name).join(', ')})`,
      );
    }
    const refs: Record<string, string> = {};
    for (const unit of await this.deps.cluster.store.listUnits(from.task))
      Object.assign(refs, unit.refs[from.destination]);
    return {
      destination: await this.deps.registry.open(spec, 'from'),
      spec,
      key: await this.deps.cluster.store.getTaskKey(from.task),
      refs,
    };
  }
}
