// Runs the logical dump of a SQLite database in a worker thread: reading rows and encoding them is a core's
// worth of work, which then runs beside the main thread's chunking instead of before it. The dump goes to
// its reader in the regions of shared memory the reader gives (piece-ring.ts; the pipeline's batch slots),
// at most as far ahead of it as the regions given.
// It reads a private copy of the database (sqlite.ts), which nothing else opens: the source's writers are
// never held up by the pipeline.

import { closeSync, openSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { BackupdError } from '../errors.js';
import type { Fingerprint } from './fingerprint.js';
import { RecordFingerprints } from './fingerprint-sqlite.js';
import { type PieceMemory, PieceWriter, type RingFailure } from './piece-ring.js';
import { dumpDatabase } from './sqlite-dump.js';

export interface DumpJob extends PieceMemory {
  /** The private copy to dump. */
  path: string;
  /** The journal mode of the database it is a copy of, which the dump records. */
  journalMode: string;
  /** Whether to fingerprint the rows as they are dumped (the source's `fingerprints`). */
  fingerprints: boolean;
}

/** Sent after the dump's last piece: the fingerprint of the rows dumped (the copy holds still). */
export interface DumpFingerprint {
  fingerprint: Fingerprint;
}

const job = workerData as DumpJob;
const writer = new PieceWriter(job);

try {
  const db = new Database(job.path, { fileMustExist: true });
  let fd: number | undefined;
  let ended = false;
  try {
    // A copy made with the backup API keeps WAL mode: back to a rollback journal, so that every page is in
    // the file itself (nothing else has the copy open).
    if (String(db.pragma('journal_mode', { simple: true })).toLowerCase() === 'wal') db.pragma('journal_mode = DELETE');
    fd = openSync(job.path, 'r');
    let stopped = false;
    const fingerprints = job.fingerprints ? new RecordFingerprints(db) : undefined;
    for (const buffer of dumpDatabase(db, fd, { reuseBuffers: true, journalMode: job.journalMode, fingerprints })) {
      stopped = !writer.write(buffer);
      if (stopped) break; // the reader stopped
    }
    ended = true;
    writer.end();
    // After the last piece, so the pipeline seals its last batches meanwhile; the copy is the dump's point in time.
    if (!stopped && fingerprints)
      parentPort?.postMessage({ fingerprint: fingerprints.finish() } satisfies DumpFingerprint);
  } finally {
    db.close();
    if (fd !== undefined) closeSync(fd);
  }
  if (!ended) writer.end();
} catch (error) {
  const code = error instanceof BackupdError ? error.code : 'SOURCE_FAILED';
  const message = error instanceof Error ? error.message : String(error);
  parentPort?.postMessage({ error: message, code } satisfies RingFailure);
}
