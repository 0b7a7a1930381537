// Pieces shared by the drivers' config schemas: secrets, cross-field rules and redaction.

import { z } from '../validate.js';

export const REDACTED = '***';

/** A non-empty secret string; its value never appears in a validation message. */
export const secret = z.string().min(1, 'must not be empty');

/** A non-empty plain string. */
export const text = z.string().min(1, 'must not be empty');

/** An http(s) URL, e.g. a custom endpoint. */
export const httpUrl = z
  .string()
  .min(1, 'must not be empty')
  .refine((s) => /^https?:\/\/[^/\s]+/.test(s) && URL.canParse(s), 'must be an http:// or https:// URL');

/** A whole number between min and max (inclusive). */
export function wholeNumber(min: number, max: number) {
  return z
    .number()
    .int('must be a whole number')
    .min(min, `must be at least ${min}`)
    .max(max, `must be at most ${max}`);
}

/**
 * Options for a cross-field rule (exactly one credential kind, ...) that still runs when other fields
 * are bad, so every problem is reported at once; it is skipped only when the input is not an object.
 */
export const alsoWhenOtherFieldsFail = {
  when: (payload: { value: unknown }) => typeof payload.value === 'object' && payload.value !== null,
};

/** A copy of `config` with each named field that is set replaced by '***'. */
export function redactFields<C extends object>(config: C, fields: readonly (keyof C)[]): C {
  const copy = { ...config };
  for (const field of fields) {
    if (copy[field] !== undefined) (copy as Record<keyof C, unknown>)[field] = REDACTED;
  }
  return copy;
}
