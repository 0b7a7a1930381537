// Restoring a server snapshot into a NEW data directory, `<restoreDir>/<target>`, ready to start: the tars
// are extracted into a folder beside it (`.restoring-...`), extra tablespaces into `<target>-tablespaces/`
// with tablespace_map pointed there, the copy is checked with pg_verifybackup when it is installed, and
// only then renamed into place. On any failure the folders are removed: nothing is left at the target.

import { randomBytes } from 'node:crypto';
import { access, chmod, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BackupdError, messageOf } from '../errors.js';
import { assertSegment } from '../layout.js';
import {
  BACKUP_MANIFEST,
  BASE_TAR,
  SNAPSHOT_FORMAT,
  SNAPSHOT_META_FILE,
  type SnapshotMeta,
  unloggedNote,
  WAL_TAR,
} from './postgres-basebackup.js';
import { checkedInput, type PgTools, runCommand } from './postgres-tools.js';
import { parseVersioned, readSmall } from './restore-file.js';
import type { RestoreFile, RestoreResult } from './source.js';

const MAX_META_BYTES = 1 << 20;

export interface DatadirRestoreOptions {
  tools: PgTools;
  /** Where new data directories are made; undefined: snapshot restores are not configured. */
  restoreDir: string | undefined;
  target: string;
  signal?: AbortSignal;
}

// Written only when the snapshot has none of its own (Debian and Ubuntu keep them in /etc/postgresql).
const DEFAULT_CONF = `# Written by backupd: the snapshot held no postgresql.conf (its server kept it outside the data
# directory). Every setting has its default; copy the original server's settings here as needed.
`;
const DEFAULT_HBA = `# Written by backupd: the snapshot held no pg_hba.conf. Local connections as the same OS user, and
# password (scram-sha-256) connections from this host only.
local   all   all                  peer
host    all   all   127.0.0.1/32   scram-sha-256
host    all   all   ::1/128        scram-sha-256
`;

export async function restoreDatadir(
  files: AsyncIterable<RestoreFile>,
  options: DatadirRestoreOptions,
): Promise<RestoreResult> {
  const { tools, signal } = options;
  const target = assertSegment('target data directory', options.target);
  if (options.restoreDir === undefined) {
    throw new BackupdError(
      'UNSUPPORTED',
      'this postgres source has no restoreDir: set restoreDir in its config to restore snapshots into new data directories',
    );
  }
  const finalDir = join(options.restoreDir, target);
  const finalTablespaces = join(options.restoreDir, `${target}-tablespaces`);
  for (const path of [finalDir, finalTablespaces]) {
    if (await exists(path)) {
      throw new BackupdError('ALREADY_EXISTS', `${path} already exists: restore into a new name`);
    }
  }
  await mkdir(options.restoreDir, { recursive: true });
  const stamp = randomBytes(6).toString('hex');
  const work = join(options.restoreDir, `.restoring-${stamp}-${target}`);
  const workTablespaces = join(options.restoreDir, `.restoring-${stamp}-${target}-tablespaces`);
  let placed: string[] = [];
  try {
    await mkdir(work, { mode: 0o700 });
    const iterator = files[Symbol.asyncIterator]();
    const first = await iterator.next();
    if (first.done || first.value.name !== SNAPSHOT_META_FILE) {
      throw new BackupdError('SOURCE_FAILED', `a PostgreSQL snapshot starts with ${SNAPSHOT_META_FILE}`);
    }
    const meta = parseMeta(await readSmall(first.value, MAX_META_BYTES));
    const tablespaceTars = new Map(meta.tablespaces.map((t) => [`${t.oid}.tar`, t]));
    const seen = new Set<string>();
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
      const file = next.value;
      if (seen.has(file.name)) throw new BackupdError('SOURCE_FAILED', `${file.name} appears twice in the snapshot`);
      seen.add(file.name);
      const tablespace = tablespaceTars.get(file.name);
      if (file.name === BASE_TAR) await extract(file, work, signal);
      else if (file.name === WAL_TAR) await extract(file, join(work, 'pg_wal'), signal);
      else if (file.name === BACKUP_MANIFEST) await file.writeTo(join(work, BACKUP_MANIFEST));
      else if (tablespace) {
        const dir = join(workTablespaces, tablespace.oid);
        await mkdir(dir, { recursive: true, mode: 0o700 });
        await extract(file, dir, signal);
      } else throw new BackupdError('SOURCE_FAILED', `unexpected file "${file.name}" in a PostgreSQL snapshot`);
    }
    const missing = [BASE_TAR, WAL_TAR, ...tablespaceTars.keys()].filter((n) => !seen.has(n));
    if (missing.length > 0) throw new BackupdError('SOURCE_FAILED', `the snapshot lacks ${missing.join(', ')}`);
    if (!(await exists(join(work, 'PG_VERSION')))) {
      throw new BackupdError('SOURCE_FAILED', `${BASE_TAR} holds no PG_VERSION: it is not a PostgreSQL data directory`);
    }

    // Make it startable: tablespaces where they were restored, configuration files if it had none.
    const ignored: string[] = [];
    if (meta.tablespaces.length > 0) {
      await writeFile(
        join(work, 'tablespace_map'),
        meta.tablespaces.map((t) => `${t.oid} ${join(finalTablespaces, t.oid)}\n`).join(''),
      );
      ignored.push('tablespace_map', 'pg_tblspc');
    }
    const added: string[] = [];
    for (const [name, text] of [
      ['postgresql.conf', DEFAULT_CONF],
      ['pg_hba.conf', DEFAULT_HBA],
      ['pg_ident.conf', ''],
    ] as const) {
      if (!(await exists(join(work, name)))) {
        await writeFile(join(work, name), text, { mode: 0o600 });
        added.push(name);
        ignored.push(name);
      }
    }
    await chmod(work, 0o700);
    // A snapshot read from the data directory (reader 'files') has no backup_manifest to check against.
    const verified = seen.has(BACKUP_MANIFEST) ? await verify(tools, work, ignored, signal) : false;

    for (const path of [finalDir, finalTablespaces]) {
      if (await exists(path)) {
        throw new BackupdError('ALREADY_EXISTS', `${path} was created while restoring: restore into a new name`);
      }
    }
    if (meta.tablespaces.length > 0) {
      await rename(workTablespaces, finalTablespaces);
      placed.push(finalTablespaces);
    }
    await rename(work, finalDir);
    placed.push(finalDir);
    placed = [];
    return { location: finalDir, note: startNote(finalDir, meta, added, verified, finalTablespaces) };
  } catch (error) {
    const problems: string[] = [];
    for (const path of [work, workTablespaces, ...placed]) {
      await rm(path, { recursive: true, force: true }).catch((e: unknown) => problems.push(messageOf(e)));
    }
    // File system errors (no space, no permission) become typed errors naming the target.
    const failure =
      error instanceof BackupdError
        ? error
        : new BackupdError('SOURCE_FAILED', `restoring the snapshot into ${finalDir} failed: ${messageOf(error)}`, {
            cause: error,
          });
    if (problems.length === 0) throw failure;
    throw new BackupdError(
      failure.code,
      `${failure.message}; removing the partial restore also failed: ${problems.join('; ')}`,
      {
        cause: error,
      },
    );
  }
}

