// backupctl databases, backups list, restore, verify, cluster: what can be backed up, what was backed up
// at a destination, getting it back, checking it, and who is in the cluster.

import type { BackupLocation } from '../../generated/backupd/v1/BackupLocation.js';
import type { Progress__Output } from '../../generated/backupd/v1/Progress.js';
import { databaseFlag, expectPositionals, type FlagSpecs } from './args.js';
import { type Command, type Context, defineCommand, progressSink } from './command.js';
import { UsageError } from './errors.js';
import { bytes, duration, table, time } from './format.js';
import { type Env, KEY_FLAGS, KEY_HELP, parseDest, readDestFile, readKey } from './inputs.js';
import { ProgressView } from './progress.js';

const LOCATION_FLAGS = {
  task: { type: 'string', value: 'TASK', help: 'read from a destination of this task (with --destination)' },
  destination: { type: 'string', value: 'NAME', help: 'the destination of --task, by name' },
  dest: { type: 'string', value: 'NAME:KIND:JSON', help: 'or: a destination given in full (docs/DESTINATIONS.md)' },
  'dest-file': { type: 'string', value: 'FILE', help: 'or: that destination from a JSON file' },
  database: { type: 'string', value: 'SOURCE/DB', help: 'the database the backups were taken of (required)' },
} as const satisfies FlagSpecs;

const POINT_FLAGS = {
  chain: { type: 'string', value: 'CHAIN', help: 'chain id (see backups list; required)' },
  backup: { type: 'string', value: 'BACKUP', help: 'restore point (backup id) in the chain (required)' },
} as const satisfies FlagSpecs;

interface LocationValues {
  task?: string | undefined;
  destination?: string | undefined;
  dest?: string | undefined;
  'dest-file'?: string | undefined;
  database?: string | undefined;
}

/** The backup location of the location flags; UsageError unless exactly one form is given. */
function locationOnly(values: LocationValues, where: string): BackupLocation {
  const hint = 'give --task TASK --destination NAME, or --dest NAME:KIND:JSON, or --dest-file FILE';
  const byTask = values.task !== undefined || values.destination !== undefined;
  const given = [byTask, values.dest !== undefined, values['dest-file'] !== undefined].filter(Boolean).length;
  if (given === 0) throw new UsageError(`${where}: missing the location of the backups`, hint);
  if (given > 1) throw new UsageError(`${where}: give one location of the backups, not several`, hint);
  let from: BackupLocation;
  if (byTask) {
    if (values.task === undefined) throw new UsageError(`${where}: --destination needs --task TASK`, hint);
    if (values.destination === undefined) throw new UsageError(`${where}: --task needs --destination NAME`, hint);
    from = { task: values.task, destination: values.destination };
  } else {
    const specs = values.dest !== undefined ? [parseDest(values.dest)] : readDestFile(values['dest-file']!);
    if (specs.length !== 1) throw new UsageError(`${where}: --dest-file must hold exactly one destination here`);
    const spec = specs[0]!;
    from = { spec: { name: spec.name, kind: spec.kind, configJson: JSON.stringify(spec.config) } };
  }
  return from;
}

/** The backup location and database of the location flags; UsageError unless exactly one form is given. */
export function location(values: LocationValues, where: string): { from: BackupLocation; database: string } {
  const from = locationOnly(values, where);
  if (values.database === undefined) throw new UsageError(`${where}: missing --database SOURCE/DB`);
  return { from, database: databaseFlag(values.database, '--database') };
}

function point(values: { chain?: string | undefined; backup?: string | undefined }, where: string) {
  if (values.chain === undefined)
    throw new UsageError(`${where}: missing --chain CHAIN`, 'list them with `backupctl backups list`');
  if (values.backup === undefined)
    throw new UsageError(`${where}: missing --backup BACKUP`, 'list them with `backupctl backups list`');
  return { chainId: values.chain, backupId: values.backup };
}

/** Follow a restore or verify stream: a progress bar or JSON lines; resolves with the last message's result. */
async function follow<E extends { progress: Progress__Output | null }>(
  context: Context,
  events: AsyncIterable<E>,
  resultOf: (event: E) => unknown,
): Promise<E | undefined> {
  const { out } = context;
  const view = out.json
    ? undefined
    : new ProgressView(progressSink(out), {
        now: context.now,
        ...(context.progressIntervalMs === undefined ? {} : { lineIntervalMs: context.progressIntervalMs }),
      });
  let final: E | undefined;
  try {
    for await (const event of events) {
      if (out.json) out.jsonLine(event);
      else if (event.progress) view?.update(event.progress);
      if (resultOf(event)) final = event;
    }
  } finally {
    view?.finish();
  }
  return final;
}

