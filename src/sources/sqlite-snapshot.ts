// A SQLite snapshot: the database file held in place under a read transaction (rollback journal) or copied
// with the backup API (WAL), handed over as one file, and a database file's fingerprint read beside it by a
// worker thread.

import { fstatSync, openSync, read, statSync } from 'node:fs';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { BackupdError, type ErrorCode, messageOf } from '../errors.js';
import { startWorker } from '../worker.js';
import type { Fingerprint } from './fingerprint.js';
import type { SourceFile, SourceReading } from './source.js';
import type { FingerprintJob, FingerprintReply } from './sqlite-fingerprint-worker.js';
import { SNAPSHOT_FILE } from './sqlite-format.js';
import type { HoldJob, HoldReply } from './sqlite-hold-worker.js';

/** Snapshot files are cut into 64 KiB blocks, aligned with pages (page sizes are powers of two); docs/FORMAT.md. */
const SNAPSHOT_BLOCK = 64 << 10;

const readAt = promisify(read);

/**
 * A database in a rollback-journal mode, held in a read transaction by a worker thread
 * (sqlite-hold-worker.ts): its SHARED lock keeps every writer from writing the file until release(), so
 * the file's first `size` bytes are a consistent snapshot as they lie, read in place through `fd` with no
 * copy (writers wait, as they waited for the backup API's one-step copy). With `copyTo`, the worker
 * copies those bytes there under the lock and releases it at once: the result then has nothing to release.
 * Undefined for a WAL database, whose checkpoints write the file under readers: that one is copied
 * (runSnapshotWorker).
 */
