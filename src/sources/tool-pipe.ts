// A tool's stdout read into a few reused buffers instead of a new one per read. Node's child stdout
// allocates a fresh 64 KiB ArrayBuffer for every read; for a pg_dump of a gigabyte that is 15,000 of them,
// and V8 counts that external memory toward full garbage collections: 50-80 per 878 MB, 1-1.5 CPU ms per
// MB of dump (docs/BENCHMARKS.md, "Pipeline CPU per MB"). Node cannot create an anonymous pipe, so a FIFO
// in a private temporary folder stands in for one: its write end becomes the tool's stdout and its name is
// removed at once; the read end is a socket whose reads land in our buffers (net.Socket's `onread`).
//
// The pieces yielded are views of RING reused buffers: a consumer must be done with a piece (copied it)
// before it asks for the third next one. The pipeline copies each piece into its batch slots at once.

import { execFile } from 'node:child_process';
import { constants, openSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { Socket, type SocketConstructorOpts } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const RING = 4;
const PIECE_BYTES = 256 << 10;

/** Both ends of a new pipe: `writeFd` for a child's stdio (close it here once the child has it). */
export interface ToolPipe {
  writeFd: number;
  /** The bytes written into the pipe, until every writer closed it. */
  pieces(): AsyncGenerator<Buffer>;
  /** Stop reading and release the read end (idempotent). */
  close(): void;
}

export async function openToolPipe(): Promise<ToolPipe> {
  const dir = await mkdtemp(join(tmpdir(), 'backupd-pipe-'));
  const fifo = join(dir, 'out');
  let readFd: number;
  let writeFd: number;
  try {
    await promisify(execFile)('mkfifo', ['-m', '600', fifo]);
    // The read end first and non-blocking (an open for reading alone would wait for a writer); the write
    // end then opens at once, blocking as a child expects its stdout to be.
    readFd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    writeFd = openSync(fifo, constants.O_WRONLY);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const ring = Array.from({ length: RING }, () => Buffer.allocUnsafe(PIECE_BYTES));
  let next = 0;
  let piece: Buffer | undefined;
  let ended = false;
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  // `onread` is honoured by the constructor too (Node's net.js), though @types/node lists it for connect only.
  const socket = new Socket({
    fd: readFd,
    readable: true,
    writable: false,
    onread: {
      buffer: () => ring[next]!,
      callback: (bytes: number, buffer: Uint8Array) => {
        piece = Buffer.from(buffer.buffer, buffer.byteOffset, bytes);
        next = (next + 1) % RING;
        wake?.();
        return false; // one piece at a time: the next read waits until this one is taken
      },
    },
  } as SocketConstructorOpts);
  socket.on('end', () => {
    ended = true;
    wake?.();
  });
  socket.on('error', (error) => {
    failure = error;
    wake?.();
  });
  const close = () => {
    if (!socket.destroyed) socket.destroy();
  };
  return {
    writeFd,
    close,
    async *pieces() {
      try {
        for (;;) {
          while (piece === undefined && !ended && failure === undefined) {
            await new Promise<void>((resolve) => {
              wake = resolve;
            });
            wake = undefined;
          }
          if (failure) throw failure;
          if (piece === undefined) return;
          const taken = piece;
          piece = undefined;
          socket.resume();
          yield taken;
        }
      } finally {
        close();
      }
    },
  };
}
