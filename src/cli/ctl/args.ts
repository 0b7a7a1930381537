// Command-line parsing for backupctl on top of node:util parseArgs: typed flag values, and usage errors
// that name the flag and say what to type instead (unknown, repeated, missing value, bad number).

import { parseArgs } from 'node:util';
import { UsageError } from './errors.js';

export interface FlagSpec {
  readonly type: 'string' | 'boolean';
  /** Repeatable: the value is every occurrence, in order. */
  readonly multiple?: boolean;
  readonly short?: string;
  /** Placeholder of the value in help, e.g. `FILE`. */
  readonly value?: string;
  readonly help: string;
}

export type FlagSpecs = Readonly<Record<string, FlagSpec>>;

/** Booleans are always present (false when absent), repeatable flags always an array, others maybe absent. */
export type FlagValues<S extends FlagSpecs> = {
  -readonly [K in keyof S]: S[K] extends { type: 'boolean' }
    ? boolean
    : S[K] extends { multiple: true }
      ? string[]
      : string | undefined;
};

export interface ParsedArgs<S extends FlagSpecs> {
  values: FlagValues<S>;
  positionals: string[];
}

/** Flags that are read before any command; they may stand before or after the command words. */
export const GLOBAL_FLAGS = {
  server: { type: 'string', value: 'HOST:PORT', help: 'agent address (env BACKUPD_SERVER; default 127.0.0.1:50051)' },
  token: {
    type: 'string',
    value: 'TOKEN',
    help: 'bearer token (env BACKUPD_TOKEN, preferred: flags are visible to other users in ps); never printed',
  },
  'tls-ca': { type: 'string', value: 'FILE', help: 'PEM CA certificate: connect with TLS and trust this CA' },
  'tls-cert': { type: 'string', value: 'FILE', help: 'PEM client certificate for mutual TLS (with --tls-key)' },
  'tls-key': { type: 'string', value: 'FILE', help: 'PEM private key of the client certificate' },
  json: { type: 'boolean', help: 'machine output: one JSON document on stdout (JSON lines for streams)' },
  timeout: { type: 'string', value: 'SECONDS', help: 'deadline of each call (default 30; streams: none unless set)' },
  help: { type: 'boolean', short: 'h', help: 'show help for the command' },
} as const satisfies FlagSpecs;

export type GlobalFlags = typeof GLOBAL_FLAGS;

/** Flags that must never be accepted, with what to use instead. */
const REFUSED: Record<string, string> = {
  key: 'a key on the command line ends up in shell history and in ps: use --key-file FILE or --key-env VAR',
  'encryption-key':
    'a key on the command line ends up in shell history and in ps: use --key-file FILE or --key-env VAR',
};

function flagName(name: string): string {
  return name.length === 1 ? `-${name}` : `--${name}`;
}

