// Validation of untrusted input (config files, gRPC requests, destination settings) with zod:
// every problem is reported at once with its field path, and unknown keys are rejected.

import { z } from 'zod';
import { type FieldProblem, ValidationError } from './errors.js';

/** Parse `input` with `schema`, or throw a ValidationError listing every bad field under `path`. */
export function parseWith<S extends z.ZodType>(schema: S, input: unknown, what: string, path = ''): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  throw new ValidationError(what, problemsOf(result.error, path));
}

export function problemsOf(error: z.ZodError, path = ''): FieldProblem[] {
  return error.issues.map((issue) => {
    const parts = [path, ...issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p)))].filter(
      (p) => p !== '',
    );
    const joined = parts.join('.').replace(/\.\[/g, '[');
    if (issue.code === 'unrecognized_keys') {
      return { path: joined || '(root)', message: `unknown field(s): ${issue.keys.join(', ')}` };
    }
    return { path: joined || '(root)', message: issue.message };
  });
}

/** A name that is safe as one path segment and one etcd key segment: no traversal, no separators. */
export const safeName = z
  .string()
  .min(1, 'must not be empty')
  .max(200, 'must be at most 200 characters')
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._-]*$/,
    'may hold only letters, digits, ".", "_" and "-", and must start with a letter or digit',
  )
  .refine((s) => !s.includes('..'), 'must not contain ".."');

export { z };
