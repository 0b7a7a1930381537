// A physical snapshot of a whole MariaDB server: `mariadb-backup --backup --stream=xbstream`, which copies
// the data directory's files (InnoDB pages, with the redo log written meanwhile, so the copy is consistent
// once prepared) and streams them as one xbstream archive. mariadb-backup reads the data directory itself:
// it runs on the server's host, as an OS user that may read it. Two files: `snapshot.json` and
// `backup.xbstream`, the latter cut into content-defined chunks so an incremental stores only the chunks
// whose pages changed (see docs/SOURCES.md for why not the engine's own incrementals).

import { randomBytes } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { MariadbClient } from './mariadb-client.js';
import type { SourceFile, SourceReading } from './source.js';

export const SNAPSHOT_META_FILE = 'snapshot.json';
export const XBSTREAM_FILE = 'backup.xbstream';
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
  signal?: AbortSignal;
}

export function readSnapshot(options: SnapshotOptions): SourceReading {
  const { client, signal } = options;
  const meta: SnapshotMeta = { format: SNAPSHOT_FORMAT, serverVersion: options.serverVersion };
  const scratch = join(options.tempDir, `.mariadb-backup-${randomBytes(6).toString('hex')}`);
  let backup: { kill(): void } | undefined;
  let closed = false;
  async function* files(): AsyncGenerator<SourceFile> {
    yield {
      name: SNAPSHOT_META_FILE,
      chunking: { kind: 'cdc' },
      stream: Readable.from([Buffer.from(`${JSON.stringify(meta, null, 2)}\n`)], { objectMode: false }),
    };
    if (closed) return;
    await mkdir(scratch, { recursive: true, mode: 0o700 });
    const started = client.stream('mariadb-backup', ['--backup', '--stream=xbstream', `--target-dir=${scratch}`], {
      what: 'mariadb-backup of the server',
      signal,
    });
    backup = started;
    yield {
      name: XBSTREAM_FILE,
      chunking: { kind: 'cdc', avgBytes: XBSTREAM_CHUNK_BYTES },
      stream: started.stream,
      fill: started.fill,
    };
  }
  return {
    engineVersion: `MariaDB ${options.serverVersion}`,
    files: files(),
    close: async () => {
      closed = true;
      backup?.kill();
      await rm(scratch, { recursive: true, force: true });
    },
  };
}
