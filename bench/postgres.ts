// The PostgreSQL benchmark: in one run, on one server and one database (pgbench at --scale plus a
// realistic orders table), our logical backup against `pg_dump | zstd -1 > file` and our server snapshot
// against `pg_basebackup -Ft --compress=client-zstd:1` and pgBackRest (zst level 1, two processes, WAL
// archived into a repository in the work folder): full backups, then pgbench transactions and order
// changes, then incrementals, then restores (checked against the database: the logical one table by
// table, each restored data directory started and its tables compared). Beside each step: peak memory,
// the tool's CPU, the server's CPU, and for ours the CPU of each of our threads. Prints the tables and
// ratios; writes .bench/postgres-results-<UTC time>.json.
//
//   npx tsx bench/postgres.ts                 # scale 70: about 1.3 GB of data, ~8 GB of disk
//   npx tsx bench/postgres.ts --scale 2       # a quick run, under a minute
//   options: --scale N, --rounds N (alternating full logical backups, default 3; the median counts),
//            --snapshot-only (skip the logical backups), --keep (keep the work folder), --dir D (default .bench/)
//
// The server is initdb'd here (archive_mode on, for pgBackRest) and started like the tests'
// (test/harness/postgres.ts), and stopped at the end.

import { execFileSync } from 'node:child_process';
import { appendFileSync, chownSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { runBackup } from '../src/backup/backup.js';
import { restoreBackup } from '../src/backup/restore.js';
import type { BackupLevel, BackupType } from '../src/layout.js';
import { postgres } from '../src/sources/postgres.js';
import { SERVER_UNIT, type Source } from '../src/sources/source.js';
import { LocalDestination } from '../src/uploader/local.js';
import { type PostgresServer, postgresBinDir, startPostgres } from '../test/harness/postgres.js';
import { apparentBytes, type Measurement, measure } from './measure.js';
import { PgBackRest } from './pgbackrest.js';
import { describeThreads, type ProbeResult, probe } from './probe.js';
import { ensureTools, versionOf } from './tools.js';
import {
  ADJECTIVES,
  CITIES,
  CURRENCIES,
  EMAIL_DOMAINS,
  FIRST_NAMES,
  LAST_NAMES,
  MATERIALS,
  NOUNS,
  ORDER_STATUSES,
  STREETS,
  USER_AGENTS,
} from './words.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = HERE.endsWith(join('dist', 'bench')) ? join(HERE, '..', '..') : join(HERE, '..');
const DB = 'bench';
/** A fixed task key: the production path is encrypted, so that is what we measure. */
const BENCH_KEY = 'bench-task-key-5f0c2a9e1d7b4c3a8e6f0d2b9a7c5e31';
/** Rows of the realistic table per pgbench scale unit (pgbench has 100,000 accounts per unit). */
const ORDERS_PER_SCALE = 6000;

const log = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

interface Row {
  tool: string;
  phase: string;
  wallMs: number;
  /** Bytes this step stored (full) or added (incr), or restored (restore). */
  bytes: number;
  /** The size the throughput is computed from: the database (logical) or the server's data (snapshot). */
  dataBytes: number;
  /** Peak resident memory of the tool (for ours: this process and its children). */
  peakRssBytes?: number;
  /** CPU seconds of the tool (for ours: this process and the programs it ran). */
  cpuS?: number;
  /** CPU seconds of the server's processes during the step. */
  serverCpuS?: number;
  /** For ours: the busiest threads' CPU seconds. */
  threads?: string;
  note?: string;
}

/** The figures of a reference tool's step: its own process tree's memory and CPU, the server's CPU. */
function toolFigures(m: Measurement, p: ProbeResult): Pick<Row, 'peakRssBytes' | 'cpuS' | 'serverCpuS'> {
  return { peakRssBytes: m.peakRssBytes, cpuS: p.childrenCpuS, serverCpuS: p.serverCpuS };
}

/** The figures of one of our steps, run in this process. */
function ourFigures(p: ProbeResult): Pick<Row, 'peakRssBytes' | 'cpuS' | 'serverCpuS' | 'threads'> {
  return {
    peakRssBytes: p.peakRssBytes,
    cpuS: p.selfCpuS + p.childrenCpuS,
    serverCpuS: p.serverCpuS,
    threads:
      `${describeThreads(p.threads, 8)}; all threads ${p.selfCpuS.toFixed(2)}, programs run ${p.childrenCpuS.toFixed(2)}; ` +
      `memory at the start ${(p.startRssBytes / 1e6).toFixed(0)} MB`,
  };
}

function sqlArray(values: readonly string[]): string {
  return `ARRAY[${values.map((v) => `'${v.replace(/'/g, "''")}'`).join(', ')}]`;
}

