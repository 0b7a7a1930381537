// A real backupd agent for end-to-end tests: the compiled `backupd` (dist/, built by `npm test` before
// vitest runs) in its own process with its own config, data dir and port, driven by the compiled
// `backupctl`. Stopped by PID in teardown, also when a test crashes (the process harness's exit hook).

import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from './process.js';

const ROOT = join(import.meta.dirname, '..', '..');
export const BACKUPD = join(ROOT, 'dist', 'src', 'cli', 'backupd.js');
export const BACKUPCTL = join(ROOT, 'dist', 'src', 'cli', 'backupctl.js');

function requireBuild(): void {
  if (!existsSync(BACKUPD) || !existsSync(BACKUPCTL)) {
    throw new Error(`the compiled agent is missing (${BACKUPD}): run "npm run build" first (npm test does it)`);
  }
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

export interface AgentProcess {
  /** The process id, as the kernel gave it. */
  pid: number;
  port: number;
  address: string;
  dataDir: string;
  logs: () => string;
  /** Send a signal (SIGSTOP / SIGCONT to pause and resume the node); no-op once it has exited. */
  signal(signal: NodeJS.Signals): void;
  /** SIGTERM and wait for the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL: no chance to clean up. */
  kill(): Promise<void>;
}

export interface AgentSetup {
  dir: string;
  node?: string;
  sources: { name: string; engine: string; config: unknown }[];
  token?: string;
  extra?: Record<string, unknown>;
  /** Keep the same port over restarts. */
  port?: number;
}

/** Write the config and start the agent; resolves once it listens. */
export async function startAgent(setup: AgentSetup): Promise<AgentProcess> {
  requireBuild();
  const port = setup.port ?? (await freePort());
  const dataDir = join(setup.dir, 'agent-data');
  mkdirSync(dataDir, { recursive: true });
  const configFile = join(setup.dir, 'backupd.json');
  writeFileSync(
    configFile,
    JSON.stringify({
      node: setup.node ?? 'node1',
      cluster: 'e2e',
      listen: `127.0.0.1:${port}`,
      dataDir,
      sources: setup.sources,
      logLevel: 'info',
      discoverySeconds: 1,
      ...(setup.token ? { auth: { token: setup.token } } : {}),
      ...setup.extra,
    }),
  );
  const child = spawn(process.execPath, [BACKUPD, '--config', configFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, BACKUPD_TOKEN: '' },
  });
  live.add(child);
  let output = '';
  child.stdout.on('data', (d: Buffer) => {
    output += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    output += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  exited.then(() => live.delete(child));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`backupd did not start within 20 s:\n${output}`)), 20_000);
    const check = () => {
      if (output.includes('"msg":"listening"')) {
        clearTimeout(timer);
        child.stdout.off('data', check);
        resolve();
      }
    };
    child.stdout.on('data', check);
    exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`backupd exited with ${code} before listening:\n${output}`));
    });
  });
  return {
    pid: child.pid ?? -1,
    port,
    address: `127.0.0.1:${port}`,
    dataDir,
    logs: () => output,
    signal: (signal) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
    stop: async () => {
      // A paused node would never see the SIGTERM.
      child.kill('SIGCONT');
      child.kill('SIGTERM');
      return exited;
    },
    kill: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

export interface CtlResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON (for --json commands), undefined when it is not JSON. */
  json: unknown;
}

/** Run the compiled backupctl against `address`. */
export async function ctl(address: string, args: string[], env: Record<string, string> = {}): Promise<CtlResult> {
  requireBuild();
  const child = spawn(process.execPath, [BACKUPCTL, '--server', address, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, BACKUPD_TOKEN: '', ...env },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const code = await new Promise<number>((resolve) => child.once('exit', (c) => resolve(c ?? -1)));
  let json: unknown;
  try {
    json = JSON.parse(stdout);
  } catch {
    // Not a --json command, or JSON lines: callers that need those parse stdout themselves.
    json = undefined;
  }
  return { code, stdout, stderr, json };
}

/** Poll `check` until it returns a value (not undefined) or `timeoutMs` passes. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 30_000,
  everyMs = 250,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}
