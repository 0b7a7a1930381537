// The source interface: a database engine instance a node can read. A source lists its databases,
// hands the pipeline the files of a backup or snapshot (SourceFile: a stream, a file on disk, or regions of
// the pipeline's memory it fills), and restores such files into a NEW database. Engines are registered in src/sources/registry.ts.

import { Readable } from 'node:stream';
import type { BackupType } from '../layout.js';
import type { Fingerprint } from './fingerprint.js';

/**
 * The database name of the one unit a server-wide snapshot task has on a source whose snapshotScope is
 * 'server' (PostgreSQL: pg_basebackup copies the whole cluster, not one database).
 */
export const SERVER_UNIT = 'all-databases';

/**
 * How the pipeline should cut a file into chunks. 'cdc' (content-defined) suits byte streams whose content
 * shifts when rows change (logical dumps); 'fixed' blocks suit page-structured raw files whose pages
 * change in place (snapshots), with `blockSize` a multiple of the page size.
 */
export type ChunkingHint =
  /** `avgBytes`: the average chunk size, a power of two (the pipeline's 16 KiB default when absent). */
  { kind: 'cdc'; avgBytes?: number } | { kind: 'fixed'; blockSize: number };

/**
 * One file of a backup or snapshot. Its bytes can be read three ways, all the same bytes, and a reader reads
 * exactly one of them (a source whose bytes are produced, by a dump tool or thread, starts it when that one
 * is first read):
 * - `stream`: always there. Every reader that is not the pipeline (tests, tools) reads this, and the
 *   pipeline does when the file has neither of the others. A source with `fill` makes it with fillStream.
 * - `onDisk`: the bytes are a regular file on this machine, read at offsets by the pipeline's worker
 *   threads, so they never cross the main thread (raw snapshot files; the pipeline reads them so when it
 *   cuts them into fixed blocks, as their `chunking` asks, and reads `stream` otherwise).
 * - `fill`: the source writes the bytes straight into regions of the pipeline's shared memory (its batch
 *   slots), so they are never copied on the main thread (a dump produced by another thread or process).
 * A reader that reads `onDisk` or `fill` destroys `stream` unread. Errors reach the reader on the way it
 * reads: SOURCE_FAILED (or the engine's own code) for a failed producer, CANCELLED for a stopped one; a
 * cut-short file never reads as a whole one.
 */
export interface SourceFile {
  /** Relative name inside the restore point, e.g. 'dump.bkdsql' or 'base.tar'. */
  name: string;
  chunking: ChunkingHint;
  stream: Readable;
  /**
   * `stream` is exactly the first `size` bytes of a regular file open as descriptor `fd`, valid and unchanged
   * until the reading is closed: a reader may read them at offsets from any thread, never closing `fd`.
   */
  onDisk?: { fd: number; size: number };
  /**
   * Write the bytes into regions of the caller's shared `memory` that the caller gives in turn (FillFeed),
   * at most `capacity` given and not yet filled. Called at most once; the source's work starts with it.
   */
  fill?: (memory: SharedArrayBuffer, capacity: number) => FillFeed;
  /**
   * Set when this file is the previous restore point's file of this name, unchanged (read() was told its
   * `previous`): the pipeline lists that file's chunks again and reads nothing (`stream` is destroyed unread).
   */
  repeat?: true;
}

/** A source filling regions of a caller's memory (SourceFile.fill). */
export interface FillFeed {
  /** Give the source the next region to fill: `room` bytes from byte `offset` of the memory. */
  give(offset: number, room: number): void;
  /**
   * How many bytes went into each region, in the order given, once the source moved on from it; ends with
   * the file, and fails as `stream` would. A region given is filled only as far as the file goes. Ending
   * the iteration early (return()) stops the source.
   */
  filled: AsyncIterable<number>;
  /**
   * Call `then` once the source writes into no region given to it any more (it ended, failed or was stopped
   * by the end of `filled`): only then may the regions given and never filled serve anything else.
   */
  whenIdle(then: () => void): void;
}

/** Regions of fillStream's own memory: 1 MiB each, four of them given at once. */
const STREAM_REGION_BYTES = 1 << 20;
const STREAM_REGIONS = 4;

