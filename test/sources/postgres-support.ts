// What the postgres test files share: a source on a test server, typed-error expectations, the checks
// for what a failed restore may leave, pgbench's balance invariant, and readings held in memory.

import { readdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { expect } from 'vitest';
import { BackupdError } from '../../src/errors.js';
import type { BackupType } from '../../src/layout.js';
import { postgres } from '../../src/sources/postgres.js';
import type { RestoreFile, Source } from '../../src/sources/source.js';
import { LocalDestination } from '../../src/uploader/local.js';
import type { PostgresServer } from '../harness/postgres.js';

/** A postgres source on `pg` (superuser, trust), restoring snapshots under and spooling into pg.dir. */
export async function openSource(pg: PostgresServer, extra: Record<string, unknown> = {}): Promise<Source> {
  return postgres.open(
    'pg',
    postgres.parseConfig(
      pg.sourceConfig({ restoreDir: join(pg.dir, 'restores'), tempDir: join(pg.dir, 'spool'), ...extra }),
      'source.config',
    ),
  );
}

export async function expectCode(promise: Promise<unknown>, code: string): Promise<BackupdError> {
  try {
    await promise;
  } catch (error) {
    expect(error, `expected a BackupdError ${code}, got ${String(error)}`).toBeInstanceOf(BackupdError);
    expect((error as BackupdError).code, (error as Error).message).toBe(code);
    return error as BackupdError;
  }
  throw new Error(`expected ${code}, but the call succeeded`);
}

export async function databaseExists(pg: PostgresServer, name: string): Promise<boolean> {
  return (await pg.psql(`SELECT count(*) FROM pg_database WHERE datname = '${name}'`)).trim() === '1';
}

/** Databases and data directories a failed restore may have left. */
export async function leftovers(pg: PostgresServer): Promise<string[]> {
  const databases = (await pg.psql("SELECT datname FROM pg_database WHERE datname LIKE 'backupd-restoring-%'"))
    .split('\n')
    .filter((l) => l !== '');
  let folders: string[] = [];
  try {
    folders = readdirSync(join(pg.dir, 'restores')).filter((n) => n.startsWith('.restoring-'));
  } catch {
    // no restore folder yet: nothing can be left in it
  }
  return [...databases, ...folders];
}

/**
 * pgbench's balances: every transaction adds `delta` to one account, teller and branch and logs it, so
 * in one consistent state the four sums are equal. The fifth value is the number of transactions.
 */
export async function pgbenchBalances(pg: PostgresServer, database: string): Promise<string[]> {
  const row = await pg.psql(
    `SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(bbalance) FROM pgbench_branches),
            (SELECT sum(tbalance) FROM pgbench_tellers), (SELECT coalesce(sum(delta), 0) FROM pgbench_history),
            (SELECT count(*) FROM pgbench_history)`,
    database,
  );
  return row.trim().split('|');
}

/** The fields of a runBackup request for `database` of `source` into a local destination at `repo`. */
export function backupOf(source: Source, repo: string, database: string, type: BackupType, staging: string) {
  return {
    ref: { cluster: 'test', source: source.name, database },
    source,
    type,
    destinations: [new LocalDestination('disk', repo)],
    stagingDir: staging,
    node: 'n1',
    task: 'pg',
  };
}

export interface CapturedFile {
  name: string;
  data: Buffer;
}

/** Every file of one reading, in memory. */
export async function capture(source: Source, database: string, type: BackupType): Promise<CapturedFile[]> {
  const reading = await source.read(database, type);
  const files: CapturedFile[] = [];
  try {
    for await (const file of reading.files) {
      const parts: Buffer[] = [];
      for await (const part of file.stream) parts.push(part as Buffer);
      files.push({ name: file.name, data: Buffer.concat(parts) });
    }
  } finally {
    await reading.close();
  }
  return files;
}

/** Captured files as restore input; `cut` names a file whose stream delivers only its first half. */
export async function* asRestoreInput(files: CapturedFile[], cut?: string): AsyncGenerator<RestoreFile> {
  for (const file of files) {
    const data = file.name === cut ? file.data.subarray(0, Math.floor(file.data.length / 2)) : file.data;
    yield {
      name: file.name,
      size: file.data.length,
      stream: Readable.from([data]),
      writeTo: (path) => writeFile(path, data),
    };
  }
}
