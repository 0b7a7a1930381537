// Fingerprints a SQLite database file in a worker thread (fingerprint-sqlite.ts), and with `check` also runs
// the engine's own integrity_check: reading every row is seconds of CPU on a large database, which must not
// hold the agent's event loop. Used for a snapshot's fingerprint and for a database verify restored.

import { parentPort, workerData } from 'node:worker_threads';
import type { Fingerprint } from './fingerprint.js';
import { fingerprintSqlite } from './fingerprint-sqlite.js';
import { openForReading } from './sqlite-open.js';

export interface FingerprintJob {
  path: string;
  /** Also run `PRAGMA integrity_check` and report what it finds. */
  check: boolean;
}

export type FingerprintReply = { fingerprint: Fingerprint; problems: string[] } | { error: string };

const { path, check } = workerData as FingerprintJob;
try {
  const db = openForReading(path);
  try {
    const problems: string[] = [];
    if (check) {
      for (const row of db.prepare('PRAGMA integrity_check').pluck().iterate() as IterableIterator<string>) {
        if (row !== 'ok') problems.push(`integrity_check: ${row}`);
      }
    }
    parentPort?.postMessage({ fingerprint: fingerprintSqlite(db), problems } satisfies FingerprintReply);
  } finally {
    db.close();
  }
} catch (error) {
  parentPort?.postMessage({ error: error instanceof Error ? error.message : String(error) } satisfies FingerprintReply);
}
