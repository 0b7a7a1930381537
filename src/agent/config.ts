// The agent's configuration: a JSON file, overridden by environment variables, overridden by flags. Every
// problem (unknown keys included) is reported at once at start, with its field path; secrets are masked
// whenever the config is printed or logged.

import { readFileSync } from 'node:fs';
import { availableParallelism, hostname } from 'node:os';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { EtcdConfig } from '../cluster/etcd-client.js';
import { BackupdError, type FieldProblem, messageOf, ValidationError } from '../errors.js';
import type { SourceRegistry, SourceSpec } from '../sources/registry.js';
import { problemsOf, safeName, z } from '../validate.js';

export interface AgentConfig {
  node: string;
  cluster: string;
  /** gRPC listen address, host:port. */
  listen: string;
  /** State (store), staging and caches live here. */
  dataDir: string;
  sources: SourceSpec[];
  tls?: { certFile: string; keyFile: string; caFile?: string; requireClientCert: boolean };
  auth: { token?: string; readOnlyToken?: string };
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Prometheus endpoint (host:port), off when absent. */
  metricsListen?: string;
  /** Runs at once on this node; default max(1, cores / 2). */
  maxConcurrentRuns: number;
  /** How often server-wide tasks look for new or dropped databases. */
  discoverySeconds: number;
  /** A tick that fires this late still counts as on time (a late timer), not as missed. */
  lateToleranceSeconds: number;
  /** The cluster's etcd; absent: the single-node embedded default. */
  etcd?: EtcdConfig;
  /** The address other nodes reach this one at (forwarded calls); defaults to `listen`. */
  advertise: string;
}

const hostPort = z.string().regex(/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'must be host:port');

const schema = z.strictObject({
  node: safeName.optional(),
  cluster: safeName.default('default'),
  listen: hostPort.default('127.0.0.1:50051'),
  dataDir: z.string().min(1).default('backupd-data'),
  sources: z.array(z.strictObject({ name: safeName, engine: z.string().min(1), config: z.unknown() })).default([]),
  tls: z
    .strictObject({
      certFile: z.string().min(1),
      keyFile: z.string().min(1),
      caFile: z.string().min(1).optional(),
      requireClientCert: z.boolean().default(false),
    })
    .optional(),
  auth: z
    .strictObject({
      token: z.string().min(16, 'must be at least 16 characters').optional(),
      tokenFile: z.string().min(1).optional(),
      readOnlyToken: z.string().min(16, 'must be at least 16 characters').optional(),
    })
    .default({}),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  metricsListen: hostPort.optional(),
  maxConcurrentRuns: z.number().int().min(1).max(64).optional(),
  discoverySeconds: z.number().positive().max(3600).default(10),
  lateToleranceSeconds: z.number().positive().max(3600).default(60),
  advertise: hostPort.optional(),
  etcd: z
    .strictObject({
      endpoints: z
        .array(z.string().regex(/^https?:\/\/[^\s/]+$/, 'must be http(s)://host:port'))
        .min(1, 'needs at least one endpoint'),
      leaseTtlSeconds: z.number().int().min(1).max(300).default(5),
      callTimeoutSeconds: z.number().positive().max(60).default(3),
      startTimeoutSeconds: z.number().positive().max(3600).default(30),
      username: z.string().min(1).optional(),
      passwordFile: z.string().min(1).optional(),
      tls: z
        .strictObject({
          caFile: z.string().min(1),
          certFile: z.string().min(1).optional(),
          keyFile: z.string().min(1).optional(),
        })
        .optional(),
    })
    .optional(),
});

/** Environment variables and the config field each overrides. */
export const ENV_OVERRIDES: Record<string, string> = {
  BACKUPD_NODE: 'node',
  BACKUPD_CLUSTER: 'cluster',
  BACKUPD_LISTEN: 'listen',
  BACKUPD_DATA_DIR: 'dataDir',
  BACKUPD_LOG_LEVEL: 'logLevel',
  BACKUPD_METRICS_LISTEN: 'metricsListen',
  BACKUPD_TOKEN: 'auth.token',
  BACKUPD_ADVERTISE: 'advertise',
};

