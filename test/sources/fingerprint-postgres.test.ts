// PostgreSQL fingerprints and verify by restoring, on a real server: the fingerprint a logical backup records
// is what psql alone computes from the recipe of docs/FORMAT.md (written here from the doc); a restore point
// that restores right passes verify --restore; one whose fingerprint does not match fails naming the table;
// the scratch database is gone after either, and one a killed verify left is taken back by sweepScratch.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../../src/backup/backup.js';
import { KeyRing, loadManifest } from '../../src/backup/chain.js';
import { encodeManifest } from '../../src/backup/manifest.js';
import { verifyByRestoring } from '../../src/backup/verify-restore.js';
import { manifestKey } from '../../src/layout.js';
import type { Source } from '../../src/sources/source.js';
import { LocalDestination } from '../../src/uploader/local.js';
import { type PostgresServer, startPostgres } from '../harness/postgres.js';
import { backupOf, openSource } from './postgres-support.js';

/** docs/FORMAT.md's recipe, for one table, in psql's own words. */
const SETTINGS =
  "SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; SET TimeZone = 'UTC'; " +
  "SET extra_float_digits = 1; SET bytea_output = 'hex'; SET lc_monetary = 'C';";
const judge = (table: string) =>
  `${SETTINGS} SELECT count(*) || '|' || coalesce(sum(('x' || substr(md5(t::text), 1, 16))::bit(64)::bigint::numeric), 0) FROM ONLY ${table} AS t;`;

