// A temp folder per test with the usual pieces: a SQLite source folder, a local destination, staging.

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DatabaseRef } from '../../src/layout.js';
import type { Source } from '../../src/sources/source.js';
import { sqlite } from '../../src/sources/sqlite.js';
import { LocalDestination } from '../../src/uploader/local.js';

export interface Workspace {
  dir: string;
  dbDir: string;
  source: Source;
  destination: LocalDestination;
  stagingDir: string;
  cacheDir: string;
  ref(database: string): DatabaseRef;
  cleanup(): void;
}

/** `fingerprints`: the SQLite source records fingerprints (off by default, as in the source). */
export async function workspace(options: { fingerprints?: boolean } = {}): Promise<Workspace> {
  const dir = mkdtempSync(join(tmpdir(), 'backupd-test-'));
  const dbDir = join(dir, 'dbs');
  mkdirSync(dbDir);
  return {
    dir,
    dbDir,
    source: await sqlite.open('local', { path: dbDir, tempDir: join(dir, 'tmp'), ...options }),
    destination: new LocalDestination('disk', join(dir, 'repo')),
    stagingDir: join(dir, 'staging'),
    cacheDir: join(dir, 'cache'),
    ref: (database) => ({ cluster: 'test', source: 'local', database }),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
