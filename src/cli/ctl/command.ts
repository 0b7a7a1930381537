// What a backupctl command is: its words, flags and help, a prepare step that checks the arguments and
// reads files without contacting the server, and the execution against the API.

import type { BackupdApi } from '../../api/client.js';
import type { FlagSpecs, ParsedArgs } from './args.js';
import type { Env } from './inputs.js';
import type { Output, TextSink } from './output.js';

export interface Context {
  api: BackupdApi;
  out: Output;
  /** Milliseconds clock for progress speed; injected in tests. */
  now: () => number;
  /** Non-terminal progress: one line per this many ms (default 5000). */
  progressIntervalMs?: number;
}

/** A command whose arguments are checked: what it will send, the secrets to mask, and how to run it. */
export interface Prepared {
  /** The request of the first RPC, for tests and for --help-free dry inspection. */
  request: unknown;
  /** Secrets read while preparing (encryption keys); masked in every output. */
  secrets?: string[];
  /** Runs the command; resolves with the exit code, throws on errors (main maps them). */
  execute(context: Context): Promise<number>;
}

export interface Command<S extends FlagSpecs = FlagSpecs> {
  /** The command words, e.g. `task create`. */
  name: string;
  /** Positional arguments in the usage line, e.g. `NAME`. */
  args: string;
  summary: string;
  /** More help: notes and examples, printed after the flags. */
  notes?: string;
  flags: S;
  /** Check the arguments and read files; throws UsageError (exit 2) without contacting the server. */
  prepare(args: ParsedArgs<S>, env: Env): Prepared;
}

/** A command with its flag types checked against its own flags, stored in the list without them. */
export function defineCommand<const S extends FlagSpecs>(command: Command<S>): Command {
  // prepare only ever receives arguments parsed with `command.flags` (main.ts), so its narrower parameter
  // type holds; `prepare` is declared as a method, which TypeScript lets narrow its parameter.
  return command;
}

/** A sink that writes through `out` (masked) with stdout's terminal traits, for progress bars. */
export function progressSink(out: Output): TextSink {
  return {
    write: (text: string) => out.write(text),
    isTTY: out.stdout.isTTY === true,
    columns: out.stdout.columns ?? 80,
  };
}
