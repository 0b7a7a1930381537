// verify --restore of PostgreSQL server snapshots, on a real server: a snapshot is restored into a scratch
// data directory that is started as a private server and checked with amcheck, then stopped and removed; one
// whose server cannot start fails naming why and leaves neither folder nor server; a scratch a killed verify
// left (its server still running) is stopped and removed by sweepScratch, and only this node's.

import {
  appendFileSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../../src/backup/backup.js';
import { KeyRing, loadManifest } from '../../src/backup/chain.js';
import { encodeManifest } from '../../src/backup/manifest.js';
import { restoreBackup } from '../../src/backup/restore.js';
import { verifyByRestoring } from '../../src/backup/verify-restore.js';
import { manifestKey } from '../../src/layout.js';
import { SERVER_UNIT, type Source } from '../../src/sources/source.js';
import { type PostgresServer, startPostgres } from '../harness/postgres.js';
import { tempDir } from '../harness/process.js';
import { backupOf, openSource } from './postgres-support.js';

/** The PIDs of processes whose command line names `text` (read from /proc, not from the product). */
function processesNaming(text: string): number[] {
  const found: number[] = [];
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(text)) found.push(Number(pid));
    } catch {
      // the process ended while we looked: it names nothing any more
    }
  }
  return found;
}

const scratchFolders = (root: string) =>
  existsSync(root) ? readdirSync(root).filter((n) => n.includes('backupd_verify_')) : [];

