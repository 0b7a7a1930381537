// Running one backup of one database: read the source's files, cut them into chunks, skip chunks the
// chain already holds, seal the rest in worker threads, append them to packs in the staging folder, then
// publish packs and finally the manifest to every destination (all or nothing).

import { randomBytes } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { BackupdError, messageOf } from '../errors.js';
import { type BackupLevel, backupIdFor, chainIdFor, manifestKey, packKey } from '../layout.js';
import type { Fingerprint } from '../sources/fingerprint.js';
import type { ChunkingHint } from '../sources/source.js';
import type { ObjectInfo } from '../uploader/destination.js';
import { BlobPool, type NamedBatch } from './blob-pool.js';
import { KeyRing, listChains, loadManifest } from './chain.js';
import { type ChainKeys, type KdfParams, newKdfParams } from './chain-keys.js';
import { CHUNK_IDS } from './chunk-id.js';
import {
  type ChunkerParams,
  cdcChunker,
  chunkBatches,
  chunkFilled,
  DEFAULT_CDC,
  fixedBlocks,
  maxChunkBytes,
  validateChunker,
} from './chunker.js';
import { type ChunkLocation, encodeManifest, FORMAT_VERSION, type Manifest, type ManifestFile } from './manifest.js';
import { type BlobPlace, PackWriter } from './pack.js';
import type { BackupRequest, BackupResult } from './requests.js';
import { publishStaged, writeStaged } from './staged.js';

/** zstd level 1: measured in docs/FORMAT.md as the best size for the time on database pages and dumps. */
export const COMPRESSION_LEVEL = 1;
/** Batches being sealed at once, each of about BATCH_BYTES: bounds memory while keeping every worker busy. */
const SEAL_WINDOW = 8;
const BATCH_BYTES = 1 << 20;
/** Batch slots: the window's batches, the one being filled and the next one, which takes its last bytes. */
const BATCH_SLOTS = SEAL_WINDOW + 2;
/**
 * A source that fills the slots itself (SourceFile.fill: a dump tool's pipe, the SQLite dump) gets batches
 * of FILL_BATCH_BYTES, FILL_WINDOW of them sealed at once, and up to FILL_AHEAD slots given to it before it
 * waits for the pipeline. Each batch costs a round of messages between this thread and a worker (name,
 * then seal), each message a wakeup; with pg_dump and its server keeping the two cores of the bench
 * machine busy, 4 MiB batches instead of 1 MiB took our process's CPU per 880 MB dump from 2.84 to 2.58 s
 * (five alternating rounds; docs/BENCHMARKS.md). The SQLite dump, which filled a 12 MiB ring of its own
 * before, peaks lower this way (182 against 194 MiB for the 256 MiB bench database).
 */
const FILL_BATCH_BYTES = 4 << 20;
const FILL_WINDOW = 4;
const FILL_AHEAD = 2;
/** A file the workers read themselves goes to them in ranges of about this size (whole blocks). */
const RANGE_BYTES = 4 << 20;
/**
 * Ranges being sealed at once. Each holds RANGE_BYTES in its worker until sealed, so 4 rather than
 * SEAL_WINDOW: on a 1 GiB snapshot the peak RSS went from 216-234 MB to 194-199 MB, for a full backup
 * 0-5% slower (within this VM's noise). Smaller ranges cost more: 1 MiB ones took 17% longer.
 */
const RANGE_WINDOW = 4;

/** Where a chunk the chain already holds lives. */
interface StoredChunk {
  packId: string;
  offset: number;
  length: number;
  rawLength: number;
}

/** A chunk written by this run: its pack id is known once the pack is closed. */
interface NewChunk {
  place: BlobPlace | undefined;
  rawLength: number;
}

interface ChainBase {
  chainId: string;
  parent: Manifest | undefined;
  kdf: KdfParams | undefined;
  /** Still being derived for a new chain (scrypt): the run reads and cuts meanwhile. */
  keys: Promise<ChainKeys | undefined>;
  known: Map<string, StoredChunk>;
  /** The chain's packs at the destination it was read from, by pack id. */
  packs: Map<string, ObjectInfo>;
  chunkers: Map<string, ChunkerParams>;
  /** Why an incremental became a full, when it did. */
  promoted?: string;
}

