// The mariadb source's config: how to reach the server (socket or host/port, user, password from the
// config, a file or an environment variable, TLS), which databases, where the client tools live. Checked
// with zod (every bad field at once, unknown keys rejected); the password reaches the tools only as
// MYSQL_PWD in a child's environment, never on a command line.

import { readFileSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { BackupdError, messageOf } from '../errors.js';
import { parseWith, safeName, z } from '../validate.js';

export interface MariadbTls {
  /** CA certificate(s) the server's certificate must chain to. */
  ca?: string;
  /** Client certificate and key, for servers that require them (go together). */
  cert?: string;
  key?: string;
  /** Check the server's certificate and host name (default); false only encrypts. */
  verifyServerCert: boolean;
}

export interface MariadbConfig {
  /** The server's Unix socket; give socket or host, not both. */
  socket?: string;
  /** Host name or address, reached over TCP (`localhost` too: the socket is only used when `socket` is set). */
  host: string;
  port: number;
  user: string;
  /** Given to the tools as MYSQL_PWD, never on a command line. */
  password?: string;
  /** A file holding the password (its first line), read at each connection: rotate it in place. */
  passwordFile?: string;
  /** The name of an environment variable of the agent holding the password. */
  passwordEnv?: string;
  /** Encrypt connections (absent: the client's default, no TLS). */
  tls?: MariadbTls;
  /** Only these databases (exact names); all but the system schemas by default. */
  include?: string[];
  /** Never these databases. */
  exclude: string[];
  /**
   * Also keep, with each backup, the accounts that own the database's views, routines, triggers and events
   * or hold privileges on it, and those privileges; a restore creates the missing accounts (locked, without
   * a password) and grants them the same privileges on the new database.
   */
  grants: boolean;
  /** Folder of the client tools (mariadb, mariadb-dump); default: PATH. */
  binDir?: string;
  /** Seconds a tool waits for a connection before it gives up (--connect-timeout). */
  connectTimeoutSeconds: number;
  /** Where snapshot restores create new data directories, `<restoreDir>/<target>`. */
  restoreDir?: string;
  /** Folder for mariadb-backup's own temporary files while it streams a snapshot; the OS temp folder by default. */
  tempDir?: string;
}

const absolutePath = z.string().min(1, 'must not be empty').refine(isAbsolute, 'must be an absolute path');

const schema = z
  .strictObject({
    socket: absolutePath.optional(),
    host: z.string().min(1, 'must not be empty').optional(),
    port: z.number().int().min(1).max(65535).default(3306),
    user: z.string().min(1, 'must not be empty').max(128).default('root'),
    password: z.string().min(1, 'must not be empty').optional(),
    passwordFile: absolutePath.optional(),
    passwordEnv: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name')
      .optional(),
    tls: z
      .strictObject({
        ca: absolutePath.optional(),
        cert: absolutePath.optional(),
        key: absolutePath.optional(),
        verifyServerCert: z.boolean().default(true),
      })
      .optional(),
    include: z.array(safeName).min(1, 'must name at least one database (leave it out for all)').optional(),
    exclude: z.array(safeName).default([]),
    grants: z.boolean().default(false),
    binDir: absolutePath.optional(),
    connectTimeoutSeconds: z.number().int().min(1).max(3600).default(10),
    restoreDir: absolutePath.optional(),
    tempDir: absolutePath.optional(),
  })
  .superRefine((c, ctx) => {
    if (c.socket !== undefined && c.host !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['host'], message: 'give socket or host, not both' });
    }
    const given = (['password', 'passwordFile', 'passwordEnv'] as const).filter((k) => c[k] !== undefined);
    if (given.length > 1) {
      ctx.addIssue({ code: 'custom', path: [given[1]!], message: 'give one of password, passwordFile, passwordEnv' });
    }
    if (c.tls && (c.tls.cert === undefined) !== (c.tls.key === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['tls', c.tls.cert === undefined ? 'cert' : 'key'],
        message: 'cert and key go together',
      });
    }
  })
  .transform(({ host, ...rest }): MariadbConfig => ({ ...rest, host: host ?? 'localhost' }));

export function parseMariadbConfig(input: unknown, path: string): MariadbConfig {
  return parseWith(schema, input, 'mariadb source', path);
}

/** The config as it may be printed: the password masked (file paths and variable names are not secrets). */
export function redactMariadbConfig(config: MariadbConfig): MariadbConfig {
  return config.password === undefined ? config : { ...config, password: '***' };
}

/**
 * The arguments every client tool of this source starts with: no option files (nothing but this config
 * decides where a tool connects), then the connection and TLS. `--no-defaults` must come first. (The
 * `mariadb` client's --connect-timeout is added by its callers: mariadb-dump has no such option.)
 */
export function connectionArgs(config: MariadbConfig): string[] {
  const args = ['--no-defaults', `--user=${config.user}`];
  if (config.socket !== undefined) args.push('--protocol=socket', `--socket=${config.socket}`);
  else args.push('--protocol=tcp', `--host=${config.host}`, `--port=${config.port}`);
  const tls = config.tls;
  if (tls) {
    args.push('--ssl');
    if (tls.ca) args.push(`--ssl-ca=${tls.ca}`);
    if (tls.cert) args.push(`--ssl-cert=${tls.cert}`);
    if (tls.key) args.push(`--ssl-key=${tls.key}`);
    args.push(tls.verifyServerCert ? '--ssl-verify-server-cert' : '--skip-ssl-verify-server-cert');
  }
  return args;
}

/**
 * The environment of every tool this source runs: the caller's own MYSQL_* variables dropped, the password
 * (read now from its file or variable) as MYSQL_PWD. Throws PERMISSION_DENIED when the password cannot be read.
 */
export function connectionEnv(config: MariadbConfig): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('MYSQL')) env[key] = value;
  const password = passwordOf(config);
  if (password !== undefined) env.MYSQL_PWD = password;
  // The tools' own messages in English whatever the machine's locale, so the error mapping can read them.
  delete env.LC_ALL;
  delete env.LANGUAGE;
  env.LC_MESSAGES = 'C';
  return env;
}

function passwordOf(config: MariadbConfig): string | undefined {
  if (config.password !== undefined) return config.password;
  if (config.passwordEnv !== undefined) {
    const value = process.env[config.passwordEnv];
    if (value === undefined || value === '') {
      throw new BackupdError(
        'PERMISSION_DENIED',
        `the MariaDB password variable ${config.passwordEnv} is not set in the agent's environment`,
      );
    }
    return value;
  }
  if (config.passwordFile !== undefined) {
    let text: string;
    try {
      text = readFileSync(config.passwordFile, 'utf8');
    } catch (error) {
      throw new BackupdError(
        'PERMISSION_DENIED',
        `cannot read the MariaDB password file ${config.passwordFile}: ${messageOf(error)}`,
        { cause: error },
      );
    }
    const line = text.split(/\r?\n/)[0] ?? '';
    if (line === '') {
      throw new BackupdError('PERMISSION_DENIED', `the MariaDB password file ${config.passwordFile} is empty`);
    }
    return line;
  }
  return undefined;
}