/** A shop's orders: names, addresses, items as JSON, money, statuses, user agents, IPs; seeded. */
function ordersSql(rows: number): string {
  const pick = (array: string, size: number) => `(${array})[1 + floor(random() * ${size})::int]`;
  const cities = CITIES.map(([city, country]) => `${city}, ${country}`);
  return `
SELECT setseed(0.20261122);
CREATE TABLE shop_orders (
  id bigint PRIMARY KEY,
  customer_name text NOT NULL,
  customer_email text NOT NULL,
  placed_at timestamptz NOT NULL,
  status text NOT NULL,
  currency char(3) NOT NULL,
  total numeric(12, 2) NOT NULL,
  items jsonb NOT NULL,
  shipping_address text,
  user_agent text,
  client_ip inet,
  note text
);
INSERT INTO shop_orders
SELECT i, fn || ' ' || ln, lower(fn) || '.' || lower(ln) || (i % 97) || '@' || ${pick(sqlArray(EMAIL_DOMAINS), EMAIL_DOMAINS.length)},
       timestamptz '2025-01-01 00:00:00+00' + i * interval '20 seconds' + random() * interval '15 seconds',
       ${pick(sqlArray(ORDER_STATUSES), ORDER_STATUSES.length)}, ${pick(sqlArray(CURRENCIES), CURRENCIES.length)},
       round((random() * 400 + 5)::numeric, 2),
       (SELECT jsonb_agg(jsonb_build_object(
           'sku', 'SKU-' || lpad(floor(random() * 50000)::text, 6, '0'),
           'name', ${pick(sqlArray(ADJECTIVES), ADJECTIVES.length)} || ' ' || ${pick(sqlArray(MATERIALS), MATERIALS.length)} || ' ' || ${pick(sqlArray(NOUNS), NOUNS.length)},
           'qty', 1 + floor(random() * 4)::int, 'price', round((random() * 120 + 1)::numeric, 2)))
          FROM generate_series(1, 1 + i % 4)),
       (1 + floor(random() * 9999)::int) || ' ' || ${pick(sqlArray(STREETS), STREETS.length)} || ', ' || ${pick(sqlArray(cities), cities.length)},
       ${pick(sqlArray(USER_AGENTS), USER_AGENTS.length)},
       ('10.' || floor(random() * 256)::int || '.' || floor(random() * 256)::int || '.' || floor(random() * 256)::int)::inet,
       CASE WHEN random() < 0.3 THEN 'please ' || ${pick(sqlArray(NOUNS), NOUNS.length)} || ' at the door' END
  FROM (SELECT i, ${pick(sqlArray(FIRST_NAMES), FIRST_NAMES.length)} AS fn, ${pick(sqlArray(LAST_NAMES), LAST_NAMES.length)} AS ln
          FROM generate_series(1, ${rows}) AS i) AS people;
CREATE INDEX shop_orders_placed ON shop_orders (placed_at);
CREATE INDEX shop_orders_email ON shop_orders (customer_email);
`;
}

