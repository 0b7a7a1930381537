// The MariaDB benchmark: in one run, on one server and one database of realistic rows (accounts and
// orders: names, e-mails, addresses, JSON items, money, user agents, IPs; made by the server from a seed),
// our logical backup against `mariadb-dump | zstd -1 > file` and our server snapshot against
// `mariadb-backup --stream=xbstream | zstd -1 > file`; then 1% of the orders updated and 1% added, our
// incrementals against mariadb-backup's own incremental of the same change, and our restores (the
// logical one compared table by table with CHECKSUM TABLE, the snapshot started by a mariadbd and
// compared the same way). Prints the tables and ratios; writes .bench/mariadb-results-<UTC time>.json.
//
//   node dist/bench/mariadb.js              # about 1 GB of table data, ~6 GB of disk
//   node dist/bench/mariadb.js --orders 200000   # a quick run
//   options: --orders N (default 3,000,000), --rounds N (alternating full logical backups, default 3;
//            the median counts), --keep (keep the work folder), --dir D (default .bench/)
//
// The server is started for the run like the tests' (test/harness/mariadb.ts) and stopped at the end.

import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { runBackup } from '../src/backup/backup.js';
import { restoreBackup } from '../src/backup/restore.js';
import type { BackupLevel, BackupType } from '../src/layout.js';
import { mariadb } from '../src/sources/mariadb.js';
import { SERVER_UNIT, type Source } from '../src/sources/source.js';
import { LocalDestination } from '../src/uploader/local.js';
import { type MariadbServer, startMariadb } from '../test/harness/mariadb.js';
import { changeSql, dataSql, flushDirtyPages } from './mariadb-data.js';
import { apparentBytes, measure } from './measure.js';
import { ensureTools, versionOf } from './tools.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = HERE.endsWith(join('dist', 'bench')) ? join(HERE, '..', '..') : join(HERE, '..');
const DB = 'bench';
/** A fixed task key: the production path is encrypted, so that is what we measure. */
const BENCH_KEY = 'bench-task-key-5f0c2a9e1d7b4c3a8e6f0d2b9a7c5e31';

const log = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

interface Row {
  tool: string;
  phase: string;
  wallMs: number;
  /** Bytes this step stored (full) or added (incr), or restored (restore). */
  bytes: number;
  /** The size the throughput is computed from: the database's tables (logical) or the server's files (snapshot). */
  dataBytes: number;
  note?: string;
}

