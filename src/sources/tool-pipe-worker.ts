// Reads a tool's stdout pipe for tool-pipe.ts in a thread of its own, with blocking reads, into a ring of
// pieces in shared memory. pg_dump writes 4 KiB at a time; a reader that wakes for each write makes
// 215,000 reads of an 880 MB dump, and on the event loop each one cost about 6 µs (1.3 CPU s in all).
// This thread instead lets a short read be followed by a short sleep, so the pipe fills meanwhile and the
// next read takes tens of KiB: a few tens of thousands of reads, none on the event loop.

import { readSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
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

/** A read shorter than this found the pipe almost empty: wait PAUSE_MS before the next one. */
const SHORT_READ = 16 << 10;
/**
 * The wait after a short read. pg_dump fills the pipe's 64 KiB in about 0.4 ms at its fastest, so it
 * never waits on us for long; meanwhile tens of KiB gather for the next read.
 */
const PAUSE_MS = 0.2;

const { fd, ring, control, pieceBytes, minRoom } = workerData as PipeJob;
const memory = new Uint8Array(ring);
const state = new Int32Array(control);
const slots = memory.length / pieceBytes;
const sleeper = new Int32Array(new SharedArrayBuffer(4));
const stopped = () => Atomics.load(state, STATE) === STOPPED;

try {
  let ended = false;
  for (let n = 0; !ended && !stopped(); n++) {
    // Piece n's slot is free once the consumer has asked for piece n - 1 (it may still use three before).
    for (let taken = Atomics.load(state, TAKEN); n > taken && !stopped(); taken = Atomics.load(state, TAKEN)) {
      Atomics.wait(state, TAKEN, taken);
    }
    const slot = n % slots;
    const piece = memory.subarray(slot * pieceBytes, (slot + 1) * pieceBytes);
    let fill = 0;
    while (pieceBytes - fill >= minRoom && !stopped()) {
      const got = readSync(fd, piece, fill, pieceBytes - fill, null);
      if (got === 0) {
        ended = true;
        break;
      }
      fill += got;
      if (got < SHORT_READ) Atomics.wait(sleeper, 0, 0, PAUSE_MS);
    }
    if (fill > 0) {
      state[LENGTHS + slot] = fill;
      Atomics.store(state, COMPLETED, n + 1);
      Atomics.notify(state, COMPLETED);
    }
  }
  if (ended) {
    Atomics.compareExchange(state, STATE, RUNNING, ENDED);
    Atomics.notify(state, COMPLETED);
  }
} catch (error) {
  parentPort?.postMessage({ error: error instanceof Error ? error.message : String(error) } satisfies PipeFailure);
}