export const databases = defineCommand({
  name: 'databases',
  args: '',
  summary: 'the databases the cluster can back up',
  flags: {},
  prepare({ positionals }) {
    expectPositionals(positionals, [], 'databases');
    const request = {};
    return {
      request,
      async execute({ api, out }) {
        const answer = await api.unary('ListDatabases', request);
        if (out.json) {
          out.document(answer);
          return 0;
        }
        if (answer.databases.length === 0) out.line('no databases');
        else {
          out.line(
            table(
              ['DATABASE', 'ENGINE', 'SIZE', 'TYPES'],
              answer.databases.map((d) => [`${d.source}/${d.name}`, d.engine, bytes(d.sizeBytes), d.types.join(', ')]),
              { align: ['left', 'left', 'right', 'left'] },
            ),
          );
        }
        // Databases no task can back up are told, so a server-wide task never skips one unseen.
        for (const d of answer.leftOut) out.line(`left out: ${d.source}/${JSON.stringify(d.name)}: ${d.reason}`);
        return 0;
      },
    };
  },
});

export const backupsList = defineCommand({
  name: 'backups list',
  args: '',
  summary: 'the chains and restore points at a destination, of every cluster and database found there',
  flags: {
    ...LOCATION_FLAGS,
    database: { type: 'string', value: 'SOURCE/DB', help: 'only this database (default: every database)' },
    cluster: { type: 'string', value: 'CLUSTER', help: 'only backups this cluster wrote (default: every cluster)' },
  },
  prepare({ values, positionals }) {
    expectPositionals(positionals, [], 'backups list');
    const request = {
      from: locationOnly(values, 'backups list'),
      database: values.database === undefined ? '' : databaseFlag(values.database, '--database'),
      cluster: values.cluster ?? '',
    };
    return {
      request,
      async execute({ api, out }) {
        const answer = await api.unary('ListBackups', request);
        if (out.json) {
          out.document(answer);
          return 0;
        }
        if (answer.chains.length === 0) {
          const what = [
            request.database ? `of ${request.database}` : '',
            request.cluster ? `written by cluster ${request.cluster}` : '',
          ]
            .filter(Boolean)
            .join(' ');
          out.line(`no backups${what ? ` ${what}` : ''} at ${answer.searched}`);
          return 0;
        }
        // One row per restore point; the chain's own columns only on its first row.
        const rows = answer.chains.flatMap((c) =>
          (c.backups.length > 0 ? c.backups : ['(none)']).map((backup, i) =>
            i === 0
              ? [c.cluster, c.database, c.chainId, c.type, backup, bytes(c.bytes), time(c.newestAt)]
              : ['', '', '', '', backup, '', ''],
          ),
        );
        out.line(`at ${answer.searched}`);
        out.line(
          table(['CLUSTER', 'DATABASE', 'CHAIN', 'TYPE', 'RESTORE POINT', 'CHAIN SIZE', 'NEWEST'], rows, {
            align: ['left', 'left', 'left', 'left', 'left', 'right', 'left'],
            blank: '',
          }),
        );
        return 0;
      },
    };
  },
});

export const restore = defineCommand({
  name: 'restore',
  args: '',
  summary: 'restore a restore point into a NEW database (never over an existing one)',
  notes: `${KEY_HELP} From a task's destination the task's key is used by default.`,
  flags: {
    ...LOCATION_FLAGS,
    ...POINT_FLAGS,
    cluster: {
      type: 'string',
      value: 'CLUSTER',
      help: 'the cluster that wrote the backup (default: the one at the destination that holds it)',
    },
    target: { type: 'string', value: 'NEWNAME', help: 'name of the new database (required)' },
    into: {
      type: 'string',
      value: 'SOURCE',
      help: "the source to restore into, on any node that has it (default: the backup's own source)",
    },
    ...KEY_FLAGS,
  },
  prepare({ values, positionals }, env: Env) {
    expectPositionals(positionals, [], 'restore');
    const where = location(values, 'restore');
    const at = point(values, 'restore');
    if (values.target === undefined)
      throw new UsageError('restore: missing --target NEWNAME', 'the new database must not exist yet');
    const key = readKey(values, env);
    const request = {
      ...where,
      ...at,
      target: values.target,
      encryptionKey: key ?? '',
      cluster: values.cluster ?? '',
      intoSource: values.into ?? '',
    };
    return {
      request,
      secrets: key ? [key] : [],
      async execute(context) {
        const final = await follow(context, context.api.stream('Restore', request), (e) => e.result);
        const result = final?.result;
        if (!result) throw new Error('the restore stream ended without a result; check `backupctl databases`');
        if (!context.out.json) {
          context.out.line(
            `restored ${request.database} ${request.chainId}/${request.backupId}: ${bytes(result.bytes)} in ${duration(result.seconds)}`,
          );
          context.out.line(`the database is now at ${result.location}`);
          if (result.note) context.out.line(result.note);
        }
        return 0;
      },
    };
  },
});

