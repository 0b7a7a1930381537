// A task spec as backupctl builds it: from a JSON file in the shape of src/task.ts's TaskSpec, or from flags
// into that same shape, then converted to the proto TaskSpec (a destination's config as config_json).
// Only the shape is checked here (types, unknown fields); the agent validates the values and names every
// bad field.

import type { RetentionPolicy } from '../../backup/retention.js';
import { ValidationError } from '../../errors.js';
import type { TaskSpec as ProtoTaskSpec } from '../../generated/backupd/v1/TaskSpec.js';
import type { TaskTarget } from '../../task.js';
import type { DestinationSpec } from '../../uploader/registry.js';
import { choiceFlag, databaseFlag, intFlag, positiveFlag } from './args.js';
import { UsageError } from './errors.js';
import { DEST_FLAGS, destinations } from './inputs.js';

/** src/task.ts's TaskSpec as an operator writes it: every field the agent defaults may be left out. */
export interface TaskSpecInput {
  name?: string;
  target?: TaskTarget;
  type?: string;
  schedule?: { full?: string; incremental?: string; timeZone?: string };
  preferredNode?: string;
  pinToPreferredNode?: boolean;
  retention?: RetentionPolicy;
  destinations?: DestinationSpec[];
  disabled?: boolean;
  missedRuns?: string;
  encrypted?: boolean;
  drill?: { schedule?: string; destinations?: string[] };
}

type Problem = { path: string; message: string };

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function unknownKeys(
  value: Record<string, unknown>,
  known: readonly string[],
  path: string,
  problems: Problem[],
): void {
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) problems.push({ path: path ? `${path}.${key}` : key, message: 'unknown field' });
  }
}

function check(value: unknown, type: 'string' | 'boolean' | 'number', path: string, problems: Problem[]): void {
  if (value !== undefined && typeof value !== type) problems.push({ path, message: `must be a ${type}` });
}

function checkStrings(value: unknown, path: string, problems: Problem[]): void {
  if (value === undefined) return;
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) {
    problems.push({ path, message: 'must be an array of strings' });
  }
}

/**
 * The file form of a task spec, checked for shape only: unknown fields and wrong JSON types are
 * refused here with their paths (ValidationError), everything else is left to the agent.
 */
export function taskSpecFromJson(value: unknown): TaskSpecInput {
  const problems: Problem[] = [];
  if (!isObject(value)) throw new ValidationError('task file', [{ path: '(file)', message: 'must be a JSON object' }]);
  unknownKeys(
    value,
    [
      'name',
      'target',
      'type',
      'schedule',
      'preferredNode',
      'pinToPreferredNode',
      'retention',
      'destinations',
      'disabled',
      'missedRuns',
      'encrypted',
      'drill',
    ],
    '',
    problems,
  );
  check(value.name, 'string', 'name', problems);
  check(value.type, 'string', 'type', problems);
  check(value.preferredNode, 'string', 'preferredNode', problems);
  check(value.pinToPreferredNode, 'boolean', 'pinToPreferredNode', problems);
  check(value.disabled, 'boolean', 'disabled', problems);
  check(value.missedRuns, 'string', 'missedRuns', problems);
  check(value.encrypted, 'boolean', 'encrypted', problems);

  const target = value.target;
  if (target !== undefined) {
    if (!isObject(target) || 'databases' in target === 'serverWide' in target) {
      problems.push({ path: 'target', message: 'must be {"databases": [...]} or {"serverWide": {"source": ...}}' });
    } else if ('databases' in target) {
      unknownKeys(target, ['databases'], 'target', problems);
      checkStrings(target.databases, 'target.databases', problems);
    } else {
      unknownKeys(target, ['serverWide'], 'target', problems);
      const sw = target.serverWide;
      if (!isObject(sw)) problems.push({ path: 'target.serverWide', message: 'must be an object' });
      else {
        unknownKeys(sw, ['source', 'exclude'], 'target.serverWide', problems);
        check(sw.source, 'string', 'target.serverWide.source', problems);
        checkStrings(sw.exclude, 'target.serverWide.exclude', problems);
      }
    }
  }
  const schedule = value.schedule;
  if (schedule !== undefined) {
    if (!isObject(schedule)) problems.push({ path: 'schedule', message: 'must be an object' });
    else {
      unknownKeys(schedule, ['full', 'incremental', 'timeZone'], 'schedule', problems);
      for (const key of ['full', 'incremental', 'timeZone'])
        check(schedule[key], 'string', `schedule.${key}`, problems);
    }
  }
  const drill = value.drill;
  if (drill !== undefined) {
    if (!isObject(drill)) problems.push({ path: 'drill', message: 'must be an object' });
    else {
      unknownKeys(drill, ['schedule', 'destinations'], 'drill', problems);
      check(drill.schedule, 'string', 'drill.schedule', problems);
      checkStrings(drill.destinations, 'drill.destinations', problems);
    }
  }
  const retention = value.retention;
  if (retention !== undefined) {
    if (!isObject(retention)) problems.push({ path: 'retention', message: 'must be an object' });
    else {
      const keys = ['maxAgeDays', 'keepChains', 'orphanGraceHours'];
      unknownKeys(retention, keys, 'retention', problems);
      for (const key of keys) check(retention[key], 'number', `retention.${key}`, problems);
    }
  }
  const dests = value.destinations;
  if (dests !== undefined) {
    if (!Array.isArray(dests)) problems.push({ path: 'destinations', message: 'must be an array' });
    else {
      dests.forEach((d: unknown, i) => {
        const path = `destinations[${i}]`;
        if (!isObject(d)) {
          problems.push({ path, message: 'must be {"name", "kind", "config"}' });
          return;
        }
        unknownKeys(d, ['name', 'kind', 'config'], path, problems);
        check(d.name, 'string', `${path}.name`, problems);
        check(d.kind, 'string', `${path}.kind`, problems);
        if (!isObject(d.config)) problems.push({ path: `${path}.config`, message: 'must be an object' });
      });
    }
  }
  if (problems.length > 0) throw new ValidationError('task file', problems);
  // Every field present was checked against TaskSpecInput's types above.
  return value as TaskSpecInput;
}

