// The postgres engine against a real PostgreSQL server started for this file: the source conformance
// suite, database selection, ownership with missing roles, and incrementals after pgbench changes (their
// bytes are logged). Snapshots: postgres-snapshot.test.ts; the tools' errors: postgres-errors.test.ts.

import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { runBackup } from '../../src/backup/backup.js';
import { restoreBackup } from '../../src/backup/restore.js';
import { postgres } from '../../src/sources/postgres.js';
import { PgCatalog } from '../../src/sources/postgres-catalog.js';
import { connectionEnv } from '../../src/sources/postgres-config.js';
import { PgTools, resolveBinDir } from '../../src/sources/postgres-tools.js';
import type { Source } from '../../src/sources/source.js';
import { type PostgresServer, startPostgres } from '../harness/postgres.js';
import { tempDir } from '../harness/process.js';
import { describeSourceConformance } from './conformance.js';
import { CHANGE_SQL, createFixtureDatabase, fingerprint } from './postgres-fixture.js';
import {
  asRestoreInput,
  backupOf,
  capture,
  databaseExists,
  expectCode,
  leftovers,
  openSource,
  pgbenchBalances,
} from './postgres-support.js';

// One server for the whole file, started by the first block that needs it.
let started: Promise<PostgresServer> | undefined;
function server(): Promise<PostgresServer> {
  started ??= startPostgres();
  return started;
}
afterAll(async () => {
  await (await started)?.stop();
}, 30_000);

describeSourceConformance('postgres', async () => {
  const pg = await server();
  const source = await openSource(pg);
  return {
    source,
    createDatabase: (name) => createFixtureDatabase(pg, name),
    changeDatabase: async (name) => {
      await pg.psql(CHANGE_SQL, name);
    },
    fingerprint: (name) => fingerprint(pg, name),
    exists: (name) => databaseExists(pg, name),
    leftovers: () => leftovers(pg),
    teardown: () => source.close(),
  };
});

