// What the S3 and Glacier drivers share: credential fields (static keys or the SDK's default chain),
// client settings, and the conversion of AWS SDK errors into BackupdErrors.

import { z } from '../validate.js';
import { alsoWhenOtherFieldsFail, httpUrl, secret, text, wholeNumber } from './config.js';
import {
  alreadyConverted,
  cancelled,
  codeForStatus,
  destinationError,
  errorNameOf,
  isNetworkError,
  messageOfUnknown,
  type Where,
} from './failure.js';

export interface AwsConnection {
  /** AWS region; 'us-east-1' when absent (what most S3-compatible stores expect). */
  region?: string;
  /** Custom endpoint for S3-compatible stores or a local server, e.g. http://127.0.0.1:9000. */
  endpoint?: string;
  /** Static credentials; when all are absent the SDK's default chain is used (env, profile, IAM role). */
  accessKeyId?: string;
  secretAccessKey?: string;
  sessionToken?: string;
  /** Connect and per-request socket timeout in milliseconds (default 30000). */
  timeoutMs?: number;
}

export const awsConnectionFields = {
  region: z
    .string()
    .regex(/^[a-z0-9-]{2,32}$/, 'must be an AWS region name such as eu-central-1')
    .optional(),
  endpoint: httpUrl.optional(),
  accessKeyId: text.optional(),
  secretAccessKey: secret.optional(),
  sessionToken: secret.optional(),
  timeoutMs: wholeNumber(100, 3_600_000).optional(),
};

export const AWS_SECRET_FIELDS = ['secretAccessKey', 'sessionToken'] as const;

/** accessKeyId and secretAccessKey come together; a sessionToken needs both. */
export function checkAwsCredentials<S extends z.ZodType<AwsConnection>>(schema: S): S {
  return schema.superRefine((value: AwsConnection, ctx) => {
    const hasId = value.accessKeyId !== undefined;
    const hasSecret = value.secretAccessKey !== undefined;
    if (hasId && !hasSecret) {
      ctx.addIssue({ code: 'custom', path: ['secretAccessKey'], message: 'is required with accessKeyId' });
    }
    if (hasSecret && !hasId) {
      ctx.addIssue({ code: 'custom', path: ['accessKeyId'], message: 'is required with secretAccessKey' });
    }
    if (value.sessionToken !== undefined && !(hasId && hasSecret)) {
      ctx.addIssue({ code: 'custom', path: ['sessionToken'], message: 'needs accessKeyId and secretAccessKey' });
    }
  }, alsoWhenOtherFieldsFail) as S;
}

/** The client settings both SDK clients take. */
export function awsClientConfig(config: AwsConnection) {
  const timeout = config.timeoutMs ?? 30_000;
  return {
    region: config.region ?? 'us-east-1',
    endpoint: config.endpoint,
    credentials:
      config.accessKeyId !== undefined && config.secretAccessKey !== undefined
        ? {
            accessKeyId: config.accessKeyId,
            secretAccessKey: config.secretAccessKey,
            sessionToken: config.sessionToken,
          }
        : undefined,
    requestHandler: { connectionTimeout: timeout, requestTimeout: timeout },
  };
}

export function awsSecrets(config: AwsConnection): string[] {
  return [config.secretAccessKey, config.sessionToken].filter((s): s is string => s !== undefined);
}

const DENIED = new Set([
  'AccessDenied',
  'AccessDeniedException',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'InvalidClientTokenId',
  'UnrecognizedClientException',
  'ExpiredToken',
  'ExpiredTokenException',
  'InvalidToken',
  'MissingAuthenticationTokenException',
  'CredentialsProviderError',
  'AllAccessDisabled',
]);
const MISSING_OBJECT = new Set(['NoSuchKey', 'NotFound', 'ResourceNotFoundException']);
const MISSING_CONTAINER = new Set(['NoSuchBucket']);
const TRANSIENT = new Set([
  'SlowDown',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'InternalError',
  'ThrottlingException',
  'Throttling',
  'RequestLimitExceeded',
  'RequestTimeoutException',
  'LimitExceededException',
]);

function awsStatusOf(error: unknown): number | undefined {
  const meta = (error as { $metadata?: { httpStatusCode?: unknown } } | null)?.$metadata;
  return typeof meta?.httpStatusCode === 'number' ? meta.httpStatusCode : undefined;
}

/** Convert anything an AWS SDK call threw. */
export function awsError(where: Where, op: string, error: unknown, signal?: AbortSignal) {
  const known = alreadyConverted(where, op, error) ?? cancelled(where, op, error, signal);
  if (known) return known;
  const name = errorNameOf(error) ?? '';
  const status = awsStatusOf(error);
  const detail = `${messageOfUnknown(error)}${name && name !== 'Error' ? ` (${name})` : ''}`;
  if (DENIED.has(name)) return destinationError(where, 'PERMISSION_DENIED', op, detail, { cause: error });
  if (MISSING_CONTAINER.has(name)) {
    return destinationError(where, 'DESTINATION_FAILED', op, `the bucket or vault does not exist: ${detail}`, {
      cause: error,
    });
  }
  if (MISSING_OBJECT.has(name)) return destinationError(where, 'NOT_FOUND', op, 'no such object', { cause: error });
  if (name === 'InvalidObjectState') {
    return destinationError(
      where,
      'UNSUPPORTED',
      op,
      `the object is in an archive storage class; restore it first (${name})`,
      {
        cause: error,
      },
    );
  }
  if (name === 'TimeoutError' || name === 'RequestTimeout') {
    return destinationError(where, 'TIMEOUT', op, detail, { cause: error });
  }
  if (TRANSIENT.has(name) || isNetworkError(error)) {
    return destinationError(where, 'UNAVAILABLE', op, detail, { cause: error });
  }
  if (status !== undefined) return destinationError(where, codeForStatus(status), op, detail, { cause: error });
  return destinationError(where, 'DESTINATION_FAILED', op, detail, { cause: error });
}
