// Verifying a restore point without restoring it: every pack it reads is fetched, must hash to its name
// and have its size, and every chunk in it must open (authenticate, decompress, match its id).

import { createHash } from 'node:crypto';
import { BackupdError, PackError } from '../errors.js';
import { packKey } from '../layout.js';
import { BlobPool } from './blob-pool.js';
import { KeyRing, loadManifest } from './chain.js';
import type { VerifyRequest } from './requests.js';
import { corruptChunk } from './restore.js';

export interface VerifyResult {
  chainId: string;
  backupId: string;
  packs: number;
  chunks: number;
  /** Bytes of the restore point's files that were checked. */
  rawBytes: number;
  /** Bytes of packs read. */
  packBytes: number;
}

export async function verifyBackup(request: VerifyRequest): Promise<VerifyResult> {
  const { ref, from, chainId, backupId } = request;
  const { manifest, keys } = await loadManifest(from, ref, chainId, backupId, new KeyRing(request.key), request.refs);
  const byPack = new Map<number, number[]>();
  manifest.chunks.forEach(([, pack], index) => {
    const list = byPack.get(pack) ?? [];
    list.push(index);
    byPack.set(pack, list);
  });
  const pool = new BlobPool({ dataKey: keys?.data, level: manifest.compression.level });
  const total = manifest.packs.reduce((sum, p) => sum + p.size, 0);
  let packBytes = 0;
  let rawBytes = 0;
  try {
    for (const [slot, pack] of manifest.packs.entries()) {
      if (request.signal?.aborted) throw new BackupdError('CANCELLED', 'verify cancelled');
      const key = packKey(ref, chainId, pack.id);
      let stream: AsyncIterable<Buffer>;
      try {
        stream = await from.get(key, { signal: request.signal, ref: request.refs?.[key] });
      } catch (error) {
        if (error instanceof BackupdError && error.code === 'NOT_FOUND') {
          throw new PackError('PACK_MISSING', `pack ${pack.id} is missing at destination ${from.name}`, pack.id);
        }
        throw error;
      }
      const parts: Buffer[] = [];
      const hash = createHash('sha256');
      for await (const part of stream) {
        hash.update(part);
        parts.push(part);
      }
      const bytes = Buffer.concat(parts);
      if (bytes.length !== pack.size || hash.digest('hex') !== pack.id) {
        throw new PackError(
          'PACK_CORRUPT',
          bytes.length !== pack.size
            ? `pack ${pack.id} is ${bytes.length} bytes, expected ${pack.size} (truncated)`
            : `pack ${pack.id} does not match its hash (corrupted)`,
          pack.id,
        );
      }
      const indexes = byPack.get(slot) ?? [];
      for (let i = 0; i < indexes.length; i += 64) {
        const batch = indexes.slice(i, i + 64);
        const items = batch.map((index) => {
          const [id, , offset, length, rawLength] = manifest.chunks[index]!;
          return { data: bytes.subarray(offset, offset + length), id: Buffer.from(id, 'base64'), rawLength };
        });
        await pool.open(items).catch((error: unknown) => {
          throw corruptChunk(manifest, batch, error);
        });
        rawBytes += items.reduce((sum, item) => sum + item.rawLength, 0);
      }
      packBytes += bytes.length;
      request.onProgress?.({ phase: 'verifying', bytesDone: packBytes, bytesTotal: total });
    }
  } finally {
    await pool.close();
  }
  return { chainId, backupId, packs: manifest.packs.length, chunks: manifest.chunks.length, rawBytes, packBytes };
}
