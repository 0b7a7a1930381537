// A physical snapshot of a whole MariaDB server: `mariadb-backup --backup --stream=xbstream`, which copies
// the data directory's files (InnoDB pages, with the redo log written meanwhile, so the copy is consistent
// once prepared) and streams them as one xbstream archive. mariadb-backup reads the data directory itself:
// it runs on the server's host, as an OS user that may read it. Two files: `snapshot.json` and
// `backup.xbstream`, the latter cut into content-defined chunks. A chain's incrementals are mariadb-backup's
// own (the pages newer than the previous copy's `toLsn`, `--incremental-lsn`, which the reading returns as its
// engineState): the n-th repeats the previous point's xbstreams and adds `incremental-<n>.xbstream`; a restore
// applies them in order onto the full (mariadb-datadir.ts). docs/SOURCES.md says why, with figures.

import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { BackupdError, messageOf } from '../errors.js';
import type { MariadbClient } from './mariadb-client.js';
import type { PreviousPoint, SourceFile, SourceReading } from './source.js';

export const SNAPSHOT_META_FILE = 'snapshot.json';
export const XBSTREAM_FILE = 'backup.xbstream';
/** The n-th (from 1) of mariadb-backup's own incrementals a restore applies onto the full's XBSTREAM_FILE. */
export function incrementalFile(n: number): string {
  return `incremental-${n}.xbstream`;
}
/** mariadb-backup's record of what it copied (in the xbstream and in --extra-lsndir). */
const CHECKPOINTS_FILE = 'xtrabackup_checkpoints';
/** An InnoDB log sequence number as mariadb-backup writes it: a 64-bit unsigned decimal. */
const LSN = /^\d{1,20}$/;
export const SNAPSHOT_FORMAT = 1;
/** The same chunk size as dumps: an InnoDB page is 16 KiB, a changed page costs about one chunk. */
export const XBSTREAM_CHUNK_BYTES = 64 << 10;

export interface SnapshotMeta {
  format: number;
  serverVersion: string;
}

/**
 * Why this node cannot take the server's snapshot, or undefined when it can. mariadb-backup asks the server
 * for its data directory and then reads that path on the machine it runs on: run anywhere else, it would
 * fail, or, worse, copy whatever another server keeps at the same path. So the server must report this
 * node's host name, and its data directory must be readable here.
 */
export function snapshotHostProblem(
  server: { hostname: string; datadir: string },
  here: { hostname: string; datadirReadable: boolean },
): string | undefined {
  if (server.hostname !== here.hostname) {
    return (
      `mariadb-backup reads the server's files itself, so snapshots are taken on the server's host: the server ` +
      `runs on "${server.hostname}", this node is "${here.hostname}". Run the backupd node that takes this ` +
      'snapshot task on the database host (pin the task to it), or use backup tasks'
    );
  }
  if (!here.datadirReadable) {
    return `the server's data directory ${server.datadir} cannot be read here: run backupd as an OS user that may read it (root or mysql)`;
  }
  return undefined;
}

export interface SnapshotOptions {
  client: MariadbClient;
  serverVersion: string;
  /** mariadb-backup's --target-dir (its own temporary files while streaming) goes under this folder. */
  tempDir: string;
  /** Copy only the pages newer than this LSN (a previous snapshot's `toLsn`): mariadb-backup's own incremental. */
  incrementalLsn?: string;
  /**
   * With incrementalLsn, in a chain: the previous restore point's xbstreams (`backup.xbstream`, then
   * `incremental-1.xbstream`, ...), handed on unchanged (SourceFile.repeat); the new incremental follows them
   * as the next `incremental-<n>.xbstream`. Without: the snapshot's one xbstream is `backup.xbstream`.
   */
  repeat?: string[];
  signal?: AbortSignal;
}

/** What a snapshot copied, from mariadb-backup's xtrabackup_checkpoints. LSNs are decimal strings (64-bit). */
export interface SnapshotCheckpoints {
  backupType: 'full-backuped' | 'incremental';
  fromLsn: string;
  toLsn: string;
}

/** A snapshot's engineState (SourceReading.engineState): where the chain's next incremental starts. */
export interface SnapshotState {
  toLsn: string;
}

/**
 * What the chain's next snapshot is, given the previous restore point (read()'s `previous`): an incremental
 * from its toLsn that repeats its xbstreams, or undefined (a whole snapshot) when it has no state of ours
 * (a chain begun before) or its files are not a snapshot's.
 */
export function nextIncremental(
  previous: PreviousPoint | undefined,
): { incrementalLsn: string; repeat: string[] } | undefined {
  if (previous?.engineState === undefined) return undefined;
  let state: unknown;
  try {
    state = JSON.parse(previous.engineState);
  } catch {
    return undefined;
  }
  const toLsn = (state as { toLsn?: unknown } | null)?.toLsn;
  if (typeof toLsn !== 'string' || !LSN.test(toLsn)) return undefined;
  const [meta, ...repeat] = previous.files;
  if (meta !== SNAPSHOT_META_FILE || !isXbstreamChain(repeat)) return undefined;
  return { incrementalLsn: toLsn, repeat };
}