/** The flags that build a task spec (task create / task update without --file). */
export const SPEC_FLAGS = {
  database: { type: 'string', multiple: true, value: 'SOURCE/DB', help: 'a database to back up (repeatable)' },
  'server-wide': { type: 'string', value: 'SOURCE', help: 'back up every database of SOURCE, also ones made later' },
  exclude: {
    type: 'string',
    multiple: true,
    value: 'DB',
    help: 'with --server-wide: leave this database out (repeatable)',
  },
  type: { type: 'string', value: 'backup|snapshot', help: 'logical backup or raw snapshot' },
  full: { type: 'string', value: 'CRON', help: 'cron of full backups (5 or 6 fields)' },
  incremental: { type: 'string', value: 'CRON', help: 'cron of incrementals' },
  drill: { type: 'string', value: 'CRON', help: 'cron of restore drills (verify --restore of the newest backup)' },
  'drill-dest': {
    type: 'string',
    multiple: true,
    value: 'NAME',
    help: 'with --drill: drill this destination (repeatable; default every destination, in turn)',
  },
  tz: { type: 'string', value: 'ZONE', help: 'IANA time zone of the crons (default UTC)' },
  'keep-chains': { type: 'string', value: 'N', help: 'keep at most N chains' },
  'max-age-days': { type: 'string', value: 'N', help: 'delete chains whose newest restore point is older' },
  'missed-runs': {
    type: 'string',
    value: 'run-once|skip',
    help: 'after missed runs: one catch-up run (default) or none',
  },
  'preferred-node': { type: 'string', value: 'NODE', help: 'run on this node when it is alive' },
  pin: { type: 'boolean', help: 'never fail over from --preferred-node' },
  disabled: { type: 'boolean', help: 'create the task disabled' },
  ...DEST_FLAGS,
} as const;

export type SpecFlagValues = {
  database: string[];
  'server-wide'?: string | undefined;
  exclude: string[];
  type?: string | undefined;
  full?: string | undefined;
  incremental?: string | undefined;
  drill?: string | undefined;
  'drill-dest': string[];
  tz?: string | undefined;
  'keep-chains'?: string | undefined;
  'max-age-days'?: string | undefined;
  'missed-runs'?: string | undefined;
  'preferred-node'?: string | undefined;
  pin: boolean;
  disabled: boolean;
  dest: string[];
  'dest-file': string[];
};

/** True when any spec-building flag is set (they cannot be mixed with --file). */
export function specFlagsUsed(values: SpecFlagValues): string[] {
  return Object.keys(SPEC_FLAGS).filter((name) => {
    const v = values[name as keyof SpecFlagValues];
    return Array.isArray(v) ? v.length > 0 : v !== undefined && v !== false;
  });
}

