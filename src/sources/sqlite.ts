// The sqlite engine, the embedded default: every *.db / *.sqlite file directly in a folder is a database,
// named by its file name. Backup (logical) = schema + rows, index definitions only; snapshot (raw) =
// a consistent online copy of the file through the SQLite backup API, index pages included.

import { randomBytes } from 'node:crypto';
import { closeSync, fstatSync, openSync } from 'node:fs';
import { link, mkdir, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import Database from 'better-sqlite3';
import { BackupdError, type ErrorCode, messageOf } from '../errors.js';
import { assertSegment, type BackupType } from '../layout.js';
import { parseWith, safeName, z } from '../validate.js';
import { startWorker } from '../worker.js';
import type { Fingerprint } from './fingerprint.js';
import { PieceQueue, type RingFailure } from './piece-ring.js';
import {
  type FillFeed,
  fillStream,
  type LeftOutDatabase,
  type RestoreFile,
  type RestoreOptions,
  type RestoreResult,
  type Scratch,
  type Source,
  type SourceDatabase,
  type SourceFactory,
  type SourceReading,
  UNSAFE_NAME_REASON,
} from './source.js';
import type { DumpFingerprint, DumpJob } from './sqlite-dump-worker.js';
import { DUMP_FILE, SNAPSHOT_FILE } from './sqlite-format.js';
import { loadDump } from './sqlite-restore.js';
import {
  type FingerprintRun,
  fingerprintFile,
  holdRollbackFile,
  oneFile,
  runSnapshotWorker,
  snapshotReading,
} from './sqlite-snapshot.js';

export interface SqliteConfig {
  /** Absolute path of the folder holding the database files. */
  path: string;
  /** Folder for temporary snapshot copies and restores in progress; the OS temp folder by default. */
  tempDir?: string;
  /**
   * Record a fingerprint of what each backup read (docs/FORMAT.md, "Fingerprints"), which `verify --restore`
   * compares a restore with. Off by default: about 3 CPU s more per GiB, which took the bench's fulls below
   * their targets (docs/SOURCES.md).
   */
  fingerprints?: boolean;
}

const schema = z.strictObject({
  path: z.string().min(1, 'must not be empty').refine(isAbsolute, 'must be an absolute path'),
  tempDir: z.string().refine(isAbsolute, 'must be an absolute path').optional(),
  fingerprints: z.boolean().optional(),
});

const DATABASE_FILE = /^[A-Za-z0-9][A-Za-z0-9._-]*\.(db|sqlite)$/;
/** Files with these endings are databases; those whose names are not safe path segments are left out. */
const DATABASE_SUFFIX = /\.(db|sqlite)$/;
const isSafeFileName = (name: string) => DATABASE_FILE.test(name) && safeName.safeParse(name).success;

export class SqliteSource implements Source {
  readonly engine = 'sqlite';
  readonly types = ['backup', 'snapshot'] as const;
  readonly snapshotScope = 'database';

  constructor(
    readonly name: string,
    private readonly config: SqliteConfig,
  ) {}

  async listDatabases(): Promise<SourceDatabase[]> {
    const databases: SourceDatabase[] = [];
    for (const name of await this.databaseFiles()) {
      if (!isSafeFileName(name)) continue;
      const info = await stat(join(this.config.path, name)).catch(() => undefined); // deleted meanwhile: not listed
      if (info) databases.push({ name, sizeBytes: info.size });
    }
    return databases.sort((a, b) => a.name.localeCompare(b.name));
  }

  async listLeftOut(): Promise<LeftOutDatabase[]> {
    // Hidden files are not databases left out: a restore builds its database under a hidden name.
    return (await this.databaseFiles())
      .filter((name) => !name.startsWith('.') && !isSafeFileName(name))
      .sort()
      .map((name) => ({ name, reason: UNSAFE_NAME_REASON }));
  }

  /** The names of the regular files of the folder that end in .db or .sqlite. */
  private async databaseFiles(): Promise<string[]> {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(this.config.path, { withFileTypes: true });
    } catch (error) {
      throw new BackupdError('SOURCE_FAILED', `cannot list SQLite folder ${this.config.path}: ${messageOf(error)}`, {
        cause: error,
      });
    }
    return entries.filter((e) => e.isFile() && DATABASE_SUFFIX.test(e.name)).map((e) => e.name);
  }

  async read(database: string, type: BackupType, signal?: AbortSignal): Promise<SourceReading> {
    const path = await this.existingPath(database);
    const engineVersion = `sqlite ${sqliteVersion()}`;
    if (type === 'backup') {
      // The dump reads a private copy: made under the read lock only as long as copying the file takes (a
      // rollback-journal database), or with the backup API (WAL), so writers never wait on the pipeline.
      const copy = await this.privateCopy(path, signal);
      try {
        const fingerprints = this.config.fingerprints === true;
        const { fill, stop, fingerprint } = dumpInWorker(path, copy.path, copy.journalMode, fingerprints, signal);
        return {
          engineVersion,
          files: oneFile({ name: DUMP_FILE, chunking: { kind: 'cdc' }, stream: fillStream(fill), fill }),
          ...(fingerprints ? { fingerprint: () => fingerprint } : {}),
          close: async () => {
            await stop();
            await copy.remove();
          },
        };
      } catch (error) {
        await copy.remove();
        throw error;
      }
    }
    const held = await holdRollbackFile(path, signal);
    if (held) {
      // The file itself is the snapshot while the read transaction keeps writers off it; its fingerprint is
      // read beside the pipeline, under the same lock.
      const fingerprint = this.config.fingerprints ? fingerprintFile(path, false, { fd: held.fd }) : undefined;
      return snapshotReading(
        engineVersion,
        held.fd,
        held.size,
        signal,
        fingerprint && (() => fingerprint),
        async () => {
          await fingerprint?.stop(); // before the lock goes: it reads the file in place
          await held.release();
        },
      );
    }
    const copy = join(await this.tempDir(), `.snapshot-${randomBytes(6).toString('hex')}.sqlite`);
    await runSnapshotWorker(path, copy, signal).catch(async (error: unknown) => {
      await removeDatabaseFiles(copy);
      throw error;
    });
    // Our own copy: nothing else writes it, and its descriptor can be closed when the reading is.
    const fd = openSync(copy, 'r');
    // Its fingerprint once the pipeline has read it: then the copy may become a rollback-journal file.
    let fingerprint: FingerprintRun | undefined;
    const fingerprintOnce = () => {
      fingerprint ??= fingerprintFile(copy, false, { ownCopy: true });
      return fingerprint;
    };
    return snapshotReading(
      engineVersion,
      fd,
      fstatSync(fd).size,
      signal,
      this.config.fingerprints ? fingerprintOnce : undefined,
      async () => {
        await fingerprint?.stop();
        closeSync(fd);
        await removeDatabaseFiles(copy);
      },
    );
  }

  /**
   * A copy of the database at `path` in the temp folder, one point in time, that nothing else opens, and
   * the journal mode of the original. A rollback-journal database is copied byte for byte under a read
   * transaction's SHARED lock (writers wait for the copy, not for the backup); a WAL database with the
   * backup API (writers do not wait).
   */
  private async privateCopy(
    path: string,
    signal?: AbortSignal,
  ): Promise<{ path: string; journalMode: string; remove: () => Promise<void> }> {
    const copy = join(await this.tempDir(), `.dump-${randomBytes(6).toString('hex')}.sqlite`);
    const remove = () => removeDatabaseFiles(copy);
    try {
      const copied = await holdRollbackFile(path, signal, copy);
      if (copied) return { path: copy, journalMode: 'delete', remove };
      await runSnapshotWorker(path, copy, signal);
      return { path: copy, journalMode: 'wal', remove };
    } catch (error) {
      await remove();
      throw error;
    }
  }

  async restore(files: AsyncIterable<RestoreFile>, options: RestoreOptions): Promise<RestoreResult> {
    const name = DATABASE_FILE.test(options.target) ? options.target : `${options.target}.db`;
    assertSegment('target database', name);
    const target = join(this.config.path, name);
    if (await exists(target)) {
      throw new BackupdError(
        'ALREADY_EXISTS',
        `database ${name} already exists in ${this.config.path}: restore into a new name`,
      );
    }
    // Build the database beside its final place, then link it in: link() refuses to replace an existing
    // file, so a database created meanwhile is never overwritten, and a failure leaves nothing at the target.
    const temp = join(this.config.path, `.restoring-${randomBytes(6).toString('hex')}-${name}`);
    try {
      const expected = options.type === 'backup' ? DUMP_FILE : SNAPSHOT_FILE;
      let seen = false;
      for await (const file of files) {
        if (file.name !== expected || seen) {
          throw new BackupdError('SOURCE_FAILED', `unexpected file "${file.name}" in a SQLite ${options.type}`);
        }
        seen = true;
        if (options.type === 'backup') await loadDump(file.stream, temp);
        else await file.writeTo(temp);
      }
      if (!seen) throw new BackupdError('SOURCE_FAILED', `the ${options.type} holds no ${expected}`);
      await link(temp, target).catch((error: unknown) => {
        if ((error as { code?: string }).code === 'EEXIST') {
          throw new BackupdError(
            'ALREADY_EXISTS',
            `database ${name} was created while restoring: restore into a new name`,
          );
        }
        throw error;
      });
      return { location: target };
    } finally {
      await removeDatabaseFiles(temp);
    }
  }

  /** A folder of its own under `dir`, opened as a source of its own: the restore is a file nothing else names. */
  async scratch(dir: string, _type: BackupType): Promise<Scratch> {
    const folder = join(dir, `verify-sqlite-${randomBytes(6).toString('hex')}`);
    await mkdir(folder, { recursive: true, mode: 0o700 });
    const target = 'verify.db';
    return {
      source: new SqliteSource(this.name, { path: folder, tempDir: folder }),
      target,
      inspect: async (signal) => {
        const run = fingerprintFile(join(folder, target), true);
        const onAbort = () => void run.stop();
        signal?.addEventListener('abort', onAbort, { once: true });
        try {
          return await run.result;
        } finally {
          signal?.removeEventListener('abort', onAbort);
          await run.stop();
        }
      },
      remove: () => rm(folder, { recursive: true, force: true }),
    };
  }

  async close(): Promise<void> {}

  private async existingPath(database: string): Promise<string> {
    if (!DATABASE_FILE.test(database)) {
      throw new BackupdError(
        'NOT_FOUND',
        `"${database}" is not a SQLite database name (expected <name>.db or <name>.sqlite)`,
      );
    }
    const path = join(this.config.path, database);
    if (!(await exists(path)))
      throw new BackupdError('NOT_FOUND', `database ${database} not found in ${this.config.path}`);
    return path;
  }

  private async tempDir(): Promise<string> {
    const dir = this.config.tempDir ?? join(tmpdir(), 'backupd-sqlite');
    await mkdir(dir, { recursive: true });
    return dir;
  }
}

