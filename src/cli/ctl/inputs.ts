// What backupctl reads besides its arguments: JSON files, encryption keys (from a file or an environment
// variable, never from the command line), and destinations given as NAME:KIND:JSON or in a file.
// Errors never quote file contents or config values: they may hold secrets.

import { readFileSync } from 'node:fs';
import type { DestinationSpec } from '../../uploader/registry.js';
import type { FlagSpecs } from './args.js';
import { UsageError } from './errors.js';

export type Env = Readonly<Record<string, string | undefined>>;

export const KEY_FLAGS = {
  'key-file': {
    type: 'string',
    value: 'FILE',
    help: 'read the encryption key from FILE (one trailing newline is dropped)',
  },
  'key-env': { type: 'string', value: 'VAR', help: 'read the encryption key from the environment variable VAR' },
} as const satisfies FlagSpecs;

export const KEY_HELP =
  'The encryption key is never accepted on the command line (it would show in shell history and ps):\n' +
  'give it with --key-file FILE or --key-env VAR.';

export const DEST_FLAGS = {
  dest: {
    type: 'string',
    multiple: true,
    value: 'NAME:KIND:JSON',
    help: `a destination, e.g. disk:local:'{"path":"/var/backups"}' (repeatable; docs/DESTINATIONS.md)`,
  },
  'dest-file': {
    type: 'string',
    multiple: true,
    value: 'FILE',
    help: 'destinations from a JSON file: one {name, kind, config} or an array of them (repeatable)',
  },
} as const satisfies FlagSpecs;

function unreadable(error: unknown, path: string, flag: string): UsageError {
  const code = (error as NodeJS.ErrnoException).code;
  const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (code ?? 'unreadable');
  return new UsageError(`${flag} ${path}: cannot read it (${why})`);
}

function readText(path: string, flag: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw unreadable(error, path, flag);
  }
}

/** A file's bytes, for certificates; UsageError naming the flag when it cannot be read. */
export function readBinary(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw unreadable(error, path, flag);
  }
}

/** A JSON file's value; UsageError naming the flag when it is unreadable or not JSON (contents not quoted). */
export function readJsonFile(path: string, flag: string): unknown {
  const text = readText(path, flag);
  try {
    return JSON.parse(text);
  } catch {
    throw new UsageError(
      `${flag} ${path}: not valid JSON`,
      'check it with: node -e "JSON.parse(require(\'fs\').readFileSync(process.argv[1]))" FILE',
    );
  }
}

/** The encryption key from --key-file or --key-env, or undefined when neither is given. */
export function readKey(
  values: { 'key-file'?: string | undefined; 'key-env'?: string | undefined },
  env: Env,
): string | undefined {
  const file = values['key-file'];
  const variable = values['key-env'];
  if (file !== undefined && variable !== undefined) {
    throw new UsageError('--key-file and --key-env cannot be used together', 'give the key one way');
  }
  if (file !== undefined) {
    const key = readText(file, '--key-file').replace(/\r?\n$/, '');
    if (key === '') throw new UsageError(`--key-file ${file}: the file is empty`);
    return key;
  }
  if (variable !== undefined) {
    const key = env[variable];
    if (!key) throw new UsageError(`--key-env ${variable}: the environment variable ${variable} is not set or empty`);
    return key;
  }
  return undefined;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `NAME:KIND:JSON` as a destination spec; the config must be a JSON object. */
export function parseDest(value: string, flag = '--dest'): DestinationSpec {
  const match = /^([^:{]+):([^:{]+):([\s\S]*)$/.exec(value);
  const example = `${flag} disk:local:'{"path":"/var/backups"}'`;
  if (!match) throw new UsageError(`${flag} must be NAME:KIND:JSONCONFIG`, `e.g. ${example}`);
  const [, name = '', kind = '', json = ''] = match;
  let config: unknown;
  try {
    config = JSON.parse(json);
  } catch {
    throw new UsageError(
      `${flag} ${name}: the config is not valid JSON`,
      `quote the whole value for the shell, e.g. ${example}`,
    );
  }
  if (!isObject(config)) throw new UsageError(`${flag} ${name}: the config must be a JSON object`, `e.g. ${example}`);
  return { name, kind, config };
}

/** Destinations from a --dest-file: one {name, kind, config} object or an array of them. */
export function readDestFile(path: string, flag = '--dest-file'): DestinationSpec[] {
  const value = readJsonFile(path, flag);
  const list = Array.isArray(value) ? value : [value];
  return list.map((item: unknown, i) => {
    const where = Array.isArray(value) ? `${flag} ${path} [${i}]` : `${flag} ${path}`;
    if (!isObject(item) || typeof item.name !== 'string' || typeof item.kind !== 'string' || !isObject(item.config)) {
      throw new UsageError(`${where}: a destination needs "name" and "kind" strings and a "config" object`);
    }
    const extra = Object.keys(item).filter((k) => k !== 'name' && k !== 'kind' && k !== 'config');
    if (extra.length > 0)
      throw new UsageError(`${where}: unknown field${extra.length > 1 ? 's' : ''} ${extra.join(', ')}`);
    return { name: item.name, kind: item.kind, config: item.config };
  });
}

/** Every destination of --dest and --dest-file, in that order. */
export function destinations(values: { dest: string[]; 'dest-file': string[] }): DestinationSpec[] {
  return [...values.dest.map((d) => parseDest(d)), ...values['dest-file'].flatMap((f) => readDestFile(f))];
}
