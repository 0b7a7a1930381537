// Checks of what an operator asks that need more than the request itself: a task (its spec, its key, and
// that its sources exist in the cluster with the right snapshot scope) and a one-time backup. The agent asks
// them of every request; they report every bad field at once, as parseTaskSpec does.

import { type FieldProblem, ValidationError } from './errors.js';
import type { BackupType } from './layout.js';
import { destinationProblems, parseTaskSpec, splitDatabase, type TaskSpec } from './task.js';
import type { DestinationRegistry, DestinationSpec } from './uploader/registry.js';
import { safeName } from './validate.js';

/** What the cluster knows of sources, for the checks. */
export interface SourceLookup {
  /** Whether some live node has the source. */
  hasSource(source: string): boolean;
  scopeOf(source: string): 'database' | 'server';
  /** This node's sources, named in the message of an unknown one. */
  here: string[];
}

/**
 * The task `input` (untrusted) as a valid spec, given its encryption `key` (required when `creating` an
 * encrypted task): a ValidationError lists every bad field otherwise.
 */
export function checkTask(
  input: unknown,
  key: string | undefined,
  creating: boolean,
  registry: DestinationRegistry,
  sources: SourceLookup,
): TaskSpec {
  const problems: FieldProblem[] = [];
  let spec: TaskSpec | undefined;
  try {
    spec = parseTaskSpec(input, registry);
  } catch (error) {
    if (!(error instanceof ValidationError)) throw error;
    problems.push(...error.problems);
  }
  if (spec) {
    if (spec.encrypted && creating && !key) {
      problems.push({ path: 'encryptionKey', message: 'the task is encrypted: give its key (backupctl --key-file)' });
    }
    if (!spec.encrypted && key) {
      problems.push({ path: 'encrypted', message: 'a key was given: set encrypted to true, or give no key' });
    }
  }
  // Sources are checked on the raw input too, so a spec with other problems still names an unknown source.
  const target = (input as { target?: { databases?: unknown; serverWide?: { source?: unknown } } } | undefined)?.target;
  const named: (readonly [unknown, string])[] = Array.isArray(target?.databases)
    ? target.databases.map(
        (d: unknown, i) =>
          [typeof d === 'string' ? splitDatabase(d).source : undefined, `target.databases[${i}]`] as const,
      )
    : [[target?.serverWide?.source, 'target.serverWide.source'] as const];
  for (const [source, path] of named) {
    if (typeof source !== 'string' || !safeName.safeParse(source).success) continue;
    if (!sources.hasSource(source)) {
      problems.push({
        path,
        message: `no node has a source named ${source} (sources here: ${sources.here.join(', ') || 'none'})`,
      });
    } else if (
      spec?.type === 'snapshot' &&
      path.startsWith('target.databases') &&
      sources.scopeOf(source) === 'server'
    ) {
      problems.push({
        path,
        message: `source ${source} takes snapshots of its whole server, not of one database: use target.serverWide for a snapshot task (or type "backup" for this database)`,
      });
    }
  }
  if (key !== undefined && key !== '' && key.length < 8) {
    problems.push({ path: 'encryptionKey', message: 'must be at least 8 characters' });
  }
  if (problems.length > 0 || !spec) throw new ValidationError('task', problems);
  return spec;
}

/** Whether `name` is "<source>/<database>", each a safe name. */
export function isDatabaseName(name: string): boolean {
  const { source, database } = splitDatabase(name);
  return safeName.safeParse(source).success && safeName.safeParse(database).success;
}

/**
 * Every bad field of a one-time backup to run on a node whose sources `hasHere` tells (the caller sends it
 * to a node that has its source first, when this one does not).
 */
export function oneTimeProblems(
  input: { database: string; type: BackupType; destinations: DestinationSpec[] },
  registry: DestinationRegistry,
  hasHere: (source: string) => boolean,
): FieldProblem[] {
  const problems: FieldProblem[] = [];
  const { source } = splitDatabase(input.database);
  if (!isDatabaseName(input.database)) {
    problems.push({ path: 'database', message: 'must be "<source>/<database>", each a safe name' });
  } else if (!hasHere(source)) {
    problems.push({ path: 'database', message: `no node of the cluster has source ${source}` });
  }
  if (input.type !== 'backup' && input.type !== 'snapshot') {
    problems.push({ path: 'type', message: 'must be "backup" or "snapshot"' });
  }
  if (input.destinations.length === 0)
    problems.push({ path: 'destinations', message: 'needs at least one destination' });
  input.destinations.forEach((d, i) => {
    if (!safeName.safeParse(d.name).success)
      problems.push({ path: `destinations[${i}].name`, message: 'must be a safe name' });
    problems.push(...destinationProblems(registry, d, `destinations[${i}]`));
  });
  return problems;
}
