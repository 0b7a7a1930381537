// A logical backup of one PostgreSQL database: two files. `globals.json` holds what lives outside the
// database but its restore needs (encoding, locale, owner, and the roles its objects are owned by or
// granted to, with their attributes but never a password); `dump.sql` is pg_dump's plain-format output,
// uncompressed so the pipeline's chunks dedupe between backups, streamed as pg_dump writes it.

import { PassThrough, Readable } from 'node:stream';
import { BackupdError } from '../errors.js';
import type { Fingerprint } from './fingerprint.js';
import { FINGERPRINT_SETTINGS, FINGERPRINT_SQL, FingerprintLines } from './fingerprint-postgres.js';
import type {
  DatabaseInfo,
  DatabaseOutside,
  DatabaseProperties,
  RoleInfo,
  RoleMembership,
  ServerVersion,
} from './postgres-catalog.js';
import type { PgTools } from './postgres-tools.js';
import type { SourceFile, SourceReading } from './source.js';

export const GLOBALS_FILE = 'globals.json';
export const DUMP_FILE = 'dump.sql';
export const GLOBALS_FORMAT = 1;
/**
 * pg_dump's output is cut around 64 KiB rather than the default 16 KiB: each chunk costs its id, seal and
 * bookkeeping about 20 µs whatever its size, and pg_dump and its server backend already keep 1.3 of a
 * 2-core machine's cores busy. Measured on the benchmark database (docs/FORMAT.md): 16 -> 64 KiB took the
 * full from 66.9 to 54.7 MB stored and our CPU by about 1 s per 880 MB, while the incremental after the
 * benchmark's change grew from 8.1 to 15.5 MB (of an 880 MB dump).
 */
export const DUMP_CHUNK_BYTES = 64 << 10;

/** The content of globals.json. */
export interface DumpGlobals {
  format: number;
  server: ServerVersion;
  database: DatabaseInfo;
  /** The database's ACL, comment, connection limit and settings, applied before it gets its name. */
  properties: DatabaseProperties;
  roles: RoleInfo[];
  memberships: RoleMembership[];
}

export interface DumpOptions {
  tools: PgTools;
  /** The roles the database uses (PgCatalog.rolesUsed), asked for while the database was being looked up. */
  rolesUsed: Promise<DatabaseOutside>;
  database: DatabaseInfo;
  server: ServerVersion;
  lockWaitTimeoutSeconds: number;
  signal?: AbortSignal;
}

/** Read `database` as a logical backup. The roles are read first; pg_dump starts when dump.sql is reached. */
export async function readDump(options: DumpOptions): Promise<SourceReading> {
  const { tools, database, server, signal } = options;
  const { roles, memberships, properties } = await options.rolesUsed;
  const globals: DumpGlobals = { format: GLOBALS_FORMAT, server, database, properties, roles, memberships };
  const session = snapshotSession(tools, database.name, signal);
  const snapshot = await session.snapshot;
  let dump: { kill(): void } | undefined;
  let closed = false;
  async function* files(): AsyncGenerator<SourceFile> {
    yield {
      name: GLOBALS_FILE,
      chunking: { kind: 'cdc' },
      stream: Readable.from([Buffer.from(`${JSON.stringify(globals, null, 2)}\n`)], { objectMode: false }),
    };
    if (closed) return;
    const started = tools.stream(
      'pg_dump',
      [
        '--no-password',
        '--format=plain',
        // No compression inside the dump: the pipeline compresses chunks, and compressed bytes would not dedupe.
        '--compress=0',
        // Objects go into the restore target's default tablespace: a server without the source's
        // tablespaces refuses `SET default_tablespace = <missing>` (docs/SOURCES.md).
        '--no-tablespaces',
        `--lock-wait-timeout=${options.lockWaitTimeoutSeconds * 1000}`,
        // The snapshot the fingerprint is read in: the dump is the same point in time.
        `--snapshot=${snapshot}`,
        `--dbname=${database.name}`,
      ],
      { what: `pg_dump of database ${database.name}`, signal },
    );
    dump = started;
    yield {
      name: DUMP_FILE,
      chunking: { kind: 'cdc', avgBytes: DUMP_CHUNK_BYTES },
      stream: started.stream,
      fill: started.fill,
    };
  }
  return {
    engineVersion: `PostgreSQL ${server.version}`,
    files: files(),
    fingerprint: () => session.fingerprint,
    close: async () => {
      closed = true;
      dump?.kill();
      await session.end();
    },
  };
}

/**
 * A psql session holding a REPEATABLE READ transaction whose snapshot it exports for pg_dump, and in which it
 * computes the database's fingerprint (fingerprint-postgres.ts) while pg_dump reads. The transaction stays
 * open until `end()` (the reading's close), so pg_dump can import the snapshot whenever it starts.
 */
function snapshotSession(
  tools: PgTools,
  database: string,
  signal?: AbortSignal,
): { snapshot: Promise<string>; fingerprint: Promise<Fingerprint>; end(): Promise<void> } {
  const input = new PassThrough();
  input.write(
    `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\n${FINGERPRINT_SETTINGS}\nSELECT pg_export_snapshot();\n${FINGERPRINT_SQL}`,
  );
  let snapshot: string | undefined;
  const lines = new FingerprintLines();
  let partial = '';
  const deferred = <T>() => {
    let resolve!: (value: T) => void;
    let reject!: (error: unknown) => void;
    const promise = new Promise<T>((yes, no) => {
      resolve = yes;
      reject = no;
    });
    return { promise, resolve, reject };
  };
  const snapshotId = deferred<string>();
  const fingerprint = deferred<Fingerprint>();
  const settle = { snapshot: snapshotId.resolve, fingerprint: fingerprint.resolve };
  const failed = (error: unknown) => {
    snapshotId.reject(error);
    fingerprint.reject(error);
  };
  const onStdout = (chunk: Buffer) => {
    try {
      const text = partial + chunk.toString('utf8');
      const parts = text.split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) {
        if (snapshot === undefined) {
          snapshot = line.trim();
          settle.snapshot(snapshot);
        } else if (!lines.done) {
          lines.line(line);
          if (lines.done) settle.fingerprint(lines.result());
        }
      }
    } catch (error) {
      failed(error);
    }
  };
  const run = tools.run('psql', ['-X', '-w', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', database], {
    input,
    onStdout,
    what: `fingerprinting database ${database}`,
    signal,
    env: { PGCLIENTENCODING: 'UTF8' },
  });
  run.then(
    () => failed(new BackupdError('SOURCE_FAILED', `fingerprinting database ${database}: psql ended early`)),
    (error: unknown) => failed(error),
  );
  snapshotId.promise.catch(() => {}); // awaited by readDump
  fingerprint.promise.catch(() => {}); // asked for once the dump was read, or not at all when the backup failed
  return {
    snapshot: snapshotId.promise,
    fingerprint: fingerprint.promise,
    end: async () => {
      input.end('COMMIT;\n');
      // Its failures reach the backup through `fingerprint` (asked for before the reading closes); once the
      // fingerprint is in, the session has nothing more to say.
      await run.catch(() => undefined);
    },
  };
}
