// The SQLite benchmark (`npm run bench`): in one run, on the same ~1 GiB SQLite database, our backup
// and snapshot types side by side with restic and `sqlite3 .backup | zstd -1`: full backup, then the
// change (1% rows appended, 0.1% updated), then an incremental, then a restore of the latest restore
// point, each restore verified. Prints the tables and the targets; writes .bench/results-*.json.
// Knobs (environment): see docs/BENCHMARKS.md.

import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { DEFAULT_SEED, ensureDataset, type Fingerprint, fingerprint, mutate } from './dataset.js';
import { apparentBytes, measure } from './measure.js';
import { baselineBackup, baselineRestore, Restic, stepOf } from './reference.js';
import {
  type GrowthCheck,
  growthCheck,
  type Phase,
  type PhaseResult,
  phaseOf,
  renderReport,
  seconds,
  type TargetCheck,
  type ToolId,
  type ToolResult,
  targetsFor,
  type WriterWait,
} from './report.js';
import { ensureTools, versionOf } from './tools.js';
import { verifyRestored } from './verify.js';

const HERE = dirname(fileURLToPath(import.meta.url)); // dist/bench
const ROOT = join(HERE, '..', '..');
const OURS = join(HERE, 'ours.js');
const WRITER = join(HERE, 'writer.js');
/** The database's file in the source folder; the sqlite source names a database by its file name. */
const DB_NAME = 'bench.db';
/** A fixed task key: the production path is encrypted, so that is what we measure. */
const BENCH_KEY = 'bench-task-key-5f0c2a9e1d7b4c3a8e6f0d2b9a7c5e31';

type OursType = 'backup' | 'snapshot';
const ALL_TOOLS = ['ours-backup', 'ours-snapshot', 'restic', 'baseline'] as const satisfies readonly ToolId[];

interface Config {
  sizeMb: number;
  seed: number;
  tools: ToolId[];
  growth: boolean;
  /** Full backups per tool; the median counts (BENCH_FULL_RUNS, default 3). */
  fullRuns: number;
  /** Restores per tool; the median counts (BENCH_RESTORE_RUNS, default 3). */
  restoreRuns: number;
  keep: boolean;
  benchDir: string;
}

function readConfig(env: NodeJS.ProcessEnv): Config {
  const sizeMb = Number(env.BENCH_SIZE_MB ?? 1024);
  if (!Number.isInteger(sizeMb) || sizeMb < 4) throw new Error('BENCH_SIZE_MB must be an integer >= 4');
  const seed = Number(env.BENCH_SEED ?? DEFAULT_SEED);
  if (!Number.isInteger(seed)) throw new Error('BENCH_SEED must be an integer');
  const tools = (env.BENCH_TOOLS ?? ALL_TOOLS.join(','))
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '');
  const unknown = tools.filter((t) => !(ALL_TOOLS as readonly string[]).includes(t));
  if (unknown.length > 0)
    throw new Error(`BENCH_TOOLS: unknown ${unknown.join(', ')} (known: ${ALL_TOOLS.join(', ')})`);
  return {
    sizeMb,
    seed,
    tools: tools as ToolId[],
    growth: env.BENCH_GROWTH !== '0',
    fullRuns: Math.max(1, Number(env.BENCH_FULL_RUNS ?? 3)),
    restoreRuns: Math.max(1, Number(env.BENCH_RESTORE_RUNS ?? 3)),
    keep: env.BENCH_KEEP === '1',
    benchDir: env.BENCH_DIR ?? join(ROOT, '.bench'),
  };
}

const log = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

/** Our pipeline in its own process (dist/bench/ours.js), so its memory is its own. */
class Ours {
  readonly repo: string;
  private readonly staging: string;
  private readonly cache: string;
  private readonly temp: string;
  private latest: { chainId: string; backupId: string } | undefined;

  constructor(
    readonly type: OursType,
    dir: string,
    private readonly dbDir: string,
  ) {
    this.repo = join(dir, 'repo');
    this.staging = join(dir, 'staging');
    this.cache = join(dir, 'cache');
    this.temp = join(dir, 'temp');
    for (const d of [this.repo, this.staging, this.cache, this.temp]) mkdirSync(d, { recursive: true });
  }

