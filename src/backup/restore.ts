// Restoring one restore point into a new database: load and check the manifest, check every pack is there,
// then stream each file's chunks in order (opened in worker threads, a window ahead) into the source's
// restore, which builds the database aside and links it in only when complete.

import { Readable } from 'node:stream';
import { BackupdError } from '../errors.js';
import type { RestoreFile, RestoreResult } from '../sources/source.js';
import { BlobPool, CorruptBlobError } from './blob-pool.js';
import { KeyRing, loadManifest } from './chain.js';
import type { Progress, RestoreRequest } from './engine.js';
import type { Manifest } from './manifest.js';
import { PackAccess } from './pack-access.js';

const OPEN_WINDOW = 64;

export async function restoreBackup(request: RestoreRequest): Promise<RestoreResult & { bytes: number }> {
  const { manifest, keys } = await loadManifest(
    request.from,
    request.ref,
    request.chainId,
    request.backupId,
    new KeyRing(request.key),
  );
  const packs = new PackAccess(request.from, request.ref, request.chainId, request.cacheDir, request.signal);
  const pool = new BlobPool(keys?.data, manifest.compression.level);
  try {
    await packs.checkPresent(manifest.packs);
    const total = manifest.files.reduce((sum, f) => sum + f.size, 0);
    const progress = { done: 0 };
    const report = (p: Progress) => request.onProgress?.(p);
    const files = (async function* (): AsyncGenerator<RestoreFile> {
      for (const file of manifest.files) {
        const stream = Readable.from(
          fileChunks(manifest, file.chunks, packs, pool, (n) => {
            progress.done += n;
            report({ phase: 'restoring', bytesDone: progress.done, bytesTotal: total });
          }),
          { objectMode: false, signal: request.signal },
        );
        yield { name: file.name, size: file.size, stream };
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
  const window: Promise<Buffer>[] = [];
  const open = (index: number): Promise<Buffer> => {
    const [id, pack, offset, length, rawLength] = manifest.chunks[index]!;
    const packId = manifest.packs[pack]!.id;
    const opened = packs.read(packId, offset, length).then((blob) =>
      pool.open(blob, Buffer.from(id, 'base64'), rawLength).catch((error: unknown) => {
        if (error instanceof CorruptBlobError) {
          throw new BackupdError(
            'PACK_CORRUPT',
            `chunk at byte ${offset} of pack ${packId} is corrupt: ${error.message}`,
            {
              details: { pack: packId, offset },
            },
          );
        }
        throw error;
      }),
    );
    opened.catch(() => {}); // handled where it is awaited; this only stops an unhandled-rejection crash
    return opened;
  };
  let next = 0;
  while (next < chunkIndexes.length || window.length > 0) {
    while (next < chunkIndexes.length && window.length < OPEN_WINDOW) window.push(open(chunkIndexes[next++]!));
    const chunk = await window.shift()!;
    onBytes(chunk.length);
    yield chunk;
  }
}
