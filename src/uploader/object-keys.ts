// Object keys and key prefixes as the remote drivers see them. A key is a '/'-separated relative path
// built by src/layout.ts; a driver prepends its configured prefix and strips it again when listing.

import { BackupdError } from '../errors.js';
import { z } from '../validate.js';

/** Return `key` if it is a relative path without empty, '.' or '..' segments; else throw INVALID_ARGUMENT. */
export function checkKey(key: string): string {
  const segments = key.split('/');
  if (key === '' || key.includes('\\') || segments.some((s) => s === '' || s === '.' || s === '..')) {
    throw new BackupdError('INVALID_ARGUMENT', `object key "${key}" is not a relative path inside the destination`);
  }
  return key;
}

/**
 * A key prefix in a config: '' or relative segments, stored with one trailing '/' so that
 * `prefix + key` is always a well-formed object name ("backups" and "backups/" mean the same).
 */
export const prefixSchema = z
  .string()
  .max(512, 'must be at most 512 characters')
  .refine((s) => !s.startsWith('/'), 'must not start with "/"')
  .refine(
    (s) =>
      s === '' ||
      s
        .replace(/\/$/, '')
        .split('/')
        .every((p) => p !== '' && p !== '.' && p !== '..'),
    {
      message: 'must be "/"-separated names without empty, "." or ".." parts',
    },
  )
  .transform((s) => (s === '' || s.endsWith('/') ? s : `${s}/`));

/** A byte range of get(), checked: a non-negative offset and a positive length. */
export function checkRange(range: { offset: number; length: number } | undefined): void {
  if (range === undefined) return;
  const { offset, length } = range;
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 1) {
    throw new BackupdError(
      'INVALID_ARGUMENT',
      `byte range ${offset}+${length} is not a non-negative offset and a positive length`,
    );
  }
}

/** The HTTP Range header value for a checked range. */
export function httpRange(range: { offset: number; length: number }): string {
  return `bytes=${range.offset}-${range.offset + range.length - 1}`;
}