/** A region of the caller's memory given to a FillFeed: `room` bytes from byte `offset`. */
export interface FillRegion {
  offset: number;
  room: number;
}

/**
 * A FillFeed around `fill`, a generator that asks for the regions given in turn (`next()` waits for one) and
 * yields how many bytes went into each; the feed is idle once the generator has ended, failed or been stopped.
 */
export function regionFeed(fill: (next: () => Promise<FillRegion>) => AsyncGenerator<number>): FillFeed {
  const regions: FillRegion[] = [];
  let wake: (() => void) | undefined;
  let running = false;
  const idle: (() => void)[] = [];
  const next = async (): Promise<FillRegion> => {
    while (regions.length === 0) await new Promise<void>((resolve) => (wake = resolve));
    return regions.shift()!;
  };
  async function* filled(): AsyncGenerator<number> {
    running = true;
    try {
      yield* fill(next);
    } finally {
      running = false;
      for (const then of idle.splice(0)) then();
    }
  }
  return {
    give(offset, room) {
      regions.push({ offset, room });
      wake?.();
      wake = undefined;
    },
    filled: filled(),
    whenIdle(then) {
      if (running) idle.push(then);
      else then();
    },
  };
}

/**
 * The bytes of `fill` as a stream of copies, for SourceFile.stream of a source that fills: `fill` is called
 * (and the source's work starts) only when the stream is first read; destroying the stream stops it.
 */
export function fillStream(fill: (memory: SharedArrayBuffer, capacity: number) => FillFeed): Readable {
  async function* copies(): AsyncGenerator<Buffer> {
    const memory = new SharedArrayBuffer(STREAM_REGIONS * STREAM_REGION_BYTES);
    const view = Buffer.from(memory);
    const feed = fill(memory, STREAM_REGIONS);
    for (let n = 0; n < STREAM_REGIONS; n++) feed.give(n * STREAM_REGION_BYTES, STREAM_REGION_BYTES);
    let n = 0;
    for await (const length of feed.filled) {
      const at = (n++ % STREAM_REGIONS) * STREAM_REGION_BYTES;
      const copy = Buffer.from(view.subarray(at, at + length));
      feed.give(at, STREAM_REGION_BYTES); // copied: the region takes a later piece
      yield copy;
    }
  }
  return Readable.from(copies(), { objectMode: false });
}

export interface SourceDatabase {
  /** Database name within the source, a safe path segment. */
  name: string;
  /** Size on disk in bytes, when the engine knows it cheaply. */
  sizeBytes?: number;
}

export interface LeftOutDatabase {
  name: string;
  reason: string;
}

/** Why a database whose name is not a safe path segment is left out (safeName in validate.ts). */
export const UNSAFE_NAME_REASON =
  'its name is not a safe path segment (letters, digits, ".", "_", "-", starting with a letter or digit, ' +
  'no ".."), so no backup can name it: rename it to back it up';

/** What a source produced: its files, plus the engine's version for the manifest. */
export interface SourceReading {
  engineVersion: string;
  /**
   * What a restore of this reading will not bring back, for a person (e.g. a PostgreSQL snapshot's unlogged
   * tables, which come back empty); kept in the manifest's `notes` and the run's record.
   */
  notes?: string[];
  files: AsyncIterable<SourceFile>;
  /**
   * What the database held at the reading's point in time (fingerprint.ts), when the engine records it for
   * this type. Asked once every file was consumed, before close(); throws SOURCE_FAILED as the files would.
   */
  fingerprint?: () => Promise<Fingerprint>;
  /**
   * A short text for the chain's next incremental, kept in the manifest and handed back to read() as
   * `previous.engineState` (a MariaDB snapshot: the LSN it copied up to). Asked like fingerprint.
   */
  engineState?: () => Promise<string>;
  /** Called after the pipeline consumed every file (or failed): remove temp copies, close connections. */
  close(): Promise<void>;
}

/** The restore point an incremental continues from, as read() is told it. */
export interface PreviousPoint {
  /** Its files' names, in manifest order. */
  files: string[];
  /** What its reading's engineState() returned, if it did. */
  engineState?: string;
}

