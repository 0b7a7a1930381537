// Starting and stopping real servers for the tests: a free port on 127.0.0.1, a child process stopped
// by its PID in teardown, and two guards against orphans: an exit handler in this process, and a
// watchdog shell that kills the server when this (test worker) process dies without running it.

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A port that was free a moment ago on 127.0.0.1 (the OS picks it; a race with others is unlikely). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

const running = new Set<number>();
const tempDirs = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const pid of running) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone: nothing to clean up
      }
    }
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  });
}

/** A temp folder removed at teardown or, at the latest, when this process exits. */
export function tempDir(label: string): { path: string; remove: () => void } {
  installExitHook();
  const path = mkdtempSync(join(tmpdir(), `backupd-${label}-`));
  tempDirs.add(path);
  return {
    path,
    remove: () => {
      tempDirs.delete(path);
      rmSync(path, { recursive: true, force: true });
    },
  };
}

export interface ServerProcess {
  pid: number;
  port: number;
  /** Stop the server by its PID and wait until it has exited. */
  stop(): Promise<void>;
}

export interface ProcessSpec {
  /** What is started, for error messages ("moto (python3 -m moto.server)"). */
  what: string;
  /** How to get it when it is missing, for error messages. */
  install: string;
  command: string;
  args: string[];
  port: number;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Resolves true once the server answers. */
  ready: () => Promise<boolean>;
  timeoutMs?: number;
}

/** Start a server process and wait until it answers; throws naming the missing piece when it cannot. */
export async function startProcess(spec: ProcessSpec): Promise<ServerProcess> {
  installExitHook();
  const child = spawn(spec.command, spec.args, {
    cwd: spec.cwd,
    env: { ...process.env, ...spec.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<{ code: number | null; signal: string | null; error?: Error }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', (error) => resolve({ code: null, signal: null, error }));
  });
  let gone: { code: number | null; signal: string | null; error?: Error } | undefined;
  void exited.then((result) => {
    gone = result;
    if (child.pid !== undefined) running.delete(child.pid);
  });

  if (child.pid !== undefined) {
    running.add(child.pid);
    startWatchdog(child.pid);
  }
  const deadline = Date.now() + (spec.timeoutMs ?? 20_000);
  while (Date.now() < deadline) {
    if (gone) break;
    if (await spec.ready().catch(() => false)) {
      return { pid: child.pid ?? -1, port: spec.port, stop: () => stopChild(child, exited) };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await stopChild(child, exited);
  const how = gone?.error
    ? `could not be run: ${gone.error.message}`
    : gone
      ? `exited (code ${gone.code}, signal ${gone.signal}) before answering`
      : `did not answer on port ${spec.port} within ${spec.timeoutMs ?? 20_000} ms`;
  throw new Error(`${spec.what} ${how}. ${spec.install}\n--- its output ---\n${output}`);
}

async function stopChild(child: ChildProcess, exited: Promise<unknown>): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}

/** A detached shell that kills `pid` once this process is gone (a crashed or killed test worker). */
function startWatchdog(pid: number): void {
  const script = `while kill -0 ${process.pid} 2>/dev/null && kill -0 ${pid} 2>/dev/null; do sleep 1; done; kill -9 ${pid} 2>/dev/null; exit 0`;
  const dog = spawn('sh', ['-c', script], { detached: true, stdio: 'ignore' });
  dog.on('error', () => undefined); // without sh the exit handler is the only guard; nothing more to do
  dog.unref();
}

/** True when an HTTP GET of `url` gets any answer (any status). */
export async function answersHttp(url: string): Promise<boolean> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(1000) });
    await response.arrayBuffer();
    return true;
  } catch {
    return false; // not listening yet: the caller polls again
  }
}
