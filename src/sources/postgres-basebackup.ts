// A snapshot of a whole PostgreSQL server: `pg_basebackup --format=tar --wal-method=stream` into a spool
// folder, its files handed to the pipeline: `snapshot.json` (server version, tablespaces), `base.tar`,
// one `<oid>.tar` per extra tablespace, `pg_wal.tar` (the WAL from the backup's start to its end, so the
// copy is consistent on its own) and `backup_manifest`.
//
// Why a spool and not `-D -` (tar on stdout): pg_basebackup refuses to write to stdout with WAL streaming
// (and with extra tablespaces); `-X fetch` could, but it collects the WAL only at the end, and a busy
// server may by then have recycled the segments (the backup fails unless wal_keep_size is large enough).
// `-X stream` holds a temporary replication slot instead, so it is always complete. base.tar, the bulk,
// is written front to back, so it is read while pg_basebackup is still writing it (the pipeline keeps
// pace with the server); the other files are read once pg_basebackup has finished (pg_wal.tar's tar
// headers are rewritten when each segment closes). The spool needs about the server's size in free space.

import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { BackupdError, messageOf } from '../errors.js';
import type { PgCatalog, ServerVersion } from './postgres-catalog.js';
import type { PgTools } from './postgres-tools.js';
import { type FillFeed, regionFeed, type SourceFile, type SourceReading } from './source.js';

export const SNAPSHOT_META_FILE = 'snapshot.json';
export const BASE_TAR = 'base.tar';
export const WAL_TAR = 'pg_wal.tar';
export const BACKUP_MANIFEST = 'backup_manifest';
export const SNAPSHOT_FORMAT = 1;
/**
 * The tars are cut around 64 KiB rather than the default 16 KiB, as pg dumps are: each chunk costs its id,
 * seal and bookkeeping whatever its size, and a larger chunk compresses better (zstd sees more of a page's
 * neighbours). Measured on the benchmark (docs/BENCHMARKS.md, "PostgreSQL snapshots against pg_basebackup and
 * pgBackRest").
 */
export const TAR_CHUNK_BYTES = 64 << 10;
/** How often a file still being written is looked at again for new bytes. */
const FOLLOW_POLL_MS = 20;
const READ_SIZE = 1 << 20;

/** The content of snapshot.json. */
export interface SnapshotMeta {
  format: number;
  server: ServerVersion;
  /** Extra tablespaces: their oid (the name of their tar) and where they lived on the source server. */
  tablespaces: { oid: string; name: string; location: string }[];
  /**
   * How the snapshot was read: 'pg_basebackup' (its tars, with backup_manifest) or 'files' (the data
   * directory read directly, postgres-files.ts: the same tars, no backup_manifest).
   */
  reader: 'pg_basebackup' | 'files';
  /** Unlogged tables and sequences as `database.schema.name`: they come back empty (no WAL, no rows). */
  unlogged: string[];
}

export interface BasebackupOptions {
  tools: PgTools;
  catalog: PgCatalog;
  server: ServerVersion;
  /** Folder under which the spool is made. */
  tempDir: string;
  checkpoint: 'fast' | 'spread';
  signal?: AbortSignal;
}

type Outcome = { ok: true } | { ok: false; error: unknown };

/**
 * What snapshot.json records of the server at the start of a snapshot: its tablespaces and its unlogged
 * relations (every database that allows connections, asked at once; a table made unlogged later is not
 * listed), and which reader took it.
 */
export async function snapshotMeta(
  catalog: PgCatalog,
  server: ServerVersion,
  reader: SnapshotMeta['reader'],
  signal?: AbortSignal,
): Promise<SnapshotMeta> {
  const tablespaces = await catalog.json<SnapshotMeta['tablespaces']>(
    `SELECT coalesce(json_agg(json_build_object('oid', oid::text, 'name', spcname,
        'location', pg_tablespace_location(oid)) ORDER BY oid), '[]')
      FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')`,
    'reading the tablespaces',
    { signal },
  );
  const databases = await catalog.databases(signal);
  const unlogged = (
    await Promise.all(
      databases.map(async ({ name }) =>
        (await catalog.unloggedRelations(name, signal)).map((relation) => `${name}.${relation}`),
      ),
    )
  ).flat();
  return { format: SNAPSHOT_FORMAT, server, reader, tablespaces, unlogged };
}

