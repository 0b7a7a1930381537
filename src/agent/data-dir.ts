// The agent's data dir (store, staging, pending publishes, caches): only its owner may enter it, and one agent
// at a time uses it. Two agents on one dir would claim each other's ticks, sweep each other's staging and
// pending folders and interleave writes to the store.

import { chmodSync, closeSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { BackupdError, messageOf } from '../errors.js';

/** The lock file in the data dir. */
export const LOCK_FILE = 'agent.lock';

/** How long a start waits for a lock another process is taking or giving up at that moment. */
const BUSY_TIMEOUT_MS = 1000;

/** Create the data dir as 0700, and tighten it to 0700 when it already exists with a looser mode. */
export function prepareDataDir(dataDir: string): void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  chmodSync(dataDir, 0o700);
}

/**
 * This process's hold on a data dir. The lock is a SQLite write transaction kept open on `agent.lock`:
 * SQLite's locks are the kernel's file locks, so the hold ends with the process however it ends (SIGKILL,
 * power loss) and is never left stuck; the file's one row names the holder's pid for whoever is refused.
 */
export class DataDirLock {
  private constructor(
    private readonly db: Database.Database,
    readonly path: string,
  ) {}

  /**
   * Take the data dir (created 0700 if missing). Throws UNAVAILABLE (not retryable) naming the pid of the
   * agent that holds it.
   */
  static acquire(dataDir: string, pid = process.pid, now = () => new Date()): DataDirLock {
    prepareDataDir(dataDir);
    const path = join(dataDir, LOCK_FILE);
    // Created 0600 before SQLite sees it, like every file of the data dir.
    closeSync(openSync(path, 'a', 0o600));
    chmodSync(path, 0o600);
    let db: Database.Database;
    try {
      db = new Database(path, { timeout: BUSY_TIMEOUT_MS });
    } catch (error) {
      throw new BackupdError('UNAVAILABLE', `cannot open ${path}: ${messageOf(error)}`, { cause: error });
    }
    try {
      db.exec('CREATE TABLE IF NOT EXISTS holder (id INTEGER PRIMARY KEY CHECK (id = 1), pid INTEGER, since TEXT)');
      // The row is committed first, so a refused agent can read it; then the lock is taken again and kept.
      // Another agent taking it in between makes the second BEGIN fail: that one holds the dir then.
      db.exec('BEGIN IMMEDIATE');
      db.prepare('INSERT OR REPLACE INTO holder (id, pid, since) VALUES (1, ?, ?)').run(pid, now().toISOString());
      db.exec('COMMIT');
      db.exec('BEGIN IMMEDIATE');
    } catch (error) {
      const refusal = isBusy(error) ? inUse(dataDir, holderOf(db)) : undefined;
      db.close();
      if (refusal) throw refusal;
      throw new BackupdError('UNAVAILABLE', `cannot lock ${path}: ${messageOf(error)}`, { cause: error });
    }
    return new DataDirLock(db, path);
  }

  /** Give the data dir up (at a clean stop; a process that dies gives it up all the same). */
  release(): void {
    if (!this.db.open) return;
    this.db.exec('ROLLBACK');
    this.db.close();
  }
}

function isBusy(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  return code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED';
}

/** The holder's row; read under a shared lock, which the holder's open write transaction allows. */
function holderOf(db: Database.Database): { pid: number; since: string } | undefined {
  try {
    const row = db.prepare('SELECT pid, since FROM holder WHERE id = 1').get() as
      | { pid: unknown; since: unknown }
      | undefined;
    if (typeof row?.pid !== 'number') return undefined;
    return { pid: row.pid, since: typeof row.since === 'string' ? row.since : '' };
  } catch {
    // Unreadable while the holder commits its row: the refusal still says the dir is in use.
    return undefined;
  }
}

function inUse(dataDir: string, holder: { pid: number; since: string } | undefined): BackupdError {
  const who = holder ? `pid ${holder.pid}, since ${holder.since}` : 'pid unknown';
  return new BackupdError(
    'UNAVAILABLE',
    `the data dir ${dataDir} is in use by another backupd (${who}); stop it, or give this one its own dataDir`,
    { retryable: false },
  );
}
