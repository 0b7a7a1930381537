// Restoring a logical dump into a new SQLite database file: the dump is loaded by a worker thread
// (sqlite-load-worker.ts, sqlite-load.ts), then the file is made durable.

import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { BackupdError, type ErrorCode } from '../errors.js';
import { startWorker } from '../worker.js';
import type { LoadJob, LoadReply, LoadRequest } from './sqlite-load-worker.js';

/** A loader worker's young generation: small, so parse garbage is collected before it piles up. */
const LOADER_YOUNG_GENERATION_MB = 4;
/** Buffers handed to the loader worker and not yet loaded. */
const LOADER_IN_FLIGHT = 4;

/** Load a dump stream into the new database file `path` in a worker thread (sqlite-load-worker.ts), then fsync it. */
export async function loadDump(stream: Readable, path: string): Promise<void> {
  const worker = startWorker(import.meta.url, './sqlite-load-worker', { path } satisfies LoadJob, {
    maxYoungGenerationSizeMb: LOADER_YOUNG_GENERATION_MB,
  });
  let inFlight = 0;
  let wake: (() => void) | undefined;
  let failure: Error | undefined;
  let finished = false;
  const done = new Promise<void>((resolve, reject) => {
    const stop = (error: Error) => {
      failure ??= error;
      wake?.();
      reject(failure);
    };
    worker.on('message', (reply: LoadReply) => {
      if ('took' in reply) {
        inFlight--;
        wake?.();
      } else if ('done' in reply) {
        finished = true;
        resolve();
      } else stop(new BackupdError(reply.code as ErrorCode, reply.error));
    });
    worker.on('error', (error) => stop(new BackupdError('SOURCE_FAILED', `SQLite load worker: ${error.message}`)));
    worker.on('exit', () => {
      if (!finished) stop(new BackupdError('SOURCE_FAILED', 'SQLite load worker stopped before the end'));
    });
  });
  done.catch(() => {}); // awaited below; this only stops an unhandled-rejection crash
  try {
    for await (const piece of stream) {
      if (failure) break;
      const bytes = piece as Buffer;
      // Transfer the bytes when they own their memory; copy a view into a larger (or pooled) buffer.
      const data =
        bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
          ? new Uint8Array(bytes.buffer, 0, bytes.byteLength)
          : new Uint8Array(bytes);
      worker.postMessage({ data } satisfies LoadRequest, [data.buffer as ArrayBuffer]);
      inFlight++;
      while (inFlight >= LOADER_IN_FLIGHT && !failure) await new Promise<void>((resolve) => (wake = resolve));
    }
    if (!failure) worker.postMessage({ end: true } satisfies LoadRequest);
    await done;
  } finally {
    await worker.terminate();
  }
  const handle = await open(path, 'r+');
  await handle.sync();
  await handle.close();
}
