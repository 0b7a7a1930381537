// BackupdError codes as gRPC status codes, with the machine-readable part in trailing metadata: the error's
// stable code (`backupd-error-code`) and, for validation, every bad field (`backupd-problems`, a JSON list of
// {path, message}) so backupctl can show each one. Errors that are not BackupdErrors are bugs: the caller
// gets a generic INTERNAL with an id, the log gets the real error under the same id.

import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import {
  BackupdError,
  clipProblem,
  type ErrorCode,
  type FieldProblem,
  ValidationError,
  wellFormed,
} from '../errors.js';

export const ERROR_CODE_KEY = 'backupd-error-code';
export const PROBLEMS_KEY = 'backupd-problems';
/** 'true' or 'false': the error's retryable flag, which the status code alone does not always carry. */
export const RETRYABLE_KEY = 'backupd-retryable';

/**
 * Where each code goes, and why where it is not obvious:
 * - WRONG_KEY -> INVALID_ARGUMENT: the key is the caller's argument; another key fixes it.
 * - KEY_REQUIRED -> FAILED_PRECONDITION: nothing in the request is wrong, the backup's state (encrypted) needs
 *   one more thing the caller did not send.
 * - PACK_MISSING / PACK_CORRUPT / MANIFEST_CORRUPT -> DATA_LOSS: backup data is gone or damaged.
 * - UNSUPPORTED_FORMAT / UNSUPPORTED -> FAILED_PRECONDITION, not UNIMPLEMENTED: the method exists and works;
 *   this backup (newer format) or this source/destination cannot do it. UNIMPLEMENTED would tell a client
 *   the RPC itself is missing. The store reports a revision conflict this way too (Operations' contract).
 * - PERMISSION_DENIED -> PERMISSION_DENIED: credentials were rejected (a destination's, often given in the
 *   request itself); `backupd-error-code` tells it apart from the API's own token check, which sets none.
 * - NO_SPACE -> RESOURCE_EXHAUSTED: a disk of this node (staging) is full.
 * - SOURCE_FAILED / DESTINATION_FAILED -> UNAVAILABLE when retryable (trying the same call again may work),
 *   else ABORTED: the operation stopped on a failure outside backupd that is not our bug (so not INTERNAL).
 */
const STATUS_OF: Record<ErrorCode, (error: BackupdError) => grpc.status> = {
  INVALID_ARGUMENT: () => grpc.status.INVALID_ARGUMENT,
  NOT_FOUND: () => grpc.status.NOT_FOUND,
  ALREADY_EXISTS: () => grpc.status.ALREADY_EXISTS,
  WRONG_KEY: () => grpc.status.INVALID_ARGUMENT,
  KEY_REQUIRED: () => grpc.status.FAILED_PRECONDITION,
  PACK_MISSING: () => grpc.status.DATA_LOSS,
  PACK_CORRUPT: () => grpc.status.DATA_LOSS,
  MANIFEST_CORRUPT: () => grpc.status.DATA_LOSS,
  UNSUPPORTED_FORMAT: () => grpc.status.FAILED_PRECONDITION,
  UNSUPPORTED: () => grpc.status.FAILED_PRECONDITION,
  SOURCE_FAILED: (e) => (e.retryable ? grpc.status.UNAVAILABLE : grpc.status.ABORTED),
  DESTINATION_FAILED: (e) => (e.retryable ? grpc.status.UNAVAILABLE : grpc.status.ABORTED),
  PERMISSION_DENIED: () => grpc.status.PERMISSION_DENIED,
  NO_SPACE: () => grpc.status.RESOURCE_EXHAUSTED,
  UNAVAILABLE: () => grpc.status.UNAVAILABLE,
  TIMEOUT: () => grpc.status.DEADLINE_EXCEEDED,
  CANCELLED: () => grpc.status.CANCELLED,
  INTERNAL: () => grpc.status.INTERNAL,
};

/** A status to answer with, and what to log about it (never the request). */
export interface MappedError {
  status: grpc.StatusObject;
  /** The BackupdError code, or 'INTERNAL' for anything else. */
  errorCode: ErrorCode;
  /** Set for INTERNAL: the id the caller sees, to find the real error in the log. */
  errorId?: string;
}

/** The gRPC status code for a BackupdError. */
export function grpcCodeOf(error: BackupdError): grpc.status {
  // A code outside the union can only come from a cast somewhere; treat it as the bug it is.
  const map = STATUS_OF[error.code] as ((e: BackupdError) => grpc.status) | undefined;
  return map ? map(error) : grpc.status.INTERNAL;
}

