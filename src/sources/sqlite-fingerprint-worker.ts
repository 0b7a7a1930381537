// Fingerprints a SQLite database file in a worker thread (fingerprint-sqlite.ts), and with `check` also runs
// the engine's own integrity_check: reading every row is seconds of CPU on a large database, which must not
// hold the agent's event loop. Used for a snapshot's fingerprint and for a database verify restored.

import { parentPort, workerData } from 'node:worker_threads';
import type { Fingerprint } from './fingerprint.js';
import { fingerprintSqlite, RecordFingerprints } from './fingerprint-sqlite.js';
import { dumpDatabase } from './sqlite-dump.js';
import { openForReading } from './sqlite-open.js';

export interface FingerprintJob {
  path: string;
  /**
   * A descriptor of the file at `path`, in a rollback-journal mode and written by nobody meanwhile (a snapshot
   * held under its read lock): the rowid tables' digests then come from the records on its pages, as the
   * dump's do, not through SQL. Never closed here: closing a descriptor of a file drops every lock this
   * process holds on it, the snapshot's included.
   */
  fd?: number;
  /** Also run `PRAGMA integrity_check` and report what it finds. */
  check: boolean;
}

export type FingerprintReply = { fingerprint: Fingerprint; problems: string[] } | { error: string };

const { path, check, fd } = workerData as FingerprintJob;
try {
  const db = openForReading(path);
  try {
    const problems: string[] = [];
    if (check) {
      for (const row of db.prepare('PRAGMA integrity_check').pluck().iterate() as IterableIterator<string>) {
        if (row !== 'ok') problems.push(`integrity_check: ${row}`);
      }
    }
    let fingerprint: Fingerprint;
    if (fd !== undefined) {
      const fingerprints = new RecordFingerprints(db);
      for (const _ of dumpDatabase(db, fd, { reuseBuffers: true, fingerprints })) {
        // only the fingerprint is wanted: the dump's bytes go nowhere
      }
      fingerprint = fingerprints.finish();
    } else fingerprint = fingerprintSqlite(db);
    parentPort?.postMessage({ fingerprint, problems } satisfies FingerprintReply);
  } finally {
    db.close();
  }
} catch (error) {
  parentPort?.postMessage({ error: error instanceof Error ? error.message : String(error) } satisfies FingerprintReply);
}