/** What a backup that failed once it had begun was: its chain, id, level and sizes so far. */
export interface FailedBackup {
  chainId: string;
  backupId: string;
  level: BackupLevel;
  rawBytes: number;
  storedBytes?: number;
}

/** A backup failed once it had begun: the failure's code and message, and what the backup was. */
export class BackupFailure extends BackupdError {
  constructor(
    readonly backup: FailedBackup,
    cause: BackupdError,
  ) {
    super(cause.code, cause.message, { cause, retryable: cause.retryable });
    this.name = 'BackupFailure';
  }
}

export async function runBackup(request: BackupRequest): Promise<BackupResult> {
  const now = request.now ?? (() => new Date());
  const startedAt = now();
  const log = request.logger;
  if (request.destinations.length === 0)
    throw new BackupdError('INVALID_ARGUMENT', 'a backup needs at least one destination');
  const keyring = new KeyRing(request.key);
  // A new chain's keys are derived (scrypt, about 0.1 s) while the source starts and the first chunks are
  // cut: the blob workers wait for them. The source opens only once the chain is known, so a run that
  // cannot read its chain takes no lock on a database and starts no dump tool.
  const base = await chainBase(request, keyring, startedAt);
  const level = base.parent ? 'incr' : 'full';
  if (base.promoted) log?.info({ reason: base.promoted }, 'starting a new chain with a full backup');
  const backupId = backupIdFor(startedAt, level);
  const staging = join(request.stagingDir, `${base.chainId}.${backupId}.${randomBytes(4).toString('hex')}`);

  const pool = new BlobPool(
    base.keys.then((keys) => ({
      dataKey: keys?.data,
      level: COMPRESSION_LEVEL,
      idKey: keys?.chunkId,
    })),
  );
  const writer = new PackWriter(join(staging, 'packs'));
  const added = new Map<string, NewChunk>();
  const files: { name: string; size: number; chunker: ChunkerParams; chunks: string[] }[] = [];
  let rawBytes = 0;
  let storedBytes: number | undefined;
  let chunkCount = 0;
  let engineVersion = '';
  let notes: string[] = [];
  let fingerprint: Fingerprint | undefined;
  let engineState: string | undefined;
  let stagedComplete = false;
  try {
    const parent = base.parent;
    const previous = parent && {
      files: parent.files.map((f) => f.name),
      ...(parent.engineState !== undefined ? { engineState: parent.engineState } : {}),
    };
    const reading = await request.source.read(request.ref.database, request.type, request.signal, previous);
    engineVersion = reading.engineVersion;
    notes = reading.notes ?? [];
    try {
      await mkdir(staging, { recursive: true });
      // Chunks go to the workers in batches: a worker names them (chunk ids), this thread keeps the new
      // ones in stream order, and the same worker seals those; sealed batches are appended to packs in
      // order, so memory stays bounded by the window and the same data gives the same packs.
      const window: Promise<void>[] = [];
      let named: Promise<void> = Promise.resolve();
      const submit = async (
        entry: { chunks: string[] },
        naming: Promise<NamedBatch>,
        lengths: number[],
        windowSize = SEAL_WINDOW,
      ) => {
        // Ids are taken in stream order, so the first copy of a repeated chunk is the one stored.
        const kept = Promise.all([naming, named]).then(([{ ids }]) => {
          const indexes: number[] = [];
          const fresh: NewChunk[] = [];
          for (let i = 0; i < lengths.length; i++) {
            const key = ids.toString('base64', i * 32, i * 32 + 32);
            entry.chunks.push(key);
            if (!base.known.has(key) && !added.has(key)) {
              const chunk: NewChunk = { place: undefined, rawLength: lengths[i]! };
              added.set(key, chunk);
              indexes.push(i);
              fresh.push(chunk);
            }
          }
          return { indexes, fresh };
        });
        named = kept.then(() => undefined);
        const sealed = Promise.all([naming, kept]).then(([batchNamed, { indexes }]) =>
          pool.sealKept(batchNamed, indexes),
        );
        // A batch an earlier failure left unsealed still goes back to its worker, which lets its slot go.
        kept.catch(() => naming.then((batchNamed) => pool.sealKept(batchNamed, [])).catch(() => {}));
        const previous = window.at(-1) ?? Promise.resolve();
        const appended = Promise.all([sealed, kept, previous]).then(async ([blobs, { fresh }]) => {
          if (blobs.length === 0) return;
          const places = await writer.addAll(blobs);
          for (const [i, place] of places.entries()) fresh[i]!.place = place;
        });
        named.catch(() => {}); // each failure is also in `appended`, awaited below
        appended.catch(() => {}); // handled where it is awaited; this only stops an unhandled-rejection crash
        window.push(appended);
        while (window.length >= windowSize) await window.shift();
      };
      const progress = (bytes: number, chunks: number) => {
        rawBytes += bytes;
        chunkCount += chunks;
        request.onProgress?.({ phase: 'reading', bytesDone: rawBytes });
        if (request.signal?.aborted) throw new BackupdError('CANCELLED', 'backup cancelled');
      };
      for await (const file of reading.files) {
        if (file.repeat) {
          // The previous restore point's file, unchanged: its chunks listed again, nothing read or stored.
          file.stream.destroy();
          const old = parent?.files.find((f) => f.name === file.name);
          const keys = old?.chunks.map((i) => parent!.chunks[i]![0]);
          if (!old || !keys || keys.some((key) => !base.known.has(key))) {
            throw new BackupdError(
              'SOURCE_FAILED',
              `the source repeats ${file.name} of the previous restore point, which ${old ? 'lost packs' : 'has no such file'}: take a full`,
            );
          }
          files.push({ name: file.name, size: old.size, chunker: old.chunker, chunks: keys });
          continue;
        }
        const chunker = base.chunkers.get(file.name) ?? chunkerFor(file.chunking);
        const entry = { name: file.name, size: 0, chunker, chunks: [] as string[] };
        files.push(entry);
        if (file.onDisk && chunker.kind === 'fixed') {
          // A regular file cut into fixed blocks: the workers read it at offsets, so its bytes never
          // cross this thread (raw snapshots are the bulk of the data a node backs up).
          file.stream.destroy();
          const { fd, size } = file.onDisk;
          const step = Math.max(1, Math.floor(RANGE_BYTES / chunker.blockSize)) * chunker.blockSize;
          for (let offset = 0; offset < size; offset += step) {
            const length = Math.min(step, size - offset);
            const lengths = fixedBlocks(length, chunker.blockSize);
            await submit(entry, pool.nameRange(fd, offset, length, chunker.blockSize), lengths, RANGE_WINDOW);
            entry.size += length;
            progress(length, lengths.length);
          }
          continue;
        }
        // Other streams are gathered into batch slots the workers share (their one copy), cut there, and
        // named and sealed by the workers in place. A source that can writes into the slots itself.
        const slots = file.fill
          ? pool.batchSlots(FILL_WINDOW + 2 + FILL_AHEAD, FILL_BATCH_BYTES + maxChunkBytes(chunker))
          : pool.batchSlots(BATCH_SLOTS, Math.max(BATCH_BYTES, maxChunkBytes(chunker)));
        const batches = file.fill
          ? chunkFilled(chunker, file.fill, slots, FILL_AHEAD)
          : chunkBatches(chunker, file.stream, slots);
        if (file.fill) file.stream.destroy();
        for await (const batch of batches) {
          const bytes = batch.lengths.reduce((sum, n) => sum + n, 0);
          const naming = pool.name(slots, batch.slot, batch.lengths, batch.start);
          await submit(entry, naming, batch.lengths, file.fill ? FILL_WINDOW : SEAL_WINDOW);
          entry.size += bytes;
          progress(bytes, batch.lengths.length);
        }
      }
      await Promise.all(window);
      fingerprint = await reading.fingerprint?.();
      engineState = await reading.engineState?.();
    } finally {
      await reading.close();
    }
    const packs = await writer.close();

    // The manifest: one table of the chunks this restore point reads, one of the packs they live in.
    const packIndex = new Map<string, number>();
    const manifestPacks: { id: string; size: number }[] = [];
    const packSlot = (id: string, size: number) => {
      let slot = packIndex.get(id);
      if (slot === undefined) {
        slot = manifestPacks.push({ id, size }) - 1;
        packIndex.set(id, slot);
      }
      return slot;
    };
    const newPacks = packs.map((p) => packSlot(p.id, p.size));
    const chunkIndex = new Map<string, number>();
    const chunks: ChunkLocation[] = [];
    const manifestFiles: ManifestFile[] = files.map((file) => ({
      name: file.name,
      size: file.size,
      chunker: file.chunker,
      chunks: file.chunks.map((key) => {
        let slot = chunkIndex.get(key);
        if (slot === undefined) {
          const fresh = added.get(key);
          let location: ChunkLocation;
          if (fresh) {
            const place = fresh.place!;
            const pack = packs[place.pack]!;
            location = [key, packSlot(pack.id, pack.size), place.offset, place.length, fresh.rawLength];
          } else {
            const old = base.known.get(key)!;
            location = [
              key,
              packSlot(old.packId, base.packs.get(old.packId)!.size),
              old.offset,
              old.length,
              old.rawLength,
            ];
          }
          slot = chunks.push(location) - 1;
          chunkIndex.set(key, slot);
        }
        return slot;
      }),
    }));
    storedBytes = packs.reduce((sum, p) => sum + p.size, 0);
    const manifest: Manifest = {
      format: FORMAT_VERSION,
      backupId,
      chainId: base.chainId,
      ...(base.parent ? { parent: base.parent.backupId } : {}),
      level,
      type: request.type,
      cluster: request.ref.cluster,
      source: request.ref.source,
      database: request.ref.database,
      task: request.task,
      engine: request.source.engine,
      engineVersion,
      node: request.node,
      term: request.term ?? 0,
      startedAt: startedAt.toISOString(),
      finishedAt: now().toISOString(),
      compression: { algorithm: 'zstd', level: COMPRESSION_LEVEL },
      chunkIds: CHUNK_IDS,
      files: manifestFiles,
      packs: manifestPacks,
      chunks,
      newPacks,
      sizes: { raw: rawBytes, stored: storedBytes, chainStored: manifestPacks.reduce((s, p) => s + p.size, 0) },
      ...(notes.length > 0 ? { notes } : {}),
      ...(fingerprint ? { fingerprint } : {}),
      ...(engineState !== undefined ? { engineState } : {}),
    };
    const manifestBytes = encodeManifest(manifest, await base.keys, base.kdf);
    const stagedPaths = new Map(packs.map((p) => [p.id, p.path]));
    await writeStaged(
      staging,
      {
        ref: request.ref,
        chainId: base.chainId,
        backupId,
        manifestKey: manifestKey(request.ref, base.chainId, backupId),
        packs: manifestPacks.map((p) => ({
          key: packKey(request.ref, base.chainId, p.id),
          size: p.size,
          localPath: stagedPaths.get(p.id),
        })),
      },
      manifestBytes,
    );
    stagedComplete = true;
    const { outcomes } = await publishStaged(staging, request.destinations, {
      keep: request.keepStaged,
      knownRefs: request.knownRefs,
      signal: request.signal,
      onProgress: (done, total) => request.onProgress?.({ phase: 'publishing', bytesDone: done, bytesTotal: total }),
    });
    const result: BackupResult = {
      chainId: base.chainId,
      backupId,
      level,
      rawBytes,
      storedBytes,
      manifestBytes: manifestBytes.length,
      chunks: chunkCount,
      newChunks: added.size,
      durationMs: now().getTime() - startedAt.getTime(),
      ...(notes.length > 0 ? { notes } : {}),
      destinations: outcomes,
    };
    // `backupLevel`: pino's own `level` (the severity) must stay the only one.
    const { level: backupLevel, ...published } = result;
    log?.info({ ...published, backupLevel }, 'backup published');
    return result;
  } catch (error) {
    await writer.abort();
    const failure =
      request.signal?.aborted && !(error instanceof BackupdError && error.code === 'CANCELLED')
        ? new BackupdError('CANCELLED', `backup cancelled: ${messageOf(error)}`, { cause: error })
        : error;
    // What the failed run was: its record shows it, and a kept staged run (StagedPublishError) is published later.
    if (failure instanceof BackupdError) {
      throw new BackupFailure(
        { chainId: base.chainId, backupId, level, rawBytes, ...(storedBytes === undefined ? {} : { storedBytes }) },
        failure,
      );
    }
    throw failure;
  } finally {
    await pool.close();
    // A fully staged run that failed to publish stays for publishStaged() to retry; anything else goes.
    if (!stagedComplete || request.signal?.aborted) await rm(staging, { recursive: true, force: true });
  }
}