/** Comma-separated etcd endpoints; turns the cluster on. */
export const ETCD_ENDPOINTS_ENV = 'BACKUPD_ETCD_ENDPOINTS';

export interface ConfigInput {
  /** Path of the JSON config file, if any; relative paths inside it are read from its folder. */
  file?: string;
  env: Record<string, string | undefined>;
  /** Flag overrides by config field (dotted), already parsed by the CLI. */
  flags: Record<string, string | undefined>;
}

/** Read, merge and validate the agent's config; throws ValidationError listing every problem. */
export function loadAgentConfig(input: ConfigInput, sources: SourceRegistry): AgentConfig {
  let raw: Record<string, unknown> = {};
  const base = input.file ? dirname(resolve(input.file)) : process.cwd();
  if (input.file) {
    let text: string;
    try {
      text = readFileSync(input.file, 'utf8');
    } catch (error) {
      throw new BackupdError('INVALID_ARGUMENT', `cannot read config file ${input.file}: ${messageOf(error)}`);
    }
    try {
      const parsed: unknown = JSON.parse(text);
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
      raw = parsed as Record<string, unknown>;
    } catch (error) {
      throw new BackupdError('INVALID_ARGUMENT', `config file ${input.file} is not a JSON object: ${messageOf(error)}`);
    }
  }
  for (const [variable, field] of Object.entries(ENV_OVERRIDES)) {
    const value = input.env[variable];
    if (value !== undefined && value !== '') setPath(raw, field, value);
  }
  const endpoints = input.env[ETCD_ENDPOINTS_ENV];
  if (endpoints) {
    const etcd = (typeof raw.etcd === 'object' && raw.etcd !== null ? raw.etcd : {}) as Record<string, unknown>;
    raw.etcd = { ...etcd, endpoints: endpoints.split(',').map((e) => e.trim()) };
  }
  for (const [field, value] of Object.entries(input.flags)) {
    if (value !== undefined) setPath(raw, field, value);
  }

  const result = schema.safeParse(raw);
  const problems: FieldProblem[] = result.success ? [] : problemsOf(result.error);
  if (Array.isArray(raw.sources)) {
    const seen = new Set<string>();
    raw.sources.forEach((s: unknown, i) => {
      const spec = s as Partial<SourceSpec> | undefined;
      if (typeof spec?.engine !== 'string' || typeof spec.name !== 'string') return;
      if (seen.has(spec.name)) problems.push({ path: `sources[${i}].name`, message: `"${spec.name}" is used twice` });
      seen.add(spec.name);
      problems.push(...sources.problems(withAbsolutePaths(spec as SourceSpec, base), `sources[${i}]`));
    });
  }
  let token: string | undefined;
  let etcdPassword: string | undefined;
  if (result.success && result.data.etcd?.passwordFile) {
    try {
      etcdPassword = readFileSync(resolve(base, result.data.etcd.passwordFile), 'utf8').trim();
    } catch (error) {
      problems.push({ path: 'etcd.passwordFile', message: `cannot read: ${messageOf(error)}` });
    }
  }
  if (result.success) {
    const auth = result.data.auth;
    if (auth.token && auth.tokenFile) problems.push({ path: 'auth', message: 'give token or tokenFile, not both' });
    token = auth.token;
    if (auth.tokenFile) {
      try {
        token = readFileSync(resolve(base, auth.tokenFile), 'utf8').trim();
        if (token.length < 16)
          problems.push({ path: 'auth.tokenFile', message: 'token must be at least 16 characters' });
      } catch (error) {
        problems.push({ path: 'auth.tokenFile', message: `cannot read: ${messageOf(error)}` });
      }
    }
  }
  if (problems.length > 0 || !result.success) throw new ValidationError('agent config', problems);

  const c = result.data;
  return {
    node: c.node ?? nodeNameFromHost(),
    cluster: c.cluster,
    listen: c.listen,
    dataDir: resolve(base, c.dataDir),
    sources: c.sources.map((s) => withAbsolutePaths(s, base)),
    tls: c.tls && {
      certFile: resolve(base, c.tls.certFile),
      keyFile: resolve(base, c.tls.keyFile),
      caFile: c.tls.caFile && resolve(base, c.tls.caFile),
      requireClientCert: c.tls.requireClientCert,
    },
    auth: { token, readOnlyToken: c.auth.readOnlyToken },
    logLevel: c.logLevel,
    metricsListen: c.metricsListen,
    maxConcurrentRuns: c.maxConcurrentRuns ?? Math.max(1, Math.floor(availableParallelism() / 2)),
    discoverySeconds: c.discoverySeconds,
    lateToleranceSeconds: c.lateToleranceSeconds,
    advertise: c.advertise ?? c.listen,
    ...(c.etcd
      ? {
          etcd: {
            endpoints: c.etcd.endpoints,
            leaseTtlSeconds: c.etcd.leaseTtlSeconds,
            callTimeoutSeconds: c.etcd.callTimeoutSeconds,
            startTimeoutSeconds: c.etcd.startTimeoutSeconds,
            ...(c.etcd.username ? { username: c.etcd.username, password: etcdPassword } : {}),
            ...(c.etcd.tls
              ? {
                  tls: {
                    caFile: resolve(base, c.etcd.tls.caFile),
                    ...(c.etcd.tls.certFile ? { certFile: resolve(base, c.etcd.tls.certFile) } : {}),
                    ...(c.etcd.tls.keyFile ? { keyFile: resolve(base, c.etcd.tls.keyFile) } : {}),
                  },
                }
              : {}),
          },
        }
      : {}),
  };
}

