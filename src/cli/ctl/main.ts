// backupctl from argv to exit code: find the command, parse and check its flags (usage errors exit 2
// before anything is sent), connect, run it, and turn any error into a message and an exit code.
// Nothing here touches process.*: the entry point (../backupctl.ts) passes argv, streams and env in.

import { type BackupdApi, type ClientOptions, createClient } from '../../api/client.js';
import { closest, GLOBAL_FLAGS, parseFlags, positiveFlag } from './args.js';
import type { Command, Context } from './command.js';
import { COMMANDS, findCommand, GROUPS, groupCommands } from './commands.js';
import { type ErrorContext, EXIT, errorJson, errorLines, exitCodeFor, UsageError } from './errors.js';
import { commandHelp, generalHelp, groupHelp } from './help.js';
import { type Env, readBinary } from './inputs.js';
import { Output, type TextSink } from './output.js';

export const DEFAULT_SERVER = '127.0.0.1:50051';

export interface CliIo {
  stdout: TextSink;
  stderr: TextSink;
  env: Env;
  /** Makes the API client; tests pass a fake. Default: createClient (src/api/client.ts). */
  connect?: (options: ClientOptions) => BackupdApi;
  /** Milliseconds clock for progress speed. */
  now?: () => number;
  /** Non-terminal progress: one line per this many ms. */
  progressIntervalMs?: number;
}

type Resolved = { kind: 'help'; text: string; code: number } | { kind: 'command'; command: Command; rest: string[] };

const GLOBAL_SHORTS: Record<string, string> = { h: 'help' };

function isHelpFlag(arg: string): boolean {
  return arg === '--help' || arg === '-h';
}

/**
 * Find the command words among the global flags before them; the rest of argv (flags of either kind,
 * positionals) is returned for parsing. Throws UsageError for an unknown command or a flag before it
 * that is not global.
 */
export function resolveCommand(argv: readonly string[]): Resolved {
  const words: number[] = [];
  const end = argv.indexOf('--') === -1 ? argv.length : argv.indexOf('--');
  const wantsHelp = argv.slice(0, end).some(isHelpFlag);
  for (let i = 0; i < end; i++) {
    const arg = argv[i]!;
    if (arg.startsWith('-') && arg !== '-') {
      const bare = arg.replace(/^--?/, '').split('=')[0]!;
      const name = arg.startsWith('--') ? bare : (GLOBAL_SHORTS[bare] ?? bare);
      const spec = (GLOBAL_FLAGS as Record<string, (typeof GLOBAL_FLAGS)[keyof typeof GLOBAL_FLAGS] | undefined>)[name];
      if (!spec) {
        throw new UsageError(
          `unknown flag ${arg} before the command`,
          'only global flags go before the command (see `backupctl --help`); command flags go after it',
        );
      }
      if (spec.type === 'string' && !arg.includes('=')) i++;
      continue;
    }
    words.push(i);
    const first = argv[words[0]!]!;
    if (words.length === 2 || (words.length === 1 && !GROUPS.has(first) && first !== 'help')) break;
  }
  const [first, second] = words.map((i) => argv[i]!);
  const rest = argv.filter((_, i) => !words.includes(i));
  if (first === undefined) {
    return wantsHelp
      ? { kind: 'help', text: generalHelp(), code: EXIT.ok }
      : { kind: 'help', text: generalHelp(), code: EXIT.usage };
  }
  if (first === 'help') {
    if (second === undefined) return { kind: 'help', text: generalHelp(), code: EXIT.ok };
    const named = rest.filter((a) => !a.startsWith('-'));
    return resolveCommand([second, ...named, '--help']);
  }
  if (GROUPS.has(first)) {
    if (second === undefined) {
      if (wantsHelp) return { kind: 'help', text: groupHelp(first), code: EXIT.ok };
      const subs = groupCommands(first).map((c) => c.name.split(' ')[1]);
      throw new UsageError(`${first} needs a command: ${subs.join(', ')}`, `e.g. backupctl ${first} ${subs[0]} --help`);
    }
    const command = findCommand(`${first} ${second}`);
    if (!command) {
      const subs = groupCommands(first).map((c) => c.name.split(' ')[1]!);
      const guess = closest(second, subs);
      throw new UsageError(
        `unknown command "${first} ${second}"`,
        guess ? `did you mean \`backupctl ${first} ${guess}\`?` : `${first} commands: ${subs.join(', ')}`,
      );
    }
    return wantsHelp ? { kind: 'help', text: commandHelp(command), code: EXIT.ok } : { kind: 'command', command, rest };
  }
  const command = findCommand(first);
  if (!command) {
    const names = [...new Set(COMMANDS.map((c) => c.name.split(' ')[0]!))];
    const guess = closest(first, names);
    throw new UsageError(
      `unknown command "${first}"`,
      guess
        ? `did you mean \`backupctl ${guess}\`? (see \`backupctl --help\`)`
        : 'see `backupctl --help` for the commands',
    );
  }
  return wantsHelp ? { kind: 'help', text: commandHelp(command), code: EXIT.ok } : { kind: 'command', command, rest };
}