function chunkerFor(hint: ChunkingHint): ChunkerParams {
  if (hint.kind === 'fixed') return validateChunker({ kind: 'fixed', blockSize: hint.blockSize });
  return hint.avgBytes === undefined ? DEFAULT_CDC : validateChunker(cdcChunker(hint.avgBytes));
}

/** The chain this run continues (an incremental) or starts (a full), with what it already holds. */
async function chainBase(request: BackupRequest, keyring: KeyRing, startedAt: Date): Promise<ChainBase> {
  const reader = request.destinations.find((d) => d.capabilities.listable);
  const fresh = async (promoted?: string): Promise<ChainBase> => {
    const kdf = request.key === undefined ? undefined : newKdfParams();
    return {
      chainId: chainIdFor(startedAt, request.type, request.node),
      parent: undefined,
      kdf,
      keys: kdf ? keyring.keysFor(kdf) : Promise.resolve(undefined),
      known: new Map<string, StoredChunk>(),
      packs: new Map<string, ObjectInfo>(),
      chunkers: new Map<string, ChunkerParams>(),
      ...(promoted ? { promoted } : {}),
    };
  };
  if (request.level === 'full') return fresh();
  if (!reader) return fresh('no destination can list its chains');
  const chains = (await listChains(reader, request.ref)).filter((c) => c.type === request.type && c.backups.length > 0);
  const chain = chains.at(-1);
  if (!chain) return fresh(`no ${request.type} chain at destination ${reader.name} yet`);
  const manifests = [];
  for (const backupId of chain.backups) {
    try {
      manifests.push(await loadManifest(reader, request.ref, chain.chainId, backupId, keyring));
    } catch (error) {
      if (error instanceof BackupdError && ['WRONG_KEY', 'KEY_REQUIRED'].includes(error.code)) {
        return fresh(`the newest chain ${chain.chainId} was written with another key (${error.code})`);
      }
      throw error;
    }
  }
  const last = manifests.at(-1)!;
  if ((last.keys === undefined) !== (request.key === undefined)) {
    return fresh(
      `the newest chain ${chain.chainId} is ${last.keys ? '' : 'not '}encrypted and the task now is${last.keys ? ' not' : ''}`,
    );
  }
  const known = new Map<string, StoredChunk>();
  for (const { manifest } of manifests) {
    for (const [id, pack, offset, length, rawLength] of manifest.chunks) {
      const packId = manifest.packs[pack]!.id;
      // Only chunks whose pack is still at the destination can be reused.
      if (chain.packs.has(packId)) known.set(id, { packId, offset, length, rawLength });
    }
  }
  return {
    chainId: chain.chainId,
    parent: last.manifest,
    kdf: last.kdf,
    keys: Promise.resolve(last.keys),
    known,
    packs: chain.packs,
    chunkers: new Map(last.manifest.files.map((f) => [f.name, f.chunker])),
  };
}
