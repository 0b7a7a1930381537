// Runs the logical dump of a SQLite database in a worker thread: reading rows and encoding them is a core's
// worth of work, which then runs beside the main thread's chunking instead of before it. Buffers are
// transferred, at most IN_FLIGHT ahead of the reader (the worker blocks on a shared counter).

import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { BackupdError } from '../errors.js';
import { dumpDatabase } from './sqlite-dump.js';

export interface DumpJob {
  path: string;
  /** Int32Array over a SharedArrayBuffer: [0] = buffers posted and not yet taken by the reader. */
  inFlight: SharedArrayBuffer;
}

export type DumpMessage = { data: Uint8Array } | { done: true } | { error: string; code: string };

export const IN_FLIGHT = 8;

const { path, inFlight } = workerData as DumpJob;
const counter = new Int32Array(inFlight);

try {
  const db = new Database(path, { readonly: true, fileMustExist: true, timeout: 30_000 });
  try {
    for (const buffer of dumpDatabase(db)) {
      for (let n = Atomics.load(counter, 0); n >= IN_FLIGHT; n = Atomics.load(counter, 0)) Atomics.wait(counter, 0, n);
      Atomics.add(counter, 0, 1);
      const data = new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
      parentPort?.postMessage({ data } satisfies DumpMessage, [buffer.buffer as ArrayBuffer]);
    }
  } finally {
    db.close();
  }
  parentPort?.postMessage({ done: true } satisfies DumpMessage);
} catch (error) {
  const code = error instanceof BackupdError ? error.code : 'SOURCE_FAILED';
  const message = error instanceof Error ? error.message : String(error);
  parentPort?.postMessage({ error: message, code } satisfies DumpMessage);
}
