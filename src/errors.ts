// The typed errors of backupd: a stable `code` a caller can branch on, a `retryable` flag for the
// uploader's retry loop, and a message a person can act on. SDK, filesystem and tool errors are
// converted into these where they are caught, never passed through raw.

export type ErrorCode =
  | 'INVALID_ARGUMENT' // bad input: a validation error lists every bad field
  | 'NOT_FOUND' // the named thing does not exist (object, backup, database, task)
  | 'ALREADY_EXISTS' // refusing to overwrite (restore target database, task name)
  | 'WRONG_KEY' // the encryption key does not open this backup
  | 'KEY_REQUIRED' // the backup is encrypted and no key was given
  | 'PACK_MISSING' // a pack the manifest references is not at the destination
  | 'PACK_CORRUPT' // a pack is truncated or a chunk in it fails its check
  | 'MANIFEST_CORRUPT' // a manifest cannot be parsed or fails its checksum
  | 'UNSUPPORTED_FORMAT' // written by a newer backupd (format version) or an unknown algorithm
  | 'UNSUPPORTED' // the source or destination cannot do what was asked
  | 'SOURCE_FAILED' // the database engine failed while reading or restoring
  | 'DESTINATION_FAILED' // a destination failed (permanent) or ran out of retries
  | 'PERMISSION_DENIED' // credentials were rejected
  | 'NO_SPACE' // a disk of this node (the staging folder's) is full
  | 'UNAVAILABLE' // a server could not be reached; usually retryable
  | 'TIMEOUT' // an operation ran past its deadline
  | 'CANCELLED' // the run was cancelled by an operator or by shutdown
  | 'INTERNAL'; // a bug: the message says what invariant broke

export interface ErrorOptions {
  retryable?: boolean;
  cause?: unknown;
}

/**
 * An error with a code. What a caller needs beyond the code and message (the bad fields, the destination,
 * the outcomes of a publish) is a subclass with typed fields, found with `instanceof` or findError().
 */
export class BackupdError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: ErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BackupdError';
    this.code = code;
    this.retryable = options.retryable ?? (code === 'UNAVAILABLE' || code === 'TIMEOUT');
  }
}

/**
 * The first error of class `type` in `error` and its causes: a layer that adds what it knows wraps the error
 * it caught (same code, message and retryable flag), and the caller finds each part by its class.
 */
export function findError<T extends Error>(error: unknown, type: abstract new (...args: never[]) => T): T | undefined {
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    if (e instanceof type) return e;
  }
  return undefined;
}

/** One bad field of a request or config: `path` is dotted (`destinations[1].bucket`). */
export interface FieldProblem {
  path: string;
  message: string;
}

/**
 * Every problem of one input at once, so an operator fixes them in one go. The message is "invalid <what>:
 * <path>: <message>; ..." unless `options.message` gives another (an unknown destination kind, a peer's answer,
 * which also brings its own code).
 */
export class ValidationError extends BackupdError {
  readonly problems: FieldProblem[];

  constructor(
    what: string,
    problems: FieldProblem[],
    options: ErrorOptions & { message?: string; code?: ErrorCode } = {},
  ) {
    super(
      options.code ?? 'INVALID_ARGUMENT',
      options.message ?? `invalid ${what}: ${problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`,
      options,
    );
    this.name = 'ValidationError';
    this.problems = problems;
  }
}

/** A pack that is missing or damaged (PACK_MISSING, PACK_CORRUPT): its id, and the offset when one chunk is. */
export class PackError extends BackupdError {
  constructor(
    code: 'PACK_MISSING' | 'PACK_CORRUPT',
    message: string,
    readonly pack: string,
    readonly offset?: number,
  ) {
    super(code, message);
    this.name = 'PackError';
  }
}

/**
 * A change made against a revision that is no longer the current one (a task changed since it was read):
 * INVALID_ARGUMENT, as the API maps it. `revision` is the current one, when the store knows it.
 */
export class RevisionConflict extends BackupdError {
  constructor(
    message: string,
    readonly revision?: number,
  ) {
    super('INVALID_ARGUMENT', message);
    this.name = 'RevisionConflict';
  }
}

export function isBackupdError(error: unknown, code?: ErrorCode): error is BackupdError {
  return error instanceof BackupdError && (code === undefined || error.code === code);
}

/** Narrow an unknown thrown value to a message without losing it. */
export function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

/** Echoed input (a name, a key, a value) is cut to this many characters in messages and logs. */
export const MAX_ECHO_CHARS = 200;

/**
 * `text` as well-formed UTF-16: a lone surrogate (half of a character, as JSON's `\ud800` or a cut emoji
 * gives) becomes U+FFFD. grpc-js percent-encodes status messages with encodeURI, which throws on one.
 */
export function wellFormed(text: string): string {
  return text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

/** Echoed input made safe to put in a message or a log line: well-formed and at most `max` characters. */
export function clip(text: string, max = MAX_ECHO_CHARS): string {
  if (text.length <= max) return wellFormed(text);
  // Never end on the first half of a surrogate pair.
  const end = /[\uD800-\uDBFF]/.test(text.charAt(max - 1)) ? max - 1 : max;
  return `${wellFormed(text.slice(0, end))}...(${text.length - end} more characters)`;
}

/** A field problem with its path and message clipped (both may quote input: a key, a name). */
export function clipProblem(problem: FieldProblem): FieldProblem {
  return { path: clip(problem.path), message: clip(problem.message, 4 * MAX_ECHO_CHARS) };
}
