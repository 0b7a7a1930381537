// Validation of untrusted input (config files, gRPC requests, destination settings) with zod:
// every problem is reported at once with its field path, and unknown keys are rejected.

import { z } from 'zod';
import { clipProblem, type FieldProblem, ValidationError } from './errors.js';

/** Parse `input` with `schema`, or throw a ValidationError listing every bad field under `path`. */
export function parseWith<S extends z.ZodType>(schema: S, input: unknown, what: string, path = ''): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  throw new ValidationError(what, problemsOf(result.error, path));
}

/** The problems of a zod error, each clipped: paths and messages may quote input (an unknown key). */
export function problemsOf(error: z.ZodError, path = ''): FieldProblem[] {
  return error.issues.map((issue) => clipProblem(problemOf(issue, path)));
}

function problemOf(issue: z.core.$ZodIssue, path: string): FieldProblem {
  const parts = [path, ...issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p)))].filter(
    (p) => p !== '',
  );
  const joined = parts.join('.').replace(/\.\[/g, '[');
  if (issue.code === 'unrecognized_keys') {
    return { path: joined || '(root)', message: `unknown field(s): ${issue.keys.join(', ')}` };
  }
  return { path: joined || '(root)', message: issue.message };
}

/** The deepest nesting of objects and arrays a config (destination, source) may have. */
export const MAX_CONFIG_DEPTH = 32;
/** The largest config, about as its JSON text would measure. */
export const MAX_CONFIG_BYTES = 64 * 1024;

/**
 * Why a config (untrusted JSON-like data) is too deep or too large, with the path of the part that is, or
 * undefined when it is within bounds. Walks without recursion, so no nesting can overflow the stack here;
 * the bounds keep JSON.stringify (storing the task) and the drivers' schemas from overflowing it later.
 */
export function configBoundsProblem(config: unknown, path: string): FieldProblem | undefined {
  const pending: { value: unknown; depth: number; top: string }[] = [{ value: config, depth: 0, top: '' }];
  let bytes = 0;
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const { value, depth, top } = next;
    if (typeof value === 'string') {
      bytes += value.length + 2;
    } else if (typeof value === 'object' && value !== null) {
      if (depth >= MAX_CONFIG_DEPTH) {
        return clipProblem({ path: `${path}${top}`, message: `is nested deeper than ${MAX_CONFIG_DEPTH} levels` });
      }
      bytes += 2;
      for (const [key, child] of Object.entries(value)) {
        bytes += key.length + 4;
        // The problem names the config's top-level field the deep or large part is under.
        const field = depth > 0 ? top : Array.isArray(value) ? `[${key}]` : `.${key}`;
        pending.push({ value: child, depth: depth + 1, top: field });
      }
    } else {
      bytes += 8;
    }
    if (bytes > MAX_CONFIG_BYTES) {
      return clipProblem({ path, message: `is larger than ${MAX_CONFIG_BYTES / 1024} KiB` });
    }
  }
  return undefined;
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
