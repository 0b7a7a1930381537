// Fingerprints a SQLite database file in a worker thread (fingerprint-sqlite.ts), and with `check` also runs
// the engine's own integrity_check: reading every row is seconds of CPU on a large database, which must not
// hold the agent's event loop. Used for a snapshot's fingerprint and for a database verify restored.

import { closeSync, openSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
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
  /**
   * `path` is a private copy nothing else opens, already read (a WAL snapshot's): set it to a rollback
   * journal (every page in the file) and take the digests from the records on its pages, as the dump does.
   */
  ownCopy?: boolean;
  /** Also run `PRAGMA integrity_check` and report what it finds. */
  check: boolean;
}

export type FingerprintReply = { fingerprint: Fingerprint; problems: string[] } | { error: string };

const { path, check, fd, ownCopy } = workerData as FingerprintJob;
try {
  const db = ownCopy ? new Database(path, { fileMustExist: true }) : openForReading(path);
  let ownFd: number | undefined;
  try {
    if (ownCopy) {
      if (String(db.pragma('journal_mode', { simple: true })).toLowerCase() === 'wal')
        db.pragma('journal_mode = DELETE');
      ownFd = openSync(path, 'r');
    }
    const pages = fd ?? ownFd;
    const problems: string[] = [];
    if (check) {
      for (const row of db.prepare('PRAGMA integrity_check').pluck().iterate() as IterableIterator<string>) {
        if (row !== 'ok') problems.push(`integrity_check: ${row}`);
      }
    }
    let fingerprint: Fingerprint;
    if (pages !== undefined) {
      const fingerprints = new RecordFingerprints(db);
      for (const _ of dumpDatabase(db, pages, { reuseBuffers: true, fingerprints })) {
        // only the fingerprint is wanted: the dump's bytes go nowhere
      }
      fingerprint = fingerprints.finish();
    } else fingerprint = fingerprintSqlite(db);
    parentPort?.postMessage({ fingerprint, problems } satisfies FingerprintReply);
  } finally {
    db.close();
    if (ownFd !== undefined) closeSync(ownFd); // our own copy's: no lock of anyone else's is on it
  }
} catch (error) {
  parentPort?.postMessage({ error: error instanceof Error ? error.message : String(error) } satisfies FingerprintReply);
}