export const verify = defineCommand({
  name: 'verify',
  args: '',
  summary: 'read a restore point back and check every chunk; with --restore, restore it aside and compare',
  notes:
    `${KEY_HELP}\n--restore restores into a scratch place on the node that answers (it must have the database's ` +
    "source), runs the engine's own checks and compares the fingerprint the backup recorded, table by table; " +
    'the scratch is removed afterwards. Exit 1 when anything differs.',
  flags: {
    ...LOCATION_FLAGS,
    ...POINT_FLAGS,
    ...KEY_FLAGS,
    restore: { type: 'boolean', help: "restore into a scratch place and compare with the backup's fingerprint" },
  },
  prepare({ values, positionals }, env: Env) {
    expectPositionals(positionals, [], 'verify');
    const where = location(values, 'verify');
    const at = point(values, 'verify');
    const key = readKey(values, env);
    const request = { ...where, ...at, encryptionKey: key ?? '', ...(values.restore ? { restore: true } : {}) };
    return {
      request,
      secrets: key ? [key] : [],
      async execute(context) {
        const final = await follow(context, context.api.stream('Verify', request), (e) => e.result);
        const r = final?.result;
        if (!r) throw new Error('the verify stream ended without a result');
        const check = r.restore;
        if (check) {
          if (!context.out.json) {
            const what = `${request.database} ${request.chainId}/${request.backupId}`;
            const speed = `${bytes(check.bytes)} restored in ${duration(check.restoreSeconds)} (${bytes(check.bytesPerSecond)}/s), checked in ${duration(check.checkSeconds)}`;
            const compared = check.fingerprinted
              ? `${check.tables} tables compared with the backup's fingerprint`
              : 'no fingerprint recorded: restored and checked only';
            context.out.line(`verified by restoring ${what}: ${speed}; ${compared}: ${check.ok ? 'OK' : 'FAILED'}`);
            for (const problem of check.problems) context.out.line(`  ${problem}`);
            for (const note of check.notes) context.out.line(`  note: ${note}`);
            for (const d of check.differences) {
              context.out.line(
                `  ${d.table ? `table ${d.table}` : 'database'}: ${d.kind}: expected ${d.expected}, found ${d.found}`,
              );
            }
          }
          return check.ok ? 0 : 1;
        }
        if (!context.out.json) {
          context.out.line(
            `verified ${request.database} ${request.chainId}/${request.backupId}: ${r.packs} packs, ${r.chunks} chunks, ` +
              `${bytes(r.rawBytes)} of files (${bytes(r.packBytes)} of packs) in ${duration(r.seconds)}: OK`,
          );
        }
        return 0;
      },
    };
  },
});

export const cluster = defineCommand({
  name: 'cluster',
  args: '',
  summary: 'members, leader and which node runs which unit',
  flags: {},
  prepare({ positionals }) {
    expectPositionals(positionals, [], 'cluster');
    const request = {};
    return {
      request,
      async execute({ api, out }) {
        const c = await api.unary('GetClusterStatus', request);
        if (out.json) {
          out.document(c);
          return 0;
        }
        out.line(
          `cluster ${c.cluster} (${c.mode}): this node ${c.node}, leader ${c.leader || 'none'} (term ${c.term})`,
        );
        out.line();
        out.line(
          table(
            ['NODE', 'ADDRESS', 'VERSION', 'STATE', 'DATABASES'],
            c.members.map((m) => [
              `${m.node}${m.node === c.leader ? ' (leader)' : ''}`,
              m.address,
              m.version,
              m.state || (m.healthy ? 'serving' : 'not healthy'),
              m.databases.join(', '),
            ]),
          ),
        );
        out.line();
        if (c.assignments.length === 0) out.line('no assignments');
        else {
          out.line(
            table(
              ['TASK', 'DATABASE', 'NODE', 'TERM', 'REASON'],
              c.assignments.map((a) => [a.task, a.database, a.node || '(none)', String(a.term), a.reason]),
            ),
          );
        }
        if (c.leaderChanges.length > 0) {
          out.line();
          out.line('recent leader changes:');
          for (const change of c.leaderChanges) out.line(`  ${change.at}  ${change.node} (term ${change.term})`);
        }
        if (c.pendingReports > 0) {
          out.line();
          out.line(`${c.pendingReports} status report(s) wait on this node for etcd to be reachable again`);
        }
        return 0;
      },
    };
  },
});

export const RESTORE_COMMANDS: Command[] = [databases, backupsList, restore, verify, cluster];