/** Map anything thrown by a handler to the status the caller receives. */
export function toStatus(error: unknown): MappedError {
  const metadata = new grpc.Metadata();
  const code = error instanceof BackupdError ? grpcCodeOf(error) : grpc.status.INTERNAL;
  if (error instanceof BackupdError && code !== grpc.status.INTERNAL) {
    metadata.set(ERROR_CODE_KEY, error.code);
    metadata.set(RETRYABLE_KEY, String(error.retryable));
    const problems = problemsOf(error);
    if (problems.length > 0) metadata.set(PROBLEMS_KEY, encodeProblems(problems));
    return { status: { code, details: statusMessage(error.message), metadata }, errorCode: error.code };
  }
  // INTERNAL messages describe our invariants and may quote internal state: the log keeps them, the
  // caller gets an id to quote in a bug report.
  const errorId = randomUUID();
  metadata.set(ERROR_CODE_KEY, 'INTERNAL');
  return {
    status: {
      code: grpc.status.INTERNAL,
      details: `internal error; the agent's log has the details under errorId ${errorId}`,
      metadata,
    },
    errorCode: 'INTERNAL',
    errorId,
  };
}

/**
 * The longest status message sent, counted as grpc-js sends it (percent-encoded UTF-8). C-core clients allow
 * 16 KiB for all the headers of an answer together and report RESOURCE_EXHAUSTED beyond it, hiding the error.
 */
export const MAX_STATUS_MESSAGE_BYTES = 8 * 1024;

/**
 * A status message grpc-js can always send: well-formed text (its encodeURI throws on a lone surrogate, which
 * crashed the agent) of at most MAX_STATUS_MESSAGE_BYTES once encoded; a longer one is cut and says so.
 */
export function statusMessage(text: string): string {
  const whole = wellFormed(text);
  const budget = MAX_STATUS_MESSAGE_BYTES - 64; // room for the note saying how much was cut
  let bytes = 0;
  let end = 0;
  for (const character of whole) {
    bytes += encodeURI(character).length;
    if (bytes > budget) break;
    end += character.length;
  }
  if (end === whole.length) return whole;
  return `${whole.slice(0, end)}... (${whole.length - end} more characters cut)`;
}

/** Every field problem an error carries: a ValidationError's (also a registry's unknown kind, a peer's). */
export function problemsOf(error: BackupdError): FieldProblem[] {
  return error instanceof ValidationError ? error.problems : [];
}

function isProblem(value: unknown): value is FieldProblem {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.path === 'string' && typeof v.message === 'string';
}

// Trailers share the HTTP/2 header list limit with everything else; a list longer than this is cut, and
// the status message (which a ValidationError builds from every problem) still names them all.
const MAX_PROBLEMS_CHARS = 4000;

/**
 * Problems as JSON that is legal in an ASCII metadata value: characters outside printable ASCII are written
 * as \u escapes, which JSON.parse reads back unchanged.
 */
export function encodeProblems(problems: readonly FieldProblem[]): string {
  const ascii = (list: readonly FieldProblem[]) =>
    // Clipped (and so well-formed) first: a client's JSON reader gets whole characters back.
    JSON.stringify(list.map(clipProblem)).replace(
      /[^\x20-\x7e]/g,
      // Per UTF-16 code unit (no /u flag), so characters beyond the BMP become a valid surrogate pair.
      (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
    );
  let kept = problems.slice();
  let text = ascii(kept);
  while (text.length > MAX_PROBLEMS_CHARS && kept.length > 1) {
    kept = kept.slice(0, Math.max(1, Math.floor(kept.length / 2)));
    const dropped = problems.length - kept.length;
    text = ascii([...kept, { path: '(more)', message: `${dropped} more problem(s); see the status message` }]);
  }
  return text;
}

/** The problems a status carries in its trailers (for clients: backupctl and the tests). */
export function decodeProblems(metadata: grpc.Metadata | undefined): FieldProblem[] {
  const value = metadata?.get(PROBLEMS_KEY)[0];
  return parseProblems(typeof value === 'string' ? value : undefined);
}

/** The problems of a `backupd-problems` value; a malformed one gives none (the status message still says what failed). */
export function parseProblems(text: string | undefined): FieldProblem[] {
  if (!text) return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // A malformed header must not hide the error it came with; the status message still names the problems.
    return [];
  }
  return Array.isArray(parsed) ? parsed.filter(isProblem) : [];
}
