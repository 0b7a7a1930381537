// Loads a logical dump into a new SQLite database in a worker thread (driven by loadDump in sqlite.ts):
// parsing and inserting rows is a core's worth of work that would otherwise hold the agent's event loop,
// and a worker's young generation can be kept small (parse garbage filled the main thread's: a 1 GiB
// restore peaked above 300 MB). Buffers arrive transferred; each is answered with 'took' once loaded.

import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { BackupdError, messageOf } from '../errors.js';
import { DumpLoader } from './sqlite-load.js';

export interface LoadJob {
  /** The new database file; the worker creates it. */
  path: string;
}

export type LoadRequest = { data: Uint8Array } | { end: true };
export type LoadReply = { took: true } | { done: true } | { error: string; code: string };

const { path } = workerData as LoadJob;
let db: Database.Database | undefined;
let loader: DumpLoader | undefined;
let failed = false;

function fail(error: unknown): void {
  failed = true;
  db?.close();
  const code = error instanceof BackupdError ? error.code : 'SOURCE_FAILED';
  const message =
    error instanceof BackupdError ? error.message : `restoring the SQLite dump failed: ${messageOf(error)}`;
  parentPort?.postMessage({ error: message, code } satisfies LoadReply);
}

parentPort?.on('message', (request: LoadRequest) => {
  if (failed) return; // the failure was reported; the caller stops the worker
  try {
    if (!db || !loader) {
      db = new Database(path, { timeout: 30_000 });
      // A fresh file nobody else sees: no journal and no fsync per transaction; the caller syncs once.
      db.pragma('journal_mode = OFF');
      db.pragma('synchronous = OFF');
      // 4 MiB of page cache (also the sorter's memory for index builds): 16 MiB cost ~20-30 MB of peak
      // memory in a 1 GiB restore for no measurable speed.
      db.pragma('cache_size = -4096');
      loader = new DumpLoader(db);
    }
    if ('data' in request) {
      loader.push(Buffer.from(request.data.buffer, request.data.byteOffset, request.data.byteLength));
      parentPort?.postMessage({ took: true } satisfies LoadReply);
      return;
    }
    loader.finish();
    db.pragma(`journal_mode = ${loader.journalMode}`);
    db.close();
    parentPort?.postMessage({ done: true } satisfies LoadReply);
  } catch (error) {
    fail(error);
  }
});
