// The one place that turns errors into what an operator reads and into backupctl's exit code.
//
// Exit codes (also in `backupctl --help`):
//   0  ok
//   1  a run failed, or any other error
//   2  usage error or invalid argument (nothing was sent for a usage error)
//   3  not found
//   4  server unavailable or timed out
//   5  unauthenticated or permission denied
//   6  already exists or failed precondition (e.g. a changed revision)

import { status } from '@grpc/grpc-js';
import { RpcError } from '../../api/client.js';
import { isBackupdError, messageOf, ValidationError } from '../../errors.js';

export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  notFound: 3,
  unavailable: 4,
  denied: 5,
  conflict: 6,
} as const;

export const EXIT_CODES_HELP = `Exit codes:
  0  ok
  1  a run failed, or another error
  2  usage error or invalid argument
  3  not found
  4  server unavailable or timed out
  5  unauthenticated or permission denied
  6  already exists or failed precondition`;

/** A mistake on the command line, found before anything is sent. `hint` says what to type instead. */
export class UsageError extends Error {
  readonly hint: string | undefined;

  constructor(message: string, hint?: string) {
    super(message);
    this.name = 'UsageError';
    this.hint = hint;
  }
}

/** A run that ended without success; its own error is already in `message`. */
export class RunFailedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RunFailedError';
  }
}

export function exitCodeFor(error: unknown): number {
  if (error instanceof UsageError || isBackupdError(error, 'INVALID_ARGUMENT')) return EXIT.usage;
  if (!(error instanceof RpcError)) return EXIT.failed;
  switch (error.status) {
    case status.INVALID_ARGUMENT:
    case status.OUT_OF_RANGE:
      return EXIT.usage;
    case status.NOT_FOUND:
      return EXIT.notFound;
    case status.UNAVAILABLE:
    case status.DEADLINE_EXCEEDED:
      return EXIT.unavailable;
    case status.UNAUTHENTICATED:
    case status.PERMISSION_DENIED:
      return EXIT.denied;
    case status.ALREADY_EXISTS:
    case status.FAILED_PRECONDITION: // also a changed revision (task update --expected-revision)
      return EXIT.conflict;
    // ABORTED (a source or destination failed for good), DATA_LOSS (a pack or manifest missing or damaged)
    // and the rest are failures of the operation, not of how it was asked: 1.
    default:
      return EXIT.failed;
  }
}

export interface ErrorContext {
  server: string;
  timeoutSeconds: number | undefined;
  /** Whether a token was given, to say what to check on UNAUTHENTICATED. */
  hasToken: boolean;
}

/** What to print on stderr for `error`, first line `error: ...`. */
export function errorLines(error: unknown, context: ErrorContext): string[] {
  if (error instanceof UsageError) {
    return [`error: ${error.message}`, ...(error.hint ? [`  ${error.hint}`] : [])];
  }
  if (error instanceof ValidationError) {
    // Found before sending (a task file's shape): shown like the agent's INVALID_ARGUMENT answers.
    return [`error: ${error.message.split(':')[0]}`, ...error.problems.map((p) => `  ${p.path}: ${p.message}`)];
  }
  if (!(error instanceof RpcError)) return [`error: ${messageOf(error)}`];
  const lines = [`error: ${error.message}`];
  switch (error.status) {
    case status.INVALID_ARGUMENT: {
      // The agent's message repeats the problems after its summary ("invalid task: a: ...; b: ..."); they
      // get a line each below, so the first line keeps only the summary.
      const first = error.problems[0];
      const cut = first ? error.message.indexOf(`: ${first.path}`) : -1;
      if (cut > 0) lines[0] = `error: ${error.message.slice(0, cut)}`;
      for (const problem of error.problems) lines.push(`  ${problem.path}: ${problem.message}`);
      break;
    }
    case status.UNAVAILABLE:
      // The agent itself answers UNAVAILABLE when the cluster has no leader; then the address is fine.
      if (!error.fromServer) {
        // grpc-js ends this message with an empty "Resolution note:"; it says nothing to an operator.
        const why = error.message.replace(/\s*Resolution note:\s*$/, '');
        lines[0] = `error: cannot reach backupd at ${context.server}: ${why}`;
        lines.push(
          `  check the address (--server HOST:PORT or BACKUPD_SERVER) and that the agent runs there;`,
          '  a TLS agent needs --tls-ca FILE, a plaintext one none',
        );
      }
      break;
    case status.DEADLINE_EXCEEDED:
      lines[0] = `error: backupd at ${context.server} did not answer in time (${error.message})`;
      lines.push(
        `  the deadline was ${context.timeoutSeconds ?? 30} s; raise it with --timeout SECONDS or check the agent`,
      );
      break;
    case status.UNAUTHENTICATED:
      lines.push(
        context.hasToken
          ? '  the token was refused: check --token or BACKUPD_TOKEN'
          : '  give a token with BACKUPD_TOKEN (or --token)',
      );
      break;
    default:
      break;
  }
  return lines;
}

/** The error as the JSON document `--json` prints on stdout. */
export function errorJson(error: unknown): { error: Record<string, unknown> } {
  if (error instanceof UsageError) {
    return { error: { code: 'USAGE', message: error.message, ...(error.hint ? { hint: error.hint } : {}) } };
  }
  if (error instanceof RpcError) {
    return {
      error: {
        code: error.errorCode ?? error.statusName,
        status: error.statusName,
        message: error.message,
        ...(error.problems.length > 0 ? { problems: error.problems } : {}),
      },
    };
  }
  if (error instanceof ValidationError) {
    return { error: { code: 'INVALID_ARGUMENT', message: error.message, problems: error.problems } };
  }
  if (error instanceof RunFailedError) return { error: { code: 'RUN_FAILED', message: error.message } };
  return { error: { code: 'ERROR', message: messageOf(error) } };
}