  async backup(level: 'full' | 'incr', dbBytes: number): Promise<PhaseResult> {
    const before = await apparentBytes(this.repo);
    const m = await measure(
      process.execPath,
      [OURS, 'backup', ...this.common(), '--staging', this.staging, '--type', this.type, '--level', level],
      { env: { BENCH_KEY } },
    );
    const result = lastJson(m.stdout) as { chainId?: string; backupId?: string } | undefined;
    if (!result?.chainId || !result.backupId) throw new Error(`ours.js printed no BackupResult:\n${m.stdout}`);
    this.latest = { chainId: result.chainId, backupId: result.backupId };
    const added = (await apparentBytes(this.repo)) - before;
    return phaseOf([stepOf(m)], added, dbBytes, result);
  }

  /** Restore the latest restore point into a new database; returns the phase and the restored file. */
  async restore(target: string, dbBytes: number): Promise<{ phase: PhaseResult; path: string }> {
    if (!this.latest) throw new Error('nothing to restore: no backup succeeded');
    const m = await measure(
      process.execPath,
      [
        OURS,
        'restore',
        ...this.common(),
        '--cache',
        this.cache,
        '--chain',
        this.latest.chainId,
        '--backup',
        this.latest.backupId,
        '--target',
        target,
      ],
      { env: { BENCH_KEY } },
    );
    const result = lastJson(m.stdout) as { location?: unknown } | undefined;
    if (typeof result?.location !== 'string') throw new Error(`ours.js printed no restore location:\n${m.stdout}`);
    const path = result.location;
    return { phase: phaseOf([stepOf(m)], statSync(path).size, dbBytes, result), path };
  }

  private common(): string[] {
    return ['--db-dir', this.dbDir, '--db', DB_NAME, '--repo', this.repo, '--temp', this.temp];
  }
}

