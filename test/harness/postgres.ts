// Real PostgreSQL servers for the tests: initdb into a temp folder, the server started on a free port of
// 127.0.0.1 with its socket in that folder, stopped by its PID in teardown (and by process.ts's exit
// handler and watchdog when a test worker dies). The server binaries come from the newest
// /usr/lib/postgresql/<version>/bin (on Debian they are not on PATH). As root (the project's machines),
// the server runs as the `postgres` OS user: PostgreSQL refuses to run as root.

import { execFile } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, type ServerProcess, startProcess, tempDir } from './process.js';

const run = promisify(execFile);
const DEBIAN_ROOT = '/usr/lib/postgresql';
const INSTALL = 'Install PostgreSQL: apt-get install -y postgresql (the tests need its server binaries).';
const SERVER_TOOLS = ['initdb', 'postgres', 'pg_isready', 'psql', 'pg_dump', 'pg_basebackup', 'pgbench'];

/** The folder of the newest installed PostgreSQL's binaries; throws naming what is missing. */
export function postgresBinDir(): string {
  const versions = existsSync(DEBIAN_ROOT)
    ? readdirSync(DEBIAN_ROOT)
        .filter((v) => /^\d+$/.test(v))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  const dir = versions.map((v) => join(DEBIAN_ROOT, v, 'bin')).find((d) => existsSync(join(d, 'initdb')));
  if (!dir) throw new Error(`PostgreSQL's initdb was not found under ${DEBIAN_ROOT}/<version>/bin. ${INSTALL}`);
  const missing = SERVER_TOOLS.filter((tool) => !existsSync(join(dir, tool)));
  if (missing.length > 0) throw new Error(`${dir} lacks ${missing.join(', ')}. ${INSTALL}`);
  return dir;
}

/** The OS user the server runs as: ourselves, or `postgres` when we are root. */
async function serverUser(): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  try {
    const uid = Number((await run('id', ['-u', 'postgres'])).stdout.trim());
    const gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim());
    return { uid, gid };
  } catch {
    throw new Error(`running as root, and there is no "postgres" OS user to run the server as. ${INSTALL}`);
  }
}

export interface PostgresServer {
  host: '127.0.0.1';
  port: number;
  user: 'postgres';
  binDir: string;
  dataDir: string;
  /** A folder of this server's temp dir, for the test's own files (removed with the server). */
  dir: string;
  pid: number;
  /** A postgres source config for this server (trust auth as user postgres), plus `extra`. */
  sourceConfig(extra?: Record<string, unknown>): Record<string, unknown>;
  /** Run SQL with psql as the superuser in `database`; returns stdout (unaligned, tuples only). */
  psql(sql: string, database?: string): Promise<string>;
  /** Run one of the server's binaries (pgbench, ...) against this server as the superuser. */
  tool(name: string, args: string[]): Promise<string>;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** pg_hba.conf lines put before the trust-everything default, e.g. a password rule for one role. */
  hbaFirst?: string[];
  /** Start this existing data directory (a restored snapshot) instead of a fresh initdb. */
  dataDir?: string;
  /** More folders the server must own (a restored snapshot's tablespaces). */
  alsoOwn?: string[];
}

