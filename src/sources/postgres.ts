// The postgres engine: one PostgreSQL server reached with its own client tools. Backup (logical) = per
// database, pg_dump's plain SQL plus the roles it needs (postgres-dump.ts); snapshot (raw) = the whole
// server with pg_basebackup, WAL included (postgres-basebackup.ts), so its snapshots are server-wide:
// one unit, SERVER_UNIT. Restores go into a new database (postgres-restore.ts) or a new data directory
// (postgres-datadir.ts).

import { createHash, randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BackupdError } from '../errors.js';
import { assertSegment, type BackupType } from '../layout.js';
import { safeName } from '../validate.js';
import { FINGERPRINT_SETTINGS, FINGERPRINT_SQL, parseFingerprint } from './fingerprint-postgres.js';
import { readBasebackup } from './postgres-basebackup.js';
import { type DatabaseInfo, PgCatalog } from './postgres-catalog.js';
import { connectionEnv, type PostgresConfig, parsePostgresConfig, redactPostgresConfig } from './postgres-config.js';
import { restoreDatadir } from './postgres-datadir.js';
import { readDump } from './postgres-dump.js';
import { localDataDirectory, readDataFiles } from './postgres-files.js';
import { restoreDump } from './postgres-restore.js';
import { amcheck, inspectSnapshot, removeSnapshotScratch, sweepSnapshotScratch } from './postgres-scratch.js';
import { PgTools, resolveBinDir } from './postgres-tools.js';
import {
  type LeftOutDatabase,
  type RestoreFile,
  type RestoreOptions,
  type RestoreResult,
  type Scratch,
  SERVER_UNIT,
  type Source,
  type SourceDatabase,
  type SourceFactory,
  type SourceReading,
  UNSAFE_NAME_REASON,
} from './source.js';

export type { PostgresConfig } from './postgres-config.js';

/** The names of verify --restore's scratch databases start with this. */
const SCRATCH_PREFIX = 'backupd_verify_';