/** The task spec the flags describe, in the file's shape; UsageError naming the missing or bad flag. */
export function taskSpecFromFlags(name: string, values: SpecFlagValues, where: string): TaskSpecInput {
  const hint = `see \`backupctl ${where} --help\``;
  let target: TaskTarget;
  if (values.database.length > 0 && values['server-wide'] !== undefined) {
    throw new UsageError(
      `${where}: --database and --server-wide cannot be used together`,
      'name databases or a whole source',
    );
  } else if (values['server-wide'] !== undefined) {
    target = { serverWide: { source: values['server-wide'], exclude: values.exclude } };
  } else if (values.database.length > 0) {
    if (values.exclude.length > 0) throw new UsageError(`${where}: --exclude needs --server-wide SOURCE`);
    target = { databases: values.database.map((d) => databaseFlag(d, '--database')) };
  } else {
    throw new UsageError(`${where}: missing --database SOURCE/DB or --server-wide SOURCE`, hint);
  }
  if (values.type === undefined) throw new UsageError(`${where}: missing --type backup|snapshot`, hint);
  const type = choiceFlag(values.type, '--type', ['backup', 'snapshot']);
  if (values.full === undefined && values.incremental === undefined) {
    throw new UsageError(
      `${where}: missing --full CRON and/or --incremental CRON`,
      `e.g. --full '0 2 * * 0' --incremental '0 2 * * 1-6'`,
    );
  }
  const dests = destinations(values);
  if (dests.length === 0) throw new UsageError(`${where}: missing --dest NAME:KIND:JSON or --dest-file FILE`, hint);
  if (values.pin && values['preferred-node'] === undefined) {
    throw new UsageError(`${where}: --pin needs --preferred-node NODE`);
  }

  if (values['drill-dest'].length > 0 && values.drill === undefined) {
    throw new UsageError(`${where}: --drill-dest needs --drill CRON`);
  }

  const spec: TaskSpecInput = { name, target, type, schedule: {} };
  const schedule: NonNullable<TaskSpecInput['schedule']> = {};
  if (values.full !== undefined) schedule.full = values.full;
  if (values.incremental !== undefined) schedule.incremental = values.incremental;
  if (values.tz !== undefined) schedule.timeZone = values.tz;
  spec.schedule = schedule;
  if (values['preferred-node'] !== undefined) spec.preferredNode = values['preferred-node'];
  if (values.pin) spec.pinToPreferredNode = true;
  const retention: RetentionPolicy = {};
  if (values['keep-chains'] !== undefined) retention.keepChains = intFlag(values['keep-chains'], '--keep-chains', 1);
  if (values['max-age-days'] !== undefined)
    retention.maxAgeDays = positiveFlag(values['max-age-days'], '--max-age-days');
  if (Object.keys(retention).length > 0) spec.retention = retention;
  spec.destinations = dests;
  if (values.disabled) spec.disabled = true;
  if (values.drill !== undefined) {
    spec.drill = { schedule: values.drill };
    if (values['drill-dest'].length > 0) spec.drill.destinations = values['drill-dest'];
  }
  if (values['missed-runs'] !== undefined) {
    spec.missedRuns = choiceFlag(values['missed-runs'], '--missed-runs', ['run-once', 'skip']);
  }
  return spec;
}

/** The proto TaskSpec for `spec`; `encrypted` is set when a key goes with it. */
export function toProtoSpec(spec: TaskSpecInput, hasKey: boolean): ProtoTaskSpec {
  const target = spec.target;
  const proto: ProtoTaskSpec = {
    name: spec.name ?? '',
    type: spec.type ?? '',
    schedule: {
      full: spec.schedule?.full ?? '',
      incremental: spec.schedule?.incremental ?? '',
      timeZone: spec.schedule?.timeZone ?? '',
    },
    preferredNode: spec.preferredNode ?? '',
    pinToPreferredNode: spec.pinToPreferredNode ?? false,
    retention: {
      maxAgeDays: spec.retention?.maxAgeDays ?? 0,
      keepChains: spec.retention?.keepChains ?? 0,
      orphanGraceHours: spec.retention?.orphanGraceHours ?? 0,
    },
    destinations: (spec.destinations ?? []).map((d) => ({
      name: d.name,
      kind: d.kind,
      configJson: JSON.stringify(d.config ?? {}),
    })),
    disabled: spec.disabled ?? false,
    missedRuns: spec.missedRuns ?? '',
    encrypted: hasKey || spec.encrypted === true,
  };
  if (spec.drill) proto.drill = { schedule: spec.drill.schedule ?? '', destinations: spec.drill.destinations ?? [] };
  if (target && 'databases' in target) proto.databases = { names: target.databases };
  else if (target && 'serverWide' in target) {
    proto.serverWide = { source: target.serverWide.source, exclude: target.serverWide.exclude ?? [] };
  }
  return proto;
}
