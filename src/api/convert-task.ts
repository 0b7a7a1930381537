// Task specs between proto and domain: a request becomes the untrusted input the agent validates
// (task-checks.ts); a stored task becomes its answer, with no encryption key ever copied into it.

import type { RetentionPolicy } from '../backup/retention.js';
import type { StoredTask } from '../cluster/store.js';
import { clip, type FieldProblem, ValidationError } from '../errors.js';
import type { DestinationSpec as ProtoDestination } from '../generated/backupd/v1/DestinationSpec.js';
import type { ListTasksResponse } from '../generated/backupd/v1/ListTasksResponse.js';
import type { Retention } from '../generated/backupd/v1/Retention.js';
import type { Task } from '../generated/backupd/v1/Task.js';
import type { TaskSpec as ProtoTaskSpec } from '../generated/backupd/v1/TaskSpec.js';
import { parseTaskSpec, type TaskSpec } from '../task.js';
import type { DestinationRegistry, DestinationSpec } from '../uploader/registry.js';
import { configBoundsProblem, MAX_CONFIG_BYTES } from '../validate.js';
import { compact, nonEmpty, positive, withoutQuotedInput } from './convert-fields.js';

/**
 * A TaskSpec message as the untrusted object Operations.createTask/updateTask validate (parseTaskSpec).
 * proto3 cannot tell "unset" from "empty", so '' and 0 become absent and the agent's defaults apply.
 * A config_json that is not JSON is a field problem; it is reported together with every other problem of the
 * spec (checked with `registry`, without side effects), and the agent is not called.
 */
export function taskSpecInput(spec: ProtoTaskSpec | null | undefined, registry: DestinationRegistry): unknown {
  const jsonProblems: FieldProblem[] = [];
  const input = taskSpecObject(spec ?? {}, jsonProblems);
  if (jsonProblems.length === 0) return input;
  // The config that failed to parse is absent from `input`, so the driver would add its own complaint about
  // the same field ("expected object"); the JSON problem replaces it.
  const broken = jsonProblems.map((p) => p.path);
  let others: FieldProblem[] = [];
  try {
    parseTaskSpec(input, registry);
  } catch (error) {
    if (!(error instanceof ValidationError)) throw error;
    others = error.problems.filter((p) => !broken.some((b) => p.path === b || p.path.startsWith(`${b}.`)));
  }
  throw new ValidationError('task', [...others, ...jsonProblems]);
}

function taskSpecObject(spec: ProtoTaskSpec, problems: FieldProblem[]): Record<string, unknown> {
  const schedule = spec.schedule ?? {};
  const retention = retentionFromProto(spec.retention);
  return compact({
    name: spec.name ?? '',
    target: targetFromProto(spec),
    type: nonEmpty(spec.type),
    schedule: compact({
      full: nonEmpty(schedule.full),
      incremental: nonEmpty(schedule.incremental),
      timeZone: nonEmpty(schedule.timeZone),
    }),
    preferredNode: nonEmpty(spec.preferredNode),
    pinToPreferredNode: spec.pinToPreferredNode ?? false,
    retention,
    destinations: destinationsFromProto(spec.destinations ?? [], 'destinations', problems),
    disabled: spec.disabled ?? false,
    missedRuns: nonEmpty(spec.missedRuns),
    encrypted: spec.encrypted ?? false,
    drill: spec.drill
      ? compact({
          schedule: spec.drill.schedule ?? '',
          destinations: spec.drill.destinations?.length ? spec.drill.destinations : undefined,
        })
      : undefined,
  });
}

function targetFromProto(spec: ProtoTaskSpec): unknown {
  // With `oneofs: true` proto-loader names the member that was set; an older client may send neither.
  if (spec.target === 'serverWide' || (spec.target === undefined && spec.serverWide)) {
    return { serverWide: { source: spec.serverWide?.source ?? '', exclude: spec.serverWide?.exclude ?? [] } };
  }
  if (spec.target === 'databases' || spec.databases) return { databases: spec.databases?.names ?? [] };
  return undefined;
}

