// Holds a SQLite database in a read transaction from a worker thread (driven by holdRollbackFile in
// sqlite.ts), so waiting for the lock never blocks the agent's event loop. In a rollback-journal mode the
// transaction's SHARED lock keeps every writer from writing the file until the caller sends 'release'; a
// WAL database is only reported as such (its checkpoints write the file under readers).

import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

export interface HoldJob {
  path: string;
}

/** 'held': the lock is held and the file's first `size` bytes are the database; the caller then sends 'release'. */
export type HoldReply = { wal: true } | { held: true; size: number } | { error: string };

const { path } = workerData as HoldJob;
let db: Database.Database | undefined;
try {
  db = new Database(path, { readonly: true, fileMustExist: true, timeout: 30_000 });
  if (String(db.pragma('journal_mode', { simple: true })).toLowerCase() === 'wal') {
    db.close();
    parentPort?.postMessage({ wal: true } satisfies HoldReply);
  } else {
    db.exec('BEGIN');
    db.prepare('SELECT count(*) FROM sqlite_schema').get(); // takes the SHARED lock, held until COMMIT
    const size = Number(db.pragma('page_count', { simple: true })) * Number(db.pragma('page_size', { simple: true }));
    const held = db;
    parentPort?.once('message', () => {
      if (held.inTransaction) held.exec('COMMIT');
      held.close();
      parentPort?.close(); // the thread ends: the caller waits for its exit
    });
    parentPort?.postMessage({ held: true, size } satisfies HoldReply);
  }
} catch (error) {
  db?.close();
  parentPort?.postMessage({ error: error instanceof Error ? error.message : String(error) } satisfies HoldReply);
}