async function checksums(server: MariadbServer, database: string): Promise<string> {
  return server.sql('CHECKSUM TABLE accounts, orders EXTENDED', database).then((out) =>
    out
      .split('\n')
      .map((line) => line.split('\t')[1])
      .join(' '),
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

  async backup(level: BackupLevel): Promise<{ wallMs: number; added: number; rawBytes: number }> {
    const before = await apparentBytes(this.repo);
    execFileSync('sync'); // as measure() does for the reference tools: no step pays for another's writes
    const started = performance.now();
    const result = await runBackup({ ...this.common(), level, stagingDir: join(this.dir, 'staging') });
    const wallMs = performance.now() - started;
    this.latest = result;
    return { wallMs, added: (await apparentBytes(this.repo)) - before, rawBytes: result.rawBytes };
  }

  async restore(target: string): Promise<{ wallMs: number; bytes: number; location: string }> {
    if (!this.latest) throw new Error('nothing to restore');
    execFileSync('sync');
    const started = performance.now();
    const result = await restoreBackup({
      ...this.common(),
      ...this.latest,
      from: this.common().destinations[0]!,
      target,
      cacheDir: join(this.dir, 'cache'),
    });
    return { wallMs: performance.now() - started, bytes: result.bytes, location: result.location };
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      orders: { type: 'string' },
      rounds: { type: 'string' },
      keep: { type: 'boolean' },
      dir: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    log('usage: node dist/bench/mariadb.js [--orders N (default 3000000)] [--rounds N (default 3)] [--keep] [--dir D]');
    return 0;
  }
  const orders = Number(values.orders ?? 3_000_000);
  if (!Number.isInteger(orders) || orders < 1000) throw new Error('--orders must be an integer >= 1000');
  const rounds = Number(values.rounds ?? 3);
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds must be an integer >= 1');
  const benchDir = values.dir ?? join(ROOT, '.bench');
  const startedAt = new Date();
  const stamp = startedAt.toISOString().replace(/[-:]/g, '').replace(/\..*$/, 'Z');
  const work = join(benchDir, `mariadb-run-${stamp}`);
  mkdirSync(work, { recursive: true });
  ensureTools(['zstd', '/usr/bin/time'], log);

  log(`backupd MariaDB benchmark: ${orders} orders`);
  log(`machine: ${cpus().length} cpus (${cpus()[0]?.model ?? '?'}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM`);
  const db = await startMariadb({ serverArgs: ['--innodb-buffer-pool-size=256M'] });
  const rows: Row[] = [];
  let failed = false;
  try {
    const versions = {
      node: process.version,
      server: (await db.sql('SELECT VERSION()')).trim(),
      mariadbDump: versionOf('mariadb-dump', ['--version']),
      mariadbBackup: versionOf('mariadb-backup', ['--version']),
      zstd: versionOf('zstd', ['--version']),
    };
    log(`versions: ${JSON.stringify(versions)}`);

    let t = performance.now();
    await db.sql(`CREATE DATABASE ${DB}`);
    await db.sql(dataSql(orders), DB);
    await db.sql('ANALYZE TABLE accounts, orders', DB);
    const sizeOf = async () =>
      Number(
        await db.sql(
          `SELECT SUM(DATA_LENGTH + INDEX_LENGTH) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '${DB}'`,
        ),
      );
    const dbBytes = await sizeOf();
    const serverBytes = await apparentBytes(db.dataDir);
    log(
      `data: database ${DB} ${(dbBytes / 1e6).toFixed(1)} MB of tables (server files ${(serverBytes / 1e6).toFixed(1)} MB), ` +
        `loaded in ${((performance.now() - t) / 1000).toFixed(1)} s`,
    );

    const source = await mariadb.open(
      'bench',
      mariadb.parseConfig(
        db.sourceConfig({ tempDir: join(work, 'spool'), restoreDir: join(work, 'restores') }),
        'bench',
      ),
    );
    const oursBackup = new Ours(source, 'backup', join(work, 'ours-backup'));
    const oursSnapshot = new Ours(source, 'snapshot', join(work, 'ours-snapshot'));
    const client = ['--no-defaults', '--protocol=socket', `--socket=${db.socket}`, '--user=root'];
    const env = { CLIENT: client.join(' '), DB };
    const add = (row: Row) => {
      rows.push(row);
      log(
        `[${row.phase}] ${row.tool}: ${(row.wallMs / 1000).toFixed(2)} s, ` +
          `${(row.dataBytes / 1e6 / (row.wallMs / 1000)).toFixed(1)} MB/s, ${(row.bytes / 1e6).toFixed(1)} MB` +
          (row.note ? ` (${row.note})` : '') +
          `; peak RSS so far ${((process.resourceUsage().maxRSS * 1024) / 1e6).toFixed(0)} MB`,
      );
    };

    // Full logical backups of the same data, the reference and ours in alternating rounds (the median counts).
    const dumpFile = join(work, 'reference', `${DB}.sql.zst`);
    mkdirSync(dirname(dumpFile), { recursive: true });
    const dumps: number[] = [];
    const fulls: Awaited<ReturnType<Ours['backup']>>[] = [];
    for (let round = 1; round <= rounds; round++) {
      const dump = await measure(
        'bash',
        [
          '-c',
          'set -o pipefail; mariadb-dump $CLIENT --single-transaction --routines --triggers --events --hex-blob "$DB" | zstd -1 -q -f -o "$OUT"',
        ],
        { env: { ...env, OUT: dumpFile } },
      );
      dumps.push(dump.wallMs);
      fulls.push(await oursBackup.backup('full'));
      log(
        `round ${round} of ${rounds}, full logical backup: mariadb-dump | zstd -1 ${(dump.wallMs / 1000).toFixed(2)} s, ` +
          `ours ${(fulls.at(-1)!.wallMs / 1000).toFixed(2)} s (${(dump.wallMs / fulls.at(-1)!.wallMs).toFixed(2)}x)`,
      );
    }
    const seconds = (runs: number[]) => runs.map((ms) => (ms / 1000).toFixed(2)).join(', ');
    const dump = { wallMs: median(dumps) };
    const backupFull = { ...fulls.at(-1)!, wallMs: median(fulls.map((f) => f.wallMs)) };
    add({
      tool: 'mariadb-dump | zstd -1',
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
      note: `${(backupFull.rawBytes / 1e6).toFixed(1)} MB dump${rounds > 1 ? `; median of ${seconds(fulls.map((f) => f.wallMs))} s` : ''}`,
    });

    const streamFile = join(work, 'reference', 'server.xbstream.zst');
    const stream = await measure(
      'bash',
      [
        '-c',
        'set -o pipefail; mariadb-backup $CLIENT --backup --stream=xbstream --target-dir="$TMPD" 2>/dev/null | zstd -1 -q -f -o "$OUT"',
      ],
      { env: { ...env, OUT: streamFile, TMPD: join(work, 'reference', 'stream-tmp') } },
    );
    add({
      tool: 'mariadb-backup --stream | zstd -1',
      phase: 'snapshot full',
      wallMs: stream.wallMs,
      bytes: await apparentBytes(streamFile),
      dataBytes: serverBytes,
    });
    const snapshotFull = await oursSnapshot.backup('full');
    add({
      tool: 'ours: snapshot, encrypted',
      phase: 'snapshot full',
      wallMs: snapshotFull.wallMs,
      bytes: snapshotFull.added,
      dataBytes: serverBytes,
      note: `${(snapshotFull.rawBytes / 1e6).toFixed(1)} MB of xbstream`,
    });
    // The engine's own incremental needs a base on disk: taken now, like our snapshot full.
    const engineBase = join(work, 'reference', 'engine-base');
    execFileSync('mariadb-backup', [...client, '--backup', `--target-dir=${engineBase}`], { stdio: 'ignore' });

    t = performance.now();
    await db.sql(changeSql(orders), DB);
    await flushDirtyPages(db);
    log(`change: 1% of the orders updated, 1% added, flushed, in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    const changedDbBytes = await sizeOf();

    const backupIncr = await oursBackup.backup('incr');
    add({
      tool: 'ours: backup, encrypted',
      phase: 'backup incr',
      wallMs: backupIncr.wallMs,
      bytes: backupIncr.added,
      dataBytes: changedDbBytes,
    });
    const snapshotIncr = await oursSnapshot.backup('incr');
    add({
      tool: 'ours: snapshot, encrypted',
      phase: 'snapshot incr',
      wallMs: snapshotIncr.wallMs,
      bytes: snapshotIncr.added,
      dataBytes: serverBytes,
    });
    const engineIncrFile = join(work, 'reference', 'engine-incr.xbstream.zst');
    const engineIncr = await measure(
      'bash',
      [
        '-c',
        'set -o pipefail; mariadb-backup $CLIENT --backup --incremental-basedir="$BASE" --stream=xbstream --target-dir="$TMPD" 2>/dev/null | zstd -1 -q -f -o "$OUT"',
      ],
      { env: { ...env, BASE: engineBase, OUT: engineIncrFile, TMPD: join(work, 'reference', 'incr-tmp') } },
    );
    add({
      tool: 'mariadb-backup --incremental | zstd -1',
      phase: 'snapshot incr',
      wallMs: engineIncr.wallMs,
      bytes: await apparentBytes(engineIncrFile),
      dataBytes: serverBytes,
    });

    // Restores of our incrementals, checked by the server: CHECKSUM TABLE of the copy against the database.
    const expected = await checksums(db, DB);
    const restored = await oursBackup.restore(`${DB}_restored`);
    const same = (await checksums(db, `${DB}_restored`)) === expected;
    failed ||= !same;
    add({
      tool: 'ours: backup, encrypted',
      phase: 'restore',
      wallMs: restored.wallMs,
      bytes: restored.bytes,
      dataBytes: changedDbBytes,
      note: same ? 'verified: same CHECKSUM TABLE' : 'VERIFY FAILED',
    });
    await db.sql(`DROP DATABASE ${DB}_restored`);
    const datadir = await oursSnapshot.restore('bench-datadir');
    const copy = await startMariadb({ dataDir: datadir.location });
    const sameCopy = await checksums(copy, DB).then((c) => c === expected);
    await copy.stop();
    failed ||= !sameCopy;
    add({
      tool: 'ours: snapshot, encrypted',
      phase: 'restore',
      wallMs: datadir.wallMs,
      bytes: datadir.bytes,
      dataBytes: serverBytes,
      note: sameCopy ? 'prepared; mariadbd started on it: same CHECKSUM TABLE' : 'VERIFY FAILED',
    });
    rmSync(datadir.location, { recursive: true, force: true });
    const peakRssBytes = process.resourceUsage().maxRSS * 1024;

    const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
    const targets: [string, string, string][] = [
      ['logical backup throughput vs mariadb-dump | zstd -1', ratio(dump.wallMs, backupFull.wallMs), '>= 0.9x'],
      [
        'logical stored bytes vs mariadb-dump | zstd -1',
        ratio(backupFull.added, await apparentBytes(dumpFile)),
        'report',
      ],
      [
        'snapshot throughput vs mariadb-backup --stream | zstd -1',
        ratio(stream.wallMs, snapshotFull.wallMs),
        '>= 0.9x',
      ],
      [
        'snapshot stored bytes vs mariadb-backup --stream | zstd -1',
        ratio(snapshotFull.added, await apparentBytes(streamFile)),
        'report',
      ],
      [
        "snapshot incremental bytes vs the engine's own incremental",
        ratio(snapshotIncr.added, await apparentBytes(engineIncrFile)),
        '< 1x',
      ],
      ['logical incremental bytes vs its full', ratio(backupIncr.added, backupFull.added), 'report'],
      ['peak memory of our process (MB)', (peakRssBytes / 1e6).toFixed(0), '< 300'],
    ];
    log('');
    log(
      table(
        ['phase', 'tool', 'time s', 'MB/s', 'MB', 'notes'],
        rows.map((r) => [
          r.phase,
          r.tool,
          (r.wallMs / 1000).toFixed(2),
          (r.dataBytes / 1e6 / (r.wallMs / 1000)).toFixed(1),
          (r.bytes / 1e6).toFixed(1),
          r.note ?? '',
        ]),
      ),
    );
    log('');
    log(table(['ratio', 'value', 'target'], targets));
    const resultsFile = join(benchDir, `mariadb-results-${stamp}.json`);
    writeFileSync(
      resultsFile,
      `${JSON.stringify(
        {
          startedAt: startedAt.toISOString(),
          orders,
          rounds,
          machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryBytes: totalmem() },
          versions,
          encrypted: true,
          data: { dbBytes, serverBytes, changedDbBytes },
          rows,
          peakRssBytes,
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
    await db.stop();
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