/** The change between full and incremental: 1% more orders, 0.1% of the orders updated at random. */
function changeSql(rows: number): string {
  const added = Math.max(1, Math.round(rows / 100));
  const updated = Math.max(1, Math.round(rows / 1000));
  return `
SELECT setseed(0.5);
INSERT INTO shop_orders
SELECT ${rows} + i, customer_name, customer_email, placed_at + interval '400 days', 'pending', currency, total, items,
       shipping_address, user_agent, client_ip, note
  FROM shop_orders JOIN generate_series(1, ${added}) AS i ON id = i;
UPDATE shop_orders SET status = 'shipped', note = 'shipped on ' || now()::date
 WHERE id IN (SELECT 1 + floor(random() * ${rows})::int FROM generate_series(1, ${updated}));
`;
}

/** Per table: row count and a sum of row hashes, to check a restore without holding a table in memory. */
async function tableDigests(pg: PostgresServer, database: string): Promise<string> {
  return pg.psql(
    `SELECT string_agg(t || ' ' || n || ' ' || h, E'\\n' ORDER BY t) FROM (
       SELECT 'pgbench_accounts' AS t, count(*) AS n, sum(hashtext(x::text)::bigint) AS h FROM pgbench_accounts x
       UNION ALL SELECT 'pgbench_branches', count(*), sum(hashtext(x::text)::bigint) FROM pgbench_branches x
       UNION ALL SELECT 'pgbench_tellers', count(*), sum(hashtext(x::text)::bigint) FROM pgbench_tellers x
       UNION ALL SELECT 'pgbench_history', count(*), sum(hashtext(x::text)::bigint) FROM pgbench_history x
       UNION ALL SELECT 'shop_orders', count(*), sum(hashtext(x::text)::bigint) FROM shop_orders x) AS d`,
    database,
  );
}

class Ours {
  readonly repo: string;
  private latest: { chainId: string; backupId: string } | undefined;

  constructor(
    private readonly source: Source,
    readonly type: BackupType,
    private readonly dir: string,
  ) {
    this.repo = join(dir, 'repo');
  }

  private common() {
    return {
      ref: { cluster: 'bench', source: this.source.name, database: this.type === 'backup' ? DB : SERVER_UNIT },
      source: this.source,
      type: this.type,
      destinations: [new LocalDestination('disk', this.repo)],
      key: BENCH_KEY,
      node: 'bench',
      task: 'bench',
    };
  }

  /** `onStart` is called once the clock starts (after the sync), e.g. to start a probe. */
  async backup(level: BackupLevel, onStart?: () => void): Promise<{ wallMs: number; added: number; rawBytes: number }> {
    const before = await apparentBytes(this.repo);
    execFileSync('sync'); // as measure() does for the reference tools: no step pays for another's writes
    onStart?.();
    const started = performance.now();
    const result = await runBackup({ ...this.common(), level, stagingDir: join(this.dir, 'staging') });
    const wallMs = performance.now() - started;
    this.latest = result;
    return { wallMs, added: (await apparentBytes(this.repo)) - before, rawBytes: result.rawBytes };
  }

