// How the benchmark measures one step: run it as a child process, and take its wall time, the peak
// memory of its whole process tree, and the bytes it left in a folder.

import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const GNU_TIME = '/usr/bin/time';

export interface Measurement {
  /** The command line, for the report. */
  command: string;
  wallMs: number;
  /**
   * Peak resident memory of the step: the larger of GNU time's max RSS (the largest single process of
   * the tree, exact) and the largest sum of the tree's RSS seen while polling (covers pipelines).
   */
  peakRssBytes: number;
  /** GNU time's `%M`, when /usr/bin/time is there. */
  timeMaxRssBytes?: number;
  /** Largest sum of VmRSS over the child's process tree, sampled every POLL_MS. */
  polledTreeRssBytes: number;
  stdout: string;
  stderr: string;
}

export interface MeasureOptions {
  cwd?: string;
  /** Added to (and overriding) this process's environment. */
  env?: Record<string, string>;
  /**
   * Skip the `sync` that writes back what earlier steps left dirty before the clock starts: for a step
   * that is itself the write-back of the step before it (see flushStep).
   */
  noSettle?: boolean;
}

const POLL_MS = 50;

/** Run `cmd args` to completion and measure it. Throws, with the end of its stderr, if it exits non-zero. */
export async function measure(cmd: string, args: string[], options: MeasureOptions = {}): Promise<Measurement> {
  const useTime = existsSync(GNU_TIME);
  const timeOut = join(tmpdir(), `bench-time-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`);
  const [file, argv] = useTime ? [GNU_TIME, ['-f', '%M', '-o', timeOut, cmd, ...args]] : [cmd, args];
  const command = [cmd, ...args].map(quoteArg).join(' ');
  // Write back what earlier steps left dirty before the clock starts, so no step pays for another's data
  // (the first restore after the backups waited for gigabytes of other tools' repositories otherwise).
  if (!options.noSettle) execFileSync('sync');

  const started = performance.now();
  const child = spawn(file, argv, {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  child.stdout.on('data', (b: Buffer) => stdout.push(b));
  child.stderr.on('data', (b: Buffer) => stderr.push(b));

  let polledTreeRssBytes = 0;
  const poll = (): void => {
    if (child.pid === undefined) return;
    // With GNU time as the root, its own ~2 MB are not the step's memory.
    const pids = descendants(child.pid, !useTime);
    let sum = 0;
    for (const pid of pids) sum += statusField(pid, 'VmRSS');
    polledTreeRssBytes = Math.max(polledTreeRssBytes, sum);
  };
  const timer = setInterval(poll, POLL_MS);
  setTimeout(poll, 5);

  const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal }));
  }).finally(() => clearInterval(timer));
  const wallMs = performance.now() - started;

  let timeMaxRssBytes: number | undefined;
  if (useTime) {
    const lines = readFileSync(timeOut, 'utf8').trim().split('\n');
    // On a failing command GNU time adds a "Command exited with non-zero status" line before %M.
    const kb = Number(lines.at(-1));
    if (Number.isFinite(kb)) timeMaxRssBytes = kb * 1024;
    rmSync(timeOut, { force: true });
  }
  const out = Buffer.concat(stdout).toString('utf8');
  const err = Buffer.concat(stderr).toString('utf8');
  if (exit.code !== 0) {
    throw new Error(
      `${command} failed (${exit.signal ?? `exit ${exit.code}`}) after ${(wallMs / 1000).toFixed(1)} s:\n${tail(err || out)}`,
    );
  }
  return {
    command,
    wallMs,
    peakRssBytes: Math.max(timeMaxRssBytes ?? 0, polledTreeRssBytes),
    timeMaxRssBytes,
    polledTreeRssBytes,
    stdout: out,
    stderr: err,
  };
}

/** Apparent size of a folder: the sum of its regular files' sizes (like `du -sb`, without directory entries). */
export async function apparentBytes(path: string): Promise<number> {
  const info = await lstat(path).catch((e: unknown) => {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  });
  if (!info) return 0;
  if (info.isFile()) return info.size;
  if (!info.isDirectory()) return 0;
  let total = 0;
  for (const entry of await readdir(path)) total += await apparentBytes(join(path, entry));
  return total;
}

/** `root` (when `includeRoot`) and every process below it, from the parent links in /proc. */
function descendants(root: number, includeRoot: boolean): number[] {
  const children = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return []; // no /proc (not Linux): GNU time's figure is all we have
  }
  for (const name of entries) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    const ppid = parentOf(pid);
    if (ppid === undefined) continue;
    const list = children.get(ppid);
    if (list) list.push(pid);
    else children.set(ppid, [pid]);
  }
  const found: number[] = includeRoot ? [root] : [];
  const queue = [root];
  for (let pid = queue.pop(); pid !== undefined; pid = queue.pop()) {
    for (const child of children.get(pid) ?? []) {
      found.push(child);
      queue.push(child);
    }
  }
  return found;
}

function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so parse after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[1]);
  } catch {
    return undefined; // the process exited between readdir and read: it has no memory to count
  }
}

/** A `kB` field of /proc/<pid>/status in bytes, 0 when the process is gone. */
function statusField(pid: number, field: string): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
    return match?.[1] ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0; // exited while sampling: nothing resident any more
  }
}

function quoteArg(arg: string): string {
  return /^[\w./:=@%+-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

function tail(text: string, lines = 20): string {
  return text.trim().split('\n').slice(-lines).join('\n');
}
