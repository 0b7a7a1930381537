// Our engine as a child process of the benchmark, so its wall time and peak memory are measured on
// their own, like restic's. Prints one JSON line: the BackupResult, or the restore's result.
//
//   node dist/bench/ours.js backup  --db-dir D --db FILE --repo R --temp T --staging S --type backup|snapshot --level full|incr
//   node dist/bench/ours.js restore --db-dir D --db FILE --repo R --temp T --cache C --chain ID --backup ID --target NAME
//
// FILE is the database's name in the sqlite source, i.e. its file name (`bench.db`); T holds the source's
// temporary snapshot copies and restores in progress, so a run leaves nothing outside its folder.
// The task key comes from BENCH_KEY (never argv, where `ps` would show it); unset means unencrypted.

import { parseArgs } from 'node:util';
import { runBackup } from '../src/backup/backup.js';
import { restoreBackup } from '../src/backup/restore.js';
import { BackupdError } from '../src/errors.js';
import type { BackupLevel, BackupType, DatabaseRef } from '../src/layout.js';
import { sqlite } from '../src/sources/sqlite.js';
import { local } from '../src/uploader/local.js';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    'db-dir': { type: 'string' },
    temp: { type: 'string' },
    db: { type: 'string' },
    repo: { type: 'string' },
    staging: { type: 'string' },
    cache: { type: 'string' },
    type: { type: 'string' },
    level: { type: 'string' },
    chain: { type: 'string' },
    backup: { type: 'string' },
    target: { type: 'string' },
  },
});

function required(name: keyof typeof values): string {
  const value = values[name];
  if (typeof value !== 'string' || value === '') throw new Error(`ours.js: --${name} is required`);
  return value;
}

function oneOf<T extends string>(name: keyof typeof values, allowed: readonly T[]): T {
  const value = required(name);
  if (!(allowed as readonly string[]).includes(value)) {
    throw new Error(`ours.js: --${name} must be one of ${allowed.join(', ')}`);
  }
  return value as T;
}

const command = positionals[0];
const key = process.env.BENCH_KEY || undefined;
const ref: DatabaseRef = { cluster: 'bench', source: 'bench', database: required('db') };
const source = await sqlite.open('bench', { path: required('db-dir'), tempDir: required('temp') });
const dest = await local.open('local', { path: required('repo') });
try {
  if (command === 'backup') {
    const result = await runBackup({
      ref,
      source,
      type: oneOf<BackupType>('type', ['backup', 'snapshot']),
      level: oneOf<BackupLevel>('level', ['full', 'incr']),
      destinations: [dest],
      stagingDir: required('staging'),
      key,
      node: 'bench',
      task: 'bench',
    });
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } else if (command === 'restore') {
    const result: unknown = await restoreBackup({
      ref,
      source,
      from: dest,
      chainId: required('chain'),
      backupId: required('backup'),
      target: required('target'),
      key,
      cacheDir: required('cache'),
    });
    process.stdout.write(`${JSON.stringify(result ?? null)}\n`);
  } else {
    throw new Error(`ours.js: expected "backup" or "restore", got ${JSON.stringify(command)}`);
  }
} catch (error) {
  // The engine's typed errors say what to fix; a stack trace would bury that (the bench prints stderr).
  if (!(error instanceof BackupdError)) throw error;
  const hint = error.code === 'KEY_REQUIRED' ? ' (set BENCH_KEY to the key the backup was made with)' : '';
  process.stderr.write(`ours.js: ${error.code}: ${error.message}${hint}\n`);
  process.exitCode = 1;
} finally {
  await source.close();
  await dest.close();
}
