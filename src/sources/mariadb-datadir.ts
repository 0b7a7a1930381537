// Restoring a MariaDB server snapshot into a NEW data directory, `<restoreDir>/<target>`, ready for a
// mariadbd to start on: the xbstream is extracted (mbstream) into a folder beside it (`.restoring-...`),
// prepared (`mariadb-backup --prepare`: the redo log copied with the files is applied, so the InnoDB
// files are consistent), and only then renamed into place. On any failure the folder is removed. A snapshot
// may go on with mariadb-backup's own incrementals (`incremental-1.xbstream`, ... in order, each taken from
// the previous one's toLsn: mariadb-backup.ts): each is extracted beside it, and applied onto the prepared
// full in order (`--prepare --incremental-dir`), then removed.

import { randomBytes } from 'node:crypto';
import { access, mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { BackupdError, messageOf } from '../errors.js';
import { assertSegment } from '../layout.js';
import {
  incrementalFile,
  SNAPSHOT_FORMAT,
  SNAPSHOT_META_FILE,
  type SnapshotMeta,
  XBSTREAM_FILE,
} from './mariadb-backup.js';
import type { MariadbClient } from './mariadb-client.js';
import { checkedInput } from './postgres-tools.js';
import { parseVersioned, readSmall } from './restore-file.js';
import type { RestoreFile, RestoreResult } from './source.js';

const MAX_META_BYTES = 1 << 20;

export interface DatadirRestoreOptions {
  client: MariadbClient;
  /** Where new data directories are made; undefined: snapshot restores are not configured. */
  restoreDir: string | undefined;
  target: string;
  signal?: AbortSignal;
}

export async function restoreDatadir(
  files: AsyncIterable<RestoreFile>,
  options: DatadirRestoreOptions,
): Promise<RestoreResult> {
  const { client, signal } = options;
  const target = assertSegment('target data directory', options.target);
  if (options.restoreDir === undefined) {
    throw new BackupdError(
      'UNSUPPORTED',
      'this mariadb source has no restoreDir: set restoreDir in its config to restore snapshots into new data directories',
    );
  }
  const finalDir = join(options.restoreDir, target);
  if (await exists(finalDir))
    throw new BackupdError('ALREADY_EXISTS', `${finalDir} already exists: restore into a new name`);
  await mkdir(options.restoreDir, { recursive: true });
  const work = join(options.restoreDir, `.restoring-${randomBytes(6).toString('hex')}-${target}`);
  const incrementals: string[] = [];
  try {
    await mkdir(work, { mode: 0o700 });
    const iterator = files[Symbol.asyncIterator]();
    const first = await iterator.next();
    if (first.done || first.value.name !== SNAPSHOT_META_FILE) {
      throw new BackupdError('SOURCE_FAILED', `a MariaDB snapshot starts with ${SNAPSHOT_META_FILE}`);
    }
    const meta = parseMeta(await readSmall(first.value, MAX_META_BYTES));
    const second = await iterator.next();
    if (second.done || second.value.name !== XBSTREAM_FILE) {
      throw new BackupdError('SOURCE_FAILED', `a MariaDB snapshot holds ${XBSTREAM_FILE} after ${SNAPSHOT_META_FILE}`);
    }
    await client.runLocal('mbstream', ['-x', '-C', work], {
      input: checkedInput(second.value),
      stdout: 'ignore',
      signal,
      what: `extracting the snapshot into ${finalDir}`,
    });
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
      const expected = incrementalFile(incrementals.length + 1);
      if (next.value.name !== expected) {
        throw new BackupdError(
          'SOURCE_FAILED',
          `unexpected file "${next.value.name}" in a MariaDB snapshot (expected ${expected} or the end)`,
        );
      }
      const dir = `${work}.${incrementals.length + 1}`;
      incrementals.push(dir);
      await mkdir(dir, { mode: 0o700 });
      await client.runLocal('mbstream', ['-x', '-C', dir], {
        input: checkedInput(next.value),
        stdout: 'ignore',
        signal,
        what: `extracting ${expected} of the snapshot for ${finalDir}`,
      });
    }
    await client.runLocal('mariadb-backup', ['--no-defaults', '--prepare', `--target-dir=${work}`], {
      stdout: 'ignore',
      signal,
      what: `preparing the snapshot in ${finalDir}`,
    });
    for (const [i, dir] of incrementals.entries()) {
      await client.runLocal(
        'mariadb-backup',
        ['--no-defaults', '--prepare', `--target-dir=${work}`, `--incremental-dir=${dir}`],
        { stdout: 'ignore', signal, what: `applying ${incrementalFile(i + 1)} of the snapshot in ${finalDir}` },
      );
    }
    try {
      await rename(work, finalDir);
    } catch (error) {
      if ((error as { code?: string }).code === 'ENOTEMPTY' || (error as { code?: string }).code === 'EEXIST') {
        throw new BackupdError('ALREADY_EXISTS', `${finalDir} was created while restoring: restore into a new name`);
      }
      throw new BackupdError(
        'SOURCE_FAILED',
        `cannot move the restored data directory into ${finalDir}: ${messageOf(error)}`,
      );
    }
    return {
      location: finalDir,
      note:
        `A prepared data directory of MariaDB ${meta.serverVersion}. Start it with the same MariaDB version: ` +
        `mariadbd --datadir=${finalDir} --port=<a free port> --socket=<a new socket> (owned by the OS user that ` +
        'restored it: chown -R mysql:mysql it first to run it as mysql). Its accounts and passwords are those of the original server.',
    };
  } catch (error) {
    await rm(work, { recursive: true, force: true });
    throw error;
  } finally {
    for (const dir of incrementals) await rm(dir, { recursive: true, force: true });
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false; // not there (or not reachable, which the later mkdir/rename reports)
  }
}

function parseMeta(text: string): SnapshotMeta {
  const meta = parseVersioned<SnapshotMeta>(text, SNAPSHOT_META_FILE, SNAPSHOT_FORMAT);
  return meta;
}