/** SCRATCH_PREFIX and a tag of the node's scratch folder, so each node takes back only its own. */
function scratchPrefix(dir: string): string {
  return `${SCRATCH_PREFIX}${createHash('sha256').update(dir).digest('hex').slice(0, 8)}_`;
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export class PostgresSource implements Source {
  readonly engine = 'postgres';
  readonly types = ['backup', 'snapshot'] as const;
  readonly snapshotScope = 'server';
  private readonly tools: PgTools;
  private readonly catalog: PgCatalog;

  constructor(
    readonly name: string,
    private readonly config: PostgresConfig,
  ) {
    this.tools = new PgTools(resolveBinDir(config.binDir), connectionEnv(config));
    this.catalog = new PgCatalog(this.tools, config.maintenanceDatabase);
  }

  /**
   * The non-template databases that allow connections, narrowed by include/exclude. Databases whose names
   * are not safe path segments (letters, digits, '.', '_', '-') cannot be named in a backup's path and are
   * left out (listLeftOut tells them). Throws UNAVAILABLE / PERMISSION_DENIED / NOT_FOUND (no psql) / SOURCE_FAILED from psql.
   */
  async listDatabases(): Promise<SourceDatabase[]> {
    const all = await this.catalog.databases();
    return all.filter((db) => this.selected(db.name));
  }

  async listLeftOut(): Promise<LeftOutDatabase[]> {
    const all = await this.catalog.databases();
    return all
      .filter((db) => !safeName.safeParse(db.name).success)
      .map((db) => ({ name: db.name, reason: UNSAFE_NAME_REASON }));
  }

  /**
   * A backup of one database (pg_dump), or with SERVER_UNIT a snapshot of the whole server
   * (pg_basebackup). Throws UNSUPPORTED for a snapshot of one database, NOT_FOUND for a database that is
   * not there or not selected, and the tools' failures as typed errors (see postgres-tools.ts).
   */
  async read(database: string, type: BackupType, signal?: AbortSignal): Promise<SourceReading> {
    if (type === 'snapshot') {
      if (database !== SERVER_UNIT) {
        throw new BackupdError(
          'UNSUPPORTED',
          `PostgreSQL snapshots are server-wide: pg_basebackup copies the whole cluster, not database "${database}". ` +
            `Use a server-wide snapshot task on source ${this.name} (its one unit is ${this.name}/${SERVER_UNIT}), ` +
            'or a backup task for one database',
        );
      }
      const server = await this.catalog.serverVersion(signal);
      const { snapshotReader, dataDirectory } = this.config;
      const local =
        snapshotReader === 'pg_basebackup'
          ? undefined
          : await localDataDirectory(
              this.catalog,
              { path: dataDirectory, required: snapshotReader === 'files' || dataDirectory !== undefined },
              signal,
            );
      if (local !== undefined) {
        return readDataFiles({
          tools: this.tools,
          catalog: this.catalog,
          server,
          dataDirectory: local,
          database: this.config.maintenanceDatabase,
          checkpoint: this.config.checkpoint,
          signal,
        });
      }
      return readBasebackup({
        tools: this.tools,
        catalog: this.catalog,
        server,
        tempDir: this.config.tempDir ?? join(tmpdir(), 'backupd-postgres'),
        checkpoint: this.config.checkpoint,
        signal,
      });
    }
    // Three independent catalog reads at once: each is a psql of 15-40 ms before pg_dump can start.
    const rolesUsed = this.catalog.rolesUsed(database, signal);
    rolesUsed.catch(() => {}); // a database that is not there fails below, with NOT_FOUND
    const [info, server] = await Promise.all([this.existing(database, signal), this.catalog.serverVersion(signal)]);
    return readDump({
      tools: this.tools,
      rolesUsed,
      database: info,
      server,
      lockWaitTimeoutSeconds: this.config.lockWaitTimeoutSeconds,
      signal,
    });
  }

  /**
   * A backup into a new database `target` on this server, or a snapshot into a new data directory
   * `<restoreDir>/<target>`. ALREADY_EXISTS when the target exists (checked before anything is written);
   * on any failure nothing is left at the target.
   */
  async restore(files: AsyncIterable<RestoreFile>, options: RestoreOptions): Promise<RestoreResult> {
    if (options.type === 'snapshot') {
      return restoreDatadir(files, {
        tools: this.tools,
        restoreDir: this.config.restoreDir,
        target: options.target,
        signal: options.signal,
      });
    }
    return restoreDump(files, {
      tools: this.tools,
      catalog: this.catalog,
      target: options.target,
      locationOf: (db) => this.locationOf(db),
      signal: options.signal,
    });
  }

  /**
   * A scratch database on this server with a generated name, `backupd_verify_<tag of dir>_<random>`: the tag
   * lets sweepScratch take back only this node's. A snapshot: a scratch data directory of that name under
   * restoreDir (else tempDir), started as a private server to be checked (postgres-scratch.ts).
   */
  async scratch(dir: string, type: BackupType): Promise<Scratch> {
    const target = `${scratchPrefix(dir)}${randomBytes(6).toString('hex')}`;
    if (type === 'snapshot') {
      const root = this.scratchRoot();
      const dataDir = join(root, target);
      return {
        source: new PostgresSource(this.name, { ...this.config, restoreDir: root }),
        target,
        inspect: (signal) =>
          inspectSnapshot({
            tools: this.tools,
            dataDir,
            tablespaces: `${dataDir}-tablespaces`,
            user: this.config.user,
            database: this.config.maintenanceDatabase,
            signal,
          }),
        remove: () => removeSnapshotScratch(this.tools, dataDir),
      };
    }
    return {
      source: this,
      target,
      inspect: async (signal) => {
        const output = await this.tools.run(
          'psql',
          ['-X', '-w', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', target],
          {
            input: `${FINGERPRINT_SETTINGS}\n${FINGERPRINT_SQL}`,
            what: `fingerprinting ${target}`,
            signal,
            env: { PGCLIENTENCODING: 'UTF8' },
          },
        );
        const fingerprint = parseFingerprint(output);
        return { fingerprint, problems: (await amcheck(this.catalog, target, signal)) ?? [] };
      },
      remove: () =>
        this.catalog.exec(`DROP DATABASE IF EXISTS ${quoteIdent(target)} WITH (FORCE);`, `dropping ${target}`),
    };
  }

  async sweepScratch(dir: string): Promise<void> {
    const prefix = scratchPrefix(dir);
    await sweepSnapshotScratch(this.tools, this.scratchRoot(), prefix);
    const names =
      (await this.catalog.json<string[]>(
        `SELECT json_agg(datname) FROM pg_database WHERE starts_with(datname, '${prefix}')`,
        'listing scratch databases',
      )) ?? [];
    for (const name of names) {
      await this.catalog.exec(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE);`, `dropping ${name}`);
    }
  }

  /** Where snapshot scratch data directories go: restoreDir, else tempDir, else the OS temp folder. */
  private scratchRoot(): string {
    return this.config.restoreDir ?? this.config.tempDir ?? join(tmpdir(), 'backupd-postgres');
  }

  async close(): Promise<void> {}

  private selected(name: string): boolean {
    if (!safeName.safeParse(name).success) return false;
    if (name.startsWith(SCRATCH_PREFIX)) return false; // a verify's scratch database, dropped after it
    if (this.config.include && !this.config.include.includes(name)) return false;
    return !this.config.exclude.includes(name);
  }

  private async existing(database: string, signal?: AbortSignal): Promise<DatabaseInfo> {
    const where = `on PostgreSQL source ${this.name}`;
    if (!this.selected(database)) {
      throw new BackupdError(
        'NOT_FOUND',
        `database ${database} is not ${where} (or its include/exclude leaves it out)`,
      );
    }
    const info = await this.catalog.database(database, signal);
    if (!info) throw new BackupdError('NOT_FOUND', `database ${database} not found ${where}`);
    if (!info.allowConnections) {
      throw new BackupdError('NOT_FOUND', `database ${database} ${where} is a template or does not allow connections`);
    }
    return info;
  }

  /** A connection URI for a database, without the password. */
  private locationOf(database: string): string {
    const { host, port, user } = this.config;
    const who = encodeURIComponent(user);
    if (host.startsWith('/')) return `postgresql://${who}@:${port}/${database}?host=${encodeURIComponent(host)}`;
    const shown = host.includes(':') ? `[${host}]` : host;
    return `postgresql://${who}@${shown}:${port}/${database}`;
  }
}

export const postgres = {
  engine: 'postgres',
  parseConfig: (input: unknown, path: string): PostgresConfig => parsePostgresConfig(input, path),
  redact: redactPostgresConfig,
  open: async (name: string, config: PostgresConfig): Promise<Source> =>
    new PostgresSource(assertSegment('source', name), config),
} satisfies SourceFactory<PostgresConfig>;
