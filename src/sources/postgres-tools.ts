// Running the PostgreSQL client tools (psql, pg_dump, pg_basebackup, ...) as child processes: where they
// are, how they are started (credentials only in the environment, never a prompt), how they are stopped
// (abort signal, timeout, a consumer that gave up), and how their failures become typed BackupdErrors
// carrying the tool's own message.

import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline as pipeStreams, type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BackupdError, type ErrorCode, messageOf } from '../errors.js';
import { PieceQueue } from './piece-ring.js';
import { type FillFeed, fillStream } from './source.js';
import { openToolPipe } from './tool-pipe.js';

const DEBIAN_ROOT = '/usr/lib/postgresql';
/** Bytes of a tool's stderr kept for its error message (the end holds the error). */
const STDERR_KEEP = 16 << 10;
/** How long a stopped tool gets between SIGTERM and SIGKILL. */
const KILL_GRACE_MS = 5000;

/**
 * The folder of the client tools: the configured one, else the newest /usr/lib/postgresql/<version>/bin
 * (Debian's layout, where PATH holds only version-switching wrappers), else undefined for PATH.
 */
export function resolveBinDir(configured: string | undefined): string | undefined {
  if (configured !== undefined) return configured;
  let versions: string[];
  try {
    versions = readdirSync(DEBIAN_ROOT);
  } catch {
    return undefined; // no Debian layout here: the tools are found on PATH
  }
  const newest = versions
    .filter((v) => /^\d+(\.\d+)?$/.test(v) && existsSync(join(DEBIAN_ROOT, v, 'bin', 'psql')))
    .sort((a, b) => Number(b) - Number(a))[0];
  return newest === undefined ? undefined : join(DEBIAN_ROOT, newest, 'bin');
}

export interface RunOptions {
  /** Bytes for stdin: a string, or a stream piped in (its errors win over the tool's). */
  input?: string | Readable;
  /** Collect stdout (default) or discard it. */
  stdout?: 'collect' | 'ignore';
  signal?: AbortSignal;
  /** Kill the tool and throw TIMEOUT after this long; none by default. */
  timeoutMs?: number;
  /** Extra environment for this run. */
  env?: NodeJS.ProcessEnv;
  /** What the run does, for messages: 'listing databases'. */
  what: string;
  /** Also see stdout as it comes (a session that answers before its input ends: fingerprint-postgres.ts). */
  onStdout?: (chunk: Buffer) => void;
}

export interface ToolStream {
  /** The tool's stdout; it ends only once the tool exited 0, else it fails with the mapped error. */
  stream: Readable;
  /** The same, written into the caller's regions (SourceFile.fill). */
  fill: (memory: SharedArrayBuffer, capacity: number) => FillFeed;
  /** Stop the tool (and everything it started). */
  kill(): void;
}

/**
 * How one engine's client tools fail: the product named in messages, and how their stderr reads. The
 * PostgreSQL tools' by default; another engine's tools (MariaDB's) run the same way with their own.
 */
export interface ToolDialect {
  /** 'PostgreSQL', 'MariaDB': named in 'client tool ... not found'. */
  product: string;
  /** How to get the tools, for that message: 'install the PostgreSQL client tools'. */
  install: string;
  classes: ToolErrorClass[];
}

/** One class of a tool's failure: its code when `pattern` matches the tool's stderr. */
export interface ToolErrorClass {
  code: ErrorCode;
  pattern: RegExp;
  hint?: string;
}

/** The client tools of one source: one folder, one connection environment. */
export class PgTools {
  constructor(
    readonly binDir: string | undefined,
    private readonly env: NodeJS.ProcessEnv,
    readonly dialect: ToolDialect = POSTGRES_DIALECT,
  ) {}

  /** The command for `tool`: its path in binDir, or the bare name for PATH. */
  command(tool: string): string {
    return this.binDir === undefined ? tool : join(this.binDir, tool);
  }

  /** Run a PostgreSQL client tool to completion; see runCommand. */
  run(tool: string, args: string[], options: RunOptions): Promise<string> {
    return runCommand(tool, this.command(tool), args, { ...options, env: { ...this.env, ...options.env } }, this);
  }

