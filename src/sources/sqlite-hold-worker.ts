// Holds a SQLite database in a read transaction from a worker thread (driven by holdRollbackFile in
// sqlite.ts), so waiting for the lock never blocks the agent's event loop. In a rollback-journal mode the
// transaction's SHARED lock keeps every writer from writing the file: until the caller sends 'release'
// (a snapshot read in place), or while the worker copies the file (`copyTo`, the private copy a logical
// backup is dumped from: writers wait only as long as the copy takes). A WAL database is only reported as
// such (its checkpoints write the file under readers).

import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import type Database from 'better-sqlite3';
import { openForReading } from './sqlite-open.js';

export interface HoldJob {
  path: string;
  /**
   * Copy the file's first `size` bytes to this new file under the lock, then release it, through `fd`: a
   * descriptor of the database that stays open (closing any descriptor of a file drops every lock this
   * process holds on it, SQLite's included).
   */
  copyTo?: { path: string; fd: number };
}

/**
 * 'held': the lock is held and the file's first `size` bytes are the database; the caller then sends
 * 'release'. 'copied': the copy is done and the lock released, after `lockedMs`.
 */
export type HoldReply =
  | { wal: true }
  | { held: true; size: number }
  | { copied: true; size: number; lockedMs: number }
  | { error: string; code?: string };

/** Bytes copied at a time. */
const COPY_BYTES = 4 << 20;

const { path, copyTo } = workerData as HoldJob;
let db: Database.Database | undefined;
try {
  db = openForReading(path);
  if (String(db.pragma('journal_mode', { simple: true })).toLowerCase() === 'wal') {
    db.close();
    parentPort?.postMessage({ wal: true } satisfies HoldReply);
  } else {
    const locked = performance.now();
    db.exec('BEGIN');
    db.prepare('SELECT count(*) FROM sqlite_schema').get(); // takes the SHARED lock, held until COMMIT
    const size = Number(db.pragma('page_count', { simple: true })) * Number(db.pragma('page_size', { simple: true }));
    if (copyTo) {
      copy(copyTo.fd, copyTo.path, size);
      db.exec('COMMIT');
      db.close();
      parentPort?.postMessage({ copied: true, size, lockedMs: performance.now() - locked } satisfies HoldReply);
    } else {
      const held = db;
      parentPort?.once('message', () => {
        if (held.inTransaction) held.exec('COMMIT');
        held.close();
        parentPort?.close(); // the thread ends: the caller waits for its exit
      });
      parentPort?.postMessage({ held: true, size } satisfies HoldReply);
    }
  }
} catch (error) {
  db?.close();
  const code = (error as { code?: unknown }).code;
  parentPort?.postMessage({
    error: error instanceof Error ? error.message : String(error),
    ...(typeof code === 'string' && !code.startsWith('SQLITE_') ? { code } : {}),
  } satisfies HoldReply);
}

/** The first `size` bytes of `fd` into the new file `target`. */
function copy(fd: number, target: string, size: number): void {
  const out = openSync(target, 'wx', 0o600);
  try {
    const buffer = Buffer.allocUnsafeSlow(Math.min(COPY_BYTES, Math.max(size, 1)));
    for (let at = 0; at < size; ) {
      const n = readSync(fd, buffer, 0, Math.min(buffer.length, size - at), at);
      if (n === 0) throw new Error(`the database file ends before byte ${size}`);
      for (let written = 0; written < n; ) written += writeSync(out, buffer, written, n - written, at + written);
      at += n;
    }
  } finally {
    closeSync(out);
  }
}
