// The postgres source's config: how to reach the server, which databases, where the client tools and
// restored data directories live. Checked with zod (every bad field at once, unknown keys rejected);
// the password never leaves this module except as PGPASSWORD in a child's environment.

import { isAbsolute } from 'node:path';
import { parseWith, safeName, z } from '../validate.js';

export const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;

export interface PostgresConfig {
  /** Host name, IP address, or (starting with '/') the folder of the server's Unix socket. */
  host: string;
  port: number;
  user: string;
  /** Given to the tools as PGPASSWORD, never on a command line. */
  password?: string;
  /** A libpq password file (PGPASSFILE); give password or passwordFile, not both. */
  passwordFile?: string;
  sslmode?: (typeof SSL_MODES)[number];
  sslrootcert?: string;
  sslcert?: string;
  sslkey?: string;
  /** Only these databases (exact names); all non-template databases that allow connections by default. */
  include?: string[];
  /** Never these databases. */
  exclude: string[];
  /** Folder of the client tools (pg_dump, pg_restore, psql, pg_basebackup); default: the newest
   * /usr/lib/postgresql/<version>/bin, else PATH. */
  binDir?: string;
  /**
   * How snapshots are read: 'auto' (the data directory directly when this agent can read it, else
   * pg_basebackup), 'files' (directly, failing when it cannot) or 'pg_basebackup' (docs/SOURCES.md).
   */
  snapshotReader: 'auto' | 'files' | 'pg_basebackup';
  /**
   * The server's data directory on this machine; by default the server's own `data_directory` setting. Once
   * set, snapshots are read from it or fail (unless snapshotReader is 'pg_basebackup').
   */
  dataDirectory?: string;
  /** Where snapshot restores create new data directories, `<restoreDir>/<target>`. */
  restoreDir?: string;
  /** Folder for the snapshot's spool (pg_basebackup output, about the cluster's size); the OS temp folder by default. */
  tempDir?: string;
  /** Seconds a tool waits for a connection before it gives up (libpq connect_timeout). */
  connectTimeoutSeconds: number;
  /** Seconds pg_dump waits for a table lock before it gives up (--lock-wait-timeout). */
  lockWaitTimeoutSeconds: number;
  /** Snapshots start with a fast (immediate) checkpoint, or wait for a spread one (gentler, up to minutes). */
  checkpoint: 'fast' | 'spread';
  /** The database psql connects to for listing and creating databases. */
  maintenanceDatabase: string;
}

const absolutePath = z.string().min(1, 'must not be empty').refine(isAbsolute, 'must be an absolute path');

const schema = z
  .strictObject({
    host: z.string().min(1, 'must not be empty').default('localhost'),
    port: z.number().int().min(1).max(65535).default(5432),
    user: z.string().min(1, 'must not be empty').default('postgres'),
    password: z.string().min(1, 'must not be empty').optional(),
    passwordFile: absolutePath.optional(),
    sslmode: z.enum(SSL_MODES).optional(),
    sslrootcert: absolutePath.optional(),
    sslcert: absolutePath.optional(),
    sslkey: absolutePath.optional(),
    include: z.array(safeName).min(1, 'must name at least one database (leave it out for all)').optional(),
    exclude: z.array(safeName).default([]),
    binDir: absolutePath.optional(),
    snapshotReader: z.enum(['auto', 'files', 'pg_basebackup']).default('auto'),
    dataDirectory: absolutePath.optional(),
    restoreDir: absolutePath.optional(),
    tempDir: absolutePath.optional(),
    connectTimeoutSeconds: z.number().int().min(1).max(3600).default(10),
    lockWaitTimeoutSeconds: z.number().int().min(1).max(86_400).default(300),
    checkpoint: z.enum(['fast', 'spread']).default('fast'),
    maintenanceDatabase: z.string().min(1, 'must not be empty').default('postgres'),
  })
  .superRefine((c, ctx) => {
    if (c.password !== undefined && c.passwordFile !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['passwordFile'], message: 'give password or passwordFile, not both' });
    }
    if ((c.sslcert === undefined) !== (c.sslkey === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: [c.sslcert === undefined ? 'sslcert' : 'sslkey'],
        message: 'sslcert and sslkey go together',
      });
    }
  });

export function parsePostgresConfig(input: unknown, path: string): PostgresConfig {
  return parseWith(schema, input, 'postgres source', path);
}

/** The config as it may be printed: the password masked (file paths are not secrets). */
export function redactPostgresConfig(config: PostgresConfig): PostgresConfig {
  return config.password === undefined ? config : { ...config, password: '***' };
}

/**
 * The libpq environment of every tool this source runs: connection, TLS, credentials and timeouts. The
 * caller's own PG* variables are dropped, so nothing but this config decides where a tool connects.
 */
export function connectionEnv(config: PostgresConfig): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('PG')) env[key] = value;
  const set = (key: string, value: string | number | undefined) => {
    if (value !== undefined) env[key] = String(value);
  };
  set('PGHOST', config.host);
  set('PGPORT', config.port);
  set('PGUSER', config.user);
  set('PGPASSWORD', config.password);
  set('PGPASSFILE', config.passwordFile);
  set('PGSSLMODE', config.sslmode);
  set('PGSSLROOTCERT', config.sslrootcert);
  set('PGSSLCERT', config.sslcert);
  set('PGSSLKEY', config.sslkey);
  set('PGCONNECT_TIMEOUT', config.connectTimeoutSeconds);
  set('PGAPPNAME', 'backupd');
  // The tools' own messages in English whatever the machine's locale, so the error mapping can read them.
  delete env.LC_ALL;
  delete env.LANGUAGE;
  env.LC_MESSAGES = 'C';
  return env;
}
