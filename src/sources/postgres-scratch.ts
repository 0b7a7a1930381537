// verify --restore of a PostgreSQL snapshot: the snapshot is restored into a scratch data directory with a
// generated name, started as a private server (no TCP port, its socket in a folder of its own), checked
// (it starts and replays its WAL; amcheck in every database), then stopped and removed, also on failure.
// One left by a killed process (its server may still run) is stopped and removed by sweepSnapshotScratch.

import { access, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BackupdError, messageOf } from '../errors.js';
import type { Fingerprint } from './fingerprint.js';
import { PgCatalog } from './postgres-catalog.js';
import { PgTools, runCommand } from './postgres-tools.js';

/** What a scratch server found: the engine's problems, and notes that are no failure (nothing to compare). */
export interface ScratchFindings {
  fingerprint: Fingerprint;
  problems: string[];
  notes: string[];
}

/** The OS user the scratch server runs as: ourselves, or `postgres` when we are root (PostgreSQL refuses root). */
async function serverUser(signal?: AbortSignal): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const id = async (flag: string) =>
    Number(
      (await runCommand('id', 'id', [flag, 'postgres'], { what: 'looking up the postgres OS user', signal })).trim(),
    );
  try {
    return { uid: await id('-u'), gid: await id('-g') };
  } catch (error) {
    throw new BackupdError(
      'SOURCE_FAILED',
      `running as root, a scratch server must run as the "postgres" OS user, which was not found: ${messageOf(error)}`,
    );
  }
}

/** Run pg_ctl against `dataDir`, as the server's OS user. */
function pgCtl(
  tools: PgTools,
  owner: { uid: number; gid: number } | undefined,
  args: string[],
  what: string,
  signal?: AbortSignal,
): Promise<string> {
  if (!owner) return tools.run('pg_ctl', args, { what, signal, stdout: 'ignore' });
  const setpriv = [`--reuid=${owner.uid}`, `--regid=${owner.gid}`, '--init-groups', tools.command('pg_ctl'), ...args];
  return runCommand('pg_ctl', 'setpriv', setpriv, { what, signal, stdout: 'ignore' }, tools);
}