/** A file handed back to a source at restore time, in manifest order. */
export interface RestoreFile {
  name: string;
  size: number;
  /** The file's bytes in order. Created lazily: nothing is read until the stream is. */
  stream: Readable;
  /**
   * Write the whole file to `path` (created or truncated) instead of reading `stream`: worker threads open
   * chunks and write them at their offsets in parallel, much faster for large raw files. Use one or the other.
   */
  writeTo(path: string): Promise<void>;
}

export interface RestoreOptions {
  /** Name of the NEW database. The engine refuses (ALREADY_EXISTS) if it exists, before writing anything. */
  target: string;
  type: BackupType;
  signal?: AbortSignal;
}

export interface RestoreResult {
  /** Where the database now lives (a file path, a data directory, a connection string without secrets). */
  location: string;
  /** What a person does next, if anything (e.g. how to start a restored data directory). */
  note?: string;
}

/**
 * Where verify --restore restores a restore point: a place nothing else sees (verify-restore.ts), removed
 * afterwards.
 */
export interface Scratch {
  /** The source to restore into (the engine's own or one opened on the scratch place), and the name there. */
  source: Source;
  target: string;
  /**
   * The restored database's fingerprint (fingerprint.ts, the engine's recipe) and every problem the engine's
   * own checks report (SQLite integrity_check; PostgreSQL amcheck where installed). Throws SOURCE_FAILED
   * when the database cannot be read at all. `notes`: what was not checked, which is no failure (no amcheck).
   */
  inspect(signal?: AbortSignal): Promise<{ fingerprint: Fingerprint; problems: string[]; notes?: string[] }>;
  /** Remove everything of the scratch place, whatever state the restore left it in; safe to call twice. */
  remove(): Promise<void>;
}

export interface Source {
  /** The operator's name for this source, a safe path segment; databases are `<source>/<db>` cluster-wide. */
  readonly name: string;
  /** Engine name, e.g. 'sqlite', 'postgres'. */
  readonly engine: string;
  /** Which backup types this source can produce, per database or server-wide. */
  readonly types: readonly BackupType[];
  /**
   * What one snapshot covers: 'database' (one per database, like a backup) or 'server' (the whole server
   * at once: read(SERVER_UNIT, 'snapshot'), and read(<database>, 'snapshot') throws UNSUPPORTED).
   */
  readonly snapshotScope: 'database' | 'server';

  /** The databases this source holds now. Throws SOURCE_FAILED/UNAVAILABLE when it cannot be read. */
  listDatabases(): Promise<SourceDatabase[]>;

  /**
   * The databases this source holds that listDatabases() leaves out because no backup can name them (a
   * name that is not a safe path segment), with why; not those the operator's own include/exclude leaves
   * out. Told to operators so that a server-wide task never skips a database unseen.
   */
  listLeftOut?(): Promise<LeftOutDatabase[]>;

  /**
   * Start reading `database` as a backup (logical) or snapshot (raw). Throws NOT_FOUND for an unknown
   * database, UNSUPPORTED for a type the engine cannot produce for it. Stream errors surface as
   * SOURCE_FAILED on the file streams.
   */
  read(database: string, type: BackupType, signal?: AbortSignal, previous?: PreviousPoint): Promise<SourceReading>;

  /**
   * Restore files produced by read() into a new database. All or nothing: on any failure (including a
   * stream error from a corrupt backup) nothing is left at the target. Throws ALREADY_EXISTS when the
   * target exists, SOURCE_FAILED when the engine rejects the data.
   */
  restore(files: AsyncIterable<RestoreFile>, options: RestoreOptions): Promise<RestoreResult>;

  /**
   * A new scratch place for verify --restore of a `type` restore point, under `dir` (a folder of this node's
   * own) where the engine keeps files. Absent: the engine cannot verify by restoring.
   */
  scratch?(dir: string, type: BackupType): Promise<Scratch>;

  /**
   * Take back the scratch places that scratch(`dir`) made and a killed process left outside `dir` (the agent
   * removes `dir` itself), e.g. scratch databases on a server. Called at the agent's start, before any verify.
   */
  sweepScratch?(dir: string): Promise<void>;

  close(): Promise<void>;
}

/** An engine: validates its source config (every bad field at once) and opens a source. */
export interface SourceFactory<Config> {
  readonly engine: string;
  parseConfig(input: unknown, path: string): Config;
  redact(config: Config): Config;
  open(name: string, config: Config): Promise<Source>;
}