  /**
   * Start a client tool with stdin, stdout and stderr piped and this source's connection environment, for a
   * caller that talks to it (a held psql session, postgres-session.ts); the caller stops it.
   */
  spawn(tool: string, args: string[]): ChildProcess {
    return start(this.command(tool), args, this.env, 'pipe');
  }

  /**
   * Start a PostgreSQL client tool whose stdout is the product (pg_dump), when its output is first read.
   * Its stdout is a pipe whose reader thread writes into shared memory (tool-pipe.ts): `fill` writes into
   * the caller's regions (SourceFile.fill), `stream` is copies of regions of its own (fillStream). Read one.
   */
  stream(tool: string, args: string[], options: Omit<RunOptions, 'input' | 'stdout' | 'timeoutMs'>): ToolStream {
    const tools = this;
    let stop: () => void = () => undefined;
    let queue: PieceQueue | undefined;
    let killed = false;
    let pipeOpened = false;
    /** The one run of the tool: its pipe's reader fills the regions given to `into`; yields their lengths. */
    async function* run(into: PieceQueue): AsyncGenerator<number> {
      if (options.signal?.aborted) throw new BackupdError('CANCELLED', `${options.what} cancelled`);
      const pipe = await openToolPipe(into);
      pipeOpened = true;
      let child: ChildProcess;
      try {
        child = start(tools.command(tool), args, { ...tools.env, ...options.env }, 'ignore', pipe.writeFd);
      } finally {
        closeSync(pipe.writeFd); // the child has its own copy: the pipe ends when the child's closes
      }
      stop = stopper(child);
      if (killed) stop();
      const stderr = keepStderr(child);
      const exited = new Promise<BackupdError | undefined>((resolve) => {
        child.once('error', (error) => resolve(spawnError(tool, tools, options.what, error)));
        child.once('close', (code, signal) =>
          resolve(code === 0 ? undefined : toolError(tool, options.what, stderr(), code, signal, tools)),
        );
      });
      let cancelled = false;
      const onAbort = () => {
        cancelled = true;
        stop();
      };
      options.signal?.addEventListener('abort', onAbort, { once: true });
      if (options.signal?.aborted) onAbort(); // aborted while the pipe was being made
      try {
        for (let n = await into.next(); n !== undefined; n = await into.next()) yield n;
        const failure = await exited;
        if (cancelled) throw new BackupdError('CANCELLED', `${options.what} cancelled`);
        if (failure) throw failure;
      } finally {
        options.signal?.removeEventListener('abort', onAbort);
        into.close();
        // A consumer that stops reading (a failed backup) stops the tool too.
        stop();
      }
    }
    const fill = (memory: SharedArrayBuffer, capacity: number): FillFeed => {
      if (queue) throw new BackupdError('INTERNAL', `the output of ${options.what} was read twice`);
      const into = new PieceQueue(memory, capacity);
      queue = into;
      return {
        give: (offset, room) => into.give(offset, room),
        filled: run(into),
        // No reader thread ever started when the pipe was never opened.
        whenIdle: (then) => (pipeOpened ? into.whenIdle(then) : then()),
      };
    };
    return {
      stream: fillStream(fill),
      fill,
      kill: () => {
        killed = true;
        stop();
        queue?.close(); // its reader thread ends even if nobody reads the rest
      },
    };
  }
}

/**
 * Run `command` to completion and return its stdout. Throws a BackupdError: the input stream's own error
 * when the input failed, CANCELLED on abort, TIMEOUT past timeoutMs, else the tool's failure (toolError).
 */