/** Extract one tar stream into `dir` with the system's tar: owned by us, modes as in the archive. */
async function extract(file: RestoreFile, dir: string, signal?: AbortSignal): Promise<void> {
  await runCommand('tar', 'tar', ['--extract', '--file=-', `--directory=${dir}`, '--no-same-owner'], {
    input: checkedInput(file),
    signal,
    stdout: 'ignore',
    what: `extracting ${file.name}`,
  });
}

/** pg_verifybackup over the extracted copy (files against backup_manifest, WAL start to end), if installed. */
async function verify(tools: PgTools, dir: string, ignored: string[], signal?: AbortSignal): Promise<boolean> {
  const command = tools.command('pg_verifybackup');
  if (command.includes('/') && !(await exists(command))) return false;
  try {
    await tools.run('pg_verifybackup', ['--quiet', ...ignored.flatMap((p) => ['--ignore', p]), dir], {
      signal,
      stdout: 'ignore',
      what: 'checking the restored data directory (pg_verifybackup)',
    });
    return true;
  } catch (error) {
    if (error instanceof BackupdError && error.code === 'NOT_FOUND') return false; // not installed: not checked
    throw error;
  }
}

function startNote(dir: string, meta: SnapshotMeta, added: string[], verified: boolean, tablespaces: string): string {
  const major = Math.floor(meta.server.num / 10_000);
  const lines = [
    `Restored a PostgreSQL ${meta.server.version} data directory${verified ? ' (checked with pg_verifybackup)' : ''}.`,
    `Start it with PostgreSQL ${major} binaries, as the OS user that should own it (chown -R postgres: ${dir} if needed):`,
    `  pg_ctl -D ${dir} -o '-p PORT' start`,
    'On its first start it replays the WAL the snapshot holds and is then consistent as of the snapshot.',
  ];
  if (meta.tablespaces.length > 0) lines.push(`Its tablespaces are in ${tablespaces}.`);
  if (meta.unlogged.length > 0) lines.push(`${upperFirst(unloggedNote(meta.unlogged))}.`);
  if (added.length > 0) lines.push(`The snapshot held no ${added.join(', ')}: minimal ones were written.`);
  return lines.join('\n');
}

function parseMeta(text: string): SnapshotMeta {
  const meta = parseVersioned<SnapshotMeta>(text, SNAPSHOT_META_FILE, SNAPSHOT_FORMAT);
  if (
    !Array.isArray(meta.tablespaces) ||
    meta.tablespaces.some((t) => !/^\d+$/.test(String(t.oid))) ||
    !Array.isArray(meta.unlogged)
  ) {
    throw new BackupdError(
      'SOURCE_FAILED',
      `${SNAPSHOT_META_FILE} lacks its tablespaces or unlogged tables, or is damaged`,
    );
  }
  return meta;
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    (error: { code?: string }) => {
      if (error.code === 'ENOENT') return false;
      throw error;
    },
  );
}

function upperFirst(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
