// Runs the logical dump of a SQLite database in a worker thread: reading rows and encoding them is a core's
// worth of work, which then runs beside the main thread's chunking instead of before it. The dump goes to
// the main thread through a ring of pieces in shared memory (piece-ring.ts), at most a ring ahead of it.

import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { BackupdError } from '../errors.js';
import { type PieceMemory, PieceWriter, type RingFailure } from './piece-ring.js';
import { dumpDatabase } from './sqlite-dump.js';

export interface DumpJob extends PieceMemory {
  path: string;
  /** A descriptor of the file that outlives the dump (sqlite.ts's inPlaceDescriptor): its pages are read through it. */
  fd?: number;
}

const job = workerData as DumpJob;
const writer = new PieceWriter(job);

try {
  const db = new Database(job.path, { readonly: true, fileMustExist: true, timeout: 30_000 });
  try {
    for (const buffer of dumpDatabase(db, true, job.fd)) {
      if (!writer.write(buffer)) break; // the reader stopped
    }
  } finally {
    db.close();
  }
  writer.end();
} catch (error) {
  const code = error instanceof BackupdError ? error.code : 'SOURCE_FAILED';
  const message = error instanceof Error ? error.message : String(error);
  parentPort?.postMessage({ error: message, code } satisfies RingFailure);
}
