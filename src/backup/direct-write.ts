// Writing a restored file past the page cache. A restore ends with fsync, so its bytes must reach the disk
// anyway: written with O_DIRECT they go there at once, while buffered writes wait for writeback, which on
// the VMs this runs on moves 280-470 MB/s against 650-690 MB/s for direct writes of the same data
// (dd of a 1 GiB SQLite file, 4 MiB blocks). O_DIRECT needs the memory, the file offset and the length
// aligned; writes that are not, and file systems that refuse it (tmpfs), take the buffered path. Writes
// are asynchronous (libuv's threads), so a restore worker opens its next batch while the last one is
// written.

import { closeSync, constants, openSync, write } from 'node:fs';
import { promisify } from 'node:util';

/** Offsets and lengths of direct writes are multiples of this (the usual page and disk sector size). */
export const DIRECT_ALIGN = 4096;

const WASM_PAGE = 64 << 10;
/** Node has WebAssembly; the project's TypeScript libraries (no DOM) do not declare it. */
const WasmMemory = (
  globalThis as unknown as { WebAssembly: { Memory: new (d: { initial: number }) => { buffer: ArrayBuffer } } }
).WebAssembly.Memory;

/** False once a direct open or write was refused here: the rest of this thread's writes are buffered. */
let directWorks = typeof constants.O_DIRECT === 'number';

/**
 * A buffer of at least `size` bytes whose memory starts on a page boundary, as O_DIRECT needs: a
 * WebAssembly memory is mapped whole pages at a time, where a Buffer's may start anywhere.
 */
export function alignedBuffer(size: number): Buffer {
  const memory = new WasmMemory({ initial: Math.max(1, Math.ceil(size / WASM_PAGE)) });
  return Buffer.from(memory.buffer);
}

const writeAt = promisify(write);

/**
 * One open target file, written at offsets: directly when a write is aligned and allowed, else buffered.
 * Writes may run at once (different regions); close it once every write has settled.
 */
export class TargetFile {
  private readonly buffered: number;
  private readonly direct: number | undefined;
  /** A direct write was refused: this file's writes are buffered from then on. */
  private directRefused = false;

  constructor(path: string) {
    this.buffered = openSync(path, 'r+');
    if (directWorks) {
      try {
        this.direct = openSync(path, constants.O_RDWR | constants.O_DIRECT);
      } catch {
        directWorks = false;
      }
    }
  }

  /**
   * Write all of `bytes` at `position`. A region of an alignedBuffer that starts at a multiple of
   * DIRECT_ALIGN, at a position and of a length that are multiples too, can go direct.
   */
  async write(bytes: Buffer, position: number): Promise<void> {
    const aligned =
      position % DIRECT_ALIGN === 0 && bytes.length % DIRECT_ALIGN === 0 && bytes.byteOffset % DIRECT_ALIGN === 0;
    if (this.direct !== undefined && !this.directRefused && aligned) {
      try {
        await writeAll(this.direct, bytes, position);
        return;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EINVAL') throw error;
        directWorks = false; // memory or file system not fit for it: write this and the rest buffered
        this.directRefused = true;
      }
    }
    await writeAll(this.buffered, bytes, position);
  }

  close(): void {
    if (this.direct !== undefined) closeSync(this.direct);
    closeSync(this.buffered);
  }
}

/** Write until every byte is written (a regular file may take a large write in parts). */
async function writeAll(fd: number, bytes: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    done += (await writeAt(fd, bytes, done, bytes.length - done, position + done)).bytesWritten;
  }
}