/** A full backup of `dbDir`'s database by a pipeline of its own in `dir`, removed after: only the figures stay. */
async function throwawayFull(type: OursType, dir: string, dbDir: string, dbBytes: number): Promise<PhaseResult> {
  try {
    return await new Ours(type, dir, dbDir).backup('full', dbBytes);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<number> {
  const config = readConfig(process.env);
  const startedAt = new Date();
  const stamp = startedAt.toISOString().replace(/[-:]/g, '').replace(/\..*$/, 'Z');
  const want = (id: ToolId): boolean => config.tools.includes(id);
  ensureTools(['sqlite3', 'zstd', '/usr/bin/time', ...(want('restic') ? ['restic'] : [])], log);

  const versions = {
    node: process.version,
    sqliteLibrary: sqliteVersion(),
    sqlite3: versionOf('sqlite3', ['--version']),
    zstd: versionOf('zstd', ['--version']),
    restic: want('restic') ? versionOf('restic', ['version']) : undefined,
  };
  log(`backupd SQLite benchmark: ${config.sizeMb} MiB dataset, seed ${config.seed}, tools ${config.tools.join(', ')}`);
  log(`machine: ${cpus().length} cpus (${cpus()[0]?.model ?? '?'}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM`);
  log(`versions: ${JSON.stringify(versions)}`);

  log(`dataset: ${config.sizeMb} MiB (cached under ${config.benchDir}) ...`);
  const dataset = ensureDataset(config.benchDir, config.sizeMb, config.seed);
  log(
    `dataset: ${dataset.path}, ${(dataset.bytes / 1e6).toFixed(1)} MB, ` +
      (dataset.generatedMs === undefined ? 'cached' : `generated in ${(dataset.generatedMs / 1000).toFixed(1)} s`) +
      `; rows ${JSON.stringify(dataset.rows)}`,
  );

  const work = join(config.benchDir, `run-${stamp}`);
  const dbDir = join(work, 'db');
  mkdirSync(dbDir, { recursive: true });
  const dbPath = join(dbDir, DB_NAME);
  copyFileSync(dataset.path, dbPath);
  const fullDbBytes = statSync(dbPath).size;
  const before = fingerprint(dbPath);

  const tools: ToolResult[] = [];
  const add = (id: ToolId, label: string): ToolResult => {
    const tool: ToolResult = { id, label, phases: {}, errors: [] };
    if (want(id)) tools.push(tool);
    return tool;
  };
  const oursBackup = add('ours-backup', 'ours: backup (logical), encrypted');
  const oursSnapshot = add('ours-snapshot', 'ours: snapshot (raw), encrypted');
  const restic = add('restic', `restic ${versions.restic?.split(' ')[1] ?? '?'} on a .backup copy`);
  const baseline = add('baseline', 'baseline: sqlite3 .backup + zstd -1');
  const ours = new Map<ToolResult, Ours>([
    [oursBackup, new Ours('backup', join(work, 'ours-backup'), dbDir)],
    [oursSnapshot, new Ours('snapshot', join(work, 'ours-snapshot'), dbDir)],
  ]);
  const resticRepo = new Restic(join(work, 'restic'));
  let baselineFile: string | undefined;

  /** Run one phase of one tool; a failure is recorded and the tool's later phases are skipped. */
  const run = async (tool: ToolResult, phase: Phase, body: () => Promise<PhaseResult>): Promise<void> => {
    if (!want(tool.id) || tool.errors.length > 0) return;
    log(`[${phase}] ${tool.label} ...`);
    try {
      const result = await body();
      tool.phases[phase] = result;
      const verdict = result.verification ? (result.verification.ok ? ', verified ok' : ', VERIFY FAILED') : '';
      log(
        `[${phase}] ${tool.label}: ${(result.wallMs / 1000).toFixed(2)} s, ${(result.bytes / 1e6).toFixed(1)} MB, ` +
          `peak ${(result.peakRssBytes / 1e6).toFixed(0)} MB${verdict}`,
      );
      if (result.verification && !result.verification.ok) {
        log(`  ${result.verification.problems.join('\n  ')}`);
      }
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      tool.errors.push({ phase, message });
      log(`[${phase}] ${tool.label}: FAILED\n  ${message.split('\n').join('\n  ')}`);
    }
  };
  const verified = (phase: PhaseResult, path: string, expected: Fingerprint): PhaseResult => {
    phase.verification = verifyRestored(path, expected);
    return phase;
  };
  /**
   * A phase timed `runs` times, every tool alike: the same full backup took 4.1 s in one run and 7.1 s in
   * the next on these VMs, and a fresh 1 GiB file takes 0.3 to 1.4 s to write, so one run cannot tell a
   * 1.5x target from the machine's mood. The phase is the run with the median time, with the largest peak
   * of all runs and every run verified. `body(i)` is the i-th run (0 first).
   */
  const repeated = (runs: number, body: (i: number) => Promise<PhaseResult>) => async (): Promise<PhaseResult> => {
    const results: PhaseResult[] = [];
    for (let i = 0; i < runs; i++) results.push(await body(i));
    const median = [...results].sort((a, b) => a.wallMs - b.wallMs)[Math.floor(results.length / 2)]!;
    const failed = results.find((r) => r.verification && !r.verification.ok);
    const times = results.map((r) => (r.wallMs / 1000).toFixed(2)).join(', ');
    return {
      ...median,
      peakRssBytes: Math.max(...results.map((r) => r.peakRssBytes)),
      verification: failed?.verification ?? median.verification,
      note: [median.note, results.length > 1 ? `median of ${times} s` : undefined].filter(Boolean).join('; '),
    };
  };

  // Full backups, all of the same unchanged database. The first run of each tool makes the repository the
  // incremental builds on; the others go to repositories of their own, removed after.
  for (const [tool, runner] of ours) {
    await run(
      tool,
      'full',
      repeated(config.fullRuns, async (i) => {
        if (i === 0) return runner.backup('full', fullDbBytes);
        return throwawayFull(runner.type, join(work, `ours-${runner.type}-again-${i}`), dbDir, fullDbBytes);
      }),
    );
  }
  // How long a concurrent writer waits on our reads: one more full of each type, with a writer committing
  // beside it (not timed with the others: the writer shares the machine).
  for (const [tool, runner] of ours) {
    if (!want(tool.id) || tool.errors.length > 0) continue;
    try {
      tool.writerWait = await withWriter(dbPath, () =>
        throwawayFull(runner.type, join(work, `ours-${runner.type}-writer`), dbDir, fullDbBytes),
      );
      log(
        `[writer] ${tool.label}: ${tool.writerWait.transactions} transactions during a ` +
          `${seconds(tool.writerWait.backupMs)} s full, longest wait ${seconds(tool.writerWait.longestWaitMs)} s`,
      );
    } catch (error) {
      tool.errors.push({ phase: 'writer', message: error instanceof Error ? error.message : String(error) });
      log(`[writer] ${tool.label}: FAILED: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  await run(
    restic,
    'full',
    repeated(config.fullRuns, async (i) => {
      const dir = join(work, `restic-again-${i}`);
      const repo = i === 0 ? resticRepo : new Restic(dir);
      try {
        await repo.init();
        const r = await repo.backup(dbPath);
        return phaseOf([r.copy, r.backup], r.repoBytes, fullDbBytes, r.summary);
      } finally {
        if (i > 0) rmSync(dir, { recursive: true, force: true });
      }
    }),
  );
  await run(
    baseline,
    'full',
    repeated(config.fullRuns, async () => {
      const b = await baselineBackup(dbPath, join(work, 'baseline'));
      baselineFile = b.file;
      return phaseOf([b.copy, b.compress], b.storedBytes, fullDbBytes);
    }),
  );

  // The change, then the incrementals (the baseline has none: it would store the whole file again).
  const mutation = mutate(dbPath, config.seed + 1);
  const after = fingerprint(dbPath);
  const changedDbBytes = statSync(dbPath).size;
  log(
    `mutate: appended ${JSON.stringify(mutation.appended)}, updated ${JSON.stringify(mutation.updated)} ` +
      `in ${(mutation.durationMs / 1000).toFixed(1)} s; database now ${(changedDbBytes / 1e6).toFixed(1)} MB`,
  );
  for (const [tool, runner] of ours) await run(tool, 'incr', () => runner.backup('incr', changedDbBytes));
  await run(restic, 'incr', async () => {
    const r = await resticRepo.backup(dbPath);
    return phaseOf([r.copy, r.backup], r.addedBytes, changedDbBytes, r.summary);
  });

  // Restores of the latest restore point, each verified against the database it came from.
  for (const [tool, runner] of ours) {
    await run(
      tool,
      'restore',
      repeated(config.restoreRuns, async () => {
        const { phase, path } = await runner.restore(`restored-${runner.type}`, changedDbBytes);
        try {
          return verified(phase, path, after);
        } finally {
          removeDb(path);
        }
      }),
    );
  }
  await run(
    restic,
    'restore',
    repeated(config.restoreRuns, async () => {
      const target = join(work, 'restic-restore');
      const r = await resticRepo.restore(target);
      try {
        return verified(phaseOf([r.restore, r.flush], statSync(r.path).size, changedDbBytes), r.path, after);
      } finally {
        rmSync(target, { recursive: true, force: true });
      }
    }),
  );
  await run(
    baseline,
    'restore',
    repeated(config.restoreRuns, async () => {
      if (!baselineFile) throw new Error('no baseline backup');
      const target = join(work, 'baseline', 'restored.db');
      const steps = await baselineRestore(baselineFile, target);
      try {
        // The baseline's only backup is of the database before the change.
        const phase = phaseOf(steps, statSync(target).size, fullDbBytes);
        phase.note = 'its only backup: the full, before the change';
        return verified(phase, target, before);
      } finally {
        rmSync(target, { force: true });
      }
    }),
  );

  // Memory growth: our full backup of a database a quarter the size, against the run above.
  const growth: GrowthCheck[] = [];
  if (config.growth && (want('ours-backup') || want('ours-snapshot'))) {
    const smallMb = Math.max(4, Math.round(config.sizeMb / 4));
    const small = ensureDataset(config.benchDir, smallMb, config.seed);
    log(
      `growth check: ${smallMb} MiB dataset ` +
        (small.generatedMs === undefined ? '(cached)' : `(generated in ${(small.generatedMs / 1000).toFixed(1)} s)`),
    );
    const smallDbDir = join(work, 'small-db');
    mkdirSync(smallDbDir, { recursive: true });
    copyFileSync(small.path, join(smallDbDir, DB_NAME));
    for (const [tool, runner] of ours) {
      if (!want(tool.id)) continue;
      let smallPeak: GrowthCheck['small'];
      try {
        // As many runs as the full above, whose peak is the largest of its runs: like against like.
        const phase = await repeated(config.fullRuns, (i) =>
          throwawayFull(runner.type, join(work, `small-${runner.type}-${i}`), smallDbDir, small.bytes),
        )();
        smallPeak = { dbBytes: small.bytes, peakRssBytes: phase.peakRssBytes };
        log(`growth check: ${tool.label} at ${smallMb} MiB: peak ${(phase.peakRssBytes / 1e6).toFixed(0)} MB`);
      } catch (error) {
        tool.errors.push({ phase: 'growth', message: error instanceof Error ? error.message : String(error) });
        log(`growth check: ${tool.label}: FAILED: ${error instanceof Error ? error.message : String(error)}`);
      }
      const full = tool.phases.full;
      growth.push(
        growthCheck(tool.id, smallPeak, full ? { dbBytes: full.dbBytes, peakRssBytes: full.peakRssBytes } : undefined),
      );
    }
  }

  const targets = new Map<ToolId, TargetCheck[]>();
  for (const tool of [oursBackup, oursSnapshot]) {
    if (want(tool.id)) targets.set(tool.id, targetsFor(tool, want('restic') ? restic : undefined));
  }
  log(renderReport(tools, targets, growth));

  const resultsFile = join(config.benchDir, `results-${stamp}.json`);
  writeFileSync(
    resultsFile,
    `${JSON.stringify(
      {
        startedAt: startedAt.toISOString(),
        config: { ...config, benchDir: undefined },
        machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryBytes: totalmem() },
        versions,
        encrypted: true,
        dataset: { ...dataset, path: undefined, bytes: fullDbBytes, bytesAfterMutate: changedDbBytes },
        mutation,
        tools,
        targets: Object.fromEntries(targets),
        growth,
      },
      null,
      2,
    )}\n`,
  );
  log(`\nresults: ${resultsFile}`);
  if (config.keep) log(`work folder kept: ${work}`);
  else rmSync(work, { recursive: true, force: true });

  const failed =
    tools.some((t) => t.errors.length > 0) ||
    tools.some((t) => Object.values(t.phases).some((p) => p.verification && !p.verification.ok));
  return failed ? 1 : 0;
}

/** Runs `backup` while bench/writer.ts commits beside it; the writer's waits and the backup's time. */
async function withWriter(dbPath: string, backup: () => Promise<PhaseResult>): Promise<WriterWait> {
  const child = spawn(process.execPath, [WRITER, dbPath, '20'], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (data: Buffer) => {
    out += data.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  try {
    await new Promise<void>((resolve, reject) => {
      const onData = () => {
        if (out.includes('ready')) resolve();
      };
      child.stdout.on('data', onData);
      child.once('exit', (code) => reject(new Error(`the writer exited before its first commit (${code})`)));
    });
    const phase = await backup();
    child.stdin.end();
    const code = await exited;
    const result = lastJson(out) as Omit<WriterWait, 'backupMs'> | undefined;
    if (code !== 0 || !result) throw new Error(`the writer failed (${code}): ${out}`);
    return { ...result, backupMs: phase.wallMs };
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
}

/** The last line of `stdout` that parses as JSON. */
function lastJson(stdout: string): unknown {
  for (const line of stdout.trim().split('\n').reverse()) {
    try {
      return JSON.parse(line) as unknown;
    } catch {
      // a log line, not the result: keep looking
    }
  }
  return undefined;
}

/** The SQLite library version better-sqlite3 (and so our pipeline) links. */
function sqliteVersion(): string | undefined {
  const db = new Database(':memory:');
  try {
    return db.prepare<[], string>('SELECT sqlite_version()').pluck().get();
  } finally {
    db.close();
  }
}

function removeDb(path: string): void {
  for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(`${path}${suffix}`, { force: true });
}

process.exitCode = await main();
