// Server snapshots read from the data directory (snapshotReader 'files', postgres-files.ts) on a real
// PostgreSQL server of this file's own: a full and an incremental taken while pgbench writes, the newest
// restored into a new data directory that is started and compared with the source by psql's own row
// hashes (and amcheck where the server has it); the automatic choice falling back to pg_basebackup on a
// server whose data directory cannot be read here; and the tar writer padding a file truncated mid-read.

import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { open, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../../src/backup/backup.js';
import { restoreBackup } from '../../src/backup/restore.js';
import type { SnapshotMeta } from '../../src/sources/postgres-basebackup.js';
import { tarFill } from '../../src/sources/postgres-tar.js';
import { SERVER_UNIT, type Source } from '../../src/sources/source.js';
import { type PostgresServer, serverWritableDir, startPostgres } from '../harness/postgres.js';
import { tempDir } from '../harness/process.js';
import { createFixtureDatabase, fingerprint } from './postgres-fixture.js';
import { backupOf, capture, expectCode, openSource, pgbenchBalances } from './postgres-support.js';

const HELD_SLOTS = "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'backupd_%'";

/** No backupd slot or session on `pg`: waited for, as the server's backend ends a moment after psql does. */
async function expectNothingHeld(pg: PostgresServer): Promise<void> {
  const held = `SELECT (${HELD_SLOTS}) + (SELECT count(*) FROM pg_stat_activity WHERE application_name = 'backupd')`;
  for (let i = 0; i < 100 && (await pg.psql(held)).trim() !== '0'; i++) await new Promise((r) => setTimeout(r, 100));
  expect((await pg.psql(held)).trim()).toBe('0');
}

describe('postgres server snapshots read from the data directory', () => {
  let pg: PostgresServer;
  let source: Source;
  let work: { path: string; remove: () => void };
  let copy: PostgresServer | undefined;
  beforeAll(async () => {
    work = tempDir('pg-snapshot-files');
    pg = await startPostgres();
    source = await openSource(pg, { snapshotReader: 'files' });
  }, 60_000);
  afterAll(async () => {
    await copy?.stop();
    await pg?.stop();
    work?.remove();
  }, 30_000);

  it('takes a full and an incremental under a concurrent writer; the newest restores, starts and equals the source', async () => {
    await createFixtureDatabase(pg, 'snapdb');
    const tablespace = await serverWritableDir(pg.dir, 'ts_extra');
    await pg.psql(`CREATE TABLESPACE extra LOCATION '${tablespace}'`);
    await pg.psql(
      `CREATE TABLE far (id int PRIMARY KEY, v text) TABLESPACE extra;
       INSERT INTO far SELECT i, md5(i::text) FROM generate_series(1, 5000) i;
       CREATE UNLOGGED TABLE scratch_rows (id int); INSERT INTO scratch_rows SELECT generate_series(1, 1000);
       CREATE TABLE shrinking (id int, pad text); INSERT INTO shrinking SELECT i, repeat('x', 500) FROM generate_series(1, 20000) i;`,
      'snapdb',
    );
    await pg.psql('CREATE DATABASE snapbench');
    await pg.tool('pgbench', ['-i', '-q', '-s', '1', 'snapbench']);
    const common = backupOf(source, join(work.path, 'repo'), SERVER_UNIT, 'snapshot', join(work.path, 'staging'));

    // pgbench writes all through the full snapshot, and a table is emptied and vacuumed (its file truncated).
    const load = pg.tool('pgbench', ['-n', '-c', '2', '-T', '3', 'snapbench']);
    const shrink = pg.psql('DELETE FROM shrinking WHERE id > 100; VACUUM shrinking;', 'snapdb');
    const full = await runBackup({ ...common, level: 'full' });
    await Promise.all([load, shrink]);
    expect(full.notes?.join(' ')).toContain('snapdb.public.scratch_rows');
    await pg.tool('pgbench', ['-n', '-c', '2', '-t', '200', 'snapbench']);
    await pg.psql("UPDATE far SET v = 'changed' WHERE id <= 10", 'snapdb');
    const incr = await runBackup({ ...common, level: 'incr' });
    console.log(
      `postgres snapshot from the data directory (${(full.rawBytes / 1e6).toFixed(1)} MB of tars, full stored ` +
        `${full.storedBytes} bytes): incremental stored ${incr.storedBytes} bytes ` +
        `(${((incr.storedBytes / full.storedBytes) * 100).toFixed(1)}%; ${incr.newChunks} of ${incr.chunks} chunks new)`,
    );
    expect(incr.chainId).toBe(full.chainId);
    expect(incr.storedBytes).toBeLessThan(full.storedBytes * 0.25);
    const snapdb = await fingerprint(pg, 'snapdb');
    const liveBench = await pgbenchBalances(pg, 'snapbench');
    const far = "SELECT count(*), md5(string_agg(v, ',' ORDER BY id)) FROM far";
    const farLive = await pg.psql(far, 'snapdb');
    // No temporary slot or session is left on the server once the readings closed.
    await expectNothingHeld(pg);

    const restored = await restoreBackup({
      ...common,
      from: common.destinations[0]!,
      chainId: incr.chainId,
      backupId: incr.backupId,
      target: 'copy1',
      cacheDir: join(work.path, 'cache'),
    });
    expect(restored.location).toBe(join(pg.dir, 'restores', 'copy1'));
    expect(restored.note).not.toContain('pg_verifybackup');
    copy = await startPostgres({
      dataDir: restored.location,
      alsoOwn: [join(pg.dir, 'restores', 'copy1-tablespaces')],
    });
    // Equal but for the unlogged table, which comes back empty (its rows are in no WAL).
    expect(await fingerprint(copy, 'snapdb')).toEqual({ ...snapdb, 'table public.scratch_rows': '0 -' });
    expect(await copy.psql(far, 'snapdb')).toBe(farLive);
    expect((await copy.psql('SELECT count(*) FROM scratch_rows', 'snapdb')).trim()).toBe('0');
    const balances = await pgbenchBalances(copy, 'snapbench');
    expect(new Set(balances.slice(0, 4)).size, balances.join(' ')).toBe(1);
    expect(balances).toEqual(liveBench);
    // The engine's own check of every B-tree index against its table, where the server has amcheck.
    if ((await copy.psql("SELECT count(*) FROM pg_available_extensions WHERE name = 'amcheck'")).trim() === '1') {
      for (const db of ['snapdb', 'snapbench']) {
        await copy.psql('CREATE EXTENSION IF NOT EXISTS amcheck', db);
        const checked = await copy.psql(
          `SELECT count(bt_index_check(c.oid, true)) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'btree' AND c.relpersistence = 'p'`,
          db,
        );
        expect(Number(checked)).toBeGreaterThan(0);
      }
    }
  }, 120_000);

  it('reads automatically from the data directory when it can, and falls back to pg_basebackup when it cannot', async () => {
    const meta = (files: { name: string; data: Buffer }[]) =>
      JSON.parse(files.find((f) => f.name === 'snapshot.json')!.data.toString()) as SnapshotMeta;
    const here = await capture(await openSource(pg), SERVER_UNIT, 'snapshot');
    expect(meta(here).reader).toBe('files');
    expect(here.map((f) => f.name)).not.toContain('backup_manifest');

    // A role that may take base backups (REPLICATION) but is not told data_directory: as on a server
    // this agent does not run beside, the automatic choice is pg_basebackup.
    await pg.psql('CREATE ROLE repl LOGIN REPLICATION');
    const remote = await capture(await openSource(pg, { user: 'repl' }), SERVER_UNIT, 'snapshot');
    expect(meta(remote).reader).toBe('pg_basebackup');
    expect(remote.map((f) => f.name)).toContain('backup_manifest');
    const untold = await expectCode(
      openSource(pg, { user: 'repl', snapshotReader: 'files' }).then((s) => s.read(SERVER_UNIT, 'snapshot')),
      'SOURCE_FAILED',
    );
    expect(untold.message).toMatch(/data_directory/);
    // Told where it is, that role still may not start a backup: the server's refusal, typed.
    const refused = await expectCode(
      openSource(pg, { user: 'repl', dataDirectory: pg.dataDir }).then((s) => s.read(SERVER_UNIT, 'snapshot')),
      'PERMISSION_DENIED',
    );
    expect(refused.message).toMatch(/pg_backup_start/);
    await expectNothingHeld(pg);
    // A dataDirectory that is another cluster's (another system identifier in its pg_control) is refused.
    const other = join(pg.dir, 'other-cluster');
    mkdirSync(join(other, 'global'), { recursive: true });
    writeFileSync(join(other, 'global', 'pg_control'), Buffer.alloc(8192, 7));
    const wrong = await expectCode(
      openSource(pg, { dataDirectory: other }).then((s) => s.read(SERVER_UNIT, 'snapshot')),
      'SOURCE_FAILED',
    );
    expect(wrong.message).toMatch(/not this server's data directory/);
  }, 60_000);

  it('ends the backup and drops its slot on the server when a reading is closed unfinished', async () => {
    const reading = await source.read(SERVER_UNIT, 'snapshot');
    const files = reading.files[Symbol.asyncIterator]();
    const first = await files.next();
    expect(first.value?.name).toBe('snapshot.json');
    expect((await pg.psql(HELD_SLOTS)).trim()).toBe('1');
    const tablespace = await files.next(); // the first tar, opened but never read
    tablespace.value?.stream.destroy();
    await reading.close();
    await expectNothingHeld(pg);
  }, 30_000);

  it('rejects a bad snapshotReader and a relative dataDirectory, naming both', async () => {
    const error = await expectCode(
      openSource(pg, { snapshotReader: 'rsync', dataDirectory: 'relative/data' }),
      'INVALID_ARGUMENT',
    );
    expect(error.message).toMatch(/snapshotReader/);
    expect(error.message).toMatch(/dataDirectory/);
  });
});

describe('the data-directory tar writer', () => {
  it('pads a file truncated while it is read with zeros to its size, and keeps the tar whole', async () => {
    const work = tempDir('pg-tar');
    try {
      const dir = join(work.path, 'in');
      mkdirSync(dir);
      const first = Buffer.alloc(300 << 10);
      for (let i = 0; i < first.length; i++) first[i] = (i * 7 + 3) % 251;
      const second = Buffer.alloc(200 << 10, 0x5a);
      writeFileSync(join(dir, 'first'), first);
      writeFileSync(join(dir, 'second'), second);
      const report = { shortFiles: [] as string[] };
      const fill = tarFill(
        async function* () {
          yield { kind: 'dir', name: 'base', mode: 0o700, mtime: 1 };
          for (const [name, size] of [
            ['first', first.length],
            ['second', second.length],
          ] as const) {
            yield {
              kind: 'file',
              name: `base/${name}`,
              mode: 0o600,
              mtime: 1,
              size,
              handle: await open(join(dir, name), 'r'),
            };
          }
        },
        64 << 10,
        report,
      );
      const region = 64 << 10;
      const memory = new SharedArrayBuffer(region);
      const feed = fill(memory);
      const parts: Buffer[] = [];
      feed.give(0, region);
      for await (const length of feed.filled) {
        parts.push(Buffer.from(new Uint8Array(memory, 0, length)));
        // The first region holds the headers, the second the first file's first 64 KiB (it is aligned);
        // then the file shrinks to 10 KiB, as VACUUM truncates a relation.
        if (parts.length === 2) await truncate(join(dir, 'first'), 10 << 10);
        feed.give(0, region);
      }
      const tar = Buffer.concat(parts);
      expect(report.shortFiles).toEqual(['base/first']);
      // Aligned: each file's data starts at a multiple of 64 KiB in the tar.
      expect(tar.indexOf(first.subarray(0, 4096)) % (64 << 10)).toBe(0);
      expect(tar.indexOf(second.subarray(0, 4096)) % (64 << 10)).toBe(0);

      // GNU tar, an independent reader, extracts it: the first file at its size, read part then zeros.
      const out = join(work.path, 'out');
      mkdirSync(out);
      writeFileSync(join(work.path, 'x.tar'), tar);
      execFileSync('tar', ['--extract', `--file=${join(work.path, 'x.tar')}`, `--directory=${out}`]);
      const got = readFileSync(join(out, 'base', 'first'));
      expect(got.length).toBe(first.length);
      expect(got.subarray(0, region).equals(first.subarray(0, region))).toBe(true);
      expect(got.subarray(region).every((b) => b === 0)).toBe(true);
      expect(readFileSync(join(out, 'base', 'second')).equals(second)).toBe(true);
    } finally {
      work.remove();
    }
  });
});
