// backupctl task create | update | delete | get | list.

import type { Task__Output } from '../../generated/backupd/v1/Task.js';
import type { TaskSpec__Output } from '../../generated/backupd/v1/TaskSpec.js';
import { expectPositionals, intFlag } from './args.js';
import { type Command, defineCommand } from './command.js';
import { UsageError } from './errors.js';
import { keyValues, table, time } from './format.js';
import { type Env, KEY_FLAGS, KEY_HELP, readJsonFile, readKey } from './inputs.js';
import {
  SPEC_FLAGS,
  type SpecFlagValues,
  specFlagsUsed,
  type TaskSpecInput,
  taskSpecFromFlags,
  taskSpecFromJson,
  toProtoSpec,
} from './task-spec.js';

const WRITE_FLAGS = {
  file: { type: 'string', value: 'FILE', help: 'the task spec as JSON (the shape of src/task.ts TaskSpec)' },
  ...SPEC_FLAGS,
  ...KEY_FLAGS,
} as const;

const SPEC_NOTES = `Give the spec in a file (--file) or with flags, not both.
${KEY_HELP}
Example:
  backupctl task create nightly --database main/orders --type backup \\
    --full '0 2 * * 0' --incremental '0 2 * * 1-6' --tz Europe/Berlin \\
    --dest disk:local:'{"path":"/var/backups"}' --keep-chains 4 --key-file /etc/backupd/nightly.key`;

/** The spec from --file or from flags, with the NAME positional. */
function specFrom(
  values: SpecFlagValues & { file?: string | undefined },
  positionals: string[],
  where: string,
): TaskSpecInput {
  const [name] = expectPositionals(positionals, ['NAME'], where, values.file === undefined ? 1 : 0);
  if (values.file === undefined) return taskSpecFromFlags(name!, values, where);
  const used = specFlagsUsed(values);
  if (used.length > 0) {
    throw new UsageError(
      `${where}: --file cannot be combined with ${used.map((f) => `--${f}`).join(', ')}`,
      'put every field in the file, or leave out --file',
    );
  }
  const spec = taskSpecFromJson(readJsonFile(values.file, '--file'));
  if (name !== undefined) {
    if (spec.name !== undefined && spec.name !== name) {
      throw new UsageError(
        `${where}: NAME "${name}" differs from the file's name "${spec.name}"`,
        'give the name once',
      );
    }
    spec.name = name;
  }
  return spec;
}

function describeTarget(spec: TaskSpec__Output): string {
  if (spec.serverWide) {
    const { source, exclude } = spec.serverWide;
    return `server-wide ${source}${exclude.length > 0 ? ` (except ${exclude.join(', ')})` : ''}`;
  }
  return spec.databases?.names.join(', ') ?? '';
}

function describeSchedule(spec: TaskSpec__Output): string {
  const s = spec.schedule;
  if (!s) return '';
  const parts = [s.full && `full "${s.full}"`, s.incremental && `incremental "${s.incremental}"`].filter(Boolean);
  return `${parts.join(', ')} (${s.timeZone || 'UTC'})`;
}

function describeDrill(spec: TaskSpec__Output): string {
  const d = spec.drill;
  if (!d?.schedule) return 'none';
  const where = d.destinations.length > 0 ? d.destinations.join(', ') : 'every destination';
  return `"${d.schedule}" (${where}, in turn)`;
}

function describeRetention(spec: TaskSpec__Output): string {
  const r = spec.retention;
  const parts = [
    r?.keepChains ? `keep ${r.keepChains} chains` : '',
    r?.maxAgeDays ? `max ${r.maxAgeDays} days` : '',
    r?.orphanGraceHours ? `orphan packs after ${r.orphanGraceHours} h` : '',
  ].filter(Boolean);
  return parts.length > 0 ? parts.join(', ') : 'keep everything';
}

/** A task for people: its fields, then its destinations (configs as the agent returns them: masked). */
export function describeTask(task: Task__Output): string {
  const spec = task.spec;
  if (!spec) return '(empty task)';
  const pairs: [string, string][] = [
    ['name', spec.name],
    ['target', describeTarget(spec)],
    ['type', spec.type],
    ['schedule', describeSchedule(spec)],
    ['retention', describeRetention(spec)],
    ['preferred node', spec.preferredNode ? `${spec.preferredNode}${spec.pinToPreferredNode ? ' (pinned)' : ''}` : ''],
    ['missed runs', spec.missedRuns || 'run-once'],
    ['drill', describeDrill(spec)],
    ['encrypted', spec.encrypted ? 'yes' : 'no'],
    ['state', spec.disabled ? 'disabled' : 'enabled'],
    ['revision', `${task.revision} (updated ${time(task.updatedAt)})`],
  ];
  const dests = table(
    ['DESTINATION', 'KIND', 'CONFIG'],
    spec.destinations.map((d) => [d.name, d.kind, d.configJson]),
  );
  return `${keyValues(pairs)}\n\n${dests}`;
}