/** Start a PostgreSQL server on a free port; one per test file is the intent (about 1.5 s). */
export async function startPostgres(options: StartOptions = {}): Promise<PostgresServer> {
  const binDir = postgresBinDir();
  const owner = await serverUser();
  const temp = tempDir('postgres');
  let server: ServerProcess | undefined;
  try {
    const own = async (path: string) => {
      if (owner) await run('chown', ['-R', `${owner.uid}:${owner.gid}`, path]);
    };
    await own(temp.path);
    const asServer = owner ? { uid: owner.uid, gid: owner.gid } : {};
    let dataDir = options.dataDir;
    if (dataDir === undefined) {
      dataDir = join(temp.path, 'data');
      await run(join(binDir, 'initdb'), ['-D', dataDir, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8'], {
        ...asServer,
        env: { ...process.env, LC_ALL: 'C.UTF-8' },
      }).catch((error: { stderr?: string; message: string }) => {
        throw new Error(`initdb failed: ${error.stderr ?? error.message}. ${INSTALL}`);
      });
      if (options.hbaFirst) {
        const hba = join(dataDir, 'pg_hba.conf');
        writeFileSync(hba, `${options.hbaFirst.join('\n')}\n${readFileSync(hba, 'utf8')}`);
      }
    } else {
      chmodSync(dataDir, 0o700);
      await own(dataDir);
    }
    for (const path of options.alsoOwn ?? []) await own(path);
    const port = await freePort();
    const postgresArgs = [
      '-D',
      dataDir,
      '-p',
      String(port),
      '-k',
      temp.path,
      '-c',
      'listen_addresses=127.0.0.1',
      // Test data needs no durability across an OS crash.
      '-c',
      'fsync=off',
      '-c',
      'synchronous_commit=off',
      '-c',
      'max_connections=40',
      '-c',
      'shared_buffers=32MB',
    ];
    const postgres = join(binDir, 'postgres');
    server = await startProcess({
      what: `PostgreSQL (${postgres})`,
      install: INSTALL,
      // setpriv execs the server in place, so the PID startProcess tracks is the postmaster's own.
      command: owner ? 'setpriv' : postgres,
      args: owner
        ? [`--reuid=${owner.uid}`, `--regid=${owner.gid}`, '--init-groups', postgres, ...postgresArgs]
        : postgresArgs,
      port,
      env: { LC_ALL: 'C.UTF-8' },
      ready: async () => {
        await run(join(binDir, 'pg_isready'), ['-q', '-h', '127.0.0.1', '-p', String(port), '-t', '1']);
        return true;
      },
      timeoutMs: 30_000,
    });
    const started = server;
    const clientEnv = { ...process.env, PGHOST: '127.0.0.1', PGPORT: String(port), PGUSER: 'postgres' };
    return {
      host: '127.0.0.1',
      port,
      user: 'postgres',
      binDir,
      dataDir,
      dir: temp.path,
      pid: started.pid,
      sourceConfig: (extra = {}) => ({ host: '127.0.0.1', port, user: 'postgres', binDir, ...extra }),
      psql: async (sql, database = 'postgres') => {
        // SQL on stdin: statements run one by one (CREATE DATABASE cannot run inside -c's one transaction).
        const pending = run(join(binDir, 'psql'), ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', database], {
          env: clientEnv,
          maxBuffer: 256 << 20,
        });
        pending.child.stdin?.end(sql);
        try {
          return (await pending).stdout;
        } catch (error) {
          throw new Error(`psql failed: ${(error as { stderr?: string }).stderr ?? String(error)}\n${sql}`);
        }
      },
      tool: async (name, args) => {
        try {
          const { stdout } = await run(join(binDir, name), args, { env: clientEnv, maxBuffer: 64 << 20 });
          return stdout;
        } catch (error) {
          throw new Error(`${name} failed: ${(error as { stderr?: string }).stderr ?? String(error)}`);
        }
      },
      stop: async () => {
        await stopServer(started);
        temp.remove();
      },
    };
  } catch (error) {
    if (server) await stopServer(server);
    temp.remove();
    throw error;
  }
}

/** A fast shutdown (SIGINT: no waiting for clients), then startProcess's stop for anything left. */
async function stopServer(server: ServerProcess): Promise<void> {
  try {
    process.kill(server.pid, 'SIGINT');
  } catch {
    return; // already gone
  }
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    try {
      process.kill(server.pid, 0);
    } catch {
      break; // exited
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  await server.stop();
}

/** A folder the server may write to (for CREATE TABLESPACE), inside `parent`. */
export async function serverWritableDir(parent: string, name: string): Promise<string> {
  const path = join(parent, name);
  mkdirSync(path, { mode: 0o700 });
  const owner = await serverUser();
  if (owner) chownSync(path, owner.uid, owner.gid);
  return path;
}