let pg: PostgresServer;
let source: Source;
let dir: string;
beforeAll(async () => {
  pg = await startPostgres();
  source = await openSource(pg);
  dir = mkdtempSync(join(tmpdir(), 'backupd-pg-fp-'));
  await pg.psql('CREATE DATABASE shop');
  await pg.psql(
    `CREATE SCHEMA "odd schema";
     CREATE TABLE customers(id serial PRIMARY KEY, name text NOT NULL, joined timestamptz, score float8, photo bytea);
     CREATE TABLE orders(id bigserial PRIMARY KEY, customer int REFERENCES customers(id), total numeric(12,2),
       span interval, tags text[]);
     CREATE TABLE "odd schema"."Mixed Case"(k text PRIMARY KEY, v jsonb);
     CREATE TABLE empty(x int);
     CREATE INDEX orders_customer ON orders(customer);
     CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100;
     INSERT INTO customers(name, joined, score, photo)
       SELECT 'c' || i, '2026-01-01 00:00:00+02'::timestamptz + i * interval '1 hour', i / 3.0, decode(md5(i::text), 'hex')
       FROM generate_series(1, 3000) i;
     INSERT INTO orders(customer, total, span, tags)
       SELECT 1 + i % 3000, i * 1.25, i * interval '1 minute', ARRAY['a', 'b' || i] FROM generate_series(1, 8000) i;
     INSERT INTO "odd schema"."Mixed Case" VALUES ('é', '{"a": [1, 2.5, null]}'), ('z', 'null');`,
    'shop',
  );
}, 60_000);
afterAll(async () => {
  await pg?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const scratchDatabases = async () =>
  (await pg.psql("SELECT datname FROM pg_database WHERE datname LIKE 'backupd_verify_%'")).trim();

describe('PostgreSQL fingerprint and verify by restoring', () => {
  it('records what psql computes from the recipe, restores right, and fails naming a table that differs', async () => {
    const repo = join(dir, 'repo');
    const request = { ...backupOf(source, repo, 'shop', 'backup', join(dir, 'staging')), level: 'full' as const };
    const point = await runBackup(request);
    const destination = new LocalDestination('disk', repo);
    const loaded = await loadManifest(destination, request.ref, point.chainId, point.backupId, new KeyRing(undefined));
    const fingerprint = loaded.manifest.fingerprint!;
    expect(fingerprint.recipe).toBe('postgres-md5-sum');
    const names = ['"odd schema"."Mixed Case"', 'public.customers', 'public.empty', 'public.orders'];
    expect(fingerprint.tables.map((t) => t.name).sort()).toEqual(names);
    for (const name of names) {
      const [rows, digest] = (await pg.psql(judge(name), 'shop')).trim().split('|');
      expect(fingerprint.tables.find((t) => t.name === name)).toEqual({ name, rows: Number(rows), digest });
    }
    expect(fingerprint.tables.find((t) => t.name === 'public.orders')!.rows).toBe(8000);
    expect(fingerprint.objects).toMatchObject({ table: 4, view: 1, index: 4, sequence: 2 });

    const verify = () =>
      verifyByRestoring({
        ref: request.ref,
        source,
        from: destination,
        chainId: point.chainId,
        backupId: point.backupId,
        scratchDir: join(dir, 'scratch'),
        cacheDir: join(dir, 'cache'),
      });
    const good = await verify();
    expect(good).toMatchObject({ ok: true, fingerprinted: true, tables: 4, differences: [], problems: [] });
    expect(good.bytesPerSecond).toBeGreaterThan(0);
    expect(await scratchDatabases()).toBe('');

    const customers = fingerprint.tables.find((t) => t.name === 'public.customers')!;
    customers.digest = String(BigInt(customers.digest) + 1n);
    const bytes = encodeManifest(loaded.manifest, undefined, undefined);
    await destination.put(manifestKey(request.ref, point.chainId, point.backupId), bytes, bytes.length);
    const bad = await verify();
    expect(bad.ok).toBe(false);
    expect(bad.differences).toEqual([
      {
        table: 'public.customers',
        kind: 'digest',
        expected: customers.digest,
        found: String(BigInt(customers.digest) - 1n),
      },
    ]);
    expect(await scratchDatabases()).toBe('');
  }, 120_000);

  it('reads the fingerprint in the snapshot pg_dump reads: writes during the backup make no difference', async () => {
    await pg.psql('CREATE DATABASE busy');
    await pg.tool('pgbench', ['-i', '-s', '2', '-q', 'busy']);
    const repo = join(dir, 'repo-busy');
    const request = { ...backupOf(source, repo, 'busy', 'backup', join(dir, 'staging')), level: 'full' as const };
    // pgbench writes all through the backup: a fingerprint read outside pg_dump's snapshot would not match.
    const writing = pg.tool('pgbench', ['-c', '2', '-T', '6', '-n', 'busy']);
    const point = await runBackup(request);
    await writing;
    const result = await verifyByRestoring({
      ref: request.ref,
      source,
      from: new LocalDestination('disk', repo),
      chainId: point.chainId,
      backupId: point.backupId,
      scratchDir: join(dir, 'scratch'),
      cacheDir: join(dir, 'cache'),
    });
    expect(result).toMatchObject({ ok: true, fingerprinted: true, differences: [], problems: [] });
    const now = (await pg.psql(judge('public.pgbench_history'), 'busy')).trim().split('|');
    const recorded = (
      await loadManifest(
        new LocalDestination('disk', repo),
        request.ref,
        point.chainId,
        point.backupId,
        new KeyRing(undefined),
      )
    ).manifest.fingerprint!.tables.find((t) => t.name === 'public.pgbench_history')!;
    expect(Number(now[0])).toBeGreaterThan(recorded.rows); // pgbench went on writing after the snapshot
  }, 120_000);

  it('takes back the scratch databases of this node left by a killed verify, and only those', async () => {
    const scratchDir = join(dir, 'node-a-scratch');
    const left = await source.scratch!(scratchDir, 'backup');
    const other = await source.scratch!(join(dir, 'node-b-scratch'), 'backup');
    await pg.psql(`CREATE DATABASE ${left.target}`);
    await pg.psql(`CREATE DATABASE ${other.target}`);
    expect((await source.listDatabases()).map((d) => d.name)).not.toContain(left.target);
    await source.sweepScratch!(scratchDir);
    expect(await scratchDatabases()).toBe(other.target);
    await other.remove();
    expect(await scratchDatabases()).toBe('');
  });
});