/**
 * The dump of `copy` (a private copy of the database at `path`), produced by a worker thread
 * (sqlite-dump-worker.ts) into the regions its reader gives (SourceFile.fill): the thread starts when
 * `fill` is called, and runs as far ahead of the reader as the regions given.
 */
function dumpInWorker(
  path: string,
  copy: string,
  journalMode: string,
  fingerprints: boolean,
  signal?: AbortSignal,
): {
  fill: (memory: SharedArrayBuffer, capacity: number) => FillFeed;
  stop: () => Promise<void>;
  fingerprint: Promise<Fingerprint>;
} {
  let settle!: { resolve: (f: Fingerprint) => void; reject: (e: BackupdError) => void };
  const fingerprint = new Promise<Fingerprint>((resolve, reject) => {
    settle = { resolve, reject };
  });
  fingerprint.catch(() => {}); // a failed dump also fails its reader, which the pipeline reports
  let queue: PieceQueue | undefined;
  let worker: ReturnType<typeof startWorker> | undefined;
  const fail = (error: BackupdError) => {
    queue?.fail(error);
    settle.reject(error);
  };
  const onAbort = () => fail(new BackupdError('CANCELLED', 'the dump was cancelled'));
  signal?.addEventListener('abort', onAbort, { once: true });
  const fill = (memory: SharedArrayBuffer, capacity: number): FillFeed => {
    if (queue) throw new BackupdError('INTERNAL', `the dump of ${path} was read twice`);
    const into = new PieceQueue(memory, capacity);
    queue = into;
    if (signal?.aborted) into.fail(new BackupdError('CANCELLED', 'the dump was cancelled'));
    const started = startWorker(import.meta.url, './sqlite-dump-worker', {
      ...into.shared,
      path: copy,
      journalMode,
      fingerprints,
    } satisfies DumpJob);
    worker = started;
    started.on('message', (message: RingFailure | DumpFingerprint) => {
      if ('fingerprint' in message) settle.resolve(message.fingerprint);
      else {
        fail(
          new BackupdError((message.code ?? 'SOURCE_FAILED') as ErrorCode, `SQLite dump of ${path}: ${message.error}`),
        );
      }
    });
    started.on('error', (error) =>
      fail(new BackupdError('SOURCE_FAILED', `SQLite dump of ${path}: worker failed: ${error.message}`)),
    );
    started.on('exit', () => {
      into.producerExited(() => new BackupdError('SOURCE_FAILED', 'SQLite dump worker stopped before the end'));
      settle.reject(new BackupdError('SOURCE_FAILED', 'SQLite dump worker stopped before its fingerprint'));
    });
    async function* lengths(): AsyncGenerator<number> {
      try {
        for (let n = await into.next(); n !== undefined; n = await into.next()) yield n;
      } finally {
        into.close(); // a reader that stops early stops the dump
      }
    }
    return {
      give: (offset, room) => into.give(offset, room),
      filled: lengths(),
      whenIdle: (then) => into.whenIdle(then),
    };
  };
  return {
    fill,
    fingerprint,
    stop: async () => {
      signal?.removeEventListener('abort', onAbort);
      settle.reject(new BackupdError('SOURCE_FAILED', 'the dump was stopped before its fingerprint'));
      queue?.close();
      await worker?.terminate();
    },
  };
}

let version: string | undefined;
function sqliteVersion(): string {
  if (!version) {
    const db = new Database(':memory:');
    version = (db.prepare('SELECT sqlite_version() AS v').get() as { v: string }).v;
    db.close();
  }
  return version;
}

/** A database file and the files SQLite keeps beside it. */
async function removeDatabaseFiles(path: string): Promise<void> {
  for (const file of [path, `${path}-journal`, `${path}-wal`, `${path}-shm`]) await rm(file, { force: true });
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    (error: { code?: string }) => {
      if (error.code === 'ENOENT') return false;
      throw error;
    },
  );
}

export const sqlite = {
  engine: 'sqlite',
  parseConfig: (input: unknown, path: string): SqliteConfig => parseWith(schema, input, 'sqlite source', path),
  redact: (config: SqliteConfig): SqliteConfig => config,
  open: async (name: string, config: SqliteConfig): Promise<Source> =>
    new SqliteSource(assertSegment('source', name), config),
} satisfies SourceFactory<SqliteConfig>;
