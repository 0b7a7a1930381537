// pgBackRest as the PostgreSQL benchmark's reference for physical backups: a repository and a config in
// the run's work folder, WAL archived into it by the server's archive_command, full and incremental
// backups (zstd level 1, two processes) and a restore into a new data directory. Every command runs as
// the server's OS user (pgBackRest reads the data directory and the archiver runs it as that user).

import { execFileSync } from 'node:child_process';
import { chownSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { apparentBytes, type Measurement, measure } from './measure.js';

export const STANZA = 'bench';

export interface PgBackRestServer {
  dataDir: string;
  port: number;
  /** The folder of the server's unix socket. */
  socketDir: string;
}

export class PgBackRest {
  readonly config: string;
  readonly repo: string;
  private readonly owner: { uid: number; gid: number } | undefined;

  constructor(private readonly dir: string) {
    this.config = join(dir, 'pgbackrest.conf');
    this.repo = join(dir, 'repo');
    this.owner = serverOwner();
  }

  /** The archive_command that pushes the server's WAL into this repository. */
  get archiveCommand(): string {
    return `pgbackrest --config=${this.config} --stanza=${STANZA} archive-push %p`;
  }

  /** Write the config and make the folders; the stanza is created by createStanza once the server runs. */
  configure(server: PgBackRestServer): void {
    for (const sub of ['', 'repo', 'log', 'lock', 'spool']) {
      mkdirSync(join(this.dir, sub), { recursive: true });
      this.own(join(this.dir, sub));
    }
    writeFileSync(
      this.config,
      [
        '[global]',
        `repo1-path=${this.repo}`,
        `log-path=${join(this.dir, 'log')}`,
        `lock-path=${join(this.dir, 'lock')}`,
        `spool-path=${join(this.dir, 'spool')}`,
        'log-level-console=warn',
        'log-level-file=off',
        'start-fast=y',
        'compress-type=zst',
        'compress-level=1',
        'process-max=2',
        '',
        `[${STANZA}]`,
        `pg1-path=${server.dataDir}`,
        `pg1-port=${server.port}`,
        `pg1-socket-path=${server.socketDir}`,
        'pg1-user=postgres',
        '',
      ].join('\n'),
    );
    this.own(this.config);
  }

  async createStanza(): Promise<void> {
    await this.run(['stanza-create']);
  }

  /** One backup, measured; the bytes it added to the repository, its WAL included (see storedBytes). */
  async backup(type: 'full' | 'incr'): Promise<{ measured: Measurement; bytes: number }> {
    const measured = await this.run(['backup', `--type=${type}`], true);
    return { measured, bytes: await this.storedBytes() };
  }

  /** Restore the newest backup into `dataDir` (made here, empty), recovering to the end of the archive. */
  async restore(dataDir: string): Promise<Measurement> {
    mkdirSync(dataDir, { mode: 0o700 });
    this.own(dataDir);
    return this.run(['restore', `--pg1-path=${dataDir}`], true);
  }

  /**
   * The newest backup's size in the repository: its backup set (new files only, for an incremental) plus
   * the archived WAL segments from its start to its stop, which it needs to be consistent. WAL archived
   * for other reasons (the change between backups) is not counted: our snapshot does not store it either.
   */
  private async storedBytes(): Promise<number> {
    const info = JSON.parse((await this.run(['info', '--output=json'])).stdout) as {
      backup: { label: string; archive: { start: string; stop: string } }[];
      archive: { id: string }[];
    }[];
    const newest = info[0]?.backup.at(-1);
    const archiveId = info[0]?.archive.at(-1)?.id;
    if (!newest || !archiveId) throw new Error('pgbackrest info lists no backup');
    const set = await apparentBytes(join(this.repo, 'backup', STANZA, newest.label));
    let wal = 0;
    const archiveDir = join(this.repo, 'archive', STANZA, archiveId);
    for (const sub of readdirSync(archiveDir)) {
      if (!/^[0-9A-F]{16}$/.test(sub)) continue;
      for (const file of readdirSync(join(archiveDir, sub))) {
        const segment = file.slice(0, 24);
        if (segment >= newest.archive.start && segment <= newest.archive.stop) {
          wal += statSync(join(archiveDir, sub, file)).size;
        }
      }
    }
    return set + wal;
  }

  /** `settled`: the caller already wrote back what earlier steps left dirty (measure's sync). */
  private run(args: string[], settled = false): Promise<Measurement> {
    const command = ['pgbackrest', `--config=${this.config}`, `--stanza=${STANZA}`, ...args];
    const options = { noSettle: settled };
    if (!this.owner) return measure(command[0]!, command.slice(1), options);
    return measure(
      'setpriv',
      [`--reuid=${this.owner.uid}`, `--regid=${this.owner.gid}`, '--init-groups', ...command],
      options,
    );
  }

  private own(path: string): void {
    if (this.owner) chownSync(path, this.owner.uid, this.owner.gid);
  }
}

/** The `postgres` OS user when we are root (the harness runs the server as it), else ourselves. */
function serverOwner(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}
