// Reads a tool's stdout pipe for tool-pipe.ts in a thread of its own, with blocking reads, into the
// regions of shared memory its consumer gives (piece-ring.ts). pg_dump writes 4 KiB at a time; a reader that wakes for each
// write makes 215,000 reads of an 880 MB dump, and on the event loop each one cost about 6 µs (1.3 CPU s
// in all). This thread instead lets a read that emptied the pipe be followed by a short sleep, so the pipe
// fills meanwhile and the next read takes tens of KiB: about ten thousand reads, none on the event loop.

import { readSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { type PieceMemory, PieceWriter, type RingFailure } from './piece-ring.js';

export interface PipeJob extends PieceMemory {
  /** The pipe's read end, blocking; tool-pipe.ts closes it once this thread has exited. */
  fd: number;
  /** A piece is handed on once less room than this is left in it (or at the end of the pipe). */
  minRoom: number;
}

/**
 * A read shorter than this did not find the pipe full (Linux pipes hold 64 KiB): it is empty now, so wait
 * PAUSE_MS before the next read rather than block in it and wake at pg_dump's next 4 KiB write. Pausing
 * only after reads under 16 KiB made every other read such a 4 KiB one: 17,000 wakeups of this thread per
 * 880 MB dump, 0.6 CPU s; pausing after any read under a full pipe, 10,700 and 0.37 s (docs/BENCHMARKS.md).
 */
const SHORT_READ = 60 << 10;
/**
 * The wait after a short read. pg_dump fills the pipe's 64 KiB in about 0.3 ms at its fastest, so it
 * seldom waits on us; meanwhile about that much gathers for the next read.
 */
const PAUSE_MS = 0.25;

const job = workerData as PipeJob;
const writer = new PieceWriter(job);
const sleeper = new Int32Array(new SharedArrayBuffer(4));

try {
  for (let ended = false; !ended; ) {
    const piece = writer.next();
    if (!piece) break; // the consumer stopped
    let fill = 0;
    // A region smaller than minRoom still gets one read, so every region given makes progress.
    while ((fill === 0 || piece.length - fill >= job.minRoom) && !writer.stopped) {
      const got = readSync(job.fd, piece, fill, piece.length - fill, null);
      if (got === 0) {
        ended = true;
        break;
      }
      fill += got;
      if (got < SHORT_READ) Atomics.wait(sleeper, 0, 0, PAUSE_MS);
    }
    if (fill > 0) writer.handOn(fill);
    if (ended) writer.end();
  }
} catch (error) {
  parentPort?.postMessage({ error: error instanceof Error ? error.message : String(error) } satisfies RingFailure);
}