/** `backup.xbstream`, `incremental-1.xbstream`, ... `incremental-<n>.xbstream`, in order. */
function isXbstreamChain(names: string[]): boolean {
  return names.length > 0 && names.every((name, i) => name === (i === 0 ? XBSTREAM_FILE : incrementalFile(i)));
}

export interface SnapshotReading extends SourceReading {
  /** The checkpoints of the snapshot, once its xbstream was read to the end (before close). */
  checkpoints(): Promise<SnapshotCheckpoints>;
}

export function readSnapshot(options: SnapshotOptions): SnapshotReading {
  const { client, signal } = options;
  if (options.incrementalLsn !== undefined && !LSN.test(options.incrementalLsn)) {
    throw new BackupdError(
      'INVALID_ARGUMENT',
      `incrementalLsn must be an LSN (decimal digits), not "${options.incrementalLsn}"`,
    );
  }
  const repeat = options.repeat ?? [];
  if (repeat.length > 0 && (options.incrementalLsn === undefined || !isXbstreamChain(repeat))) {
    throw new BackupdError(
      'INVALID_ARGUMENT',
      `a snapshot repeats ${XBSTREAM_FILE} and incremental-1.xbstream... in order, with an incrementalLsn, not ${JSON.stringify(repeat)}`,
    );
  }
  const meta: SnapshotMeta = { format: SNAPSHOT_FORMAT, serverVersion: options.serverVersion };
  const scratch = join(options.tempDir, `.mariadb-backup-${randomBytes(6).toString('hex')}`);
  const lsnDir = join(scratch, 'checkpoints');
  let backup: { kill(): void } | undefined;
  let closed = false;
  const checkpoints = async (): Promise<SnapshotCheckpoints> => {
    const text = await readFile(join(lsnDir, CHECKPOINTS_FILE), 'utf8').catch((error: unknown) => {
      throw new BackupdError('SOURCE_FAILED', `mariadb-backup left no ${CHECKPOINTS_FILE}: ${messageOf(error)}`);
    });
    const copied = parseCheckpoints(text);
    if (options.incrementalLsn !== undefined && BigInt(copied.toLsn) < BigInt(options.incrementalLsn)) {
      // The server's log is behind the chain's: it is not the server the chain was taken from (re-created or
      // restored under the same source), and an incremental from it would restore as neither.
      throw new BackupdError(
        'SOURCE_FAILED',
        `the server's log sequence number (${copied.toLsn}) is behind the one this chain's previous snapshot ` +
          `copied up to (${options.incrementalLsn}): the server was re-created or restored since; take a full ` +
          'snapshot to start a new chain',
      );
    }
    return copied;
  };
  async function* files(): AsyncGenerator<SourceFile> {
    yield {
      name: SNAPSHOT_META_FILE,
      chunking: { kind: 'cdc' },
      stream: Readable.from([Buffer.from(`${JSON.stringify(meta, null, 2)}\n`)], { objectMode: false }),
    };
    for (const name of repeat) {
      yield {
        name,
        chunking: { kind: 'cdc', avgBytes: XBSTREAM_CHUNK_BYTES },
        stream: Readable.from([]),
        repeat: true,
      };
    }
    if (closed) return;
    await mkdir(scratch, { recursive: true, mode: 0o700 });
    const args = ['--backup', '--stream=xbstream', `--target-dir=${scratch}`, `--extra-lsndir=${lsnDir}`];
    if (options.incrementalLsn !== undefined) args.push(`--incremental-lsn=${options.incrementalLsn}`);
    const started = client.stream('mariadb-backup', args, { what: 'mariadb-backup of the server', signal });
    backup = started;
    yield {
      name: repeat.length === 0 ? XBSTREAM_FILE : incrementalFile(repeat.length),
      chunking: { kind: 'cdc', avgBytes: XBSTREAM_CHUNK_BYTES },
      stream: started.stream,
      fill: started.fill,
    };
  }
  return {
    engineVersion: `MariaDB ${options.serverVersion}`,
    files: files(),
    checkpoints,
    engineState: async () => JSON.stringify({ toLsn: (await checkpoints()).toLsn } satisfies SnapshotState),
    close: async () => {
      closed = true;
      backup?.kill();
      await rm(scratch, { recursive: true, force: true });
    },
  };
}

/** xtrabackup_checkpoints: `key = value` lines (backup_type, from_lsn, to_lsn, ...). */
export function parseCheckpoints(text: string): SnapshotCheckpoints {
  const values = new Map<string, string>();
  for (const line of text.split('\n')) {
    const match = /^\s*(\w+)\s*=\s*(\S+)\s*$/.exec(line);
    if (match) values.set(match[1]!, match[2]!);
  }
  const backupType = values.get('backup_type');
  const fromLsn = values.get('from_lsn');
  const toLsn = values.get('to_lsn');
  if (
    (backupType !== 'full-backuped' && backupType !== 'incremental') ||
    !fromLsn ||
    !LSN.test(fromLsn) ||
    !toLsn ||
    !LSN.test(toLsn)
  ) {
    throw new BackupdError(
      'SOURCE_FAILED',
      `unexpected ${CHECKPOINTS_FILE} from mariadb-backup: ${JSON.stringify(text)}`,
    );
  }
  return { backupType, fromLsn, toLsn };
}
