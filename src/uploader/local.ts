// The local folder destination: objects are files under a root folder. Writes go to a temp file in
// the same folder and are renamed into place, so a reader never sees a partial object.

import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile, link, mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BackupdError } from '../errors.js';
import { parseWith, z } from '../validate.js';
import type {
  Destination,
  DestinationFactory,
  GetOptions,
  ObjectInfo,
  PutBody,
  PutOptions,
  PutResult,
} from './destination.js';

export interface LocalConfig {
  /** Absolute path of the folder that holds the backups. */
  path: string;
}

const localSchema = z.strictObject({
  path: z.string().min(1, 'must not be empty').refine(isAbsolute, 'must be an absolute path'),
});

const TEMP_MARK = '.partial-';

export class LocalDestination implements Destination {
  readonly kind = 'local';
  readonly capabilities = {
    listable: true,
    rangeReads: true,
    immediateReads: true,
    maxObjectSize: Number.MAX_SAFE_INTEGER,
  };

  constructor(
    readonly name: string,
    readonly root: string,
  ) {}

  /** The file that holds `key`; refuses keys that would leave the root. */
  pathOf(key: string): string {
    const full = join(this.root, key);
    const rel = relative(this.root, full);
    if (key === '' || rel.startsWith('..') || isAbsolute(rel) || key.split('/').some((s) => s === '..' || s === '')) {
      throw new BackupdError('INVALID_ARGUMENT', `object key "${key}" is not a relative path inside the destination`);
    }
    return full;
  }

  localPath(key: string): string {
    return this.pathOf(key);
  }

  async put(key: string, body: PutBody, size: number, options: PutOptions = {}): Promise<PutResult> {
    const target = this.pathOf(key);
    await mkdir(dirname(target), { recursive: true }).catch((e: unknown) => {
      throw fsError(e, `create folder for ${key}`);
    });
    const temp = `${target}${TEMP_MARK}${randomBytes(6).toString('hex')}`;
    try {
      let done = 0;
      const source = Buffer.isBuffer(body) ? Readable.from([body]) : body();
      source.on('data', (chunk: Buffer) => {
        done += chunk.length;
        options.onProgress?.(done);
      });
      const out = createWriteStream(temp, { flush: true });
      await pipeline(source, out, { signal: options.signal });
      if (done !== size) {
        throw new BackupdError('DESTINATION_FAILED', `object ${key}: expected ${size} bytes, got ${done}`);
      }
      await rename(temp, target);
      return {};
    } catch (error) {
      await rm(temp, { force: true });
      if (options.signal?.aborted) throw new BackupdError('CANCELLED', `upload of ${key} cancelled`, { cause: error });
      throw fsError(error, `write ${key}`);
    }
  }

  /** Hard-link a staged file into place (no copy); copies instead across filesystems. */
  async putFile(key: string, path: string, size: number): Promise<PutResult> {
    const target = this.pathOf(key);
    const temp = `${target}${TEMP_MARK}${randomBytes(6).toString('hex')}`;
    try {
      await mkdir(dirname(target), { recursive: true });
      await link(path, temp).catch(async (error: unknown) => {
        if (codeOf(error) !== 'EXDEV' && codeOf(error) !== 'EPERM') throw error;
        await copyFile(path, temp);
      });
      const info = await stat(temp);
      if (info.size !== size)
        throw new BackupdError('DESTINATION_FAILED', `object ${key}: expected ${size} bytes, got ${info.size}`);
      await rename(temp, target);
      return {};
    } catch (error) {
      await rm(temp, { force: true });
      throw fsError(error, `write ${key}`);
    }
  }

  async get(key: string, options: GetOptions = {}): Promise<Readable> {
    const path = this.pathOf(key);
    // Open first so a missing object is a NOT_FOUND at the call, not an error event later.
    const handle = await open(path, 'r').catch((e: unknown) => {
      throw fsError(e, `read ${key}`);
    });
    const range = options.range;
    return createReadStream('', {
      fd: handle,
      start: range?.offset,
      end: range ? range.offset + range.length - 1 : undefined,
      signal: options.signal,
      highWaterMark: 1 << 20,
    });
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    try {
      const info = await stat(this.pathOf(key));
      return { key, size: info.size, modifiedAt: info.mtime };
    } catch (error) {
      if (codeOf(error) === 'ENOENT') return undefined;
      throw fsError(error, `stat ${key}`);
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    // Walk only the folder the prefix names, then filter by the rest of it.
    const slash = prefix.lastIndexOf('/');
    const folder = slash < 0 ? '' : prefix.slice(0, slash);
    const start = folder === '' ? this.root : this.pathOf(folder);
    for await (const file of walk(start)) {
      const key = relative(this.root, file).split(sep).join('/');
      if (!key.startsWith(prefix) || key.includes(TEMP_MARK)) continue;
      const info = await stat(file).catch(() => undefined); // deleted while listing: not listed
      if (info) yield { key, size: info.size, modifiedAt: info.mtime };
    }
  }

  async delete(key: string): Promise<void> {
    await rm(this.pathOf(key), { force: true }).catch((e: unknown) => {
      throw fsError(e, `delete ${key}`);
    });
  }

  async removeStaleTemps(prefix: string, before: Date): Promise<string[]> {
    const slash = prefix.lastIndexOf('/');
    const folder = slash < 0 ? '' : prefix.slice(0, slash);
    const removed: string[] = [];
    for await (const file of walk(folder === '' ? this.root : this.pathOf(folder))) {
      const name = relative(this.root, file).split(sep).join('/');
      if (!name.startsWith(prefix) || !name.includes(TEMP_MARK)) continue;
      const info = await stat(file).catch(() => undefined); // gone meanwhile: nothing to remove
      if (!info || info.mtime >= before) continue;
      await rm(file, { force: true }).catch((e: unknown) => {
        throw fsError(e, `remove temp file ${name}`);
      });
      removed.push(name);
    }
    return removed;
  }

  async close(): Promise<void> {}
}

async function* walk(folder: string): AsyncIterable<string> {
  let entries: import('node:fs').Dirent[];
  try {
    entries = await readdir(folder, { withFileTypes: true });
  } catch (error) {
    if (codeOf(error) === 'ENOENT') return;
    throw fsError(error, `list ${folder}`);
  }
  for (const entry of entries) {
    const path = join(folder, entry.name);
    if (entry.isDirectory()) yield* walk(path);
    else if (entry.isFile()) yield path;
  }
}

function codeOf(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error ? String(error.code) : undefined;
}

function fsError(error: unknown, what: string): BackupdError {
  if (error instanceof BackupdError) return error;
  const code = codeOf(error);
  const message = error instanceof Error ? error.message : String(error);
  if (code === 'ENOENT') return new BackupdError('NOT_FOUND', `${what}: no such object`, { cause: error });
  if (code === 'EACCES' || code === 'EPERM') {
    return new BackupdError('PERMISSION_DENIED', `${what}: permission denied (${message})`, { cause: error });
  }
  if (code === 'ENOSPC') return new BackupdError('DESTINATION_FAILED', `${what}: disk full`, { cause: error });
  return new BackupdError('DESTINATION_FAILED', `${what}: ${message}`, { cause: error, retryable: code === 'EBUSY' });
}

export const local = {
  kind: 'local',
  parseConfig: (input: unknown, path: string): LocalConfig => parseWith(localSchema, input, 'local destination', path),
  redact: (config: LocalConfig): LocalConfig => config,
  open: async (name: string, config: LocalConfig): Promise<Destination> => new LocalDestination(name, config.path),
} satisfies DestinationFactory<LocalConfig>;