describe('postgres source', () => {
  let pg: PostgresServer;
  let source: Source;
  let work: { path: string; remove: () => void };
  beforeAll(async () => {
    work = tempDir('pg-source');
    pg = await server();
    source = await openSource(pg);
  }, 60_000);
  afterAll(() => work?.remove());

  it('lists non-template databases that allow connections, narrowed by include and exclude', async () => {
    await pg.psql(`CREATE DATABASE list_a; CREATE DATABASE list_b; CREATE DATABASE "Not Safe";
      CREATE DATABASE list_closed ALLOW_CONNECTIONS false; CREATE DATABASE list_tpl IS_TEMPLATE true;`);
    const names = (await source.listDatabases()).map((d) => d.name);
    expect(names).toEqual(expect.arrayContaining(['list_a', 'list_b', 'postgres']));
    for (const absent of ['template0', 'template1', 'Not Safe', 'list_closed', 'list_tpl']) {
      expect(names).not.toContain(absent);
    }
    // The one left out for its name is told, with why; templates and closed ones are not databases to back up.
    expect(await source.listLeftOut?.()).toEqual([
      { name: 'Not Safe', reason: expect.stringMatching(/not a safe path segment/) },
    ]);
    const narrowed = await openSource(pg, { include: ['list_a', 'list_b', 'postgres'], exclude: ['postgres'] });
    expect((await narrowed.listDatabases()).map((d) => d.name)).toEqual(['list_a', 'list_b']);
    // A database left out is not readable either.
    await expectCode(narrowed.read('postgres', 'backup'), 'NOT_FOUND');
    await expectCode(source.read('list_closed', 'backup'), 'NOT_FOUND');
    await expectCode(source.read('list_tpl', 'backup'), 'NOT_FOUND');
  });

  it('answers listings asked at once with one psql, and a later listing with a fresh one', async () => {
    const config = postgres.parseConfig(pg.sourceConfig(), 'source.config');
    const tools = new PgTools(resolveBinDir(config.binDir), connectionEnv(config));
    const runs = vi.spyOn(tools, 'run');
    const catalog = new PgCatalog(tools, 'postgres');
    const [first, second] = await Promise.all([catalog.databases(), catalog.databases()]);
    expect(runs).toHaveBeenCalledTimes(1);
    expect(second).toEqual(first);
    await pg.psql('CREATE DATABASE list_later');
    expect((await catalog.databases()).map((d) => d.name)).toContain('list_later');
    expect(runs).toHaveBeenCalledTimes(2);
    // A caller with a signal may abort its own query, so it never shares one.
    await Promise.all([catalog.databases(), catalog.databases(new AbortController().signal)]);
    expect(runs).toHaveBeenCalledTimes(4);
  });

  it('restores ownership, creating the roles the server lacks (without passwords), and drops them again on failure', async () => {
    await pg.psql(`CREATE ROLE gone_owner LOGIN CREATEDB CONNECTION LIMIT 7 PASSWORD 'secret-not-kept';
      CREATE ROLE gone_group NOLOGIN; GRANT gone_group TO gone_owner;
      CREATE DATABASE owned OWNER gone_owner;`);
    await pg.psql(
      `CREATE TABLE ledger (id int PRIMARY KEY, amount numeric); ALTER TABLE ledger OWNER TO gone_owner;
       GRANT SELECT ON ledger TO gone_group; INSERT INTO ledger SELECT i, i * 1.5 FROM generate_series(1, 1000) i;`,
      'owned',
    );
    const before = await fingerprint(pg, 'owned');
    const files = await capture(source, 'owned', 'backup');
    expect(files.map((f) => f.name)).toEqual(['globals.json', 'dump.sql']);
    const globals = files[0]!.data.toString();
    expect(globals).toContain('gone_owner');
    expect(globals).not.toContain('secret-not-kept');
    expect(files[1]!.data.toString()).toContain('PostgreSQL database dump complete');

    await pg.psql('DROP DATABASE owned; DROP ROLE gone_owner; DROP ROLE gone_group;');
    await expectCode(
      source.restore(asRestoreInput(files, 'dump.sql'), { target: 'owned', type: 'backup' }),
      'SOURCE_FAILED',
    );
    expect(await databaseExists(pg, 'owned')).toBe(false);
    expect((await pg.psql("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'gone_%'")).trim()).toBe('0');
    expect(await leftovers(pg)).toEqual([]);

    const result = await source.restore(asRestoreInput(files), { target: 'owned', type: 'backup' });
    expect(result.note).toMatch(/gone_group, gone_owner.*without passwords/);
    expect(await fingerprint(pg, 'owned')).toEqual(before);
    const role =
      "SELECT rolcanlogin, rolcreatedb, rolconnlimit, rolpassword IS NULL FROM pg_authid WHERE rolname = 'gone_owner'";
    expect((await pg.psql(role)).trim()).toBe('t|t|7|t');
    expect((await pg.psql("SELECT pg_has_role('gone_owner', 'gone_group', 'MEMBER')")).trim()).toBe('t');
  });

  it('refuses a database name that PostgreSQL cannot hold', async () => {
    await expectCode(
      source.restore(asRestoreInput([]), { target: 'x'.repeat(64), type: 'backup' }),
      'INVALID_ARGUMENT',
    );
  });

  it('stores incrementals after pgbench changes as the share of dump chunks the changed rows touch', async () => {
    await pg.psql('CREATE DATABASE bench');
    await pg.tool('pgbench', ['-i', '-q', '-s', '2', 'bench']);
    const common = backupOf(source, join(work.path, 'bench-repo'), 'bench', 'backup', join(work.path, 'staging'));
    const full = await runBackup({ ...common, level: 'full' });
    const points = [];
    // pgbench's transaction: one random account, teller and branch updated, one history row appended.
    for (const transactions of [50, 200]) {
      await pg.tool('pgbench', ['-n', '-c', '2', '-t', String(transactions / 2), 'bench']);
      const incr = await runBackup({ ...common, level: 'incr' });
      const share = incr.storedBytes / full.storedBytes;
      console.log(
        `postgres backup, pgbench scale 2 (${(incr.rawBytes / 1e6).toFixed(1)} MB dump, full stored ${full.storedBytes} bytes): ` +
          `incremental after ${transactions} more transactions stored ${incr.storedBytes} bytes ` +
          `(${(share * 100).toFixed(1)}% of the full; ${incr.newChunks} of ${incr.chunks} chunks new)`,
      );
      expect(incr.level).toBe('incr');
      expect(incr.chainId).toBe(full.chainId);
      points.push({ ...incr, share, transactions });
    }
    // Each updated account row moves in the dump and changes the chunk it was in. n transactions update n
    // random accounts, which fall into about c(1 - (1 - 1/c)^n) of the dump's c chunks, plus the few
    // chunks of tellers, branches and history; what incr 1 stored is in the chain for incr 2. Anything
    // more means unchanged chunks were stored again.
    for (const point of points) {
      const touched = point.chunks * (1 - (1 - 1 / point.chunks) ** point.transactions);
      expect(point.newChunks, `${point.transactions} transactions`).toBeLessThan(touched * 1.2 + 10);
      expect(point.share).toBeLessThan(point.newChunks / point.chunks + 0.2);
    }
    const last = points.at(-1)!;
    const restored = await restoreBackup({
      ...common,
      from: common.destinations[0]!,
      chainId: last.chainId,
      backupId: last.backupId,
      target: 'bench_restored',
      cacheDir: join(work.path, 'cache'),
    });
    expect(restored.location).toBe(`postgresql://postgres@127.0.0.1:${pg.port}/bench_restored`);
    expect(await fingerprint(pg, 'bench_restored')).toEqual(await fingerprint(pg, 'bench'));
    expect((await pgbenchBalances(pg, 'bench_restored'))[4]).toBe('250');
  });
});
