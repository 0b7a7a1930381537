// Keys of a chain, derived from the task key: scrypt turns the operator's key (a passphrase or random
// bytes) into a master key with the chain's salt, HKDF splits it into one key per purpose. An unencrypted
// chain has no keys: chunk ids are unkeyed (chunk-id.ts) and blobs are stored as they are.

import { createHmac, hkdfSync, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import { BackupdError } from '../errors.js';

const scryptAsync = promisify(scrypt) as (
  password: string,
  salt: Buffer,
  keylen: number,
  options: { N: number; r: number; p: number; maxmem: number },
) => Promise<Buffer>;

/** Key-derivation parameters recorded in the manifest header (plaintext), so a reader can derive the keys. */
export interface KdfParams {
  name: 'scrypt';
  N: number;
  r: number;
  p: number;
  /** base64 */
  salt: string;
}

export interface ChainKeys {
  /** The key chunk ids are computed under (chunk-id.ts): ids leak nothing about content without it. */
  chunkId: Buffer;
  /** AES-256-GCM key for blobs. */
  data: Buffer;
  /** AES-256-GCM key for the manifest body. */
  manifest: Buffer;
  /** Proof that a key is the right one, stored in the manifest header. */
  check: Buffer;
}

export function newKdfParams(): KdfParams {
  return { name: 'scrypt', N: 1 << 15, r: 8, p: 1, salt: randomBytes(16).toString('base64') };
}

export async function deriveKeys(taskKey: string, kdf: KdfParams): Promise<ChainKeys> {
  if (kdf.name !== 'scrypt' || kdf.N > 1 << 20 || kdf.r > 32 || kdf.p > 16) {
    throw new BackupdError(
      'UNSUPPORTED_FORMAT',
      `key derivation ${JSON.stringify({ ...kdf, salt: undefined })} is not supported`,
    );
  }
  if (taskKey.length === 0) throw new BackupdError('INVALID_ARGUMENT', 'the encryption key must not be empty');
  const salt = Buffer.from(kdf.salt, 'base64');
  const master = await scryptAsync(taskKey, salt, 32, { N: kdf.N, r: kdf.r, p: kdf.p, maxmem: 256 * kdf.N * kdf.r });
  const sub = (info: string) => Buffer.from(hkdfSync('sha256', master, salt, `backupd/v1/${info}`, 32));
  const checkKey = sub('key-check');
  return {
    chunkId: sub('chunk-id'),
    data: sub('chunk-data'),
    manifest: sub('manifest'),
    check: createHmac('sha256', checkKey).update('backupd key check').digest(),
  };
}

/** Compare a stored key check with the derived one, without leaking timing. */
export function keyMatches(keys: ChainKeys, storedCheck: string): boolean {
  const stored = Buffer.from(storedCheck, 'base64');
  return stored.length === keys.check.length && timingSafeEqual(stored, keys.check);
}
