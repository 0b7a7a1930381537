// A task: a periodic backup definition (spec) as an operator gives it. What happened (status, runs) is kept
// apart in the store (src/cluster/store.ts). Validation reports every bad field at once, destination
// configs included, and the encryption key is never part of the spec.

import type { RetentionPolicy } from './backup/retention.js';
import { cronProblem, timeZoneProblem } from './cron.js';
import { clip, clipProblem, type FieldProblem, ValidationError } from './errors.js';
import type { BackupType } from './layout.js';
import { SERVER_UNIT } from './sources/source.js';
import type { DestinationRegistry, DestinationSpec } from './uploader/registry.js';
import { configBoundsProblem, problemsOf, safeName, z } from './validate.js';

/** The databases of a task: named ones (`<source>/<db>`), or every database of a source (server-wide). */
export type TaskTarget = { databases: string[] } | { serverWide: { source: string; exclude: string[] } };

export type MissedRunPolicy = 'run-once' | 'skip';

export interface TaskSchedule {
  /** Cron for full backups (5 or 6 fields). */
  full?: string;
  /** Cron for incrementals; with no full cron, the first run of a chain is a full. */
  incremental?: string;
  timeZone: string;
}

/**
 * A restore drill: on its own cron, the unit's newest restore point is verified by restoring it
 * (verify --restore) at the next of `destinations` (all the task's destinations when absent) in turn.
 */
export interface TaskDrill {
  schedule: string;
  /** Names of the task's destinations to drill, in rotation order; absent: every destination of the task. */
  destinations?: string[];
}

export interface TaskSpec {
  name: string;
  target: TaskTarget;
  type: BackupType;
  schedule: TaskSchedule;
  preferredNode?: string;
  pinToPreferredNode: boolean;
  retention?: RetentionPolicy;
  destinations: DestinationSpec[];
  disabled: boolean;
  missedRuns: MissedRunPolicy;
  /** The task encrypts its backups; the key is kept by the store, never in the spec. */
  encrypted: boolean;
  drill?: TaskDrill;
}

/** `<source>/<db>` split into its parts; both are safe path segments. */
export function splitDatabase(name: string): { source: string; database: string } {
  const [source = '', database = '', ...rest] = name.split('/');
  return rest.length === 0 ? { source, database } : { source: '', database: '' };
}

const databaseName = z.string().refine((s) => {
  const { source, database } = splitDatabase(s);
  return safeName.safeParse(source).success && safeName.safeParse(database).success;
}, 'must be "<source>/<database>", each a safe name (letters, digits, ".", "_", "-"; no "..")');

