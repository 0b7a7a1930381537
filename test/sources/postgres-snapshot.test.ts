// Server snapshots of a real PostgreSQL server (its own, for this file): pg_basebackup taken while pgbench
// writes, with an extra tablespace, through runBackup and restoreBackup into a new data directory that
// is then started on another port and compared; incremental snapshot bytes are logged. A failed
// snapshot restore leaves no data directory behind.

import { chmodSync, existsSync, mkdirSync, readdirSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../../src/backup/backup.js';
import { restoreBackup } from '../../src/backup/restore.js';
import { postgres } from '../../src/sources/postgres.js';
import { SERVER_UNIT, type Source } from '../../src/sources/source.js';
import { type PostgresServer, serverWritableDir, startPostgres } from '../harness/postgres.js';
import { tempDir } from '../harness/process.js';
import { createFixtureDatabase, fingerprint } from './postgres-fixture.js';
import {
  asRestoreInput,
  backupOf,
  capture,
  expectCode,
  leftovers,
  openSource,
  pgbenchBalances,
} from './postgres-support.js';

describe('postgres server snapshots', () => {
  let pg: PostgresServer;
  let source: Source;
  let work: { path: string; remove: () => void };
  beforeAll(async () => {
    work = tempDir('pg-snapshot');
    pg = await startPostgres();
    source = await openSource(pg, { snapshotReader: 'pg_basebackup' });
  }, 60_000);
  afterAll(async () => {
    await pg?.stop();
    work?.remove();
  }, 30_000);

  it('restores a snapshot taken under load into a new data directory that starts with the same data', async () => {
    await createFixtureDatabase(pg, 'snapdb');
    const tablespace = await serverWritableDir(pg.dir, 'ts_extra');
    await pg.psql(`CREATE TABLESPACE extra LOCATION '${tablespace}'`);
    await pg.psql(
      'CREATE TABLE far (id int PRIMARY KEY, v text) TABLESPACE extra; INSERT INTO far SELECT i, md5(i::text) FROM generate_series(1, 5000) i;',
      'snapdb',
    );
    await pg.psql('CREATE DATABASE snapbench');
    await pg.tool('pgbench', ['-i', '-q', '-s', '1', 'snapbench']);
    const snapdb = await fingerprint(pg, 'snapdb');
    const common = backupOf(source, join(work.path, 'repo'), SERVER_UNIT, 'snapshot', join(work.path, 'staging'));

    // pgbench writes all through the full snapshot: the copy must still be one consistent point in time.
    const load = pg.tool('pgbench', ['-n', '-c', '2', '-T', '2', 'snapbench']);
    await new Promise((r) => setTimeout(r, 300));
    const full = await runBackup({ ...common, level: 'full' });
    await load;
    await pg.tool('pgbench', ['-n', '-c', '2', '-t', '100', 'snapbench']);
    const incr = await runBackup({ ...common, level: 'incr' });
    console.log(
      `postgres snapshot (${(full.rawBytes / 1e6).toFixed(1)} MB of tars, full stored ${full.storedBytes} bytes): ` +
        `incremental after 200 pgbench transactions stored ${incr.storedBytes} bytes ` +
        `(${((incr.storedBytes / full.storedBytes) * 100).toFixed(1)}% of the full; ${incr.newChunks} of ${incr.chunks} chunks new)`,
    );
    expect(incr.chainId).toBe(full.chainId);
    expect(incr.storedBytes).toBeLessThan(full.storedBytes * 0.25);
    // The tars are cut around 64 KiB (TAR_CHUNK_BYTES), not the default 16 KiB: fewer, better compressed chunks.
    // A 16 KiB cut makes no chunk over 64 KiB (4x the average), so its mean could not pass this.
    expect(full.rawBytes / full.chunks).toBeGreaterThan(64 << 10);
    const liveBench = await pgbenchBalances(pg, 'snapbench');
    expect(readdirSync(join(pg.dir, 'spool'))).toEqual([]); // the spool went with each reading

    const restoreTo = (target: string) =>
      restoreBackup({
        ...common,
        from: common.destinations[0]!,
        chainId: incr.chainId,
        backupId: incr.backupId,
        target,
        cacheDir: join(work.path, 'cache'),
      });
    const restored = await restoreTo('copy1');
    expect(restored.location).toBe(join(pg.dir, 'restores', 'copy1'));
    expect(restored.note).toContain(`pg_ctl -D ${restored.location} -o '-p PORT' start`);
    expect(restored.note).toContain('checked with pg_verifybackup');
    await expectCode(restoreTo('copy1'), 'ALREADY_EXISTS');

    const copy = await startPostgres({
      dataDir: restored.location,
      alsoOwn: [join(pg.dir, 'restores', 'copy1-tablespaces')],
    });
    try {
      expect(await fingerprint(copy, 'snapdb')).toEqual(snapdb);
      const far = "SELECT count(*), md5(string_agg(v, ',' ORDER BY id)) FROM far";
      expect(await copy.psql(far, 'snapdb')).toBe(await pg.psql(far, 'snapdb'));
      const location = "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'extra'";
      expect((await copy.psql(location)).trim()).toBe(
        join(
          pg.dir,
          'restores',
          'copy1-tablespaces',
          (await pg.psql("SELECT oid FROM pg_tablespace WHERE spcname = 'extra'")).trim(),
        ),
      );
      // The balances add up (one consistent point), and it is the incremental's point.
      const balances = await pgbenchBalances(copy, 'snapbench');
      expect(new Set(balances.slice(0, 4)).size, balances.join(' ')).toBe(1);
      expect(balances).toEqual(liveBench);
    } finally {
      await copy.stop();
    }
  });

  it('leaves no data directory behind when a snapshot restore fails, and needs restoreDir', async () => {
    const files = await capture(source, SERVER_UNIT, 'snapshot');
    expect(files.map((f) => f.name)).toEqual(
      expect.arrayContaining(['snapshot.json', 'base.tar', 'pg_wal.tar', 'backup_manifest']),
    );
    for (const cut of ['base.tar', 'pg_wal.tar']) {
      await expectCode(
        source.restore(asRestoreInput(files, cut), { target: 'broken', type: 'snapshot' }),
        'SOURCE_FAILED',
      );
      expect(readdirSync(join(pg.dir, 'restores')).filter((n) => n.startsWith('broken'))).toEqual([]);
      expect(await leftovers(pg)).toEqual([]);
    }
    await expectCode(source.restore(asRestoreInput(files), { target: '../up', type: 'snapshot' }), 'INVALID_ARGUMENT');
    const noRestoreDir = await postgres.open(
      'pg',
      postgres.parseConfig(pg.sourceConfig({ snapshotReader: 'pg_basebackup' }), 'source.config'),
    );
    const error = await expectCode(
      noRestoreDir.restore(asRestoreInput(files), { target: 'x', type: 'snapshot' }),
      'UNSUPPORTED',
    );
    expect(error.message).toMatch(/restoreDir/);
  });

  it('fails the run and publishes nothing when pg_basebackup fails while its tar is being read', async () => {
    // The server's own tools, but a pg_basebackup that writes 3 MiB of base.tar, pauses (so the pipeline
    // is reading the spool as it grows) and then fails as a dropped connection would.
    const binDir = join(work.path, 'failing-bin');
    mkdirSync(binDir);
    for (const tool of readdirSync(pg.binDir)) symlinkSync(join(pg.binDir, tool), join(binDir, tool));
    const script = join(binDir, 'pg_basebackup');
    rmLink(script);
    writeFileSync(
      script,
      [
        '#!/bin/sh',
        'for arg in "$@"; do case "$arg" in --pgdata=*) dir=$(printf %s "$arg" | cut -d= -f2-);; esac; done',
        'head -c 2097152 /dev/urandom > "$dir/base.tar"',
        'sleep 0.3',
        'head -c 1048576 /dev/urandom >> "$dir/base.tar"',
        'echo "pg_basebackup: error: could not read COPY data: test stops here" >&2',
        'exit 1',
        '',
      ].join('\n'),
    );
    chmodSync(script, 0o755);
    const failing = await openSource(pg, { binDir, snapshotReader: 'pg_basebackup' });
    const repo = join(work.path, 'failing-repo');
    const error = await expectCode(
      runBackup({
        ...backupOf(failing, repo, SERVER_UNIT, 'snapshot', join(work.path, 'failing-staging')),
        level: 'full',
      }),
      'SOURCE_FAILED',
    );
    expect(error.message).toContain('test stops here');
    expect(manifestsUnder(repo)).toEqual([]);
    expect(readdirSync(join(pg.dir, 'spool'))).toEqual([]);
    await failing.close();
  });
});

function rmLink(path: string): void {
  if (existsSync(path)) unlinkSync(path);
}

/** Every *.manifest file below `dir` (none when `dir` does not exist). */
function manifestsUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((name) => name.endsWith('.manifest'));
}