describe('postgres snapshot verify --restore', () => {
  let pg: PostgresServer;
  let source: Source;
  let work: { path: string; remove: () => void };
  let restores: string;
  beforeAll(async () => {
    work = tempDir('pg-verify-snapshot');
    pg = await startPostgres();
    source = await openSource(pg, { snapshotReader: 'pg_basebackup' });
    restores = join(pg.dir, 'restores');
    await pg.psql('CREATE DATABASE shop');
    await pg.psql(
      'CREATE TABLE items (id int PRIMARY KEY, v text); CREATE INDEX items_v ON items (v); ' +
        'INSERT INTO items SELECT i, md5(i::text) FROM generate_series(1, 5000) i;',
      'shop',
    );
  }, 60_000);
  afterAll(async () => {
    await pg?.stop();
    work?.remove();
  }, 30_000);

  const snapshot = async (name: string, from = source) => {
    const common = backupOf(from, join(work.path, name), SERVER_UNIT, 'snapshot', join(work.path, 'staging'));
    const point = await runBackup({ ...common, level: 'full' });
    return { common, point };
  };
  const verify = ({ common, point }: Awaited<ReturnType<typeof snapshot>>) =>
    verifyByRestoring({
      ref: common.ref,
      source,
      from: common.destinations[0]!,
      chainId: point.chainId,
      backupId: point.backupId,
      scratchDir: join(work.path, 'scratch'),
      cacheDir: join(work.path, 'cache'),
    });

  it('restores a snapshot into a scratch server that starts and passes amcheck, then removes it', async () => {
    const result = await verify(await snapshot('good'));
    expect(result).toMatchObject({ ok: true, fingerprinted: false, differences: [], problems: [] });
    // amcheck is installed here (PostgreSQL's contrib): one note, not "amcheck is not installed".
    expect(result.notes).toEqual(['the snapshot recorded no fingerprint: its tables were not compared']);
    expect(result.bytes).toBeGreaterThan(1_000_000);
    expect(result.restoreMs).toBeGreaterThan(0);
    expect(result.checkMs).toBeGreaterThan(0);
    expect(result.bytesPerSecond).toBeGreaterThan(0);
    console.log(
      `postgres snapshot verify --restore: ${(result.bytes / 1e6).toFixed(1)} MB restored in ${result.restoreMs.toFixed(0)} ms ` +
        `(${(result.bytesPerSecond / 1e6).toFixed(1)} MB/s), checked in ${result.checkMs.toFixed(0)} ms`,
    );
    expect(scratchFolders(restores)).toEqual([]);
    expect(processesNaming('backupd_verify_')).toEqual([]);
  }, 60_000);

  it('reports an index amcheck finds damaged, by database, also for a source user who is no superuser', async () => {
    // The source's user may not create amcheck; the scratch server's own superuser checks instead.
    await pg.psql('CREATE ROLE backup_agent LOGIN REPLICATION; GRANT pg_read_all_data, pg_monitor TO backup_agent;');
    const agent = await openSource(pg, { snapshotReader: 'pg_basebackup', user: 'backup_agent' });
    const { common, point } = await snapshot('damaged', agent);
    const file = (await pg.psql("SELECT pg_relation_filepath('items_v')", 'shop')).trim();
    const scratch = await agent.scratch!(join(work.path, 'scratch'), 'snapshot');
    try {
      await restoreBackup({
        ...common,
        source: scratch.source,
        from: common.destinations[0]!,
        chainId: point.chainId,
        backupId: point.backupId,
        target: scratch.target,
        cacheDir: join(work.path, 'cache'),
      });
      // Block 1 of the index, overwritten on disk as a bad disk would: its page header no longer holds.
      const fd = openSync(join(restores, scratch.target, file), 'r+');
      writeSync(fd, Buffer.alloc(8192, 0x7f), 0, 8192, 8192);
      closeSync(fd);
      const found = await scratch.inspect();
      expect(found.problems).toHaveLength(1);
      expect(found.problems[0]).toMatch(/^shop: amcheck: .*block 1/);
    } finally {
      await scratch.remove();
    }
    expect(scratchFolders(restores)).toEqual([]);
    expect(processesNaming('backupd_verify_')).toEqual([]);
  }, 60_000);

  it('fails naming why when the restored server cannot start, and leaves no folder and no server', async () => {
    const conf = join(pg.dataDir, 'postgresql.conf');
    const original = readFileSync(conf, 'utf8');
    // Copied by pg_basebackup as it is; the running server never reads it again.
    appendFileSync(conf, "\nshared_preload_libraries = 'no_such_library'\n");
    let taken: Awaited<ReturnType<typeof snapshot>>;
    try {
      taken = await snapshot('unstartable');
    } finally {
      writeFileSync(conf, original);
    }
    const result = await verify(taken);
    expect(result.ok).toBe(false);
    expect(result.problems).toHaveLength(1);
    expect(result.problems[0]).toMatch(/does not start.*no_such_library/s);
    expect(scratchFolders(restores)).toEqual([]);
    expect(processesNaming('backupd_verify_')).toEqual([]);
  }, 60_000);

  it('fails naming why when base.tar is cut short, and leaves no folder and no server', async () => {
    const taken = await snapshot('cut');
    const destination = taken.common.destinations[0]!;
    const { chainId, backupId } = taken.point;
    const { manifest } = await loadManifest(destination, taken.common.ref, chainId, backupId, new KeyRing(undefined));
    // The manifest lists only the first half of base.tar's chunks: a whole archive, as far as the packs go,
    // that ends in the middle.
    const base = manifest.files.find((f) => f.name === 'base.tar')!;
    base.chunks = base.chunks.slice(0, Math.floor(base.chunks.length / 2));
    base.size = base.chunks.reduce((sum, n) => sum + manifest.chunks[n]![4], 0);
    const bytes = encodeManifest(manifest, undefined, undefined);
    await destination.put(manifestKey(taken.common.ref, chainId, backupId), bytes, bytes.length);
    const result = await verify(taken);
    expect(result.ok).toBe(false);
    expect(result.problems).toHaveLength(1);
    expect(result.problems[0]).toMatch(/^the restore failed: .*base\.tar/);
    expect(scratchFolders(restores)).toEqual([]);
    expect(processesNaming('backupd_verify_')).toEqual([]);
  }, 60_000);

  it('stops and removes the scratch server a killed verify left, and only this node’s', async () => {
    const { common, point } = await snapshot('left');
    const mine = join(work.path, 'node-a-scratch');
    const left = await source.scratch!(mine, 'snapshot');
    await restoreBackup({
      ...common,
      source: left.source,
      from: common.destinations[0]!,
      chainId: point.chainId,
      backupId: point.backupId,
      target: left.target,
      cacheDir: join(work.path, 'cache'),
    });
    // The verify was killed while its server ran: start it as the harness would, and leave it.
    const running = await startPostgres({ dataDir: join(restores, left.target) });
    try {
      mkdirSync(join(restores, `.restoring-0123456789ab-${left.target.replace(/_[0-9a-f]+$/, '_ffffffffffff')}`));
      const other = (await source.scratch!(join(work.path, 'node-b-scratch'), 'snapshot')).target;
      mkdirSync(join(restores, other));
      expect(processesNaming(left.target).length).toBeGreaterThan(0);

      await source.sweepScratch!(mine);
      expect(scratchFolders(restores)).toEqual([other]);
      expect(processesNaming(left.target)).toEqual([]);
      expect(() => process.kill(running.pid, 0)).toThrow();
    } finally {
      await running.stop();
    }
  }, 60_000);
});
