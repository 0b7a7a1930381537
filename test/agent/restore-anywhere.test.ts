// Restore anywhere (issue 23): a node of ANOTHER cluster (another cluster name, other source names, another
// PostgreSQL server) restores a SQLite and a PostgreSQL backup given only the destination. Real agents,
// driven by the real backupctl; the judges are the `sqlite3` CLI's .dump, pg_dump, and PostgreSQL's own
// catalogs for what lives on the database itself (ACL, comment, settings) and on its roles.

import { execFile } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeManifest } from '../../src/backup/manifest.js';
import { type AgentProcess, ctl, startAgent } from '../harness/agent.js';
import { type PostgresServer, serverWritableDir, startPostgres } from '../harness/postgres.js';
import { tempDir } from '../harness/process.js';

const run = promisify(execFile);

interface ChainJson {
  cluster: string;
  database: string;
  chainId: string;
  type: string;
  backups: string[];
}

async function sqlite3(file: string, sql: string): Promise<string> {
  try {
    return (await run('sqlite3', [file, sql])).stdout;
  } catch (error) {
    throw new Error(`the sqlite3 CLI is needed (apt-get install -y sqlite3): ${(error as Error).message}`);
  }
}

/** pg_dump of a database as the judge sees it: plain SQL, no tablespaces (the restore puts all in the default). */
async function pgDump(pg: PostgresServer, database: string): Promise<string> {
  const out = await pg.tool('pg_dump', ['--no-tablespaces', '--format=plain', database]);
  // \restrict keys are random per dump (PostgreSQL 15.14+); the rest must be identical.
  return out.replace(/^\\(un)?restrict .*$/gm, '');
}

/** What lives on the database itself and on its roles, read from the catalogs. */
async function databaseFacts(pg: PostgresServer, database: string): Promise<string> {
  return pg.psql(
    `SELECT (SELECT array_agg(a::text ORDER BY a::text)::text FROM unnest(d.datacl) a),
            shobj_description(d.oid, 'pg_database'), d.datconnlimit,
            (SELECT setconfig::text FROM pg_db_role_setting WHERE setdatabase = d.oid AND setrole = 0),
            (SELECT string_agg(pg_get_userbyid(setrole) || ':' || setconfig::text, ';')
               FROM pg_db_role_setting WHERE setdatabase = d.oid AND setrole <> 0),
            pg_get_userbyid(d.datdba)
       FROM pg_database d WHERE datname = '${database}'`,
  );
}

