// The reference tools our engine is compared with, run exactly as an operator would:
// - restic (Debian package) on a consistent copy of the database made with `sqlite3 .backup`, since
//   restic reads files and a live SQLite file is not a consistent backup;
// - the plain baseline: `sqlite3 .backup` then `zstd -1` of that file.
// The `.backup` step is measured on its own and counted in each tool's total.

import { mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { apparentBytes, type Measurement, measure } from './measure.js';

/** One measured step, without the captured output. */
export type Step = Omit<Measurement, 'stdout' | 'stderr'>;

export function stepOf(m: Measurement): Step {
  const { stdout: _stdout, stderr: _stderr, ...step } = m;
  return step;
}

/** `sqlite3 <db> ".backup <file>"`: a consistent copy through SQLite's online backup API. */
export async function sqliteBackup(dbPath: string, file: string): Promise<Step> {
  rmSync(file, { force: true });
  return stepOf(await measure('sqlite3', [dbPath, `.backup '${file.replace(/'/g, "''")}'`]));
}

export interface ResticBackup {
  /** The `sqlite3 .backup` that made the file restic reads. */
  copy: Step;
  /** `restic backup` of that file. */
  backup: Step;
  /** Bytes this snapshot added to the repository (apparent size of the repository, after minus before). */
  addedBytes: number;
  /** Apparent size of the whole repository afterwards. */
  repoBytes: number;
  /** restic's own summary (`--json`), for the record. */
  summary?: Record<string, unknown>;
}

/**
 * `sync <file>`, timed right after the step that wrote `file` (no settling sync before it): the time
 * until that file is on disk. restic and zstd return with what they wrote still in the page cache;
 * our restore returns after fsync, so a like-for-like restore time adds this step to theirs.
 */
export async function flushStep(file: string): Promise<Step> {
  return stepOf(await measure('sync', [file], { noSettle: true }));
}

export interface ResticRestore {
  restore: Step;
  /** flushStep of the restored file. */
  flush: Step;
  /** The restored database file. */
  path: string;
}

/** One restic repository in `dir`, with the SQLite copy it backs up beside it. */
export class Restic {
  readonly repo: string;
  private readonly env: Record<string, string>;
  private readonly snapFile: string;

  constructor(private readonly dir: string) {
    this.repo = join(dir, 'repo');
    this.snapFile = join(dir, 'snap.db');
    this.env = {
      // A benchmark-only password; the repository lives and dies with this run.
      RESTIC_PASSWORD: 'backupd-bench',
      RESTIC_CACHE_DIR: join(dir, 'cache'),
    };
  }

  async init(): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    // Format version 2 is the one with compression (restic's default "auto" mode is used for backups).
    await measure('restic', ['-r', this.repo, 'init', '--repository-version', '2'], { env: this.env });
  }

  /** Copy the database with `.backup`, then `restic backup` the copy (the first call is the full). */
  async backup(dbPath: string): Promise<ResticBackup> {
    const before = await apparentBytes(this.repo);
    const copy = await sqliteBackup(dbPath, this.snapFile);
    // Run from the folder so the snapshot holds "snap.db" under the same path every time, which
    // makes the second snapshot use the first as its parent, as a nightly job would.
    const m = await measure('restic', ['-r', this.repo, 'backup', '--host', 'bench', '--json', 'snap.db'], {
      cwd: this.dir,
      env: this.env,
    });
    const repoBytes = await apparentBytes(this.repo);
    rmSync(this.snapFile, { force: true });
    return { copy, backup: stepOf(m), addedBytes: repoBytes - before, repoBytes, summary: summaryOf(m.stdout) };
  }

  /** `restic restore latest` into `target`; returns where the database file landed. */
  async restore(target: string): Promise<ResticRestore> {
    rmSync(target, { recursive: true, force: true });
    const m = await measure('restic', ['-r', this.repo, 'restore', 'latest', '--target', target], { env: this.env });
    const path = findFile(target, 'snap.db');
    if (!path) throw new Error(`restic restore left no snap.db under ${target}`);
    return { restore: stepOf(m), flush: await flushStep(path), path };
  }
}

export interface BaselineBackup {
  copy: Step;
  compress: Step;
  /** Size of the .zst file. */
  storedBytes: number;
  file: string;
}

/** `sqlite3 .backup` then `zstd -1` (one thread, zstd's default) into `dir`. */
export async function baselineBackup(dbPath: string, dir: string): Promise<BaselineBackup> {
  mkdirSync(dir, { recursive: true });
  const copyFile = join(dir, 'baseline.db');
  const file = `${copyFile}.zst`;
  rmSync(file, { force: true });
  const copy = await sqliteBackup(dbPath, copyFile);
  const compress = stepOf(await measure('zstd', ['-1', '-q', copyFile, '-o', file]));
  rmSync(copyFile, { force: true });
  return { copy, compress, storedBytes: statSync(file).size, file };
}

/** `zstd -d` of the baseline file into `target`, then flushStep of it. */
export async function baselineRestore(file: string, target: string): Promise<Step[]> {
  rmSync(target, { force: true });
  return [stepOf(await measure('zstd', ['-d', '-q', file, '-o', target])), await flushStep(target)];
}

/** The last `"message_type":"summary"` line of `restic backup --json`. */
function summaryOf(stdout: string): Record<string, unknown> | undefined {
  for (const line of stdout.trim().split('\n').reverse()) {
    if (!line.includes('"summary"')) continue;
    try {
      return JSON.parse(line) as Record<string, unknown>;
    } catch {
      return undefined; // the summary is informational; a format change must not fail the run
    }
  }
  return undefined;
}

function findFile(dir: string, name: string): string | undefined {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isFile() && entry.name === name) return path;
    if (entry.isDirectory()) {
      const found = findFile(path, name);
      if (found) return found;
    }
  }
  return undefined;
}