const cron = z.string().superRefine((s, ctx) => {
  const problem = cronProblem(s);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

const destination = z.strictObject({
  name: safeName,
  kind: z.string().min(1, 'must name a destination kind'),
  config: z.unknown(),
});

const schema = z.strictObject({
  name: safeName,
  target: z.union([
    z.strictObject({ databases: z.array(databaseName).min(1, 'must list at least one database') }),
    z.strictObject({
      serverWide: z.strictObject({ source: safeName, exclude: z.array(safeName).default([]) }),
    }),
  ]),
  type: z.enum(['backup', 'snapshot']),
  schedule: z
    .strictObject({
      full: cron.optional(),
      incremental: cron.optional(),
      timeZone: z
        .string()
        .default('UTC')
        .superRefine((s, ctx) => {
          const problem = timeZoneProblem(s);
          if (problem) ctx.addIssue({ code: 'custom', message: problem });
        }),
    })
    .refine((s) => s.full !== undefined || s.incremental !== undefined, 'needs a full or an incremental cron'),
  preferredNode: safeName.optional(),
  pinToPreferredNode: z.boolean().default(false),
  retention: z
    .strictObject({
      maxAgeDays: z.number().positive().optional(),
      keepChains: z.number().int().positive().optional(),
      orphanGraceHours: z.number().positive().optional(),
    })
    .optional(),
  destinations: z.array(destination).min(1, 'needs at least one destination'),
  disabled: z.boolean().default(false),
  missedRuns: z.enum(['run-once', 'skip']).default('run-once'),
  encrypted: z.boolean().default(false),
  drill: z
    .strictObject({
      schedule: cron,
      destinations: z.array(safeName).min(1, 'must name at least one destination when given').optional(),
    })
    .optional(),
});

/**
 * Check an untrusted task spec, destination configs included (through their drivers), and return it typed.
 * Throws ValidationError listing every problem with its field path.
 */
export function parseTaskSpec(input: unknown, registry: DestinationRegistry): TaskSpec {
  const result = schema.safeParse(input);
  const problems: FieldProblem[] = result.success ? [] : problemsOf(result.error);
  // Destinations are checked by their drivers even when other fields are bad, so one answer names everything.
  const raw = (input as { destinations?: unknown })?.destinations;
  if (Array.isArray(raw)) {
    const seen = new Set<string>();
    raw.forEach((d: unknown, i) => {
      const spec = d as Partial<DestinationSpec> | undefined;
      if (typeof spec?.kind !== 'string') return;
      const path = `destinations[${i}]`;
      if (typeof spec.name === 'string') {
        if (seen.has(spec.name)) problems.push({ path: `${path}.name`, message: `"${clip(spec.name)}" is used twice` });
        seen.add(spec.name);
      }
      // A config beyond the bounds is not given to its driver: its schema would walk every level of it.
      const bounds = configBoundsProblem(spec.config, `${path}.config`);
      if (bounds) problems.push(bounds);
      else problems.push(...destinationProblems(registry, spec as DestinationSpec, path));
    });
  }
  problems.push(...drillDestinationProblems(input));
  if (pinWithoutPreferred(input)) {
    problems.push({ path: 'pinToPreferredNode', message: 'needs preferredNode' });
  }
  if (problems.length > 0 || !result.success) throw new ValidationError('task', problems);
  const spec = result.data;
  return {
    ...spec,
    target: 'databases' in spec.target ? { databases: spec.target.databases } : { serverWide: spec.target.serverWide },
    destinations: spec.destinations.map((d) => ({ name: d.name, kind: d.kind, config: d.config })),
    ...(spec.drill ? { drill: drillOf(spec.drill) } : {}),
  };
}

function drillOf(drill: { schedule: string; destinations?: string[] | undefined }): TaskDrill {
  return drill.destinations
    ? { schedule: drill.schedule, destinations: drill.destinations }
    : { schedule: drill.schedule };
}

/** The destinations a drill visits, in rotation order: those it names, or every destination of the task. */
export function drillDestinations(spec: TaskSpec): string[] {
  return spec.drill?.destinations ?? spec.destinations.map((d) => d.name);
}

/** The problems of one destination spec's config, found by its driver (none when it is valid). */
export function destinationProblems(
  registry: DestinationRegistry,
  spec: DestinationSpec,
  path: string,
): FieldProblem[] {
  try {
    registry.parse(spec, path);
    return [];
  } catch (error) {
    // Clipped: a driver's message may quote the config (an unknown kind, a value).
    if (error instanceof ValidationError) return error.problems.map(clipProblem);
    throw error;
  }
}

/** A drill's destinations must be destinations of the task, each named once. */
function drillDestinationProblems(input: unknown): FieldProblem[] {
  const i = input as { drill?: { destinations?: unknown }; destinations?: unknown } | undefined;
  const wanted = i?.drill?.destinations;
  if (!Array.isArray(wanted)) return [];
  const names = new Set(
    Array.isArray(i?.destinations)
      ? i.destinations.map((d: unknown) => (d as { name?: unknown } | undefined)?.name)
      : [],
  );
  const problems: FieldProblem[] = [];
  const seen = new Set<unknown>();
  wanted.forEach((name: unknown, n) => {
    if (typeof name !== 'string') return;
    const path = `drill.destinations[${n}]`;
    if (seen.has(name)) problems.push({ path, message: `"${clip(name)}" is named twice` });
    else if (!names.has(name)) problems.push({ path, message: `"${clip(name)}" is not a destination of the task` });
    seen.add(name);
  });
  return problems;
}

function pinWithoutPreferred(input: unknown): boolean {
  const i = input as { pinToPreferredNode?: unknown; preferredNode?: unknown } | undefined;
  return i?.pinToPreferredNode === true && !i.preferredNode;
}

/** The spec with every destination secret masked, for logs and API answers. */
export function redactTask(spec: TaskSpec, registry: DestinationRegistry): TaskSpec {
  return { ...spec, destinations: spec.destinations.map((d, i) => registry.redact(d, `destinations[${i}]`)) };
}

/**
 * The databases (units) of a task: those it names, or for a server-wide task those of its source that
 * `available` lists. A server-wide snapshot of a source whose snapshots cover the whole server
 * (`scopeOf(source) === 'server'`, e.g. PostgreSQL's pg_basebackup) is one unit, `<source>/SERVER_UNIT`.
 */
export function taskDatabases(
  spec: TaskSpec,
  available: (source: string) => string[],
  scopeOf: (source: string) => 'database' | 'server' = () => 'database',
): string[] {
  if ('databases' in spec.target) return [...new Set(spec.target.databases)];
  const { source, exclude } = spec.target.serverWide;
  if (spec.type === 'snapshot' && scopeOf(source) === 'server') return [`${source}/${SERVER_UNIT}`];
  return available(source)
    .filter((db) => !exclude.includes(db))
    .map((db) => `${source}/${db}`);
}

/**
 * Every unit database a source can serve: each of its databases, and its one server unit
 * (`<source>/SERVER_UNIT`) when its snapshots cover the whole server.
 */
export function sourceUnits(source: {
  name: string;
  databases: readonly string[];
  snapshotScope: 'database' | 'server';
}): string[] {
  return [
    ...source.databases.map((db) => `${source.name}/${db}`),
    ...(source.snapshotScope === 'server' ? [`${source.name}/${SERVER_UNIT}`] : []),
  ];
}