export async function runCommand(
  tool: string,
  command: string,
  args: string[],
  options: RunOptions,
  tools?: PgTools,
): Promise<string> {
  const child = start(command, args, options.env ?? process.env, options.input === undefined ? 'ignore' : 'pipe');
  const stop = stopper(child);
  const stderr = keepStderr(child);
  const stdout: Buffer[] = [];
  if (options.stdout === 'ignore') child.stdout!.resume();
  else {
    child.stdout!.on('data', (b: Buffer) => {
      stdout.push(b);
      options.onStdout?.(b);
    });
  }

  let failure: BackupdError | undefined;
  const fail = (error: BackupdError) => {
    failure ??= error;
    stop();
  };
  const onAbort = () => fail(new BackupdError('CANCELLED', `${options.what} cancelled`));
  if (options.signal?.aborted) onAbort();
  else options.signal?.addEventListener('abort', onAbort, { once: true });
  const timer =
    options.timeoutMs === undefined
      ? undefined
      : setTimeout(
          () =>
            fail(new BackupdError('TIMEOUT', `${options.what}: ${tool} did not finish within ${options.timeoutMs} ms`)),
          options.timeoutMs,
        );

  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
    child.once('error', (error) => resolve({ code: null, signal: null, error }));
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  let fed: Promise<void> = Promise.resolve();
  if (typeof options.input === 'string') {
    child.stdin!.on('error', () => undefined); // EPIPE when the tool exits early: its exit status tells why
    child.stdin!.end(options.input);
  } else if (options.input !== undefined) {
    fed = pipeline(options.input, child.stdin!).catch((error: unknown) => {
      // A tool that stopped reading (it exited, or closed its stdin: EPIPE) is judged by its exit status.
      // Anything else is the input's own failure (a corrupt or truncated backup), the root cause: report it
      // and stop the tool, whatever it does with the input it got.
      if (exited || (error as { code?: string }).code === 'EPIPE') return;
      fail(
        error instanceof BackupdError
          ? error
          : new BackupdError('SOURCE_FAILED', `${options.what}: reading the backup failed: ${messageOf(error)}`, {
              cause: error,
            }),
      );
    });
  }
  try {
    const [result] = await Promise.all([closed, fed]);
    if (failure) throw failure;
    if (result.error) throw spawnError(tool, tools, options.what, result.error, command);
    if (result.code !== 0) throw toolError(tool, options.what, stderr(), result.code, result.signal, tools);
    return Buffer.concat(stdout).toString('utf8');
  } finally {
    if (timer) clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
  }
}

function start(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  stdin: 'ignore' | 'pipe',
  stdout: 'pipe' | number = 'pipe',
): ChildProcess {
  // Its own process group, so stopping it also stops what it forked (pg_basebackup's WAL streamer).
  return spawn(command, args, { env, stdio: [stdin, stdout, 'pipe'], detached: true });
}

