// Restoring one restore point into a new database: load and check the manifest, check every pack is there,
// then stream each file's chunks in order (opened in worker threads, a window ahead) into the source's
// restore, which builds the database aside and links it in only when complete.

import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { BackupdError, PackError } from '../errors.js';
import type { RestoreFile, RestoreResult } from '../sources/source.js';
import { type BatchItem, BlobPool, CorruptBlobError } from './blob-pool.js';
import type { WriteRequest } from './blob-worker.js';
import { KeyRing, loadManifest } from './chain.js';
import type { Manifest } from './manifest.js';
import { PackAccess } from './pack-access.js';
import type { Progress, RestoreRequest } from './requests.js';

/** Batches of about 1 MiB opened ahead of the writer. */
const OPEN_WINDOW = 8;
const OPEN_BATCH = 1 << 20;
/** writeFileAt: batches of about 4 MiB, a few per worker in flight. */
const WRITE_BATCH = 4 << 20;
const WRITE_WINDOW = 6;
const SYNC_EVERY = 64 << 20;

export async function restoreBackup(request: RestoreRequest): Promise<RestoreResult & { bytes: number }> {
  // The workers start while the keys are derived and the manifest is read (each takes 0.1 to 0.2 s).
  const loading = loadManifest(
    request.from,
    request.ref,
    request.chainId,
    request.backupId,
    new KeyRing(request.key),
    request.refs,
  );
  const pool = new BlobPool(
    loading.then(({ manifest, keys }) => ({
      dataKey: keys?.data,
      level: manifest.compression.level,
    })),
  );
  const packs = new PackAccess(
    request.from,
    request.ref,
    request.chainId,
    request.cacheDir,
    request.signal,
    request.refs,
  );
  try {
    const { manifest } = await loading;
    // Any source of the backup's engine may take it (another name, another server), no other.
    if (manifest.engine !== request.source.engine) {
      throw new BackupdError(
        'INVALID_ARGUMENT',
        `${manifest.source}/${manifest.database} ${request.chainId}/${request.backupId} is a ${manifest.engine} backup; ` +
          `source ${request.source.name} is ${request.source.engine}: restore it into a ${manifest.engine} source`,
      );
    }
    // A logical backup is restored as fast as the engine loads rows (tens of MB/s): one worker opens chunks
    // far quicker than that, and each idle worker thread would cost its own ~20 MB heap.
    if (manifest.type === 'backup') await pool.keepOnly(1);
    await packs.checkPresent(manifest.packs);
    const total = manifest.files.reduce((sum, f) => sum + f.size, 0);
    const progress = { done: 0 };
    const report = (p: Progress) => request.onProgress?.(p);
    const onBytes = (n: number) => {
      progress.done += n;
      report({ phase: 'restoring', bytesDone: progress.done, bytesTotal: total });
    };
    const files = (async function* (): AsyncGenerator<RestoreFile> {
      for (const file of manifest.files) {
        const stream = Readable.from(fileChunks(manifest, file.chunks, packs, pool, onBytes), {
          objectMode: false,
          signal: request.signal,
        });
        const writeTo = (path: string) =>
          writeFileAt(path, manifest, file.chunks, packs, pool, onBytes, request.signal);
        yield { name: file.name, size: file.size, stream, writeTo };
      }
    })();
    const result = await request.source.restore(files, {
      target: request.target,
      type: manifest.type,
      signal: request.signal,
    });
    request.logger?.info(
      { chainId: request.chainId, backupId: request.backupId, target: request.target, bytes: total },
      'restored',
    );
    return { ...result, bytes: total };
  } finally {
    await pool.close();
    await packs.close();
  }
}

/** The chunks of one file, in order, checked and decompressed. */
export async function* fileChunks(
  manifest: Manifest,
  chunkIndexes: number[],
  packs: PackAccess,
  pool: BlobPool,
  onBytes: (n: number) => void,
): AsyncGenerator<Buffer> {
  // Chunks are opened in batches of about 1 MiB, a few batches ahead of the one being written.
  const window: Promise<Buffer[]>[] = [];
  const open = async (indexes: number[]): Promise<Buffer[]> => {
    // Chunks stored back to back in one pack (the usual case) are read with one call.
    const items: BatchItem[] = [];
    for (let i = 0; i < indexes.length; ) {
      const [, pack, start] = manifest.chunks[indexes[i]!]!;
      let end = i;
      let stop = start + manifest.chunks[indexes[i]!]![3];
      while (end + 1 < indexes.length) {
        const [, nextPack, nextOffset, nextLength] = manifest.chunks[indexes[end + 1]!]!;
        if (nextPack !== pack || nextOffset !== stop) break;
        stop += nextLength;
        end++;
      }
      const bytes = await packs.read(manifest.packs[pack]!.id, start, stop - start);
      for (let k = i; k <= end; k++) {
        const [id, , offset, length, rawLength] = manifest.chunks[indexes[k]!]!;
        items.push({
          data: bytes.subarray(offset - start, offset - start + length),
          id: Buffer.from(id, 'base64'),
          rawLength,
        });
      }
      i = end + 1;
    }
    return pool.openOwned(items).catch((error: unknown) => {
      throw corruptChunk(manifest, indexes, error);
    });
  };
  let next = 0;
  const fill = () => {
    while (next < chunkIndexes.length && window.length < OPEN_WINDOW) {
      const indexes: number[] = [];
      let bytes = 0;
      while (next < chunkIndexes.length && bytes < OPEN_BATCH) {
        const index = chunkIndexes[next++]!;
        indexes.push(index);
        bytes += manifest.chunks[index]![4];
      }
      const opened = open(indexes);
      opened.catch(() => {}); // handled where it is awaited; this only stops an unhandled-rejection crash
      window.push(opened);
    }
  };
  fill();
  while (window.length > 0) {
    const chunks = await window.shift()!;
    fill();
    // A worker answers a batch in one buffer, chunk after chunk: hand that buffer on whole, uncopied.
    const bytes = chunks.length === 1 ? chunks[0]! : joinViews(chunks);
    onBytes(bytes.length);
    yield bytes;
  }
}

