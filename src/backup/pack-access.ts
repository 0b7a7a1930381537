// Random access to the blobs of a chain's packs during restore: packs of a destination on this machine are
// read in place, others are fetched whole into the cache folder once. Missing and truncated packs become
// PACK_MISSING / PACK_CORRUPT errors that name the pack.

import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { type FileHandle, mkdir, open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { BackupdError, PackError } from '../errors.js';
import { type DatabaseRef, packKey } from '../layout.js';
import type { Destination } from '../uploader/destination.js';

export class PackAccess {
  private readonly handles = new Map<string, Promise<FileHandle>>();
  private readonly files = new Map<string, Promise<string>>();
  private readonly fetched: string[] = [];

  constructor(
    private readonly from: Destination,
    private readonly ref: DatabaseRef,
    private readonly chainId: string,
    private readonly cacheDir: string,
    private readonly signal?: AbortSignal,
    private readonly refs: Record<string, string> = {},
  ) {}

  /** Check that every pack is there with its size, before anything is restored. */
  async checkPresent(packs: { id: string; size: number }[]): Promise<void> {
    // Glacier-like destinations cannot describe an archive without an inventory job: found at fetch time.
    if (!this.from.capabilities.immediateReads) return;
    for (const pack of packs) {
      const info = await this.from.stat(packKey(this.ref, this.chainId, pack.id));
      if (!info) throw missing(pack.id, this.from);
      if (info.size !== pack.size) {
        throw new PackError(
          'PACK_CORRUPT',
          `pack ${pack.id} is ${info.size} bytes at ${this.from.name}, expected ${pack.size} (truncated?)`,
          pack.id,
        );
      }
    }
  }

  async read(packId: string, offset: number, length: number): Promise<Buffer> {
    const handle = await this.handle(packId);
    const buffer = Buffer.allocUnsafe(length);
    const { bytesRead } = await handle.read(buffer, 0, length, offset);
    if (bytesRead !== length) {
      throw new PackError('PACK_CORRUPT', `pack ${packId} ends before byte ${offset + length} (truncated)`, packId);
    }
    return buffer;
  }

  async close(): Promise<void> {
    for (const handle of this.handles.values()) await handle.then((h) => h.close()).catch(() => undefined); // already failed: nothing to close
    await Promise.all(this.fetched.map((path) => rm(path, { force: true })));
  }

  private handle(packId: string): Promise<FileHandle> {
    let handle = this.handles.get(packId);
    if (!handle) {
      handle = this.openPack(packId);
      this.handles.set(packId, handle);
    }
    return handle;
  }

  /** A path on this machine holding the pack: the destination's own file, or a copy fetched into the cache. */
  pathOf(packId: string): Promise<string> {
    let file = this.files.get(packId);
    if (!file) {
      file = this.fetch(packId);
      this.files.set(packId, file);
    }
    return file;
  }

  private async openPack(packId: string): Promise<FileHandle> {
    const path = await this.pathOf(packId);
    try {
      return await open(path, 'r');
    } catch (error) {
      if ((error as { code?: string }).code === 'ENOENT') throw missing(packId, this.from);
      throw error;
    }
  }

  private async fetch(packId: string): Promise<string> {
    const key = packKey(this.ref, this.chainId, packId);
    const local = this.from.localPath?.(key);
    if (local) return local;
    try {
      await mkdir(this.cacheDir, { recursive: true });
      const path = join(this.cacheDir, `${packId}.${randomBytes(4).toString('hex')}.pack`);
      this.fetched.push(path);
      await pipeline(
        await this.from.get(key, { signal: this.signal, ref: this.refs[key] }),
        createWriteStream(`${path}.partial`),
      );
      await rename(`${path}.partial`, path);
      return path;
    } catch (error) {
      if (
        (error as { code?: string }).code === 'ENOENT' ||
        (error instanceof BackupdError && error.code === 'NOT_FOUND')
      ) {
        throw missing(packId, this.from);
      }
      throw error;
    }
  }
}

function missing(packId: string, from: Destination): BackupdError {
  return new PackError('PACK_MISSING', `pack ${packId} is missing at destination ${from.name}`, packId);
}