/** The edit distance of two short strings, for "did you mean". */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(above + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

/** The closest of `candidates` to `word`, if it is close enough to be a likely typo. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const candidate of candidates) {
    const d = distance(word, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return bestDistance <= Math.max(1, Math.floor(word.length / 3)) ? best : undefined;
}

/**
 * Parse `args` against `specs`. Throws UsageError for an unknown or refused flag, a missing value, a value
 * given to a boolean flag, and a non-repeatable flag given twice. `where` names the command in messages.
 */
export function parseFlags<S extends FlagSpecs>(args: readonly string[], specs: S, where: string): ParsedArgs<S> {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }> = {};
  for (const [name, spec] of Object.entries(specs)) {
    options[name] = {
      type: spec.type,
      ...(spec.multiple ? { multiple: true } : {}),
      ...(spec.short ? { short: spec.short } : {}),
    };
  }
  // strict: false so this code, not parseArgs, words every usage error; the tokens say exactly what was typed.
  const { tokens } = parseArgs({ args: [...args], options, strict: false, allowPositionals: true, tokens: true });
  const values: Record<string, string | boolean | string[] | undefined> = {};
  for (const [name, spec] of Object.entries(specs)) {
    values[name] = spec.type === 'boolean' ? false : spec.multiple ? [] : undefined;
  }
  const seen = new Set<string>();
  const positionals: string[] = [];
  const helpAt = `run \`backupctl ${where} --help\` for its flags`;
  for (const token of tokens) {
    if (token.kind === 'positional') {
      positionals.push(token.value);
      continue;
    }
    if (token.kind !== 'option') continue;
    const spec = specs[token.name];
    if (!spec) {
      const refused = REFUSED[token.name];
      if (refused) throw new UsageError(`${where}: ${token.rawName} is not accepted: ${refused}`);
      const guess = closest(token.name, Object.keys(specs));
      throw new UsageError(
        `${where}: unknown flag ${token.rawName}`,
        guess ? `did you mean ${flagName(guess)}? (${helpAt})` : helpAt,
      );
    }
    const shown = flagName(token.name);
    if (spec.type === 'boolean') {
      if (token.value !== undefined) {
        throw new UsageError(`${where}: ${shown} takes no value (got "${token.value}")`, `write just ${shown}`);
      }
      values[token.name] = true;
      continue;
    }
    if (token.value === undefined || (!token.inlineValue && token.value.startsWith('--'))) {
      throw new UsageError(
        `${where}: ${shown} needs a value`,
        `write ${shown} ${spec.value ?? 'VALUE'}${token.value === undefined ? '' : ` before ${token.value}`}`,
      );
    }
    if (spec.multiple) {
      (values[token.name] as string[]).push(token.value);
    } else {
      if (seen.has(token.name)) {
        throw new UsageError(`${where}: ${shown} is given twice`, `give ${shown} once`);
      }
      values[token.name] = token.value;
    }
    seen.add(token.name);
  }
  // The record was built from `specs` with the shapes FlagValues<S> describes.
  return { values: values as FlagValues<S>, positionals };
}

/** A whole number within [min, max], or a UsageError naming the flag. */
export function intFlag(value: string, flag: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = /^\d+$/.test(value.trim()) ? Number(value.trim()) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `${min}..${max}`;
    throw new UsageError(`${flag} must be a whole number ${range} (got "${value}")`);
  }
  return n;
}

/** A number > 0, or a UsageError naming the flag. */
export function positiveFlag(value: string, flag: string): number {
  const n = value.trim() === '' ? Number.NaN : Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`${flag} must be a number > 0 (got "${value}")`);
  return n;
}

/** One of `choices`, or a UsageError listing them. */
export function choiceFlag<T extends string>(value: string, flag: string, choices: readonly T[]): T {
  if ((choices as readonly string[]).includes(value)) return value as T;
  throw new UsageError(`${flag} must be ${choices.join(' or ')} (got "${value}")`);
}

/** A `<source>/<db>` name; the server checks the parts, this only catches a missing slash. */
export function databaseFlag(value: string, flag: string): string {
  if (!/^[^/]+\/[^/]+$/.test(value)) {
    throw new UsageError(`${flag} must be <source>/<database>, e.g. main/orders (got "${value}")`);
  }
  return value;
}

/** Exactly `names.length` positionals (the last ones optional from `required` on), or a UsageError. */
export function expectPositionals(
  positionals: readonly string[],
  names: readonly string[],
  where: string,
  required = names.length,
): string[] {
  if (positionals.length < required) {
    const missing = names.slice(positionals.length, required).join(' ');
    throw new UsageError(`${where}: missing ${missing}`, `usage: backupctl ${where} ${names.join(' ')}`);
  }
  if (positionals.length > names.length) {
    const extra = positionals.slice(names.length);
    throw new UsageError(
      `${where}: unexpected argument${extra.length > 1 ? 's' : ''} ${extra.map((e) => `"${e}"`).join(' ')}`,
      names.length === 0 ? `usage: backupctl ${where} [flags]` : `usage: backupctl ${where} ${names.join(' ')}`,
    );
  }
  return [...positionals];
}