/** Stop a child and its process group: SIGTERM, then SIGKILL if it is still there after a grace period. */
function stopper(child: ChildProcess): () => void {
  let stopping = false;
  return () => {
    if (stopping || child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    stopping = true;
    const signalGroup = (signal: NodeJS.Signals) => {
      try {
        process.kill(-child.pid!, signal);
      } catch {
        // the group is gone already: nothing left to stop
      }
    };
    signalGroup('SIGTERM');
    const timer = setTimeout(() => signalGroup('SIGKILL'), KILL_GRACE_MS);
    timer.unref();
    child.once('close', () => clearTimeout(timer));
  };
}

function keepStderr(child: ChildProcess): () => string {
  let kept = '';
  child.stderr!.on('data', (b: Buffer) => {
    kept = (kept + b.toString('utf8')).slice(-STDERR_KEEP);
  });
  return () => kept;
}

function spawnError(
  tool: string,
  tools: PgTools | undefined,
  what: string,
  error: Error,
  command?: string,
): BackupdError {
  const path = command ?? tools?.command(tool) ?? tool;
  if ((error as { code?: string }).code === 'ENOENT') {
    const dialect = tools?.dialect ?? POSTGRES_DIALECT;
    const where =
      tools?.binDir === undefined && !path.includes('/')
        ? `${tool} is not on PATH (${dialect.install}, or set binDir)`
        : `${path} does not exist (check binDir${tools?.binDir ? ` "${tools.binDir}"` : ''})`;
    return new BackupdError('NOT_FOUND', `${what}: ${dialect.product} client tool ${tool} not found: ${where}`, {
      cause: error,
    });
  }
  return new BackupdError('SOURCE_FAILED', `${what}: cannot run ${path}: ${error.message}`, { cause: error });
}

/** How a PostgreSQL tool's stderr reads, most specific first. */
const CLASSES: ToolErrorClass[] = [
  {
    code: 'SOURCE_FAILED',
    pattern: /server version mismatch|incompatible server version|unsupported server version/i,
    hint: 'use client tools at least as new as the server (binDir)',
  },
  {
    code: 'PERMISSION_DENIED',
    pattern:
      /password authentication failed|no password supplied|authentication failed for user|pg_hba\.conf rejects|no pg_hba\.conf entry|FATAL: +role ".*" does not exist|permission denied|must be superuser|must have (REPLICATION|CREATEROLE)|must be owner|must be member of role|must be able to SET ROLE/i,
  },
  { code: 'NOT_FOUND', pattern: /FATAL: +database ".*" does not exist/i },
  {
    code: 'UNAVAILABLE',
    pattern:
      /could not connect to server|Connection refused|No such file or directory\s+Is the server running|timeout expired|the database system is (starting up|shutting down|in recovery mode|not yet accepting connections)|server closed the connection unexpectedly|Network is unreachable|No route to host|could not translate host name|too many clients|remaining connection slots|could not receive data from server/i,
  },
];

const POSTGRES_DIALECT: ToolDialect = {
  product: 'PostgreSQL',
  install: 'install the PostgreSQL client tools',
  classes: CLASSES,
};

/** A database tool (pg_dump, psql, mariadb-dump...) that failed: which, how it ended, from which folder. */
export class ToolError extends BackupdError {
  constructor(
    code: ErrorCode,
    message: string,
    readonly tool: string,
    readonly exitCode: number | null,
    readonly signal: NodeJS.Signals | null,
    readonly binDir?: string,
  ) {
    super(code, message);
    this.name = 'ToolError';
  }
}

/** A failed tool run as a typed error: its class from the tool's stderr, its message the tool's own words. */
export function toolError(
  tool: string,
  what: string,
  stderr: string,
  code: number | null,
  signal: NodeJS.Signals | null,
  tools?: PgTools,
): ToolError {
  const message = cleanStderr(stderr);
  const match = (tools?.dialect ?? POSTGRES_DIALECT).classes.find((c) => c.pattern.test(message));
  const how = signal ? `was stopped by ${signal}` : `exited with status ${code}`;
  const detail = message === '' ? `${tool} ${how}` : message;
  const hint = match?.hint ? ` (${match.hint})` : '';
  return new ToolError(match?.code ?? 'SOURCE_FAILED', `${what}: ${detail}${hint}`, tool, code, signal, tools?.binDir);
}

/** The tool's stderr on one line, its last 2000 characters. */
function cleanStderr(stderr: string): string {
  const text = stderr
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '')
    .join(' ');
  return text.length > 2000 ? `...${text.slice(-2000)}` : text;
}

/** Bytes of a restore file's end kept for `checkedInput`'s check. */
const TAIL_BYTES = 256;

/**
 * A restore file's bytes on their way into a tool, checked on the way: the stream fails (so the tool is
 * stopped before it sees the end of its input) when fewer or more bytes arrive than the manifest
 * recorded, or when `checkEnd` finds the last bytes wrong (a dump without its end marker).
 */
export function checkedInput(
  file: { name: string; size: number; stream: Readable },
  checkEnd?: (tail: Buffer) => string | undefined,
): Readable {
  let seen = 0;
  let tail: Buffer = Buffer.alloc(0);
  const checked = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      seen += chunk.length;
      tail =
        chunk.length >= TAIL_BYTES ? chunk.subarray(-TAIL_BYTES) : Buffer.concat([tail, chunk]).subarray(-TAIL_BYTES);
      callback(null, chunk);
    },
    flush(callback) {
      if (seen !== file.size) {
        callback(new BackupdError('SOURCE_FAILED', `${file.name} ended after ${seen} of its ${file.size} bytes`));
        return;
      }
      const problem = checkEnd?.(tail);
      callback(problem === undefined ? null : new BackupdError('SOURCE_FAILED', `${file.name} ${problem}`));
    },
  });
  // A failing source stream (a corrupt chunk) fails `checked` with the same error.
  pipeStreams(file.stream, checked, () => undefined);
  return checked;
}
