// The manifest: the commit marker of one restore point, written last. It lists every file of the restore
// point with its chunks and where each chunk lives, so a restore needs one manifest plus the chain's packs.
// On disk (docs/FORMAT.md):
//   line 1  "BACKUPD-MANIFEST <format>"         plain, so a newer format is recognised before anything else
//   line 2  header JSON                         plain: encryption, kdf, key check, body length
//   body    zstd(JSON), AES-256-GCM sealed when encrypted (header line as associated data)
//   last    "\n" + sha256 hex of everything before it + "\n"

import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import * as zstd from 'zstd-napi';
import { BackupdError } from '../errors.js';
import type { BackupLevel, BackupType } from '../layout.js';
import type { Fingerprint } from '../sources/fingerprint.js';
import { type ChainKeys, type KdfParams, keyMatches } from './chain-keys.js';
import { CHUNK_IDS } from './chunk-id.js';
import { type ChunkerParams, validateChunker } from './chunker.js';

/** The one format version, written and read; a manifest of any other is refused (UNSUPPORTED_FORMAT). */
export const FORMAT_VERSION = 3;
const MAGIC = 'BACKUPD-MANIFEST';

/** Where one chunk is stored: index into `packs`, byte offset and length of its blob, and its raw length. */
export type ChunkLocation = [id: string, pack: number, offset: number, length: number, rawLength: number];

export interface ManifestFile {
  name: string;
  size: number;
  chunker: ChunkerParams;
  /** Indexes into Manifest.chunks, in file order. */
  chunks: number[];
}

export interface Manifest {
  format: number;
  backupId: string;
  chainId: string;
  /** The restore point before this one in the chain; absent for the full. */
  parent?: string;
  level: BackupLevel;
  type: BackupType;
  cluster: string;
  source: string;
  database: string;
  task: string;
  engine: string;
  engineVersion: string;
  node: string;
  /** Leader term when the run was assigned: the fencing token. 0 on a single node. */
  term: number;
  startedAt: string;
  finishedAt: string;
  compression: { algorithm: 'zstd'; level: number };
  /** How the chunks are named (chunk-id.ts): always 'blake3'; a reader refuses any other name. */
  chunkIds: typeof CHUNK_IDS;
  files: ManifestFile[];
  /** Every pack this restore point reads from, by sha256 id, with its size. */
  packs: { id: string; size: number }[];
  /** Every distinct chunk this restore point references (base64 ids). */
  chunks: ChunkLocation[];
  /** Packs (indexes into `packs`) written by this run; the rest belong to earlier restore points. */
  newPacks: number[];
  sizes: { raw: number; stored: number; chainStored: number };
  /**
   * What the database held when the backup was taken (sources/fingerprint.ts; recipes in docs/FORMAT.md),
   * for engines and types that record one; verify --restore compares a restored database with it.
   */
  fingerprint?: Fingerprint;
  /** Destination-specific references (Glacier archive ids), by destination name then pack id. */
  refs?: Record<string, Record<string, string>>;
  /** What a restore of this point will not bring back, as the source said it (SourceReading.notes). */
  notes?: string[];
  /** The source's text for the chain's next incremental (SourceReading.engineState), when it gave one. */
  engineState?: string;
}

export interface ManifestHeader {
  encryption: 'none' | 'aes-256-gcm';
  kdf?: KdfParams;
  keyCheck?: string;
  compression: 'zstd';
  bodyLength: number;
}

/** The manifest's bytes, under the version it names (`format`: FORMAT_VERSION for every manifest written). */
export function encodeManifest(manifest: Manifest, keys: ChainKeys | undefined, kdf: KdfParams | undefined): Buffer {
  const json = Buffer.from(JSON.stringify(manifest));
  let body = zstd.compress(json, { compressionLevel: 3 });
  const headerFields: ManifestHeader = keys
    ? { encryption: 'aes-256-gcm', kdf, keyCheck: keys.check.toString('base64'), compression: 'zstd', bodyLength: 0 }
    : { encryption: 'none', compression: 'zstd', bodyLength: 0 };
  if (keys) body = seal(body, keys.manifest, Buffer.from(manifest.backupId));
  headerFields.bodyLength = body.length;
  const head = Buffer.from(`${MAGIC} ${manifest.format}\n${JSON.stringify(headerFields)}\n`);
  const sum = createHash('sha256').update(head).update(body).digest('hex');
  return Buffer.concat([head, body, Buffer.from(`\n${sum}\n`)]);
}

