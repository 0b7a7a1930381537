// The mariadb engine: one MariaDB server reached with MariaDB's client tools (MySQL servers are not
// supported yet). Backup (logical) = per database, mariadb-dump in one consistent transaction plus, when
// asked, the accounts it needs (mariadb-dump.ts); snapshot (raw) = the whole server with mariadb-backup
// (mariadb-backup.ts), so its snapshots are server-wide: one unit, SERVER_UNIT. Restores go into a new
// database (mariadb-restore.ts) or a new data directory (mariadb-datadir.ts).

import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { BackupdError } from '../errors.js';
import { assertSegment, type BackupType } from '../layout.js';
import { safeName } from '../validate.js';
import { nextIncremental, readSnapshot, snapshotHostProblem } from './mariadb-backup.js';
import { MariadbCatalog, type MariadbDatabase } from './mariadb-catalog.js';
import { MariadbClient } from './mariadb-client.js';
import { type MariadbConfig, parseMariadbConfig, redactMariadbConfig } from './mariadb-config.js';
import { restoreDatadir } from './mariadb-datadir.js';
import { readDump } from './mariadb-dump.js';
import { restoreDump } from './mariadb-restore.js';
import {
  type LeftOutDatabase,
  type PreviousPoint,
  type RestoreFile,
  type RestoreOptions,
  type RestoreResult,
  SERVER_UNIT,
  type Source,
  type SourceDatabase,
  type SourceFactory,
  type SourceReading,
  UNSAFE_NAME_REASON,
} from './source.js';

export type { MariadbConfig } from './mariadb-config.js';

export class MariadbSource implements Source {
  readonly engine = 'mariadb';
  readonly types = ['backup', 'snapshot'] as const;
  readonly snapshotScope = 'server';
  private readonly client: MariadbClient;
  private readonly catalog: MariadbCatalog;

  constructor(
    readonly name: string,
    private readonly config: MariadbConfig,
  ) {
    this.client = new MariadbClient(config);
    this.catalog = new MariadbCatalog(this.client);
  }

  /**
   * Every database but the system schemas (mysql, information_schema, performance_schema, sys), narrowed by
   * include/exclude; those whose names are not safe path segments are left out (listLeftOut tells them).
   * Throws UNAVAILABLE / PERMISSION_DENIED / NOT_FOUND (no client tool) / SOURCE_FAILED from the client.
   */
  async listDatabases(): Promise<SourceDatabase[]> {
    const all = await this.catalog.databases();
    return all.filter((db) => this.selected(db.name)).map((db) => ({ name: db.name, sizeBytes: db.sizeBytes }));
  }

  async listLeftOut(): Promise<LeftOutDatabase[]> {
    const all = await this.catalog.databases();
    return all
      .filter((db) => !safeName.safeParse(db.name).success)
      .map((db) => ({ name: db.name, reason: UNSAFE_NAME_REASON }));
  }

  /**
   * A backup of one database (mariadb-dump), or with SERVER_UNIT a snapshot of the whole server
   * (mariadb-backup; with `previous`, mariadb-backup's own incremental from where it ended: nextIncremental).
   * Throws UNSUPPORTED for a snapshot of one database, NOT_FOUND for a database that is
   * not there or not selected, and the tools' failures typed (mariadb-client.ts).
   */
  async read(
    database: string,
    type: BackupType,
    signal?: AbortSignal,
    previous?: PreviousPoint,
  ): Promise<SourceReading> {
    if (type === 'snapshot') {
      if (database !== SERVER_UNIT) {
        throw new BackupdError(
          'UNSUPPORTED',
          `MariaDB snapshots are server-wide: mariadb-backup copies the whole server, not database "${database}". ` +
            `Use a server-wide snapshot task on source ${this.name} (its one unit is ${this.name}/${SERVER_UNIT}), ` +
            'or a backup task for one database',
        );
      }
      const server = await this.catalog.serverHost(signal);
      const problem = snapshotHostProblem(server, {
        hostname: hostname(),
        datadirReadable: await access(server.datadir, constants.R_OK | constants.X_OK).then(
          () => true,
          () => false,
        ),
      });
      if (problem) {
        throw new BackupdError(problem.startsWith('mariadb-backup') ? 'UNSUPPORTED' : 'PERMISSION_DENIED', problem);
      }
      return readSnapshot({
        client: this.client,
        serverVersion: await this.catalog.serverVersion(signal),
        tempDir: this.config.tempDir ?? join(tmpdir(), 'backupd-mariadb'),
        ...nextIncremental(previous),
        signal,
      });
    }
    const [info, serverVersion] = await Promise.all([
      this.existing(database, signal),
      this.catalog.serverVersion(signal),
    ]);
    await this.catalog.checkRoutinesReadable(info.name, signal);
    const accounts = this.config.grants ? await this.catalog.accounts(info.name, signal) : undefined;
    return readDump({ client: this.client, database: info, serverVersion, accounts, signal });
  }

  /**
   * A backup into a new database `target` on this server, or a snapshot into a new data directory
   * `<restoreDir>/<target>`. ALREADY_EXISTS when the target exists (checked before anything is written);
   * on any failure nothing is left at the target.
   */
  async restore(files: AsyncIterable<RestoreFile>, options: RestoreOptions): Promise<RestoreResult> {
    if (options.type === 'snapshot') {
      return restoreDatadir(files, {
        client: this.client,
        restoreDir: this.config.restoreDir,
        target: options.target,
        signal: options.signal,
      });
    }
    return restoreDump(files, {
      client: this.client,
      catalog: this.catalog,
      target: options.target,
      locationOf: (db) => this.locationOf(db),
      signal: options.signal,
    });
  }

  async close(): Promise<void> {}

  private selected(name: string): boolean {
    if (!safeName.safeParse(name).success) return false;
    if (this.config.include && !this.config.include.includes(name)) return false;
    return !this.config.exclude.includes(name);
  }

  private async existing(database: string, signal?: AbortSignal): Promise<MariadbDatabase> {
    const where = `on MariaDB source ${this.name}`;
    if (!this.selected(database)) {
      throw new BackupdError(
        'NOT_FOUND',
        `database ${database} is not ${where} (or its include/exclude leaves it out)`,
      );
    }
    const info = await this.catalog.database(database, signal);
    if (!info) throw new BackupdError('NOT_FOUND', `database ${database} not found ${where}`);
    return info;
  }

  /** A connection URI for a database, without the password. */
  private locationOf(database: string): string {
    const { socket, host, port, user } = this.config;
    const who = encodeURIComponent(user);
    if (socket !== undefined) return `mariadb://${who}@localhost/${database}?socket=${encodeURIComponent(socket)}`;
    const shown = host.includes(':') ? `[${host}]` : host;
    return `mariadb://${who}@${shown}:${port}/${database}`;
  }
}

export const mariadb = {
  engine: 'mariadb',
  parseConfig: (input: unknown, path: string): MariadbConfig => parseMariadbConfig(input, path),
  redact: redactMariadbConfig,
  open: async (name: string, config: MariadbConfig): Promise<Source> =>
    new MariadbSource(assertSegment('source', name), config),
} satisfies SourceFactory<MariadbConfig>;
