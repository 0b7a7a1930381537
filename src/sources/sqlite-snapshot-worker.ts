// Takes a consistent online copy of a SQLite database with the SQLite backup API, in a worker thread so
// the copy (one step for the whole file, so concurrent writers cannot make it restart forever) never
// blocks the agent's event loop.

import { parentPort, workerData } from 'node:worker_threads';
import { openForReading } from './sqlite-open.js';

export interface SnapshotJob {
  source: string;
  target: string;
}

const { source, target } = workerData as SnapshotJob;

async function run(): Promise<void> {
  const db = openForReading(source);
  try {
    // After the first small step, copy every remaining page in one step: a step holds a read lock, so
    // writers (in WAL mode) go on while the copy stays one point in time.
    await db.backup(target, { progress: () => 2_000_000_000 });
  } finally {
    db.close();
  }
}

run().then(
  () => parentPort?.postMessage({ ok: true }),
  (error: unknown) =>
    parentPort?.postMessage({ ok: false, message: error instanceof Error ? error.message : String(error) }),
);
