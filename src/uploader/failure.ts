// Turning what an SDK, a socket or a server said into a BackupdError that names the destination and
// the operation, with the code the uploader branches on. Secrets the driver knows are masked in the
// message in case a server or SDK echoes them (SAS tokens in URLs, passwords in FTP replies).

import { BackupdError, type ErrorCode, type ErrorOptions } from '../errors.js';

/** Who failed: the driver, the operator's name for the destination, and the secrets to mask. */
export interface Where {
  kind: string;
  name: string;
  secrets: readonly string[];
}

/**
 * A destination failed: which one (the operator's name and the driver), and, when the uploader gave up
 * retrying, after how many attempts and with which last code.
 */
export class DestinationError extends BackupdError {
  readonly attempts?: number;
  readonly lastCode?: ErrorCode;

  constructor(
    code: ErrorCode,
    message: string,
    readonly destination: string,
    readonly kind: string,
    options: ErrorOptions & { attempts?: number; lastCode?: ErrorCode } = {},
  ) {
    super(code, message, options);
    this.name = 'DestinationError';
    if (options.attempts !== undefined) this.attempts = options.attempts;
    if (options.lastCode !== undefined) this.lastCode = options.lastCode;
  }
}

/** Build the error for `op` (e.g. "put a/b.pack") at `where`; retryable follows the code unless given. */
export function destinationError(
  where: Where,
  code: ErrorCode,
  op: string,
  detail: string,
  options: { cause?: unknown; retryable?: boolean } = {},
): DestinationError {
  const message = mask(`${where.kind} destination "${where.name}": ${op}: ${detail}`, where.secrets);
  return new DestinationError(code, message, where.name, where.kind, {
    cause: options.cause,
    retryable: options.retryable,
  });
}

export function mask(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) {
    if (secret.length >= 4) out = out.split(secret).join('***');
  }
  return out;
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EHOSTDOWN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

/** A string `code` of an error (Node system errors, SDK errors), if it has one. */
export function errorCodeOf(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null || !('code' in error)) return undefined;
  return typeof error.code === 'string' ? error.code : undefined;
}

export function errorNameOf(error: unknown): string | undefined {
  return error instanceof Error ? error.name : undefined;
}

/** True for errors that mean "the server could not be reached or dropped us": worth retrying. */
export function isNetworkError(error: unknown): boolean {
  const code = errorCodeOf(error) ?? errorCodeOf((error as { cause?: unknown } | null)?.cause);
  return code !== undefined && NETWORK_CODES.has(code);
}

/** The code for an HTTP status a storage API answered with. */
export function codeForStatus(status: number): ErrorCode {
  if (status === 401 || status === 403) return 'PERMISSION_DENIED';
  if (status === 404) return 'NOT_FOUND';
  if (status === 408 || status === 504) return 'TIMEOUT';
  if (status === 429 || status >= 500) return 'UNAVAILABLE';
  if (status === 400 || status === 416) return 'INVALID_ARGUMENT';
  return 'DESTINATION_FAILED';
}

/** CANCELLED when the caller's signal fired or the error is an abort; else undefined. */
export function cancelled(where: Where, op: string, error: unknown, signal?: AbortSignal): BackupdError | undefined {
  const name = errorNameOf(error);
  if (signal?.aborted || name === 'AbortError' || errorCodeOf(error) === 'ABORT_ERR') {
    return destinationError(where, 'CANCELLED', op, 'cancelled', { cause: error });
  }
  return undefined;
}

/** Pass BackupdErrors through (already converted, e.g. a size mismatch); else undefined. */
export function alreadyConverted(where: Where, op: string, error: unknown): BackupdError | undefined {
  if (!(error instanceof BackupdError)) return undefined;
  if (error instanceof DestinationError) return error;
  return destinationError(where, error.code, op, error.message, { cause: error, retryable: error.retryable });
}

export function messageOfUnknown(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