function retentionFromProto(retention: Retention | null | undefined): RetentionPolicy | undefined {
  if (!retention) return undefined;
  const policy = compact({
    maxAgeDays: positive(retention.maxAgeDays),
    keepChains: positive(retention.keepChains),
    orphanGraceHours: positive(retention.orphanGraceHours),
  });
  return Object.keys(policy).length === 0 ? undefined : policy;
}

/** Destination specs with their config_json parsed; JSON errors are pushed to `problems` under `path[i].config`. */
export function destinationsFromProto(
  list: readonly ProtoDestination[],
  path: string,
  problems: FieldProblem[],
): DestinationSpec[] {
  return list.map((d, i) => destinationFromProto(d, `${path}[${i}]`, problems));
}

export function destinationFromProto(d: ProtoDestination, path: string, problems: FieldProblem[]): DestinationSpec {
  const spec: DestinationSpec = { name: d.name ?? '', kind: d.kind ?? '', config: {} };
  // An unset config_json means "no settings": the driver then names each setting it requires.
  const text = d.configJson ?? '';
  if (text.trim() === '') return spec;
  // Measured before parsing: the parse of a large text is the cost the bound is there to refuse.
  if (Buffer.byteLength(text) > MAX_CONFIG_BYTES) {
    problems.push({ path: `${path}.config`, message: `is larger than ${MAX_CONFIG_BYTES / 1024} KiB` });
    spec.config = undefined;
    return spec;
  }
  try {
    spec.config = JSON.parse(text) as unknown;
  } catch (error) {
    // Clipped: V8's message quotes a character of the input, which may be half of one (a lone surrogate).
    const reason = error instanceof SyntaxError ? clip(withoutQuotedInput(error.message)) : 'cannot be parsed';
    problems.push({ path: `${path}.config`, message: `not valid JSON: ${reason}` });
    spec.config = undefined;
    return spec;
  }
  const bounds = configBoundsProblem(spec.config, `${path}.config`);
  if (bounds) {
    problems.push(bounds);
    spec.config = undefined;
  }
  return spec;
}

export function taskToProto(task: StoredTask): Task {
  return {
    spec: taskSpecToProto(task.spec),
    createdAt: task.createdAt ?? '',
    updatedAt: task.updatedAt ?? '',
    revision: task.revision,
  };
}

export function tasksToProto(tasks: readonly StoredTask[]): ListTasksResponse {
  return { tasks: tasks.map(taskToProto) };
}

export function taskSpecToProto(spec: TaskSpec): ProtoTaskSpec {
  const target: Pick<ProtoTaskSpec, 'databases' | 'serverWide'> =
    'databases' in spec.target
      ? { databases: { names: [...spec.target.databases] } }
      : { serverWide: { source: spec.target.serverWide.source, exclude: [...spec.target.serverWide.exclude] } };
  return {
    name: spec.name,
    ...target,
    type: spec.type,
    schedule: {
      full: spec.schedule.full ?? '',
      incremental: spec.schedule.incremental ?? '',
      timeZone: spec.schedule.timeZone ?? '',
    },
    preferredNode: spec.preferredNode ?? '',
    pinToPreferredNode: spec.pinToPreferredNode,
    retention: retentionToProto(spec.retention),
    destinations: spec.destinations.map(destinationToProto),
    disabled: spec.disabled,
    missedRuns: spec.missedRuns,
    encrypted: spec.encrypted,
    ...(spec.drill
      ? { drill: { schedule: spec.drill.schedule, destinations: [...(spec.drill.destinations ?? [])] } }
      : {}),
  };
}

/** The config exactly as Operations gave it (already masked), as JSON text. */
export function destinationToProto(spec: DestinationSpec): ProtoDestination {
  return { name: spec.name, kind: spec.kind, configJson: JSON.stringify(spec.config ?? {}) };
}

export function retentionToProto(policy: RetentionPolicy | undefined): Retention | null {
  if (!policy) return null;
  return {
    maxAgeDays: policy.maxAgeDays ?? 0,
    keepChains: policy.keepChains ?? 0,
    orphanGraceHours: policy.orphanGraceHours ?? 0,
  };
}
