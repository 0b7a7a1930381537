// The settings every destination takes beside its driver's own: `retry` and `limits`, written inside the
// spec's `config` (so they travel wherever a config does: task files, the API's config_json, --dest). The
// registry splits them off before the driver sees the config, validates both at once, and wraps what the
// driver opened in withRetry outside withLimit, so a call waiting to retry holds no request slot.

import type { FieldProblem } from '../errors.js';
import { problemsOf, z } from '../validate.js';
import { wholeNumber } from './config.js';
import type { Destination } from './destination.js';
import { withLimit } from './limit.js';
import { type RetryPolicy, withRetry } from './retry.js';

export interface RetrySettings {
  /** Attempts per call, the first included; 1 turns retrying off. */
  maxAttempts?: number;
  /** Time one call may take with its retries, in seconds. */
  budgetSeconds?: number;
}

export interface LimitSettings {
  /** Requests in flight at once (withLimit's default, 4, when absent). */
  maxConcurrentRequests?: number;
  /** Bytes per second over every transfer of the destination; unlimited when absent. */
  bytesPerSecond?: number;
}

export interface DestinationSettings {
  retry?: RetrySettings;
  /** No limits at all when absent. */
  limits?: LimitSettings;
}

/** The config keys the registry keeps for itself; a driver never sees them. */
export const SETTINGS_FIELDS = ['retry', 'limits'] as const;

/**
 * Retries of a destination opened from a spec: transient errors (UNAVAILABLE, TIMEOUT) are tried again
 * for about two and a half minutes of backoff at most (1 s doubling to 30 s, full jitter), never past five
 * minutes per call. Permanent errors are thrown at once.
 */
export const DEFAULT_RETRY = {
  attempts: 10,
  baseDelayMs: 1000,
  maxDelayMs: 30_000,
  budgetMs: 300_000,
} as const satisfies RetryPolicy;

const settingsSchema = z.strictObject({
  retry: z
    .strictObject({
      maxAttempts: wholeNumber(1, 100).optional(),
      budgetSeconds: z.number().positive('must be positive').max(86_400, 'must be at most 86400').optional(),
    })
    .optional(),
  limits: z
    .strictObject({
      maxConcurrentRequests: wholeNumber(1, 1000).optional(),
      bytesPerSecond: wholeNumber(1, Number.MAX_SAFE_INTEGER).optional(),
    })
    .optional(),
});

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * A spec's config split into the settings and what the driver validates. A config that is not an object
 * goes to the driver untouched (it names the problem).
 */
export function splitConfig(config: unknown): { settings: Record<string, unknown>; driver: unknown } {
  if (!isPlainObject(config)) return { settings: {}, driver: config };
  const settings: Record<string, unknown> = {};
  const driver: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(config)) {
    if ((SETTINGS_FIELDS as readonly string[]).includes(key)) settings[key] = value;
    else driver[key] = value;
  }
  return { settings, driver };
}

/** The settings checked, or every problem with its path under `path` (the spec's config). */
export function parseSettings(
  input: Record<string, unknown>,
  path: string,
): { settings: DestinationSettings; problems: FieldProblem[] } {
  const result = settingsSchema.safeParse(input);
  if (!result.success) return { settings: {}, problems: problemsOf(result.error, path) };
  return { settings: result.data, problems: [] };
}

/**
 * `destination` with the settings applied: limits only when configured; retries by DEFAULT_RETRY with the
 * operator's attempts and budget over `base` (the registry's timing, injectable for tests, and onRetry).
 */
export function applySettings(
  destination: Destination,
  settings: DestinationSettings,
  base: RetryPolicy = {},
): Destination {
  let wrapped = destination;
  if (settings.limits) {
    wrapped = withLimit(wrapped, {
      maxConcurrent: settings.limits.maxConcurrentRequests,
      bytesPerSecond: settings.limits.bytesPerSecond,
    });
  }
  const policy: RetryPolicy = {
    ...DEFAULT_RETRY,
    ...base,
    ...(settings.retry?.maxAttempts !== undefined ? { attempts: settings.retry.maxAttempts } : {}),
    ...(settings.retry?.budgetSeconds !== undefined ? { budgetMs: settings.retry.budgetSeconds * 1000 } : {}),
  };
  return policy.attempts === 1 ? wrapped : withRetry(wrapped, policy);
}