/** The config as it may be logged: tokens masked. */
export function redactConfig(config: AgentConfig): AgentConfig {
  const mask = (s: string | undefined) => (s === undefined ? undefined : '***');
  return {
    ...config,
    auth: { token: mask(config.auth.token), readOnlyToken: mask(config.auth.readOnlyToken) },
    ...(config.etcd ? { etcd: { ...config.etcd, password: mask(config.etcd.password) } } : {}),
  };
}

/** A source's file paths relative to the config file's folder, so a config can travel with its data. */
/** The config keys of every engine that hold a file or folder path (sqlite: path; postgres: the rest). */
const SOURCE_PATH_KEYS = [
  'path',
  'tempDir',
  'restoreDir',
  'binDir',
  'passwordFile',
  'sslrootcert',
  'sslcert',
  'sslkey',
];

function withAbsolutePaths(spec: SourceSpec, base: string): SourceSpec {
  const config = spec.config as Record<string, unknown> | undefined;
  if (typeof config !== 'object' || config === null) return spec;
  const fixed = { ...config };
  for (const key of SOURCE_PATH_KEYS) {
    const value = fixed[key];
    if (typeof value === 'string' && value !== '' && !isAbsolute(value)) fixed[key] = resolve(base, value);
  }
  return { ...spec, config: fixed };
}

function nodeNameFromHost(): string {
  const name = hostname()
    .replace(/[^A-Za-z0-9._-]/g, '-')
    .replace(/^[^A-Za-z0-9]+/, '');
  return name || 'node1';
}

function setPath(target: Record<string, unknown>, dotted: string, value: unknown): void {
  const parts = dotted.split('.');
  let at = target;
  for (const part of parts.slice(0, -1)) {
    const next = at[part];
    if (typeof next !== 'object' || next === null) at[part] = {};
    at = at[part] as Record<string, unknown>;
  }
  at[parts.at(-1)!] = value;
}