/** Read only the plain parts: format version, header, checksum. Throws UNSUPPORTED_FORMAT / MANIFEST_CORRUPT. */
export function readManifestHeader(
  bytes: Buffer,
  name: string,
): { header: ManifestHeader; body: Buffer; format: number } {
  const firstLine = bytes.subarray(0, Math.min(bytes.length, 64)).toString('latin1').split('\n')[0] ?? '';
  const magic = /^BACKUPD-MANIFEST (\d+)$/.exec(firstLine);
  if (!magic) throw new BackupdError('MANIFEST_CORRUPT', `manifest ${name} does not start with "${MAGIC}"`);
  const format = Number(magic[1]);
  if (format !== FORMAT_VERSION) {
    const advice = format > FORMAT_VERSION ? 'upgrade backupd to read it' : 'no released backupd wrote it';
    throw new BackupdError(
      'UNSUPPORTED_FORMAT',
      `manifest ${name} has format version ${format}; this backupd reads version ${FORMAT_VERSION} only: ${advice}`,
    );
  }
  if (bytes.length < 66) throw new BackupdError('MANIFEST_CORRUPT', `manifest ${name} is truncated`);
  const trailer = bytes.subarray(bytes.length - 66).toString('latin1');
  const signed = bytes.subarray(0, bytes.length - 66);
  const expected = createHash('sha256').update(signed).digest('hex');
  if (trailer !== `\n${expected}\n`) {
    throw new BackupdError('MANIFEST_CORRUPT', `manifest ${name} fails its checksum (truncated or corrupted)`);
  }
  const headerEnd = signed.indexOf(10, firstLine.length + 1);
  let header: ManifestHeader;
  try {
    header = JSON.parse(signed.subarray(firstLine.length + 1, headerEnd).toString('utf8')) as ManifestHeader;
  } catch (error) {
    throw new BackupdError('MANIFEST_CORRUPT', `manifest ${name} has an unreadable header`, { cause: error });
  }
  const body = signed.subarray(headerEnd + 1);
  if (body.length !== header.bodyLength) {
    throw new BackupdError(
      'MANIFEST_CORRUPT',
      `manifest ${name}: body is ${body.length} bytes, header says ${header.bodyLength}`,
    );
  }
  return { header, body, format };
}

/**
 * Decode a manifest. `keysFor` derives the chain keys from the header's kdf (scrypt is slow: the caller
 * caches). Throws KEY_REQUIRED, WRONG_KEY, MANIFEST_CORRUPT, UNSUPPORTED_FORMAT.
 */
export async function decodeManifest(
  bytes: Buffer,
  name: string,
  keysFor: (kdf: KdfParams) => Promise<ChainKeys | undefined>,
): Promise<{ manifest: Manifest; keys: ChainKeys | undefined; kdf: KdfParams | undefined }> {
  const { header, body, format } = readManifestHeader(bytes, name);
  let keys: ChainKeys | undefined;
  let compressed = body;
  if (header.encryption === 'aes-256-gcm') {
    if (!header.kdf || !header.keyCheck) throw new BackupdError('MANIFEST_CORRUPT', `manifest ${name} lacks its kdf`);
    keys = await keysFor(header.kdf);
    if (!keys) throw new BackupdError('KEY_REQUIRED', `backup ${name} is encrypted: give the task's encryption key`);
    if (!keyMatches(keys, header.keyCheck)) {
      throw new BackupdError('WRONG_KEY', `the encryption key does not open backup ${name}: check the key`);
    }
    const backupId = name.replace(/^.*\//, '').replace(/\.manifest$/, '');
    try {
      compressed = open(body, keys.manifest, Buffer.from(backupId));
    } catch (error) {
      throw new BackupdError('MANIFEST_CORRUPT', `manifest ${name} fails authentication`, { cause: error });
    }
  } else if (header.encryption !== 'none') {
    throw new BackupdError('UNSUPPORTED_FORMAT', `manifest ${name} uses unknown encryption "${header.encryption}"`);
  }
  let manifest: Manifest;
  try {
    manifest = JSON.parse(zstd.decompress(compressed).toString('utf8')) as Manifest;
  } catch (error) {
    throw new BackupdError('MANIFEST_CORRUPT', `manifest ${name} has an unreadable body`, { cause: error });
  }
  checkShape(manifest, name, format);
  return { manifest, keys, kdf: header.kdf };
}

function checkShape(m: Manifest, name: string, format: number): void {
  const bad = (what: string) => new BackupdError('MANIFEST_CORRUPT', `manifest ${name}: ${what}`);
  if (m.format !== format) throw bad(`body format ${m.format} does not match its header's ${format}`);
  if (m.chunkIds !== CHUNK_IDS) {
    throw new BackupdError(
      'UNSUPPORTED_FORMAT',
      `manifest ${name} names its chunks with "${String(m.chunkIds)}", which this backupd does not know: upgrade backupd to read it`,
    );
  }
  if (!Array.isArray(m.files) || !Array.isArray(m.chunks) || !Array.isArray(m.packs)) throw bad('missing lists');
  if (m.engineState !== undefined && typeof m.engineState !== 'string') throw bad('engineState is not a string');
  for (const file of m.files) {
    validateChunker(file.chunker);
    for (const index of file.chunks)
      if (!m.chunks[index]) throw bad(`file ${file.name} references unknown chunk ${index}`);
  }
  for (const [id, pack] of m.chunks) if (!m.packs[pack]) throw bad(`chunk ${id} references unknown pack ${pack}`);
}

function seal(data: Buffer, key: Buffer, aad: Buffer): Buffer {
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(aad);
  return Buffer.concat([nonce, cipher.update(data), cipher.final(), cipher.getAuthTag()]);
}

function open(data: Buffer, key: Buffer, aad: Buffer): Buffer {
  const decipher = createDecipheriv('aes-256-gcm', key, data.subarray(0, 12));
  decipher.setAAD(aad);
  decipher.setAuthTag(data.subarray(data.length - 16));
  return Buffer.concat([decipher.update(data.subarray(12, data.length - 16)), decipher.final()]);
}