export const taskCreate = defineCommand({
  name: 'task create',
  args: '[NAME]',
  summary: 'create a periodic backup task',
  notes: SPEC_NOTES,
  flags: WRITE_FLAGS,
  prepare({ values, positionals }, env: Env) {
    const spec = specFrom(values, positionals, 'task create');
    const key = readKey(values, env);
    const request = { spec: toProtoSpec(spec, key !== undefined), encryptionKey: key ?? '' };
    return {
      request,
      secrets: key ? [key] : [],
      async execute({ api, out }) {
        const task = await api.unary('CreateTask', request);
        if (out.json) out.document(task);
        else out.line(`created task ${task.spec?.name ?? spec.name} (revision ${task.revision})`);
        return 0;
      },
    };
  },
});

export const taskUpdate = defineCommand({
  name: 'task update',
  args: '[NAME]',
  summary: 'replace a task spec (the whole spec; a new key starts new chains)',
  notes: `${SPEC_NOTES.replace('task create', 'task update')}
Without a key the task keeps its current key.`,
  flags: {
    ...WRITE_FLAGS,
    'expected-revision': {
      type: 'string',
      value: 'N',
      help: 'refuse (exit 6) when the task changed since revision N (see task get)',
    },
  },
  prepare({ values, positionals }, env: Env) {
    const spec = specFrom(values, positionals, 'task update');
    const key = readKey(values, env);
    const revision = values['expected-revision'];
    const request = {
      spec: toProtoSpec(spec, key !== undefined),
      encryptionKey: key ?? '',
      expectedRevision: revision === undefined ? 0 : intFlag(revision, '--expected-revision', 1),
    };
    return {
      request,
      secrets: key ? [key] : [],
      async execute({ api, out }) {
        const task = await api.unary('UpdateTask', request);
        if (out.json) out.document(task);
        else out.line(`updated task ${task.spec?.name ?? spec.name} (revision ${task.revision})`);
        return 0;
      },
    };
  },
});

export const taskDelete = defineCommand({
  name: 'task delete',
  args: 'NAME',
  summary: 'delete a task (its backups stay at the destinations)',
  flags: {},
  prepare({ positionals }) {
    const [name] = expectPositionals(positionals, ['NAME'], 'task delete');
    const request = { name: name! };
    return {
      request,
      async execute({ api, out }) {
        await api.unary('DeleteTask', request);
        if (out.json) out.document({ name: request.name, deleted: true });
        else out.line(`deleted task ${request.name}`);
        return 0;
      },
    };
  },
});

export const taskGet = defineCommand({
  name: 'task get',
  args: 'NAME',
  summary: 'show a task spec (secrets masked)',
  flags: {},
  prepare({ positionals }) {
    const [name] = expectPositionals(positionals, ['NAME'], 'task get');
    const request = { name: name! };
    return {
      request,
      async execute({ api, out }) {
        const task = await api.unary('GetTask', request);
        if (out.json) out.document(task);
        else out.line(describeTask(task));
        return 0;
      },
    };
  },
});

export const taskList = defineCommand({
  name: 'task list',
  args: '',
  summary: 'list every task',
  flags: {},
  prepare({ positionals }) {
    expectPositionals(positionals, [], 'task list');
    const request = {};
    return {
      request,
      async execute({ api, out }) {
        const answer = await api.unary('ListTasks', request);
        if (out.json) {
          out.document(answer);
          return 0;
        }
        if (answer.tasks.length === 0) {
          out.line('no tasks (create one with `backupctl task create`)');
          return 0;
        }
        out.line(
          table(
            ['NAME', 'TYPE', 'TARGET', 'SCHEDULE', 'DESTINATIONS', 'STATE', 'REVISION'],
            answer.tasks.map(({ spec, revision }) => [
              spec?.name ?? '',
              spec?.type ?? '',
              spec ? describeTarget(spec) : '',
              spec ? describeSchedule(spec) : '',
              spec?.destinations.map((d) => d.name).join(', ') ?? '',
              spec?.disabled ? 'disabled' : 'enabled',
              String(revision),
            ]),
          ),
        );
        return 0;
      },
    };
  },
});

export const TASK_COMMANDS: Command[] = [taskCreate, taskUpdate, taskDelete, taskGet, taskList];
