// A tool's stdout read into a few reused buffers instead of a new one per read. Node's child stdout
// allocates a fresh 64 KiB ArrayBuffer for every read; for a pg_dump of a gigabyte that is 15,000 of them,
// and V8 counts that external memory toward full garbage collections: 50-80 per 878 MB, 1-1.5 CPU ms per
// MB of dump (docs/BENCHMARKS.md, "Pipeline CPU per MB"). And pg_dump writes 4 KiB at a time: read on the
// event loop, nearly every write woke it. So the pipe is read by a thread of its own (tool-pipe-worker.ts)
// into a ring of pieces in shared memory, and a piece reaches the consumer once it is nearly full.
//
// Node cannot create an anonymous pipe, so a FIFO in a private temporary folder stands in for one: its
// write end becomes the tool's stdout, and its name is removed as soon as both ends are open.
//
// The pieces yielded are views of RING reused buffers: a consumer must be done with a piece (copied it)
// before it asks for the third next one, and with all of them once they end. The pipeline copies each
// piece into its batch slots at once. The shared memory of a pipe read to its end serves the next pipe:
// V8 does not count shared memory toward its collections, so a new ring per dump would stay for long.

import { execFile } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BackupdError } from '../errors.js';
import { startWorker } from '../worker.js';
import {
  COMPLETED,
  ENDED,
  LENGTHS,
  type PipeFailure,
  type PipeJob,
  RUNNING,
  STATE,
  STOPPED,
  TAKEN,
} from './tool-pipe-ring.js';

const RING = 4;
const PIECE_BYTES = 256 << 10;
/** A piece is handed on once less than this is left in it: no read gets less room than this. */
const MIN_ROOM = 64 << 10;
/** Rings (and their control arrays) of pipes read to the end, for the next pipes. */
const spares: { ring: SharedArrayBuffer; control: SharedArrayBuffer }[] = [];
const SPARE_RINGS = 2;

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
    // An open for reading alone would wait for a writer, so a non-blocking read end comes first; the write
    // end then opens at once, and with a writer there the blocking read end the reader thread wants too.
    const waiting = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      writeFd = openSync(fifo, constants.O_WRONLY);
      readFd = openSync(fifo, constants.O_RDONLY);
    } finally {
      closeSync(waiting);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const memories = spares.pop() ?? {
    ring: new SharedArrayBuffer(RING * PIECE_BYTES),
    control: new SharedArrayBuffer(4 * (LENGTHS + RING)),
  };
  const job: PipeJob = { fd: readFd, ...memories, pieceBytes: PIECE_BYTES, minRoom: MIN_ROOM };
  const memory = Buffer.from(job.ring);
  const state = new Int32Array(job.control);
  state.fill(0);
  // The memories go back once the reader has exited and the consumer has seen the end; from then on this
  // pipe never touches them again (another pipe may be using them).
  let done = 0;
  let released = false;
  const recycle = () => {
    if (++done < 2) return;
    released = true;
    if (spares.length < SPARE_RINGS) spares.push(memories);
  };
  const reader = startWorker(import.meta.url, './tool-pipe-worker', job);
  let failure: Error | undefined;
  const fail = (error: Error) => {
    failure ??= error;
    Atomics.notify(state, COMPLETED); // wakes a consumer waiting for the next piece
  };
  reader.on('message', (message: PipeFailure) =>
    fail(new BackupdError('SOURCE_FAILED', `reading the tool's output: ${message.error}`)),
  );
  reader.on('error', (error) => fail(error));
  reader.on('exit', () => {
    closeSync(readFd);
    const end = Atomics.load(state, STATE);
    if (end === RUNNING) fail(new BackupdError('INTERNAL', 'the pipe reader stopped early'));
    Atomics.notify(state, COMPLETED); // a consumer waiting for more sees the end
    if (end === ENDED) recycle();
  });
  const close = () => {
    if (released) return;
    if (Atomics.compareExchange(state, STATE, RUNNING, STOPPED) === RUNNING) Atomics.notify(state, TAKEN);
  };
  return {
    writeFd,
    close,
    async *pieces() {
      try {
        for (let n = 0; ; n++) {
          for (;;) {
            if (Atomics.load(state, COMPLETED) > n) break;
            if (failure) throw failure;
            const end = Atomics.load(state, STATE);
            if (end !== RUNNING && Atomics.load(state, COMPLETED) <= n) {
              // Stopped by close() while still read: never let that pass for the whole output.
              if (end === STOPPED) throw new BackupdError('CANCELLED', "the tool's output was closed before its end");
              recycle();
              return;
            }
            const waiting = Atomics.waitAsync(state, COMPLETED, n);
            if (waiting.async) await waiting.value;
          }
          Atomics.store(state, TAKEN, n + 1);
          Atomics.notify(state, TAKEN);
          const slot = n % RING;
          yield memory.subarray(slot * PIECE_BYTES, slot * PIECE_BYTES + state[LENGTHS + slot]!);
        }
      } finally {
        close();
      }
    },
  };
}