export async function readBasebackup(options: BasebackupOptions): Promise<SourceReading> {
  const { tools, catalog, server } = options;
  const meta = await snapshotMeta(catalog, server, 'pg_basebackup', options.signal);
  const { unlogged } = meta;

  const spool = join(options.tempDir, `.pg-snapshot-${randomBytes(6).toString('hex')}`);
  try {
    await mkdir(options.tempDir, { recursive: true });
    await mkdir(spool, { mode: 0o700 });
  } catch (error) {
    throw new BackupdError(
      'SOURCE_FAILED',
      `cannot make the snapshot spool in ${options.tempDir}: ${messageOf(error)}`,
      {
        cause: error,
      },
    );
  }
  // Our own controller: close() stops pg_basebackup even when the run's signal never fires.
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  let outcome: Outcome | undefined;
  const finished = tools
    .run(
      'pg_basebackup',
      [
        '--no-password',
        `--pgdata=${spool}`,
        '--format=tar',
        '--wal-method=stream',
        `--checkpoint=${options.checkpoint}`,
        '--label=backupd',
        // The spool is read once and removed: no fsync.
        '--no-sync',
      ],
      { what: 'pg_basebackup of the server', signal: stop.signal, stdout: 'ignore' },
    )
    .then(
      () => {
        outcome = { ok: true };
      },
      (error: unknown) => {
        outcome = { ok: false, error };
      },
    );
  const state = () => outcome;

  async function* files(): AsyncGenerator<SourceFile> {
    yield {
      name: SNAPSHOT_META_FILE,
      chunking: { kind: 'cdc' },
      stream: Readable.from([Buffer.from(`${JSON.stringify(meta, null, 2)}\n`)], { objectMode: false }),
    };
    // Tar streams: content-defined chunks, because tar headers shift file data off any fixed block grid.
    yield spoolFile(join(spool, BASE_TAR), BASE_TAR, state);
    await finished;
    if (!outcome?.ok) throw outcome?.error;
    const names = await readdir(spool);
    const rest = [...meta.tablespaces.map((t) => `${t.oid}.tar`), WAL_TAR, BACKUP_MANIFEST];
    const unexpected = names.filter((n) => n !== BASE_TAR && !rest.includes(n));
    const missing = rest.filter((n) => !names.includes(n));
    if (unexpected.length > 0 || missing.length > 0) {
      throw new BackupdError(
        'SOURCE_FAILED',
        `pg_basebackup wrote ${names.join(', ')}; expected ${[BASE_TAR, ...rest].join(', ')}` +
          ' (a tablespace created or dropped during the snapshot? run it again)',
      );
    }
    for (const name of rest) yield spoolFile(join(spool, name), name, state);
  }

  return {
    engineVersion: `PostgreSQL ${server.version}`,
    ...(unlogged.length > 0 ? { notes: [unloggedNote(unlogged)] } : {}),
    files: files(),
    close: async () => {
      options.signal?.removeEventListener('abort', onAbort);
      stop.abort();
      await finished;
      await rm(spool, { recursive: true, force: true });
    },
  };
}

/** The note a snapshot with unlogged tables carries in its manifest, its run and the restore's answer. */
export function unloggedNote(unlogged: string[]): string {
  return (
    'unlogged tables come back empty (PostgreSQL writes no WAL for them, so a snapshot holds none of their rows): ' +
    unlogged.join(', ')
  );
}

/**
 * A spool file as the pipeline reads it: read straight into the pipeline's batch slots (`fill`), so its
 * bytes are neither allocated per read nor copied on the pipeline's thread; `stream` gives the same bytes.
 */
function spoolFile(path: string, name: string, state: () => Outcome | undefined): SourceFile {
  return {
    name,
    chunking: { kind: 'cdc', avgBytes: TAR_CHUNK_BYTES },
    stream: Readable.from(follow(path, state), { objectMode: false }),
    fill: (memory) => followInto(path, state, memory),
  };
}

type Handle = Awaited<ReturnType<typeof open>>;

/** Open `path` once pg_basebackup has made it; fails when pg_basebackup failed or finished without it. */
async function openSpool(path: string, state: () => Outcome | undefined): Promise<Handle> {
  for (;;) {
    const before = state();
    try {
      return await open(path, 'r');
    } catch (error) {
      if ((error as { code?: string }).code !== 'ENOENT') throw spoolError(path, error);
      if (before?.ok === false) throw before.error;
      if (before?.ok) throw new BackupdError('SOURCE_FAILED', `pg_basebackup finished without writing ${path}`);
      await sleep(FOLLOW_POLL_MS);
    }
  }
}

/**
 * Read `view.length` bytes of `path` from `position` into `view` as pg_basebackup writes them: while it is
 * still running, wait for more at the end. Fewer only at the file's end, which is its end once
 * pg_basebackup exited successfully.
 */
async function readFollowing(
  handle: Handle,
  path: string,
  state: () => Outcome | undefined,
  view: Uint8Array,
  position: number,
): Promise<number> {
  let count = 0;
  while (count < view.length) {
    // Looked at before reading: an empty read after pg_basebackup had finished is the true end.
    const before = state();
    const { bytesRead } = await handle
      .read(view, count, view.length - count, position + count)
      .catch((error: unknown) => {
        throw spoolError(path, error);
      });
    if (bytesRead > 0) {
      count += bytesRead;
      continue;
    }
    if (before?.ok) break;
    if (before?.ok === false) throw before.error;
    await sleep(FOLLOW_POLL_MS);
  }
  return count;
}

/** The bytes of `path` as pg_basebackup writes them, as a stream of buffers (see readFollowing). */
async function* follow(path: string, state: () => Outcome | undefined): AsyncGenerator<Buffer> {
  const handle = await openSpool(path, state);
  try {
    let position = 0;
    for (;;) {
      const buffer = Buffer.allocUnsafe(READ_SIZE);
      const bytesRead = await readFollowing(handle, path, state, buffer, position);
      if (bytesRead > 0) yield buffer.subarray(0, bytesRead);
      if (bytesRead < READ_SIZE) return;
      position += bytesRead;
    }
  } finally {
    await handle.close();
  }
}

/** The same bytes written into the regions of `memory` the pipeline gives, each filled whole but the last. */
function followInto(path: string, state: () => Outcome | undefined, memory: SharedArrayBuffer): FillFeed {
  return regionFeed(async function* (next) {
    let handle: Handle | undefined;
    try {
      handle = await openSpool(path, state);
      let position = 0;
      for (;;) {
        const { offset, room } = await next();
        const count = await readFollowing(handle, path, state, new Uint8Array(memory, offset, room), position);
        position += count;
        if (count > 0) yield count;
        if (count < room) return;
      }
    } finally {
      await handle?.close();
    }
  });
}

function spoolError(path: string, error: unknown): BackupdError {
  return new BackupdError('SOURCE_FAILED', `reading the snapshot spool file ${path} failed: ${messageOf(error)}`, {
    cause: error,
  });
}
