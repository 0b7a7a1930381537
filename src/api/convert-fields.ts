// The field checks every proto conversion shares: required and bounded strings, backup types, and
// absent values dropped.

import { type FieldProblem, ValidationError } from '../errors.js';
import type { BackupType } from '../layout.js';

/** A name a request must carry (task, run id), or a ValidationError naming the field. */
export function requiredName(value: string | undefined, field: string): string {
  const problems: FieldProblem[] = [];
  const name = required(value, field, problems);
  return checked('request', name, problems);
}

/**
 * V8 quotes the input in some JSON errors (`Unexpected token 'a', ..."<the text>" is not valid JSON`); the
 * text may hold credentials and the message is logged, so only what comes before the quote is kept, and any
 * other quoted part is dropped too.
 */
export function withoutQuotedInput(message: string): string {
  const quote = message.search(/, (\.\.\.)?"/);
  const head = quote >= 0 ? message.slice(0, quote) : message;
  return head.replace(/"[\s\S]*"/g, '(input)');
}

export function nonEmpty(value: string | undefined | null): string | undefined {
  return value === undefined || value === null || value === '' ? undefined : value;
}

export function positive(value: unknown): number | undefined {
  return typeof value === 'number' && value !== 0 ? value : undefined;
}

export function required(value: string | undefined, path: string, problems: FieldProblem[]): string {
  if (!value) problems.push({ path, message: 'must not be empty' });
  return bounded(value ?? '', path, problems);
}

/**
 * The longest name a request may give (task, database, run, chain, backup, restore target). Every real one is
 * far shorter (safe names are at most 200 characters); a longer one is refused here, so no message or log
 * line further on echoes it whole.
 */
export const MAX_NAME_CHARS = 512;

/** `value`, with a problem pushed when it is longer than MAX_NAME_CHARS. */
export function bounded(value: string, path: string, problems: FieldProblem[]): string {
  if (value.length > MAX_NAME_CHARS) problems.push({ path, message: `must be at most ${MAX_NAME_CHARS} characters` });
  return value;
}

export function backupType(value: string | undefined, path: string, problems: FieldProblem[]): BackupType {
  if (value === 'backup' || value === 'snapshot') return value;
  problems.push({ path, message: 'must be "backup" (logical) or "snapshot" (raw files)' });
  return 'backup';
}

/** `{ [key]: value }` for a non-empty secret, `{}` otherwise, so an absent key stays absent. */
export function optional<K extends string>(key: K, value: string | undefined): Partial<Record<K, string>> {
  return value ? ({ [key]: value } as Partial<Record<K, string>>) : {};
}

export function checked<T>(what: string, value: T, problems: FieldProblem[]): T {
  if (problems.length > 0) throw new ValidationError(what, problems);
  return value;
}

/** The object without its undefined members, so optional fields are absent rather than undefined. */
export function compact<T extends Record<string, unknown>>(object: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(object).filter(([, v]) => v !== undefined)) as {
    [K in keyof T]?: Exclude<T[K], undefined>;
  };
}