/** A setting's value quoted for postgresql.conf. */
function confValue(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

/**
 * Start the restored data directory `dataDir` as a private server, run the engine's checks, and stop it
 * (also when anything failed). `tablespaces`: the restored tablespaces' folder, which the server must own.
 * Throws SOURCE_FAILED when the server does not start, naming why (the end of its log).
 */
export async function inspectSnapshot(options: {
  tools: PgTools;
  dataDir: string;
  tablespaces: string;
  /** A role the snapshot's server had (the source's user) and a database it can connect to. */
  user: string;
  database: string;
  signal?: AbortSignal;
}): Promise<ScratchFindings> {
  const { tools, dataDir, signal } = options;
  const owner = await serverUser(signal);
  const socketDir = await mkdtemp(join(tmpdir(), 'backupd-pgsock-'));
  const log = join(dataDir, 'backupd-verify.log');
  try {
    // Only our own socket, trusted: the folder is ours alone (0700), so nothing else can connect.
    await writeFile(join(dataDir, 'backupd-verify-hba.conf'), 'local all all trust\n', { mode: 0o600 });
    const settings: [string, string][] = [
      ['listen_addresses', ''],
      ['port', '5432'],
      ['unix_socket_directories', socketDir],
      ['hba_file', join(dataDir, 'backupd-verify-hba.conf')],
      ['ident_file', join(dataDir, 'pg_ident.conf')],
      ['archive_mode', 'off'],
      ['ssl', 'off'],
      ['logging_collector', 'off'],
    ];
    // postgresql.auto.conf is read last: these win over whatever the original server's postgresql.conf says.
    await writeFile(
      join(dataDir, 'postgresql.auto.conf'),
      `\n${settings.map(([k, v]) => `${k} = ${confValue(v)}`).join('\n')}\n`,
      { flag: 'a' },
    );
    if (owner) {
      const tablespaces = await access(options.tablespaces).then(
        () => [options.tablespaces],
        () => [], // the snapshot has no tablespaces of its own
      );
      for (const path of [dataDir, ...tablespaces, socketDir]) {
        await runCommand('chown', 'chown', ['-R', `${owner.uid}:${owner.gid}`, path], {
          what: `giving ${path} to the postgres OS user`,
          signal,
        });
      }
    }
    try {
      await pgCtl(
        tools,
        owner,
        ['start', '-D', dataDir, '-l', log, '-w', '-t', '300', '-s'],
        'starting the scratch server',
        signal,
      );
    } catch (error) {
      const tail = (await readFile(log, 'utf8').catch(() => '')).trim().split('\n').slice(-5).join(' | ');
      throw new BackupdError(
        'SOURCE_FAILED',
        `the restored snapshot's server does not start: ${messageOf(error)}${tail ? `; its log: ${tail}` : ''}`,
        { cause: error },
      );
    }
    try {
      // None of the agent's own PG* settings (sslmode, password, ...): only the scratch server's socket.
      const env: NodeJS.ProcessEnv = { LC_MESSAGES: 'C', PGHOST: socketDir, PGPORT: '5432' };
      for (const [key, value] of Object.entries(process.env))
        if (!/^(PG|LC_ALL$|LANGUAGE$)/.test(key)) env[key] ??= value;
      const asSourceUser = new PgCatalog(new PgTools(tools.binDir, { ...env, PGUSER: options.user }), options.database);
      // Checked as the snapshot's bootstrap superuser (trusted on this private socket), who may create amcheck.
      const superuser = await asSourceUser.json<string>(
        'SELECT to_json(rolname) FROM pg_roles WHERE oid = 10',
        "finding the restored server's superuser",
        { signal },
      );
      const catalog = new PgCatalog(new PgTools(tools.binDir, { ...env, PGUSER: superuser }), options.database);
      const databases =
        (await catalog.json<string[] | null>(
          'SELECT json_agg(datname ORDER BY datname) FROM pg_database WHERE datallowconn AND NOT datistemplate',
          'listing the restored databases',
          { signal },
        )) ?? [];
      const problems: string[] = [];
      const notes = ['the snapshot recorded no fingerprint: its tables were not compared'];
      for (const database of databases) {
        const found = await amcheck(catalog, database, signal);
        if (found === undefined) {
          notes.push('amcheck is not installed on this machine: the indexes were not checked');
          break;
        }
        problems.push(...found.map((p) => `${database}: ${p}`));
      }
      return { fingerprint: { recipe: 'none', tables: [], objects: {} }, problems, notes };
    } finally {
      await stopServer(tools, owner, dataDir);
    }
  } finally {
    await rm(socketDir, { recursive: true, force: true });
  }
}

/**
 * amcheck's bt_index_check (with heapallindexed) of every B-tree index of `database`; its failures as
 * problems. undefined when the server has no amcheck to install; [] when this user may not create it.
 */
export async function amcheck(
  catalog: PgCatalog,
  database: string,
  signal?: AbortSignal,
): Promise<string[] | undefined> {
  const available = await catalog.json<boolean>(
    "SELECT to_json(EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'amcheck'))",
    'looking for amcheck',
    { database, signal },
  );
  if (!available) return undefined;
  try {
    await catalog.exec('CREATE EXTENSION IF NOT EXISTS amcheck;', 'creating amcheck', { database, signal });
  } catch (error) {
    if (error instanceof BackupdError && (error.code === 'PERMISSION_DENIED' || error.code === 'SOURCE_FAILED'))
      return [];
    throw error;
  }
  try {
    await catalog.json<number>(
      `SELECT to_json(count(bt_index_check(c.oid, true))) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         JOIN pg_am a ON a.oid = c.relam JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE a.amname = 'btree' AND i.indisvalid AND i.indisready AND c.relpersistence <> 't'
           AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'`,
      `amcheck of ${database}`,
      { database, signal },
    );
    return [];
  } catch (error) {
    if (error instanceof BackupdError && error.code === 'SOURCE_FAILED') return [`amcheck: ${error.message}`];
    throw error;
  }
}

/** Stop the server of `dataDir` if one runs (fast, then immediate); nothing when none does. */
async function stopServer(
  tools: PgTools,
  owner: { uid: number; gid: number } | undefined,
  dataDir: string,
): Promise<void> {
  const running = await readFile(join(dataDir, 'postmaster.pid'), 'utf8').then(
    () => true,
    () => false,
  );
  if (!running) return;
  try {
    await pgCtl(
      tools,
      owner,
      ['stop', '-D', dataDir, '-m', 'fast', '-w', '-t', '60', '-s'],
      'stopping the scratch server',
    );
  } catch {
    // Not stopped in time, or pg_ctl saw no server (a stale pid file): immediate, whose failure is told.
    await pgCtl(
      tools,
      owner,
      ['stop', '-D', dataDir, '-m', 'immediate', '-w', '-t', '60', '-s'],
      'stopping the scratch server',
    ).catch((error: unknown) => {
      if (!/no server running|PID file .* does not exist/i.test(messageOf(error))) throw error;
    });
  }
}

/** Stop any server in the scratch data directory `dataDir`, then remove it and its tablespaces' folder. */
export async function removeSnapshotScratch(tools: PgTools, dataDir: string): Promise<void> {
  await stopServer(tools, await serverUser(), dataDir);
  await rm(dataDir, { recursive: true, force: true });
  await rm(`${dataDir}-tablespaces`, { recursive: true, force: true });
}

/**
 * Stop and remove every scratch data directory (and half-restored folder) in `root` whose name starts with
 * `prefix`, as a killed verify left them.
 */
export async function sweepSnapshotScratch(tools: PgTools, root: string, prefix: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(root);
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') return; // no restore folder: nothing was left
    throw error;
  }
  const ours = new RegExp(`^(\\.restoring-[0-9a-f]+-)?${prefix}`);
  for (const name of names.filter((n) => ours.test(n))) {
    await removeSnapshotScratch(tools, join(root, name));
  }
}
