// Real MariaDB servers for the tests: mariadb-install-db into a temp folder, mariadbd started on a free
// port of 127.0.0.1 with its socket in that folder and no option files (no system service is involved),
// stopped by its PID in teardown (and by process.ts's exit handler and watchdog when a test worker
// dies). Measured on the project's 2-core machines: install-db about 3 s, the server answers about
// 0.4 s after it starts.

import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, type ServerProcess, startProcess, tempDir } from './process.js';

const run = promisify(execFile);
const INSTALL =
  'Install MariaDB: apt-get install -y mariadb-server mariadb-client mariadb-backup (or run npm test, whose setup step does).';
const SERVER = '/usr/sbin/mariadbd';
const TOOLS = ['mariadb-install-db', 'mariadb', 'mariadb-dump'];

/** Throws naming what is missing when the server or a client tool is not installed. */
export function checkMariadbInstalled(): void {
  const missing = [
    ...(existsSync(SERVER) ? [] : [SERVER]),
    ...TOOLS.filter((tool) => !['/usr/bin', '/usr/local/bin'].some((dir) => existsSync(join(dir, tool)))),
  ];
  if (missing.length > 0) throw new Error(`MariaDB is not installed here: ${missing.join(', ')} missing. ${INSTALL}`);
}

export interface MariadbServer {
  host: '127.0.0.1';
  port: number;
  socket: string;
  dataDir: string;
  /** A folder of this server's temp dir, for the test's own files (removed with the server). */
  dir: string;
  pid: number;
  /** A mariadb source config for this server (root over TCP, no password), plus `extra`. */
  sourceConfig(extra?: Record<string, unknown>): Record<string, unknown>;
  /** Run SQL with the `mariadb` client as root (in `database`); returns stdout (tab-separated, no headers). */
  sql(sql: string, database?: string): Promise<string>;
  /** Run a client tool (mariadb-dump, ...) against this server as root; returns stdout. */
  tool(name: string, args: string[]): Promise<string>;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** More mariadbd options, e.g. TLS (`--ssl-cert=...`, `--require-secure-transport=ON`). */
  serverArgs?: string[];
  /** Start this existing data directory (a restored snapshot) instead of a fresh one. */
  dataDir?: string;
}

/** Start a MariaDB server on a free port; one per test file is the intent. */
export async function startMariadb(options: StartOptions = {}): Promise<MariadbServer> {
  checkMariadbInstalled();
  const temp = tempDir('mariadb');
  const dataDir = options.dataDir ?? join(temp.path, 'data');
  const socket = join(temp.path, 'mysqld.sock');
  let server: ServerProcess | undefined;
  try {
    if (options.dataDir === undefined)
      await run(
        'mariadb-install-db',
        [
          '--no-defaults',
          `--datadir=${dataDir}`,
          '--auth-root-authentication-method=normal',
          '--skip-test-db',
          // As root (the project's machines) the server runs as root too: nothing outside the temp dir is touched.
          ...(process.getuid?.() === 0 ? ['--user=root'] : []),
        ],
        { maxBuffer: 16 << 20 },
      ).catch((error: { stderr?: string; message: string }) => {
        throw new Error(`mariadb-install-db failed: ${error.stderr ?? error.message}. ${INSTALL}`);
      });
    const port = await freePort();
    const args = [
      '--no-defaults',
      `--datadir=${dataDir}`,
      `--socket=${socket}`,
      `--port=${port}`,
      '--bind-address=127.0.0.1',
      `--pid-file=${join(temp.path, 'mariadbd.pid')}`,
      `--log-error=${join(temp.path, 'error.log')}`,
      '--skip-log-bin',
      // Test data needs no durability across an OS crash; small buffers for a shared 2-core machine.
      '--innodb-flush-log-at-trx-commit=0',
      '--innodb-doublewrite=0',
      '--innodb-buffer-pool-size=64M',
      '--innodb-log-file-size=64M',
      '--max-connections=60',
      '--event-scheduler=OFF',
      ...(process.getuid?.() === 0 ? ['--user=root'] : []),
      ...(options.serverArgs ?? []),
    ];
    const client = (extra: string[]) => [
      '--no-defaults',
      '--protocol=socket',
      `--socket=${socket}`,
      '--user=root',
      '--default-character-set=utf8mb4',
      ...extra,
    ];
    server = await startProcess({
      what: `MariaDB (${SERVER})`,
      install: INSTALL,
      command: SERVER,
      args,
      port,
      ready: async () => {
        await run('mariadb', client(['-e', 'SELECT 1']));
        return true;
      },
      timeoutMs: 30_000,
    });
    const started = server;
    return {
      host: '127.0.0.1',
      port,
      socket,
      dataDir,
      dir: temp.path,
      pid: started.pid,
      sourceConfig: (extra = {}) => ({ host: '127.0.0.1', port, user: 'root', ...extra }),
      sql: async (sql, database) => {
        const pending = run(
          'mariadb',
          client(['--batch', '--skip-column-names', ...(database ? [`--database=${database}`] : [])]),
          { maxBuffer: 256 << 20 },
        );
        pending.child.stdin?.end(sql);
        try {
          return (await pending).stdout;
        } catch (error) {
          throw new Error(
            `mariadb failed: ${(error as { stderr?: string }).stderr ?? String(error)}\n${sql.slice(0, 2000)}`,
          );
        }
      },
      tool: async (name, args) => {
        try {
          const { stdout } = await run(name, client(args), { maxBuffer: 512 << 20 });
          return stdout;
        } catch (error) {
          throw new Error(`${name} failed: ${(error as { stderr?: string }).stderr ?? String(error)}`);
        }
      },
      stop: async () => {
        await started.stop();
        temp.remove();
      },
    };
  } catch (error) {
    if (server) await server.stop();
    temp.remove();
    throw error;
  }
}