/** The token wherever it was given, even in arguments that fail to parse, so no message can show it. */
function tokensIn(argv: readonly string[], env: Env): string[] {
  const found = env.BACKUPD_TOKEN ? [env.BACKUPD_TOKEN] : [];
  argv.forEach((arg, i) => {
    if (arg === '--token' && argv[i + 1] !== undefined) found.push(argv[i + 1]!);
    else if (arg.startsWith('--token=')) found.push(arg.slice('--token='.length));
  });
  return found;
}

/** What a command's global flags and the environment say about the connection. */
export interface Connection {
  options: ClientOptions;
  errorContext: ErrorContext;
}

export function connectionFrom(values: Record<string, unknown>, env: Env): Connection {
  const str = (name: string): string | undefined => {
    const v = values[name];
    return typeof v === 'string' ? v : undefined;
  };
  const address = str('server') ?? (env.BACKUPD_SERVER || DEFAULT_SERVER);
  const token = str('token') ?? (env.BACKUPD_TOKEN || undefined);
  const timeout = str('timeout');
  const timeoutSeconds = timeout === undefined ? undefined : positiveFlag(timeout, '--timeout');
  const caFile = str('tls-ca');
  const certFile = str('tls-cert');
  const keyFile = str('tls-key');
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new UsageError(
      certFile === undefined ? '--tls-key needs --tls-cert FILE' : '--tls-cert needs --tls-key FILE',
      'mutual TLS needs the client certificate and its key',
    );
  }
  const tls =
    caFile === undefined && certFile === undefined
      ? undefined
      : {
          ...(caFile === undefined ? {} : { ca: readBinary(caFile, '--tls-ca') }),
          ...(certFile === undefined ? {} : { cert: readBinary(certFile, '--tls-cert') }),
          ...(keyFile === undefined ? {} : { key: readBinary(keyFile, '--tls-key') }),
        };
  const options: ClientOptions = {
    address,
    ...(tls ? { tls } : {}),
    ...(token ? { token } : {}),
    ...(timeoutSeconds === undefined
      ? {}
      : { timeoutMs: timeoutSeconds * 1000, streamTimeoutMs: timeoutSeconds * 1000 }),
  };
  return { options, errorContext: { server: address, timeoutSeconds, hasToken: token !== undefined } };
}

/** Run backupctl with `argv` (without node and the script); resolves with the exit code. */
export async function run(argv: string[], io: CliIo): Promise<number> {
  const beforeTerminator = argv.indexOf('--') === -1 ? argv : argv.slice(0, argv.indexOf('--'));
  const out = new Output(io.stdout, io.stderr, beforeTerminator.includes('--json'));
  for (const token of tokensIn(argv, io.env)) out.addSecret(token);
  let errorContext: ErrorContext = {
    server: io.env.BACKUPD_SERVER || DEFAULT_SERVER,
    timeoutSeconds: undefined,
    hasToken: false,
  };
  let api: BackupdApi | undefined;
  try {
    const resolved = resolveCommand(argv);
    if (resolved.kind === 'help') {
      if (resolved.code === EXIT.ok) out.line(resolved.text);
      else out.error(resolved.text);
      return resolved.code;
    }
    const { command, rest } = resolved;
    const parsed = parseFlags(rest, { ...GLOBAL_FLAGS, ...command.flags }, command.name);
    const connection = connectionFrom(parsed.values, io.env);
    errorContext = connection.errorContext;
    const prepared = command.prepare(parsed, io.env);
    for (const secret of prepared.secrets ?? []) out.addSecret(secret);
    api = (io.connect ?? createClient)(connection.options);
    const context: Context = {
      api,
      out,
      now: io.now ?? Date.now,
      ...(io.progressIntervalMs === undefined ? {} : { progressIntervalMs: io.progressIntervalMs }),
    };
    return await prepared.execute(context);
  } catch (error) {
    for (const line of errorLines(error, errorContext)) out.error(line);
    // One line, so it also ends a JSON-lines stream (watch, restore, verify) as a parsable line.
    if (out.json) out.jsonLine(errorJson(error));
    return exitCodeFor(error);
  } finally {
    api?.close();
  }
}