/**
 * Write one file's chunks into `path` at their offsets, in parallel: each worker reads its runs from the
 * pack files itself and writes what it opened, so no chunk passes through this thread.
 */
export async function writeFileAt(
  path: string,
  manifest: Manifest,
  chunkIndexes: number[],
  packs: PackAccess,
  pool: BlobPool,
  onBytes: (n: number) => void,
  signal?: AbortSignal,
): Promise<void> {
  const file = await open(path, 'w');
  try {
    const inFlight = new Set<Promise<void>>();
    // The disk writes what the workers wrote while they go on (one datasync at a time, every SYNC_EVERY
    // bytes), so the final sync waits for the tail only: on 1 GiB it took 0.5 s alone at the end.
    let syncing: Promise<void> | undefined;
    let unsynced = 0;
    const written = (n: number) => {
      onBytes(n);
      unsynced += n;
      if (unsynced >= SYNC_EVERY && !syncing) {
        unsynced = 0;
        syncing = file.datasync().finally(() => {
          syncing = undefined;
        });
        syncing.catch(() => {}); // the final sync below reports a failing disk
      }
    };
    let fileOffset = 0;
    let next = 0;
    while (next < chunkIndexes.length) {
      if (signal?.aborted) throw new BackupdError('CANCELLED', 'restore cancelled');
      // One batch: about WRITE_BATCH bytes of consecutive chunks, cut into runs stored back to back.
      const first = next;
      const runs: WriteRequest['runs'] = [];
      let bytes = 0;
      while (next < chunkIndexes.length && bytes < WRITE_BATCH) {
        const [, pack, offset, length, rawLength] = manifest.chunks[chunkIndexes[next]!]!;
        const packPath = await packs.pathOf(manifest.packs[pack]!.id);
        const run = runs.at(-1);
        if (run && run.pack === packPath && run.offset + run.length === offset) run.length += length;
        else runs.push({ pack: packPath, offset, length, blobs: [] });
        runs.at(-1)!.blobs.push({ length, rawLength, fileOffset });
        fileOffset += rawLength;
        bytes += rawLength;
        next++;
      }
      const indexes = chunkIndexes.slice(first, next);
      const ids = Buffer.concat(indexes.map((i) => Buffer.from(manifest.chunks[i]![0], 'base64')));
      const batch = pool.write(path, runs, ids).then(written, (error: unknown) => {
        throw corruptChunk(manifest, indexes, error);
      });
      const tracked: Promise<void> = batch.finally(() => inFlight.delete(tracked));
      tracked.catch(() => {}); // awaited below; this only stops an unhandled-rejection crash
      inFlight.add(tracked);
      if (inFlight.size >= WRITE_WINDOW) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    await syncing?.catch(() => {}); // superseded by the sync below, which reports any error
    await file.sync();
  } finally {
    await file.close();
  }
}

/**
 * A blob that failed to open, as the PACK_CORRUPT error naming its pack and offset; `indexes` are the
 * manifest chunk indexes of the batch the worker was given. Other errors pass through.
 */
export function corruptChunk(manifest: Manifest, indexes: number[], error: unknown): unknown {
  if (!(error instanceof CorruptBlobError)) return error;
  const [, pack, offset] = manifest.chunks[indexes[error.index]!]!;
  const packId = manifest.packs[pack]!.id;
  return new PackError(
    'PACK_CORRUPT',
    `chunk at byte ${offset} of pack ${packId} is corrupt: ${error.message}`,
    packId,
    offset,
  );
}

/** Views that lie back to back in one buffer, as one view; others are copied together. */
function joinViews(views: Buffer[]): Buffer {
  const first = views[0]!;
  let end = first.byteOffset;
  for (const view of views) {
    if (view.buffer !== first.buffer || view.byteOffset !== end) return Buffer.concat(views);
    end += view.byteLength;
  }
  return Buffer.from(first.buffer, first.byteOffset, end - first.byteOffset);
}