  async restore(
    target: string,
    onStart?: () => void,
  ): Promise<{ wallMs: number; bytes: number; location: string; note?: string }> {
    if (!this.latest) throw new Error('nothing to restore');
    execFileSync('sync');
    onStart?.();
    const started = performance.now();
    const result = await restoreBackup({
      ...this.common(),
      ...this.latest,
      from: this.common().destinations[0]!,
      target,
      cacheDir: join(this.dir, 'cache'),
    });
    return {
      wallMs: performance.now() - started,
      bytes: result.bytes,
      location: result.location,
      ...(result.note === undefined ? {} : { note: result.note }),
    };
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      scale: { type: 'string' },
      rounds: { type: 'string' },
      keep: { type: 'boolean' },
      dir: { type: 'string' },
      'snapshot-only': { type: 'boolean' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    log(
      'usage: npx tsx bench/postgres.ts [--scale N (default 70)] [--rounds N (default 3)] [--snapshot-only] [--keep] [--dir D (default .bench/)]',
    );
    return 0;
  }
  const scale = Number(values.scale ?? 70);
  if (!Number.isInteger(scale) || scale < 1) throw new Error('--scale must be an integer >= 1');
  const rounds = Number(values.rounds ?? 3);
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds must be an integer >= 1');
  const benchDir = values.dir ?? join(ROOT, '.bench');
  const startedAt = new Date();
  const stamp = startedAt.toISOString().replace(/[-:]/g, '').replace(/\..*$/, 'Z');
  const work = join(benchDir, `postgres-run-${stamp}`);
  mkdirSync(work, { recursive: true });
  ensureTools(['zstd', '/usr/bin/time', 'pgbackrest'], log);
  const logical = !values['snapshot-only'];

  log(`backupd PostgreSQL benchmark: pgbench scale ${scale} + ${scale * ORDERS_PER_SCALE} orders`);
  log(`machine: ${cpus().length} cpus (${cpus()[0]?.model ?? '?'}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM`);
  const loadAtStart = loadavg();
  log(`load average at the start: ${loadAtStart.map((l) => l.toFixed(2)).join(', ')}`);
  const pgbackrest = new PgBackRest(join(work, 'pgbackrest'));
  const pg = await startPostgres({ dataDir: initServer(join(work, 'server'), pgbackrest) });
  const rows: Row[] = [];
  const restoredServers: PostgresServer[] = [];
  let failed = false;
  try {
    const tool = (name: string) => join(pg.binDir, name);
    const versions = {
      node: process.version,
      server: (await pg.psql('SHOW server_version')).trim(),
      pg_dump: versionOf(tool('pg_dump'), ['--version']),
      zstd: versionOf('zstd', ['--version']),
      pgbackrest: versionOf('pgbackrest', ['version']),
    };
    log(`versions: ${JSON.stringify(versions)}`);

    // The data: pgbench's tables and the orders, vacuumed and checkpointed so every tool sees the same pages.
    let t = performance.now();
    await pg.psql(`CREATE DATABASE ${DB}`);
    await pg.tool('pgbench', ['-i', '-q', '-s', String(scale), DB]);
    const orders = scale * ORDERS_PER_SCALE;
    await pg.psql(ordersSql(orders), DB);
    await pg.psql('VACUUM ANALYZE', DB);
    await pg.psql('CHECKPOINT');
    const dbBytes = Number(await pg.psql(`SELECT pg_database_size('${DB}')`));
    const serverBytes = Number(await pg.psql('SELECT sum(pg_database_size(oid)) FROM pg_database'));
    log(
      `data: database ${DB} ${(dbBytes / 1e6).toFixed(1)} MB (server ${(serverBytes / 1e6).toFixed(1)} MB), ` +
        `loaded in ${((performance.now() - t) / 1000).toFixed(1)} s`,
    );
    // From now on the WAL goes into pgBackRest's repository (the load's went nowhere).
    pgbackrest.configure({ dataDir: pg.dataDir, port: pg.port, socketDir: pg.dir });
    await pg.psql(`ALTER SYSTEM SET archive_command = '${pgbackrest.archiveCommand}'`);
    await pg.psql('SELECT pg_reload_conf()');
    await pgbackrest.createStanza();

    const source = await postgres.open(
      'bench',
      postgres.parseConfig(
        pg.sourceConfig({ tempDir: join(work, 'spool'), restoreDir: join(pg.dir, 'restores') }),
        'bench',
      ),
    );
    const oursBackup = new Ours(source, 'backup', join(work, 'ours-backup'));
    const oursSnapshot = new Ours(source, 'snapshot', join(work, 'ours-snapshot'));
    const clientEnv = { PGHOST: pg.host, PGPORT: String(pg.port), PGUSER: pg.user };
    const add = (row: Row) => {
      rows.push(row);
      log(
        `[${row.phase}] ${row.tool}: ${(row.wallMs / 1000).toFixed(2)} s, ` +
          `${(row.dataBytes / 1e6 / (row.wallMs / 1000)).toFixed(1)} MB/s, ${(row.bytes / 1e6).toFixed(1)} MB` +
          (row.peakRssBytes === undefined ? '' : `, peak ${(row.peakRssBytes / 1e6).toFixed(0)} MB`) +
          (row.cpuS === undefined ? '' : `, CPU ${row.cpuS.toFixed(2)} s`) +
          (row.serverCpuS === undefined ? '' : `, server CPU ${row.serverCpuS.toFixed(2)} s`) +
          (row.note ? ` (${row.note})` : '') +
          (row.threads ? `\n    threads (CPU s): ${row.threads}` : ''),
      );
    };

    // Full logical backups of the same, unchanged data, the reference and ours in alternating rounds: on
    // a shared 2-core machine one run of either moves by up to 2x, so each row is the median round (every
    // round is in the row's note and the results file). Our last full starts the chain the incremental
    // continues.
    const dumpFile = join(work, 'reference', `${DB}.sql.zst`);
    mkdirSync(dirname(dumpFile), { recursive: true });
    const dumps: number[] = [];
    const fulls: Awaited<ReturnType<Ours['backup']>>[] = [];
    for (let round = 1; logical && round <= rounds; round++) {
      const dump = await measure(
        'bash',
        ['-c', 'set -o pipefail; "$PG_DUMP" --format=plain --dbname="$DB" | zstd -1 -q -f -o "$OUT"'],
        { env: { ...clientEnv, PG_DUMP: tool('pg_dump'), DB, OUT: dumpFile } },
      );
      dumps.push(dump.wallMs);
      fulls.push(await oursBackup.backup('full'));
      const [theirs, ours] = [dump.wallMs, fulls.at(-1)!.wallMs];
      log(
        `round ${round} of ${rounds}, full logical backup: pg_dump | zstd -1 ${(theirs / 1000).toFixed(2)} s, ` +
          `ours ${(ours / 1000).toFixed(2)} s (${(theirs / ours).toFixed(2)}x)`,
      );
    }
    const seconds = (runs: number[]) => runs.map((ms) => (ms / 1000).toFixed(2)).join(', ');
    const dump = { wallMs: logical ? median(dumps) : 0 };
    const backupFull = logical ? { ...fulls.at(-1)!, wallMs: median(fulls.map((f) => f.wallMs)) } : undefined;
    if (backupFull) {
      add({
        tool: 'pg_dump | zstd -1',
        phase: 'backup full',
        wallMs: dump.wallMs,
        bytes: await apparentBytes(dumpFile),
        dataBytes: dbBytes,
        note: rounds > 1 ? `median of ${seconds(dumps)} s` : undefined,
      });
      add({
        tool: 'ours: backup, encrypted',
        phase: 'backup full',
        wallMs: backupFull.wallMs,
        bytes: backupFull.added,
        dataBytes: dbBytes,
        note:
          `${(backupFull.rawBytes / 1e6).toFixed(1)} MB dump` +
          (rounds > 1 ? `; median of ${seconds(fulls.map((f) => f.wallMs))} s` : ''),
      });
    }

    // Full snapshots, one tool after the other, each with the server's CPU beside it.
    const baseDir = join(work, 'reference', 'basebackup');
    // The probe starts after the sync that measure() would do, so that no step is charged for it.
    execFileSync('sync');
    let watch = probe(pg.pid);
    const base = await measure(
      tool('pg_basebackup'),
      ['--pgdata', baseDir, '--format=tar', '--wal-method=stream', '--compress=client-zstd:1', '--checkpoint=fast'],
      { env: clientEnv, noSettle: true },
    );
    add({
      tool: 'pg_basebackup -Ft client-zstd:1',
      phase: 'snapshot full',
      wallMs: base.wallMs,
      bytes: await apparentBytes(baseDir),
      dataBytes: serverBytes,
      ...toolFigures(base, watch.stop()),
    });
    const snapshotFull = await oursSnapshot.backup('full', () => {
      watch = probe(pg.pid);
    });
    add({
      tool: 'ours: snapshot, encrypted',
      phase: 'snapshot full',
      wallMs: snapshotFull.wallMs,
      bytes: snapshotFull.added,
      dataBytes: serverBytes,
      ...ourFigures(watch.stop()),
      note: `${(snapshotFull.rawBytes / 1e6).toFixed(1)} MB read`,
    });
    execFileSync('sync');
    watch = probe(pg.pid);
    const restFull = await pgbackrest.backup('full');
    add({
      tool: 'pgbackrest full zst:1 x2',
      phase: 'snapshot full',
      wallMs: restFull.measured.wallMs,
      bytes: restFull.bytes,
      dataBytes: serverBytes,
      ...toolFigures(restFull.measured, watch.stop()),
      note: 'backup set + its WAL',
    });

    // The change: pgbench transactions on 0.1% of the accounts, 1% more orders, 0.1% of orders updated.
    t = performance.now();
    const transactions = Math.max(100, scale * 100);
    await pg.tool('pgbench', ['-n', '-c', '2', '-t', String(transactions / 2), DB]);
    await pg.psql(changeSql(orders), DB);
    log(
      `change: ${transactions} pgbench transactions, +1% orders, 0.1% orders updated, in ${((performance.now() - t) / 1000).toFixed(1)} s`,
    );
    const changedDbBytes = Number(await pg.psql(`SELECT pg_database_size('${DB}')`));

    const backupIncr = logical ? await oursBackup.backup('incr') : undefined;
    if (backupIncr) {
      add({
        tool: 'ours: backup, encrypted',
        phase: 'backup incr',
        wallMs: backupIncr.wallMs,
        bytes: backupIncr.added,
        dataBytes: changedDbBytes,
      });
    }
    const snapshotIncr = await oursSnapshot.backup('incr', () => {
      watch = probe(pg.pid);
    });
    add({
      tool: 'ours: snapshot, encrypted',
      phase: 'snapshot incr',
      wallMs: snapshotIncr.wallMs,
      bytes: snapshotIncr.added,
      dataBytes: serverBytes,
      ...ourFigures(watch.stop()),
    });
    execFileSync('sync');
    watch = probe(pg.pid);
    const restIncr = await pgbackrest.backup('incr');
    add({
      tool: 'pgbackrest incr zst:1 x2',
      phase: 'snapshot incr',
      wallMs: restIncr.measured.wallMs,
      bytes: restIncr.bytes,
      dataBytes: serverBytes,
      ...toolFigures(restIncr.measured, watch.stop()),
      note: 'backup set + its WAL',
    });

    // Restores of the incrementals, checked: the logical one table by table; each snapshot into a new data
    // directory (ours also checked by pg_verifybackup when pg_basebackup took it), then started and its tables compared.
    const expected = await tableDigests(pg, DB);
    if (logical) {
      const restored = await oursBackup.restore(`${DB}_restored`);
      const same = (await tableDigests(pg, `${DB}_restored`)) === expected;
      failed ||= !same;
      add({
        tool: 'ours: backup, encrypted',
        phase: 'restore',
        wallMs: restored.wallMs,
        bytes: restored.bytes,
        dataBytes: changedDbBytes,
        note: same ? 'verified: same rows' : 'VERIFY FAILED',
      });
      await pg.psql(`DROP DATABASE ${DB}_restored`);
    }
    const startAndCheck = async (tool: string, dataDir: string): Promise<void> => {
      // Not the source's WAL archive: a restored copy must not push its WAL into pgBackRest's repository.
      appendFileSync(join(dataDir, 'postgresql.auto.conf'), "\narchive_mode = 'off'\n");
      const started = performance.now();
      const server = await startPostgres({ dataDir });
      restoredServers.push(server);
      while ((await server.psql('SELECT pg_is_in_recovery()')).trim() !== 'f') await sleep(100);
      const wallMs = performance.now() - started;
      const same = (await tableDigests(server, DB)) === expected;
      failed ||= !same;
      add({
        tool,
        phase: 'start restored',
        wallMs,
        bytes: 0,
        dataBytes: serverBytes,
        note: same ? 'started, recovered, same rows' : 'VERIFY FAILED: rows differ',
      });
      await server.stop();
    };
    const datadir = await oursSnapshot.restore('bench-datadir', () => {
      watch = probe();
    });
    add({
      tool: 'ours: snapshot, encrypted',
      phase: 'restore',
      wallMs: datadir.wallMs,
      bytes: datadir.bytes,
      dataBytes: serverBytes,
      ...ourFigures(watch.stop()),
      serverCpuS: undefined,
      // A snapshot read from the data directory has no backup_manifest: the start below is its check.
      note: datadir.note?.includes('pg_verifybackup') ? 'checked by pg_verifybackup' : 'read from the data directory',
    });
    await startAndCheck('ours: snapshot, encrypted', datadir.location);
    rmSync(datadir.location, { recursive: true, force: true });
    const restDir = join(work, 'pgbackrest-restored');
    execFileSync('sync');
    watch = probe();
    const restRestore = await pgbackrest.restore(restDir);
    add({
      tool: 'pgbackrest restore x2',
      phase: 'restore',
      wallMs: restRestore.wallMs,
      bytes: await apparentBytes(restDir),
      dataBytes: serverBytes,
      ...toolFigures(restRestore, watch.stop()),
    });
    await startAndCheck('pgbackrest restore x2', restDir);
    rmSync(restDir, { recursive: true, force: true });

    const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
    const oursRows = rows.filter((r) => r.tool.startsWith('ours: snapshot'));
    const restRows = rows.filter((r) => r.tool.startsWith('pgbackrest'));
    const restoreStart = (list: Row[]) =>
      list.filter((r) => r.phase === 'restore' || r.phase === 'start restored').reduce((sum, r) => sum + r.wallMs, 0);
    const targets: [string, string, string][] = [
      ...(backupFull && backupIncr
        ? ([
            ['logical backup throughput vs pg_dump | zstd -1', ratio(dump.wallMs, backupFull.wallMs), '>= 0.9x'],
            [
              'logical backup stored bytes vs pg_dump | zstd -1',
              ratio(backupFull.added, await apparentBytes(dumpFile)),
              'report',
            ],
            ['logical incremental bytes vs its full', ratio(backupIncr.added, backupFull.added), 'report'],
          ] as [string, string, string][])
        : []),
      ['snapshot throughput vs pg_basebackup client-zstd:1', ratio(base.wallMs, snapshotFull.wallMs), '>= 1.0x'],
      ['snapshot throughput vs pgbackrest full', ratio(restFull.measured.wallMs, snapshotFull.wallMs), '>= 1.0x'],
      [
        'snapshot stored bytes vs pg_basebackup client-zstd:1',
        ratio(snapshotFull.added, await apparentBytes(baseDir)),
        'report',
      ],
      ['snapshot stored bytes vs pgbackrest full', ratio(snapshotFull.added, restFull.bytes), '<= 1.1x'],
      ['snapshot incremental bytes vs pgbackrest incr', ratio(snapshotIncr.added, restIncr.bytes), '<= 1.0x'],
      ['snapshot incremental time vs pgbackrest incr', ratio(snapshotIncr.wallMs, restIncr.measured.wallMs), '<= 1.0x'],
      ['snapshot incremental bytes vs its full', ratio(snapshotIncr.added, snapshotFull.added), 'report'],
      [
        'snapshot restore (+ start) speed vs pgbackrest',
        `${ratio(restRestore.wallMs, datadir.wallMs)} (${ratio(restoreStart(restRows), restoreStart(oursRows))})`,
        '>= 1.0x',
      ],
      [
        // Ours runs in this process: its peak here includes what the process held before the step.
        'snapshot peak memory (this process), full / incr / restore',
        oursRows
          .filter((r) => r.peakRssBytes !== undefined)
          .map((r) => `${((r.peakRssBytes ?? 0) / 1e6).toFixed(0)} MB`)
          .join(' / '),
        '< 300 MB alone (docs/BENCHMARKS.md)',
      ],
    ];
    log('');
    log(
      table(
        ['phase', 'tool', 'time s', 'MB/s', 'MB', 'peak MB', 'CPU s', 'server CPU s', 'notes'],
        rows.map((r) => [
          r.phase,
          r.tool,
          (r.wallMs / 1000).toFixed(2),
          (r.dataBytes / 1e6 / (r.wallMs / 1000)).toFixed(1),
          (r.bytes / 1e6).toFixed(1),
          r.peakRssBytes === undefined ? '' : (r.peakRssBytes / 1e6).toFixed(0),
          r.cpuS === undefined ? '' : r.cpuS.toFixed(2),
          r.serverCpuS === undefined ? '' : r.serverCpuS.toFixed(2),
          r.note ?? '',
        ]),
      ),
    );
    log('');
    log(table(['ratio', 'value', 'target'], targets));
    const loadAtEnd = loadavg();
    log(`load average at the end: ${loadAtEnd.map((l) => l.toFixed(2)).join(', ')}`);
    const resultsFile = join(benchDir, `postgres-results-${stamp}.json`);
    writeFileSync(
      resultsFile,
      `${JSON.stringify(
        {
          startedAt: startedAt.toISOString(),
          scale,
          rounds,
          orders,
          machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryBytes: totalmem() },
          loadAverage: { start: loadAtStart, end: loadAtEnd },
          versions,
          encrypted: true,
          data: { dbBytes, serverBytes, changedDbBytes, transactions },
          rows,
          logicalFullRounds: dumps.map((theirs, i) => ({ referenceMs: theirs, oursMs: fulls[i]!.wallMs })),
          targets: targets.map(([what, value, target]) => ({ what, value, target })),
        },
        null,
        2,
      )}\n`,
    );
    log(`\nresults: ${resultsFile}`);
    await source.close();
  } finally {
    for (const server of restoredServers) await server.stop(); // stopped already unless a check failed
    await pg.stop();
    if (values.keep) log(`work folder kept: ${work}`);
    else rmSync(work, { recursive: true, force: true });
  }
  return failed ? 1 : 0;
}

/** The middle value (the upper one of an even count). */
function median(values: number[]): number {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
}

function table(header: string[], body: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}

process.exitCode = await main();

/**
 * A new server's data directory in `dir`, with WAL archiving on for pgBackRest; the archive command
 * throws the WAL away until the data is loaded (then it is pointed at pgBackRest's repository).
 */
function initServer(dir: string, pgbackrest: PgBackRest): string {
  mkdirSync(dir, { mode: 0o700 });
  const asServer: string[] = [];
  if (process.getuid?.() === 0) {
    const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(dir, id('-u'), id('-g'));
    asServer.push('setpriv', `--reuid=${id('-u')}`, `--regid=${id('-g')}`, '--init-groups');
  }
  const initdb = join(postgresBinDir(), 'initdb');
  const argv = [...asServer, initdb, '-D', dir, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8'];
  execFileSync(argv[0]!, argv.slice(1), {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, LC_ALL: 'C.UTF-8' },
  });
  appendFileSync(
    join(dir, 'postgresql.conf'),
    `\n# backupd bench: pgBackRest needs the WAL archived (${pgbackrest.config})\narchive_mode = on\narchive_command = '/bin/true'\n`,
  );
  return dir;
}