describe('a node of another cluster restores from a destination given in full', () => {
  const dir = tempDir('restore-anywhere');
  const repo = join(dir.path, 'repo');
  const dest = `disk:local:${JSON.stringify({ path: repo })}`;
  const dbsA = join(dir.path, 'dbs-a');
  const dbsB = join(dir.path, 'dbs-b');
  let pgA: PostgresServer;
  let pgB: PostgresServer;
  let alpha: AgentProcess;
  let beta: AgentProcess;

  beforeAll(async () => {
    mkdirSync(dbsA);
    mkdirSync(dbsB);
    [pgA, pgB] = await Promise.all([startPostgres(), startPostgres()]);
    await sqlite3(
      join(dbsA, 'shop.db'),
      `PRAGMA journal_mode=WAL;
       CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL, price REAL);
       CREATE INDEX orders_item ON orders(item);
       WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)
         INSERT INTO orders SELECT i, 'item ' || i, i * 1.5 FROM n;`,
    );
    const ts = await serverWritableDir(pgA.dir, 'ts1');
    await pgA.psql(`CREATE TABLESPACE fast LOCATION '${ts}'`);
    await pgA.psql(
      `CREATE ROLE app LOGIN VALID UNTIL '2031-03-04 00:00:00+00';
       ALTER ROLE app SET statement_timeout = '7s';
       CREATE ROLE reporter;
       CREATE ROLE nobody LOGIN;
       CREATE DATABASE shop OWNER app;`,
    );
    await pgA.psql(
      `REVOKE CONNECT, TEMPORARY ON DATABASE shop FROM PUBLIC;
       GRANT CONNECT ON DATABASE shop TO reporter;
       COMMENT ON DATABASE shop IS 'the shop''s orders';
       ALTER DATABASE shop SET work_mem = '12MB';
       ALTER DATABASE shop SET DateStyle = 'SQL, DMY';
       ALTER DATABASE shop SET search_path = "$user", public, "Sales Data";
       ALTER DATABASE shop CONNECTION LIMIT 20;
       ALTER ROLE reporter IN DATABASE shop SET lock_timeout = '3s';`,
    );
    await pgA.psql(
      `CREATE TABLE orders (id int PRIMARY KEY USING INDEX TABLESPACE fast, item text NOT NULL) TABLESPACE fast;
       INSERT INTO orders SELECT i, 'item ' || i FROM generate_series(1, 1000) i;
       CREATE INDEX orders_item ON orders(item) TABLESPACE fast;
       CREATE UNLOGGED TABLE sessions (id int PRIMARY KEY, token text);
       INSERT INTO sessions SELECT i, md5(i::text) FROM generate_series(1, 50) i;
       CREATE TABLE notes (id serial PRIMARY KEY, body text);
       INSERT INTO notes (body) VALUES ('kept'), ('in the default tablespace');
       GRANT SELECT ON orders TO reporter;
       ALTER TABLE orders OWNER TO app;`,
      'shop',
    );
    alpha = await startAgent({
      dir: join(dir.path, 'alpha'),
      node: 'a1',
      sources: [
        { name: 'main', engine: 'sqlite', config: { path: dbsA } },
        { name: 'pg', engine: 'postgres', config: pgA.sourceConfig() },
      ],
      extra: { cluster: 'alpha' },
    });
    beta = await startAgent({
      dir: join(dir.path, 'beta'),
      node: 'b1',
      sources: [
        { name: 'files', engine: 'sqlite', config: { path: dbsB } },
        { name: 'pg2', engine: 'postgres', config: pgB.sourceConfig({ restoreDir: join(pgB.dir, 'restores') }) },
      ],
      extra: { cluster: 'beta' },
    });
    for (const database of ['main/shop.db', 'pg/shop']) {
      const backup = await ctl(alpha.address, [
        'backup',
        'one-time',
        '--database',
        database,
        '--type',
        'backup',
        '--dest',
        dest,
        '--wait',
      ]);
      expect(backup.code, backup.stdout + backup.stderr).toBe(0);
    }
  }, 120_000);

  afterAll(async () => {
    await Promise.all([alpha?.stop(), beta?.stop()]);
    await Promise.all([pgA?.stop(), pgB?.stop()]);
    dir.remove();
  });

  async function chains(args: string[] = []): Promise<ChainJson[]> {
    const listed = await ctl(beta.address, ['--json', 'backups', 'list', '--dest', dest, ...args]);
    expect(listed.code, listed.stderr).toBe(0);
    return (listed.json as { chains: ChainJson[] }).chains;
  }

  it('backups list shows every cluster and database at the destination, and names the path it searched', async () => {
    const all = await chains();
    expect(all.map((c) => [c.cluster, c.database, c.type, c.backups.length])).toEqual([
      ['alpha', 'main/shop.db', 'backup', 1],
      ['alpha', 'pg/shop', 'backup', 1],
    ]);
    expect(await chains(['--cluster', 'alpha', '--database', 'pg/shop'])).toHaveLength(1);

    const none = await ctl(beta.address, ['backups', 'list', '--dest', dest, '--cluster', 'beta']);
    expect(none.code, none.stderr).toBe(0);
    expect(none.stdout).toBe(`no backups written by cluster beta at disk (local): ${join(repo, 'beta')}/\n`);
    const table = await ctl(beta.address, ['backups', 'list', '--dest', dest]);
    expect(table.stdout).toContain(`at disk (local): ${repo}/`);
    expect(table.stdout).toMatch(/alpha\s+main\/shop\.db/);
  });

  it('restores the SQLite backup into another source of another cluster, identical by sqlite3 .dump', async () => {
    const [chain] = await chains(['--database', 'main/shop.db']);
    const restored = await ctl(beta.address, [
      'restore',
      '--dest',
      dest,
      '--database',
      'main/shop.db',
      '--chain',
      chain!.chainId,
      '--backup',
      chain!.backups[0]!,
      '--into',
      'files',
      '--target',
      'shop-copy.db',
    ]);
    expect(restored.code, restored.stdout + restored.stderr).toBe(0);
    expect(restored.stdout).toContain(join(dbsB, 'shop-copy.db'));
    const original = await sqlite3(join(dbsA, 'shop.db'), '.dump');
    expect(original).toContain('item 500');
    expect(await sqlite3(join(dbsB, 'shop-copy.db'), '.dump')).toBe(original);
  });

  it('refuses a backup of another engine, and a cluster that does not hold the restore point', async () => {
    const [chain] = await chains(['--database', 'main/shop.db']);
    const point = ['--chain', chain!.chainId, '--backup', chain!.backups[0]!];
    const wrongEngine = await ctl(beta.address, [
      'restore',
      '--dest',
      dest,
      '--database',
      'main/shop.db',
      ...point,
      '--into',
      'pg2',
      '--target',
      'nope',
    ]);
    expect(wrongEngine.code).toBe(2);
    expect(wrongEngine.stderr).toMatch(/is a sqlite backup; source pg2 is postgres/);
    const wrongCluster = await ctl(beta.address, [
      'restore',
      '--dest',
      dest,
      '--database',
      'main/shop.db',
      ...point,
      '--cluster',
      'beta',
      '--into',
      'files',
      '--target',
      'nope.db',
    ]);
    expect(wrongCluster.code).toBe(3);
  });

  it('restores the PostgreSQL backup (tablespace, revoked CONNECT, comment, settings) onto another server', async () => {
    const [chain] = await chains(['--database', 'pg/shop']);
    const restored = await ctl(beta.address, [
      'restore',
      '--dest',
      dest,
      '--database',
      'pg/shop',
      '--chain',
      chain!.chainId,
      '--backup',
      chain!.backups[0]!,
      '--into',
      'pg2',
      '--target',
      'shop',
    ]);
    expect(restored.code, restored.stdout + restored.stderr).toBe(0);
    expect(restored.stdout).toContain(`127.0.0.1:${pgB.port}/shop`);

    // The data and schema: pg_dump of both, the same.
    const original = await pgDump(pgA, 'shop');
    expect(original).toContain('item 1000');
    expect(await pgDump(pgB, 'shop')).toBe(original);
    // No tablespace on the new server: every relation is in the default one.
    expect(await pgB.psql("SELECT count(*) FROM pg_class WHERE reltablespace <> 0 AND relname LIKE 'orders%'")).toBe(
      '0\n',
    );

    // The database itself: the same ACL (PUBLIC may not connect), comment, connection limit and settings.
    const facts = await databaseFacts(pgB, 'shop');
    expect(facts).toBe(await databaseFacts(pgA, 'shop'));
    expect(facts).toContain("the shop's orders");
    expect(facts).toContain('work_mem=12MB');
    await pgB.psql('CREATE ROLE nobody LOGIN');
    expect(await pgB.psql("SELECT has_database_privilege('nobody', 'shop', 'CONNECT')")).toBe('f\n');
    expect(await pgB.psql("SELECT has_database_privilege('reporter', 'shop', 'CONNECT')")).toBe('t\n');

    // Roles the server lacked: created with VALID UNTIL and their own settings, without a password.
    const role = "SELECT rolvaliduntil, rolconfig::text, rolcanlogin FROM pg_roles WHERE rolname = 'app'";
    expect(await pgB.psql(role)).toBe(await pgA.psql(role));
    expect(await pgB.psql(role)).toContain('2031-03-04');
    expect(await pgB.psql("SELECT rolpassword IS NULL FROM pg_authid WHERE rolname = 'app'")).toBe('t\n');
  });

  it('a snapshot lists every unlogged table: in its manifest, its run, the unit status and the restore', async () => {
    const create = await ctl(alpha.address, [
      'task',
      'create',
      'snap',
      '--server-wide',
      'pg',
      '--type',
      'snapshot',
      '--full',
      '0 3 1 1 *',
      '--dest',
      dest,
    ]);
    expect(create.code, create.stderr).toBe(0);
    const now = await ctl(alpha.address, ['backup', 'now', 'snap', '--full', '--wait']);
    expect(now.code, now.stdout + now.stderr).toBe(0);
    const note =
      'unlogged tables come back empty (PostgreSQL writes no WAL for them, so a snapshot holds none of their rows): ' +
      'shop.public.sessions';

    // The manifest, read from the destination's folder.
    const chainsDir = join(repo, 'alpha', 'pg', 'all-databases');
    const [chainId] = readdirSync(chainsDir);
    const [manifestName] = readdirSync(join(chainsDir, chainId!)).filter((n) => n.endsWith('.manifest'));
    const { manifest } = await decodeManifest(
      readFileSync(join(chainsDir, chainId!, manifestName!)),
      manifestName!,
      async () => undefined,
    );
    expect(manifest.notes).toEqual([note]);

    // The unit's status, as the operator reads it.
    const status = await ctl(alpha.address, ['status', 'snap']);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toContain(`note: pg/all-databases: ${note}`);

    // The restore onto the other cluster's server says it too.
    const restored = await ctl(beta.address, [
      'restore',
      '--dest',
      dest,
      '--database',
      'pg/all-databases',
      '--chain',
      chainId!,
      '--backup',
      manifestName!.replace(/\.manifest$/, ''),
      '--into',
      'pg2',
      '--target',
      'copy1',
    ]);
    expect(restored.code, restored.stdout + restored.stderr).toBe(0);
    expect(restored.stdout).toContain('Unlogged tables come back empty');
    expect(restored.stdout).toContain('shop.public.sessions');

    // Started, the copy says the same: the unlogged table is empty, the rest (in its tablespace) is there.
    const restores = join(pgB.dir, 'restores');
    const copy = await startPostgres({
      dataDir: join(restores, 'copy1'),
      // As docs/SOURCES.md says: the agent made them its own (mode 0700), the server's user must own them.
      alsoOwn: [restores],
    });
    try {
      expect(await copy.psql('SELECT count(*) FROM sessions', 'shop')).toBe('0\n');
      expect(await copy.psql('SELECT count(*) FROM orders', 'shop')).toBe('1000\n');
      expect(await pgA.psql('SELECT count(*) FROM sessions', 'shop')).toBe('50\n');
    } finally {
      await copy.stop();
    }
  });
});