export async function holdRollbackFile(
  path: string,
  signal?: AbortSignal,
  copyTo?: string,
): Promise<{ fd: number; size: number; release: () => Promise<void> } | undefined> {
  const fd = inPlaceDescriptor(path);
  const job: HoldJob = { path, ...(copyTo ? { copyTo: { path: copyTo, fd } } : {}) };
  const worker = startWorker(import.meta.url, './sqlite-hold-worker', job);
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  const onAbort = () => void worker.terminate();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const reply = await new Promise<HoldReply>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
      worker.once('exit', () =>
        reject(
          signal?.aborted
            ? new BackupdError('CANCELLED', `reading ${path} was cancelled`)
            : new BackupdError('INTERNAL', 'SQLite hold worker exited'),
        ),
      );
    });
    if ('error' in reply) {
      throw new BackupdError(
        (reply.code ?? 'SOURCE_FAILED') as ErrorCode,
        `reading SQLite database ${path} failed: ${reply.error}`,
      );
    }
    if ('wal' in reply) return undefined;
    if ('copied' in reply) {
      await exited;
      return { fd, size: reply.size, release: async () => {} };
    }
    return {
      fd,
      size: reply.size,
      release: async () => {
        worker.postMessage('release');
        await exited;
      },
    };
  } catch (error) {
    await worker.terminate();
    if (error instanceof BackupdError) throw error;
    throw new BackupdError('SOURCE_FAILED', `reading SQLite database ${path} failed: ${messageOf(error)}`, {
      cause: error,
    });
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

/**
 * Descriptors of database files read in place, open for the life of the process and never closed: closing
 * any descriptor of a file drops every POSIX lock this process holds on it, SQLite's included (of every
 * connection, e.g. the SHARED lock that holds a snapshot, or another run's dump). SQLite itself keeps such
 * descriptors for the same reason. One per database file; a file replaced at the same path gets a new one.
 */
const inPlaceDescriptors = new Map<string, number>();

function inPlaceDescriptor(path: string): number {
  const known = inPlaceDescriptors.get(path);
  if (known !== undefined && fstatSync(known).ino === statSync(path).ino) return known;
  const fd = openSync(path, 'r');
  inPlaceDescriptors.set(path, fd); // an older one, of a file since replaced, stays open: see above
  return fd;
}

/** A snapshot's one file: the first `size` bytes of `fd`, as a stream and on disk; `done` runs at close. */
export function snapshotReading(
  engineVersion: string,
  fd: number,
  size: number,
  signal: AbortSignal | undefined,
  fingerprint: (() => FingerprintRun) | undefined,
  done: () => Promise<void>,
): SourceReading {
  const stream = fdStream(fd, size, signal);
  let started: FingerprintRun | undefined;
  return {
    engineVersion,
    ...(fingerprint
      ? {
          fingerprint: async () => {
            started = fingerprint();
            return (await started.result).fingerprint;
          },
        }
      : {}),
    files: oneFile({
      name: SNAPSHOT_FILE,
      chunking: { kind: 'fixed', blockSize: SNAPSHOT_BLOCK },
      stream,
      onDisk: { fd, size },
    }),
    close: async () => {
      stream.destroy();
      await started?.stop();
      await done();
    },
  };
}

/** A fingerprint being read by a worker thread (sqlite-fingerprint-worker.ts). */
export interface FingerprintRun {
  result: Promise<{ fingerprint: Fingerprint; problems: string[] }>;
  /** Stop the worker (if still running) and wait for it to end. */
  stop(): Promise<void>;
}

/**
 * The fingerprint of the database file at `path`, with `check` also its integrity_check problems; with `fd`
 * (a held snapshot's descriptor, see FingerprintJob) from the records on its pages.
 */
export function fingerprintFile(
  path: string,
  check: boolean,
  pages: { fd?: number; ownCopy?: boolean } = {},
): FingerprintRun {
  const job: FingerprintJob = { path, check, ...pages };
  const worker = startWorker(import.meta.url, './sqlite-fingerprint-worker', job);
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  const result = new Promise<{ fingerprint: Fingerprint; problems: string[] }>((resolve, reject) => {
    worker.once('message', (reply: FingerprintReply) => {
      if ('error' in reply) {
        reject(new BackupdError('SOURCE_FAILED', `fingerprinting SQLite database ${path} failed: ${reply.error}`));
      } else resolve(reply);
    });
    worker.once('error', (error) =>
      reject(new BackupdError('SOURCE_FAILED', `SQLite fingerprint worker: ${error.message}`)),
    );
    worker.once('exit', () => reject(new BackupdError('SOURCE_FAILED', 'SQLite fingerprint worker stopped')));
  });
  result.catch(() => {}); // the caller awaits it, or stops the run after a failure of its own
  return {
    result,
    stop: async () => {
      await worker.terminate();
      await exited;
    },
  };
}

/**
 * The first `size` bytes of an open file as a stream that leaves the descriptor open (a file stream
 * closes its descriptor when destroyed, whatever autoClose says).
 */
function fdStream(fd: number, size: number, signal?: AbortSignal): Readable {
  async function* pieces(): AsyncGenerator<Buffer> {
    for (let at = 0; at < size; ) {
      const buffer = Buffer.allocUnsafeSlow(Math.min(1 << 20, size - at));
      const { bytesRead } = await readAt(fd, buffer, 0, buffer.length, at);
      if (bytesRead === 0) throw new BackupdError('SOURCE_FAILED', `the snapshot file ends before byte ${size}`);
      at += bytesRead;
      yield buffer.subarray(0, bytesRead);
    }
  }
  return Readable.from(pieces(), { objectMode: false, ...(signal ? { signal } : {}) });
}

export function runSnapshotWorker(source: string, target: string, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const worker = startWorker(import.meta.url, './sqlite-snapshot-worker', { source, target });
    const onAbort = () => void worker.terminate();
    signal?.addEventListener('abort', onAbort, { once: true });
    let settled = false;
    const settle = (error?: Error) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      if (error) reject(error);
      else resolve();
    };
    worker.on('message', (m: { ok: boolean; message?: string }) =>
      settle(
        m.ok ? undefined : new BackupdError('SOURCE_FAILED', `reading SQLite database ${source} failed: ${m.message}`),
      ),
    );
    worker.on('error', (error) =>
      settle(new BackupdError('SOURCE_FAILED', `SQLite snapshot worker: ${error.message}`)),
    );
    worker.on('exit', () =>
      settle(
        signal?.aborted
          ? new BackupdError('CANCELLED', 'snapshot cancelled')
          : new BackupdError('INTERNAL', 'snapshot worker exited'),
      ),
    );
  });
}

export async function* oneFile(file: SourceFile): AsyncIterable<SourceFile> {
  yield file;
}
