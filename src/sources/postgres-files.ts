// A snapshot of a whole PostgreSQL server read from its data directory on this machine, the way
// pg_basebackup's server side reads it, without a walsender or a spool: on one held psql session, a
// temporary physical replication slot reserving WAL, then pg_backup_start; the data directory's files are
// read straight into the pipeline's batch slots as the same tars pg_basebackup writes (postgres-tar.ts:
// snapshot.json, `<oid>.tar` per extra tablespace, base.tar, pg_wal.tar); then pg_backup_stop, whose
// backup_label and tablespace_map end base.tar; then pg_wal.tar, the WAL segments from the start to the
// stop, which the slot kept in pg_wal. No backup_manifest: the restored copy is checked by starting it.
// Used when the agent can read the data directory (postgres.ts decides: docs/SOURCES.md).

import { randomBytes } from 'node:crypto';
import { type FileHandle, lstat, open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { BackupdError, messageOf } from '../errors.js';
import { BASE_TAR, SNAPSHOT_META_FILE, snapshotMeta, unloggedNote, WAL_TAR } from './postgres-basebackup.js';
import type { PgCatalog, ServerVersion } from './postgres-catalog.js';
import { PgSession } from './postgres-session.js';
import { type TarEntry, type TarReport, tarFill } from './postgres-tar.js';
import type { PgTools } from './postgres-tools.js';
import { fillStream, type SourceFile, type SourceReading } from './source.js';

/**
 * Files of at least this size start on a block boundary in the tars, which are cut into fixed blocks of it.
 * 128 KiB rather than the 64 KiB of other snapshots: on the benchmark the full stored 1.07x pgBackRest's
 * bytes (1.13x at 64 KiB) with less CPU (docs/FORMAT.md, docs/BENCHMARKS-HISTORY.md).
 */
export const FILE_BLOCK_BYTES = 128 << 10;

/** Folders whose contents pg_basebackup leaves out (the folders themselves are kept). */
const EMPTIED = new Set([
  'pg_stat_tmp',
  'pg_replslot',
  'pg_dynshmem',
  'pg_notify',
  'pg_serial',
  'pg_snapshots',
  'pg_subtrans',
]);
/** Files pg_basebackup leaves out, wherever they are. */
const LEFT_OUT = new Set([
  'postmaster.pid',
  'postmaster.opts',
  'backup_label',
  'tablespace_map',
  'backup_manifest',
  'postgresql.auto.conf.tmp',
  'current_logfiles.tmp',
]);
/** A relation file: relfilenode, fork, segment. */
const RELATION = /^(\d+)(?:_(fsm|vm|init))?(?:\.\d+)?$/;

export interface FilesOptions {
  tools: PgTools;
  catalog: PgCatalog;
  server: ServerVersion;
  /** The server's data directory on this machine, checked by localDataDirectory. */
  dataDirectory: string;
  /** The database the held session connects to. */
  database: string;
  checkpoint: 'fast' | 'spread';
  signal?: AbortSignal;
}

/**
 * The server's data directory as this agent can read it: `path`, else the server's own `data_directory`,
 * when its global/pg_control holds the server's system identifier (so it is this server's, not another
 * cluster's at the same path). Undefined when it cannot be read here (a remote server, another OS user's
 * folder, a role that may not read data_directory); when `required`, that throws SOURCE_FAILED instead.
 */
export async function localDataDirectory(
  catalog: PgCatalog,
  wanted: { path?: string; required: boolean },
  signal?: AbortSignal,
): Promise<string | undefined> {
  const fail = (why: string, cause?: unknown): undefined => {
    if (!wanted.required) return undefined;
    throw new BackupdError('SOURCE_FAILED', `cannot read the snapshot from the data directory: ${why}`, { cause });
  };
  let server: { dir: string | null; id: string };
  try {
    server = await catalog.json<{ dir: string | null; id: string }>(
      // data_directory only when asked: a role not told it may still know where it is (dataDirectory).
      `SELECT json_build_object('dir', ${wanted.path === undefined ? "current_setting('data_directory')" : 'NULL'},
        'id', (SELECT system_identifier::text FROM pg_control_system()))`,
      'looking for the data directory',
      { signal },
    );
  } catch (error) {
    if (error instanceof BackupdError && (error.code === 'CANCELLED' || error.code === 'UNAVAILABLE')) throw error;
    return fail(`the server does not tell its identity to this role (${messageOf(error)})`, error);
  }
  const dir = wanted.path ?? server.dir ?? undefined;
  if (dir === undefined) return fail('the server does not tell this role its data_directory: set dataDirectory');
  let id: string;
  try {
    const handle = await open(join(dir, 'global', 'pg_control'), 'r');
    try {
      const bytes = Buffer.alloc(8);
      await handle.read(bytes, 0, 8, 0);
      id = bytes.readBigUInt64LE(0).toString();
    } finally {
      await handle.close();
    }
  } catch (error) {
    return fail(`${dir} cannot be read here (${messageOf(error)})`, error);
  }
  if (id === server.id) return dir;
  return fail(
    `${dir} is not this server's data directory (its pg_control has system identifier ${id}, the server ${server.id})`,
  );
}

export async function readDataFiles(options: FilesOptions): Promise<SourceReading> {
  const { server, dataDirectory: dir } = options;
  const meta = await snapshotMeta(options.catalog, server, 'files', options.signal);
  const session = new PgSession(options.tools, options.database);
  const onAbort = () => void session.close();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  // Files that ended early while read: padded, and nothing to tell (the WAL replay redoes the truncation).
  const report: TarReport = { shortFiles: [] };
  let stopped: Promise<{ label: string; map: string | null; wal: string }> | undefined;
  let start: { segment: bigint; timeline: string; segmentBytes: bigint };
  try {
    const slot = `backupd_${randomBytes(6).toString('hex')}`;
    await session.query(`SELECT pg_create_physical_replication_slot('${slot}', true, true);`);
    const fast = options.checkpoint === 'fast';
    const begin =
      server.num >= 150000 ? `pg_backup_start('backupd', ${fast})` : `pg_start_backup('backupd', ${fast}, false)`;
    const started = answer<{ lsn: string; wal: string; size: string }>(
      'pg_backup_start',
      await session.query(
        `SELECT json_build_object('lsn', lsn, 'wal', pg_walfile_name(lsn),
           'size', (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size')) FROM ${begin} AS lsn;`,
      ),
    );
    const segmentBytes = BigInt(started.size);
    start = { segment: lsnOf(started.lsn) / segmentBytes, timeline: started.wal.slice(0, 8), segmentBytes };
  } catch (error) {
    options.signal?.removeEventListener('abort', onAbort);
    await session.close();
    throw error instanceof BackupdError
      ? error
      : new BackupdError('SOURCE_FAILED', `starting the snapshot failed: ${messageOf(error)}`, { cause: error });
  }

  const stop = async () => {
    const end = server.num >= 150000 ? 'pg_backup_stop(false)' : 'pg_stop_backup(false, false)';
    return answer<{ label: string; map: string | null; wal: string }>(
      'pg_backup_stop',
      await session.query(
        `SELECT json_build_object('wal', pg_walfile_name(lsn), 'label', labelfile, 'map', spcmapfile) FROM ${end};`,
      ),
    );
  };

  async function* base(): AsyncGenerator<TarEntry> {
    yield* walk(dir, '', true);
    stopped = stop();
    const { label, map } = await stopped;
    const now = Math.floor(Date.now() / 1000);
    yield { kind: 'bytes', name: 'backup_label', mode: 0o600, mtime: now, data: Buffer.from(label) };
    if (map !== null && map !== '') {
      yield { kind: 'bytes', name: 'tablespace_map', mode: 0o600, mtime: now, data: Buffer.from(map) };
    }
  }

  async function* wal(): AsyncGenerator<TarEntry> {
    if (stopped === undefined) throw new BackupdError('INTERNAL', `${WAL_TAR} was read before ${BASE_TAR}`);
    const last = (await stopped).wal;
    const perId = 0x1_0000_0000n / start.segmentBytes;
    const lastSegment = BigInt(`0x${last.slice(8, 16)}`) * perId + BigInt(`0x${last.slice(16, 24)}`);
    const walDir = join(dir, 'pg_wal');
    const names = await readdir(walDir).catch((error: unknown) => {
      throw readError(walDir, error);
    });
    const history = names.filter((name) => /^[0-9A-F]{8}\.history$/.test(name)).sort();
    for (const name of history) yield await opened(join(walDir, name), name, true);
    for (let segment = start.segment; segment <= lastSegment; segment++) {
      const name = `${start.timeline}${hex8(segment / perId)}${hex8(segment % perId)}`;
      yield await opened(join(walDir, name), name, true);
    }
  }

  function tar(name: string, entries: () => AsyncIterable<TarEntry>): SourceFile {
    const fill = tarFill(entries, FILE_BLOCK_BYTES, report);
    return { name, chunking: { kind: 'fixed', blockSize: FILE_BLOCK_BYTES }, stream: fillStream(fill), fill };
  }

  async function* files(): AsyncGenerator<SourceFile> {
    const json = Buffer.from(`${JSON.stringify(meta)}\n`);
    yield {
      name: SNAPSHOT_META_FILE,
      chunking: { kind: 'cdc' },
      stream: Readable.from([json]),
    };
    for (const t of meta.tablespaces) {
      yield tar(`${t.oid}.tar`, () => walk(join(dir, 'pg_tblspc', t.oid), '', false));
    }
    yield tar(BASE_TAR, base);
    yield tar(WAL_TAR, wal);
  }

  return {
    engineVersion: `PostgreSQL ${server.version}`,
    ...(meta.unlogged.length > 0 ? { notes: [unloggedNote(meta.unlogged)] } : {}),
    files: files(),
    close: async () => {
      options.signal?.removeEventListener('abort', onAbort);
      stopped?.catch(() => {}); // its failure reached the reader through base.tar
      await session.close();
    },
  };
}

/** The entries of folder `path` (named `prefix/...` in the tar), as pg_basebackup would send them. */
async function* walk(path: string, prefix: string, top: boolean): AsyncGenerator<TarEntry> {
  let names: string[];
  try {
    names = (await readdir(path)).sort();
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') return; // dropped while read (a database, a tablespace)
    throw readError(path, error);
  }
  // Unlogged relations: only their init fork is kept (the server makes them anew from it at start).
  const unlogged = new Set(names.filter((n) => n.endsWith('_init')).map((n) => n.slice(0, -'_init'.length)));
  for (const name of names) {
    const rel = prefix === '' ? name : `${prefix}/${name}`;
    if (LEFT_OUT.has(name) || name.startsWith('pg_internal.init') || name.startsWith('pgsql_tmp')) continue;
    if (/^t\d+_\d+/.test(name)) continue; // a temporary relation
    const relation = RELATION.exec(name);
    if (relation && relation[2] !== 'init' && unlogged.has(relation[1]!)) continue;
    const full = join(path, name);
    let stats: Awaited<ReturnType<typeof lstat>>;
    try {
      stats = await lstat(full);
    } catch (error) {
      if ((error as { code?: string }).code === 'ENOENT') continue; // removed while read: WAL replay agrees
      throw readError(full, error);
    }
    const mtime = Math.floor(stats.mtimeMs / 1000);
    if (top && (name === 'pg_wal' || name === 'pg_tblspc')) {
      // pg_wal's segments come in pg_wal.tar, the tablespaces in their own tars (tablespace_map links them).
      yield { kind: 'dir', name, mode: 0o700, mtime };
      if (name === 'pg_wal') yield { kind: 'dir', name: 'pg_wal/archive_status', mode: 0o700, mtime };
    } else if (stats.isDirectory()) {
      yield { kind: 'dir', name: rel, mode: stats.mode, mtime };
      if (!(top && EMPTIED.has(name))) yield* walk(full, rel, false);
    } else if (stats.isFile()) {
      const entry = await opened(full, rel, false);
      if (entry) yield entry;
    }
    // Anything else (a socket, a symlink the server did not make) is not part of a data directory's copy.
  }
}

/** A file opened for its tar entry; undefined when it went meanwhile (and `needed` is false). */
async function opened(path: string, name: string, needed: true): Promise<TarEntry>;
async function opened(path: string, name: string, needed: false): Promise<TarEntry | undefined>;
async function opened(path: string, name: string, needed: boolean): Promise<TarEntry | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    if (!needed && (error as { code?: string }).code === 'ENOENT') return undefined;
    throw readError(path, error);
  }
  try {
    const stats = await handle.stat();
    return { kind: 'file', name, mode: stats.mode, mtime: Math.floor(stats.mtimeMs / 1000), size: stats.size, handle };
  } catch (error) {
    await handle.close();
    throw readError(path, error);
  }
}

function readError(path: string, error: unknown): BackupdError {
  return new BackupdError('SOURCE_FAILED', `reading ${path} from the data directory failed: ${messageOf(error)}`, {
    cause: error,
  });
}

/** The one JSON line psql printed for `what`; SOURCE_FAILED when it printed anything else. */
function answer<T>(what: string, output: string): T {
  try {
    return JSON.parse(output) as T;
  } catch (error) {
    throw new BackupdError('SOURCE_FAILED', `${what} answered "${output.slice(0, 200)}", not one JSON line`, {
      cause: error,
    });
  }
}

/** An LSN "X/Y" as a number. */
function lsnOf(lsn: string): bigint {
  const [high, low] = lsn.split('/');
  return (BigInt(`0x${high}`) << 32n) + BigInt(`0x${low}`);
}

function hex8(value: bigint): string {
  return value.toString(16).toUpperCase().padStart(8, '0');
}
