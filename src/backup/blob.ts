// One stored chunk ("blob"): a 1-byte compression tag and the payload, then, in an encrypted chain,
// sealed with AES-256-GCM (12-byte random nonce first, 16-byte tag last, the chunk id as associated data,
// so a blob cannot be moved under another id). Used by the seal workers and by restore and verify.

import { createCipheriv, createDecipheriv } from 'node:crypto';
import binding from 'zstd-napi/binding.js';
import type { ChunkNamer } from './chunk-id.js';

export const COMPRESSION_NONE = 0;
export const COMPRESSION_ZSTD = 1;
const NONCE = 12;
const TAG = 16;

export class BlobError extends Error {}

/** What sealing adds to a chunk at most: the compression tag, and in an encrypted chain the nonce and GCM tag. */
export const BLOB_OVERHEAD = 1 + NONCE + TAG;
/** The bytes of nonce each sealed blob of an encrypted chain takes from sealBlobInto's `nonces`. */
export const NONCE_BYTES = NONCE;

/**
 * One compression context per level, reused for every chunk of this thread, and one buffer the chunks are
 * compressed into: chunks average 16 KiB, and a context and an output buffer per chunk (what
 * zstd.compress does) cost more than compressing them. The frames are the same bytes either way.
 */
const compressors = new Map<number, binding.CCtx>();
let compressed = Buffer.alloc(0);
const tags = [Buffer.of(COMPRESSION_NONE), Buffer.of(COMPRESSION_ZSTD)] as const;

function compressorFor(level: number): binding.CCtx {
  let compressor = compressors.get(level);
  if (!compressor) {
    compressor = new binding.CCtx();
    compressor.setParameter(binding.CParameter.compressionLevel, level);
    compressors.set(level, compressor);
  }
  return compressor;
}

/**
 * Compress (when it helps) and seal a chunk into `out` at `at`, which must have room for the chunk plus
 * BLOB_OVERHEAD; returns the blob's length. `dataKey` undefined = unencrypted chain; else `nonce` holds
 * the blob's NONCE_BYTES random bytes (drawn by the caller for many blobs at once: one draw per chunk
 * cost more than the AES-GCM).
 */
export function sealBlobInto(
  chunk: Uint8Array,
  id: Uint8Array,
  dataKey: Buffer | undefined,
  level: number,
  nonce: Uint8Array | undefined,
  out: Buffer,
  at: number,
): number {
  const bound = binding.compressBound(chunk.length);
  if (compressed.length < bound) compressed = Buffer.allocUnsafeSlow(Math.max(bound, 128 << 10));
  const size = compressorFor(level).compress2(compressed, chunk);
  const useCompressed = size < chunk.length;
  const tag = tags[useCompressed ? 1 : 0];
  const payload = useCompressed ? compressed.subarray(0, size) : chunk;
  if (!dataKey) {
    out[at] = tag[0]!;
    out.set(payload, at + 1);
    return 1 + payload.length;
  }
  if (!nonce || nonce.length !== NONCE) throw new Error('an encrypted blob needs a 12-byte nonce');
  const cipher = createCipheriv('aes-256-gcm', dataKey, nonce);
  cipher.setAAD(id);
  out.set(nonce, at);
  let end = at + NONCE;
  for (const part of [cipher.update(tag), cipher.update(payload), cipher.final(), cipher.getAuthTag()]) {
    out.set(part, end);
    end += part.length;
  }
  return end - at;
}

/**
 * Open a blob back into the chunk's bytes. Throws BlobError when it fails authentication or decoding, or,
 * in an unencrypted chain, when `name` (the chain's chunk ids) does not give the chunk id for the bytes
 * (encrypted blobs are proven by GCM, whose tag covers the id).
 */
export function openBlob(
  blob: Uint8Array,
  id: Uint8Array,
  dataKey: Buffer | undefined,
  rawLength: number,
  name: ChunkNamer,
): Buffer {
  const chunk = Buffer.allocUnsafe(rawLength);
  openBlobInto(blob, id, dataKey, rawLength, chunk, 0, name);
  return chunk;
}

/** One decompression context for this thread, reused for every chunk opened into a buffer. */
let decompressor: binding.DCtx | undefined;

/**
 * openBlob() into `out` at `at` (rawLength bytes), with no buffer of its own: a restore writes many chunks
 * with one write, and decompressing in place saves a copy and an allocation per chunk. Same errors.
 */
export function openBlobInto(
  blob: Uint8Array,
  id: Uint8Array,
  dataKey: Buffer | undefined,
  rawLength: number,
  out: Buffer,
  at: number,
  name: ChunkNamer,
): void {
  const plain = dataKey ? decrypt(blob, id, dataKey) : Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
  const kind = plain[0];
  const payload = plain.subarray(1);
  const target = out.subarray(at, at + rawLength);
  if (kind === COMPRESSION_NONE) {
    if (payload.length !== rawLength) throw new BlobError(`holds ${payload.length} bytes, expected ${rawLength}`);
    target.set(payload);
  } else if (kind === COMPRESSION_ZSTD) {
    let written: number;
    try {
      decompressor ??= new binding.DCtx();
      written = decompressor.decompress(target, payload);
    } catch (error) {
      throw new BlobError(`zstd: ${error instanceof Error ? error.message : String(error)}`);
    }
    if (written !== rawLength) throw new BlobError(`decompressed to ${written} bytes, expected ${rawLength}`);
  } else {
    throw new BlobError(`unknown compression tag ${kind}`);
  }
  if (!dataKey && !name(target).equals(id)) {
    throw new BlobError('content does not match its chunk id');
  }
}

/** The plaintext (compression tag + payload) of an encrypted blob; BlobError when it fails authentication. */
function decrypt(blob: Uint8Array, id: Uint8Array, dataKey: Buffer): Buffer {
  if (blob.length < NONCE + 1 + TAG) throw new BlobError('blob too short');
  const decipher = createDecipheriv('aes-256-gcm', dataKey, blob.subarray(0, NONCE));
  decipher.setAAD(id);
  decipher.setAuthTag(blob.subarray(blob.length - TAG));
  const body = decipher.update(blob.subarray(NONCE, blob.length - TAG));
  try {
    decipher.final();
  } catch {
    throw new BlobError('authentication failed (corrupted data or wrong key)');
  }
  return body;
}
