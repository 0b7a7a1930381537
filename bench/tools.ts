// The programs the benchmark runs besides our own engine, and the Debian packages that provide them.
// Missing ones are installed with apt-get when we are root (as on the project's machines), else the
// run stops with the command to install them.

import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** Program -> Debian package. */
const PACKAGES: Record<string, string> = {
  restic: 'restic',
  sqlite3: 'sqlite3',
  zstd: 'zstd',
  '/usr/bin/time': 'time',
  pgbackrest: 'pgbackrest',
};

/** Make sure every program in `tools` can be run; installs the missing packages once. */
export function ensureTools(tools: readonly string[], log: (line: string) => void): void {
  const missing = tools.filter((tool) => !onPath(tool));
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map((tool) => PACKAGES[tool] ?? tool))];
  if (process.getuid?.() !== 0) {
    throw new Error(`missing ${missing.join(', ')}: install them with: sudo apt-get install -y ${packages.join(' ')}`);
  }
  log(`installing ${packages.join(' ')} (apt-get) ...`);
  const install = (): void => {
    execFileSync('apt-get', ['install', '-y', '--no-install-recommends', ...packages], {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  };
  try {
    install();
  } catch {
    // Usually a stale or empty package list on a fresh machine: refresh it once and retry.
    execFileSync('apt-get', ['update'], { stdio: ['ignore', 'ignore', 'inherit'] });
    install();
  }
  const still = tools.filter((tool) => !onPath(tool));
  if (still.length > 0) throw new Error(`still missing after apt-get install: ${still.join(', ')}`);
}

/** First line of `<tool> <versionArgs>`, e.g. "restic 0.14.0 compiled with go1.19.8 on linux/amd64". */
export function versionOf(tool: string, versionArgs: string[]): string {
  try {
    return execFileSync(tool, versionArgs, { encoding: 'utf8' }).trim().split('\n')[0] ?? '';
  } catch (error) {
    return `unknown (${error instanceof Error ? error.message : String(error)})`;
  }
}

function onPath(tool: string): boolean {
  if (tool.includes('/')) return existsSync(tool);
  const dirs = (process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin').split(':');
  return dirs.some((dir) => dir !== '' && existsSync(`${dir}/${tool}`));
}
