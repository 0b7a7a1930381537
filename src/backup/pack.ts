// Packs: files of tens of MiB holding many blobs back to back after an 8-byte magic, named by the
// sha256 of their whole content, immutable once written. The writer fills a temp file in the staging
// folder and renames it to <pack id>.pack when it is full; the reader reads blobs by offset.

import { createHash, type Hash, randomBytes } from 'node:crypto';
import { type FileHandle, mkdir, open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';

export const PACK_MAGIC = Buffer.from('BKDPACK1');
/** Packs close at this size: few, large objects for object stores, small enough to retry cheaply. */
export const PACK_TARGET_SIZE = 32 << 20;

export interface WrittenPack {
  id: string;
  size: number;
  path: string;
}

export interface BlobPlace {
  /** Index into the writer's packs, in the order they were started. */
  pack: number;
  offset: number;
  length: number;
}

export class PackWriter {
  readonly packs: WrittenPack[] = [];
  private file: FileHandle | undefined;
  private tempPath = '';
  private hash: Hash | undefined;
  private size = 0;
  private buffered: Buffer[] = [];
  private bufferedBytes = 0;

  constructor(
    private readonly folder: string,
    private readonly targetSize = PACK_TARGET_SIZE,
  ) {}

  /** Append a blob; returns where it went. The pack index is final even before the pack is closed. */
  async add(blob: Buffer): Promise<BlobPlace> {
    if (!this.file) await this.start();
    const place = { pack: this.packs.length, offset: this.size, length: blob.length };
    this.hash!.update(blob);
    this.buffer(blob);
    this.size += blob.length;
    if (this.bufferedBytes >= 4 << 20) await this.flush();
    if (this.size >= this.targetSize) await this.finish();
    return place;
  }

  /** Append blobs in order; returns where each went. */
  async addAll(blobs: Buffer[]): Promise<BlobPlace[]> {
    const places: BlobPlace[] = [];
    for (const blob of blobs) places.push(await this.add(blob));
    return places;
  }

  /** Close the open pack, if any. Returns every pack written. */
  async close(): Promise<WrittenPack[]> {
    if (this.file) await this.finish();
    return this.packs;
  }

  /** Remove the temp file of a failed run (finished packs stay for the caller to clean or reuse). */
  async abort(): Promise<void> {
    if (this.file) {
      await this.file.close();
      this.file = undefined;
      await rm(this.tempPath, { force: true });
    }
  }

  private async start(): Promise<void> {
    await mkdir(this.folder, { recursive: true });
    this.tempPath = join(this.folder, `.partial-${randomBytes(6).toString('hex')}.pack`);
    this.file = await open(this.tempPath, 'w');
    this.hash = createHash('sha256');
    this.size = 0;
    this.buffered = [];
    this.bufferedBytes = 0;
    await this.addRaw(PACK_MAGIC);
  }

  private async addRaw(bytes: Buffer): Promise<void> {
    this.hash!.update(bytes);
    this.buffer(bytes);
    this.size += bytes.length;
  }

  /**
   * Keep `bytes` for the next flush. Blobs sealed together arrive back to back in one buffer: such views
   * are joined into one, so a flush writes a few stretches rather than one piece per blob.
   */
  private buffer(bytes: Buffer): void {
    const last = this.buffered.at(-1);
    if (last && last.buffer === bytes.buffer && last.byteOffset + last.length === bytes.byteOffset) {
      this.buffered[this.buffered.length - 1] = Buffer.from(last.buffer, last.byteOffset, last.length + bytes.length);
    } else {
      this.buffered.push(bytes);
    }
    this.bufferedBytes += bytes.length;
  }

  /** Write what is buffered with one gathering write: no copy into one buffer first. */
  private async flush(): Promise<void> {
    if (this.bufferedBytes === 0) return;
    const { bytesWritten } = await this.file!.writev(this.buffered);
    if (bytesWritten !== this.bufferedBytes) {
      // A regular file takes the whole write unless something is wrong: write the rest in one piece.
      await this.file!.write(Buffer.concat(this.buffered, this.bufferedBytes).subarray(bytesWritten));
    }
    this.buffered = [];
    this.bufferedBytes = 0;
  }

  private async finish(): Promise<void> {
    await this.flush();
    await this.file!.sync();
    await this.file!.close();
    this.file = undefined;
    const id = this.hash!.digest('hex');
    const path = join(this.folder, `${id}.pack`);
    await rename(this.tempPath, path);
    this.packs.push({ id, size: this.size, path });
  }
}
