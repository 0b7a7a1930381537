// backupctl status, runs, run get | cancel | delay | watch, backup now | one-time: what the units do and
// their runs, watched with a progress bar until they end.

import type { Run__Output } from '../../generated/backupd/v1/Run.js';
import type { RunSummary__Output } from '../../generated/backupd/v1/RunSummary.js';
import type { UnitStatus__Output } from '../../generated/backupd/v1/UnitStatus.js';
import { choiceFlag, databaseFlag, expectPositionals, intFlag } from './args.js';
import { type Command, type Context, defineCommand, progressSink } from './command.js';
import { RunFailedError, UsageError } from './errors.js';
import { bytes, duration, keyValues, secondsBetween, table, time } from './format.js';
import { DEST_FLAGS, destinations, type Env, KEY_FLAGS, KEY_HELP, readKey } from './inputs.js';
import { type ProgressState, ProgressView } from './progress.js';

const FINISHED = new Set(['succeeded', 'failed', 'cancelled', 'interrupted']);

const WAIT_FLAG = {
  wait: { type: 'boolean', help: 'watch the runs with a progress bar until they end; exit 1 if one fails' },
} as const;

function runProgress(run: Run__Output): ProgressState {
  const p = run.progress;
  const phase = FINISHED.has(run.outcome) ? run.outcome : p?.phase || run.outcome || 'queued';
  return { phase, bytesDone: p?.bytesDone ?? 0, bytesTotal: p?.bytesTotal ?? 0 };
}

/** One line saying how a run ended (or where it is). */
export function runSummary(run: Run__Output): string {
  const what = `${run.level || 'backup'} ${run.type || ''} of ${run.database}`.replace(/\s+/g, ' ');
  const took = secondsBetween(run.startedAt, run.finishedAt);
  if (run.outcome === 'succeeded') {
    const parts = [
      run.chainId ? `chain ${run.chainId}` : '',
      run.backupId ? `restore point ${run.backupId}` : '',
      `${bytes(run.storedBytes)} stored of ${bytes(run.rawBytes)} read`,
    ].filter(Boolean);
    return (
      `run ${run.runId} succeeded: ${what}, ${parts.join(', ')}` +
      `${took === undefined ? '' : ` in ${duration(took)}`}${run.node ? ` on ${run.node}` : ''}`
    );
  }
  if (FINISHED.has(run.outcome)) {
    return `run ${run.runId} ${run.outcome}: ${what}${run.error ? `: ${run.error}` : ''}${run.errorCode ? ` [${run.errorCode}]` : ''}`;
  }
  return `run ${run.runId} ${run.outcome || 'queued'}: ${what}${run.node ? ` on ${run.node}` : ''}`;
}

/** The destinations of a run that failed, one line each. */
function destinationFailures(run: Run__Output): string[] {
  return run.destinations.filter((d) => !d.ok && d.error).map((d) => `  destination ${d.destination}: ${d.error}`);
}

/** Follow one run until it ends: a progress bar, or JSON lines of its events. Resolves with its last state. */
export async function watchRun(context: Context, runId: string, label?: string): Promise<Run__Output | undefined> {
  const { api, out } = context;
  const view = out.json
    ? undefined
    : new ProgressView(progressSink(out), {
        now: context.now,
        ...(context.progressIntervalMs === undefined ? {} : { lineIntervalMs: context.progressIntervalMs }),
        ...(label === undefined ? {} : { label }),
      });
  let last: Run__Output | undefined;
  try {
    for await (const event of api.stream('WatchRun', { runId })) {
      if (!event.run) continue;
      last = event.run;
      if (out.json) out.jsonLine(event);
      else view?.update(runProgress(event.run));
    }
  } finally {
    view?.finish();
  }
  return last;
}

/** Watch runs one after another; throws RunFailedError naming every run that did not succeed. */
async function watchAll(context: Context, runIds: string[]): Promise<number> {
  const failures: string[] = [];
  for (const runId of runIds) {
    const run = await watchRun(context, runId, runIds.length > 1 ? runId : undefined);
    if (!run || !FINISHED.has(run.outcome)) {
      failures.push(`the watch of run ${runId} ended before the run did`);
      continue;
    }
    if (!context.out.json) {
      context.out.line(runSummary(run));
      for (const line of destinationFailures(run)) context.out.line(line);
    }
    if (run.outcome !== 'succeeded') failures.push(runSummary(run));
  }
  if (failures.length > 0) throw new RunFailedError(failures.join('\n'));
  return 0;
}

function runsTable(runs: Run__Output[]): string {
  return table(
    ['RUN', 'TASK', 'DATABASE', 'LEVEL', 'TRIGGER', 'OUTCOME', 'NODE', 'STARTED', 'TOOK', 'STORED', 'ERROR'],
    runs.map((r) => {
      const took = secondsBetween(r.startedAt, r.finishedAt);
      return [
        r.runId,
        r.task,
        r.database,
        r.level,
        r.trigger,
        r.outcome,
        r.node,
        time(r.startedAt),
        took === undefined ? '' : duration(took),
        r.storedBytes ? bytes(r.storedBytes) : '',
        r.error,
      ];
    }),
  );
}

function lastRun(summary: RunSummary__Output | null): string {
  if (!summary || (!summary.finishedAt && !summary.startedAt)) return 'never';
  const at = time(summary.finishedAt || summary.startedAt);
  return summary.outcome && summary.outcome !== 'succeeded' ? `${at} ${summary.outcome}` : at;
}

function nextRun(unit: UnitStatus__Output): string {
  if (unit.delayedUntil) return `delayed until ${time(unit.delayedUntil)}`;
  if (!unit.nextEstimatedAt) return '';
  return `${time(unit.nextEstimatedAt)}${unit.nextEstimatedLevel ? ` ${unit.nextEstimatedLevel}` : ''}`;
}

function lastError(unit: UnitStatus__Output): string {
  const failed = unit.lastRunDestinations.filter((d) => !d.ok && d.error).map((d) => `${d.destination}: ${d.error}`);
  // A run that published everywhere may still have failed to apply retention at a destination.
  const retention = unit.lastRunDestinations
    .filter((d) => d.retentionError)
    .map((d) => `${d.destination}: retention failed: ${d.retentionError}`);
  // A failed drill is as visible as a failed backup: the unit's last error names it.
  const drills = unit.drills
    .filter((d) => d.outcome === 'failed')
    .map((d) => `drill at ${d.destination} failed: ${d.problem}`);
  const run = unit.lastRun?.outcome === 'succeeded' ? '' : (unit.lastRun?.error ?? '');
  const backups = failed.length + retention.length > 0 ? [...failed, ...retention] : run ? [run] : [];
  return [...backups, ...drills].join('; ');
}

/** The last drill at each destination of every unit that has drills, for `backupctl status`. */
export function drillTable(units: UnitStatus__Output[]): string | undefined {
  const rows = units.flatMap((u) =>
    u.drills.map((d) => [
      u.database,
      d.destination,
      d.outcome === 'failed' ? 'FAILED' : d.outcome,
      time(d.finishedAt),
      d.backupId ? `${d.chainId}/${d.backupId}` : '',
      d.seconds ? `${d.seconds.toFixed(1)} s` : '',
      d.problem,
    ]),
  );
  if (rows.length === 0) return undefined;
  return table(['DATABASE', 'DRILLED AT', 'DRILL', 'FINISHED', 'RESTORE POINT', 'DURATION', 'PROBLEM'], rows);
}

/** One row per unit: what it is, where it runs, what happened last and what comes next. */
export function statusTable(units: UnitStatus__Output[]): string {
  return table(
    ['DATABASE', 'STATE', 'NODE', 'LAST FULL', 'LAST INCR', 'NEXT', 'LAST ERROR'],
    units.map((u) => [
      u.database,
      u.currentRun ? `${u.state}, running` : u.state,
      u.responsibleNode,
      lastRun(u.lastFull),
      lastRun(u.lastIncremental),
      nextRun(u),
      lastError(u),
    ]),
  );
}

/**
 * What a restore of each unit's newest restore points will not bring back (a PostgreSQL snapshot's unlogged
 * tables), one line per unit and note: told where the operator looks, not only in the manifest.
 */
export function statusNotes(units: UnitStatus__Output[]): string[] {
  return units.flatMap((u) => {
    const notes = new Set([...(u.lastFull?.notes ?? []), ...(u.lastIncremental?.notes ?? [])]);
    return [...notes].map((note) => `note: ${u.database}: ${note}`);
  });
}

export const status = defineCommand({
  name: 'status',
  args: 'TASK',
  summary: "a task's units: state, responsible node, last full and incremental, next run, last error",
  flags: {},
  prepare({ positionals }) {
    const [name] = expectPositionals(positionals, ['TASK'], 'status');
    const request = { name: name! };
    return {
      request,
      async execute({ api, out }) {
        const answer = await api.unary('GetTaskStatus', request);
        if (out.json) out.document(answer);
        else if (answer.units.length === 0) out.line(`task ${answer.name || request.name} has no units yet`);
        else {
          out.line(statusTable(answer.units));
          for (const line of statusNotes(answer.units)) out.line(line);
          const drills = drillTable(answer.units);
          if (drills) out.line(`\n${drills}`);
        }
        return 0;
      },
    };
  },
});

export const runs = defineCommand({
  name: 'runs',
  args: '',
  summary: 'recent runs, newest first',
  flags: {
    task: { type: 'string', value: 'TASK', help: 'only runs of this task' },
    database: { type: 'string', value: 'SOURCE/DB', help: 'only runs of this database' },
    limit: { type: 'string', value: 'N', help: 'at most N runs' },
  },
  prepare({ values, positionals }) {
    expectPositionals(positionals, [], 'runs');
    const request = {
      task: values.task ?? '',
      database: values.database === undefined ? '' : databaseFlag(values.database, '--database'),
      limit: values.limit === undefined ? 0 : intFlag(values.limit, '--limit', 1, 4_294_967_295),
    };
    return {
      request,
      async execute({ api, out }) {
        const answer = await api.unary('ListRuns', request);
        if (out.json) out.document(answer);
        else if (answer.runs.length === 0) out.line('no runs');
        else out.line(runsTable(answer.runs));
        return 0;
      },
    };
  },
});

export const runGet = defineCommand({
  name: 'run get',
  args: 'ID',
  summary: 'one run in full',
  flags: {},
  prepare({ positionals }) {
    const [runId] = expectPositionals(positionals, ['ID'], 'run get');
    const request = { runId: runId! };
    return {
      request,
      async execute({ api, out }) {
        const run = await api.unary('GetRun', request);
        if (out.json) {
          out.document(run);
          return 0;
        }
        const took = secondsBetween(run.startedAt, run.finishedAt);
        const pairs: [string, string][] = [
          ['run', run.runId],
          ['task', run.task || '(one-time)'],
          ['database', run.database],
          ['type', run.type],
          ['level', run.level],
          ['trigger', run.trigger],
          ['outcome', run.outcome],
          ['node', run.node],
          ['scheduled', time(run.scheduledAt)],
          ['started', time(run.startedAt)],
          ['finished', time(run.finishedAt)],
          ['took', took === undefined ? '' : duration(took)],
          ['chain', run.chainId],
          ['restore point', run.backupId],
          ['read', run.rawBytes ? bytes(run.rawBytes) : ''],
          ['stored', run.storedBytes ? bytes(run.storedBytes) : ''],
          ['error', run.error ? `${run.error}${run.errorCode ? ` [${run.errorCode}]` : ''}` : ''],
        ];
        if (run.progress && !FINISHED.has(run.outcome)) {
          const p = run.progress;
          pairs.push(['progress', `${p.phase} ${bytes(p.bytesDone)} / ${bytes(p.bytesTotal)}`]);
        }
        out.line(keyValues(pairs));
        if (run.destinations.length > 0) {
          out.line();
          out.line(
            table(
              ['DESTINATION', 'OK', 'UPLOADED', 'REUSED PACKS', 'ERROR'],
              run.destinations.map((d) => [
                d.destination,
                d.ok ? 'yes' : 'no',
                bytes(d.uploadedBytes),
                String(d.reusedPacks),
                d.error,
              ]),
            ),
          );
        }
        return 0;
      },
    };
  },
});

export const runCancel = defineCommand({
  name: 'run cancel',
  args: 'ID',
  summary: 'cancel a queued or running run (nothing of it is published)',
  flags: {},
  prepare({ positionals }) {
    const [runId] = expectPositionals(positionals, ['ID'], 'run cancel');
    const request = { runId: runId! };
    return {
      request,
      async execute({ api, out }) {
        const run = await api.unary('CancelRun', request);
        if (out.json) out.document(run);
        else out.line(runSummary(run));
        return 0;
      },
    };
  },
});

export const runDelay = defineCommand({
  name: 'run delay',
  args: 'TASK DATABASE',
  summary: "cancel a unit's run in progress and hold its runs for a while",
  notes: 'Runs missed meanwhile become one run when the delay ends.',
  flags: { for: { type: 'string', value: 'SECONDS', help: 'how long to hold the unit (required)' } },
  prepare({ values, positionals }) {
    const [task, database] = expectPositionals(positionals, ['TASK', 'DATABASE'], 'run delay');
    if (values.for === undefined) throw new UsageError('run delay: missing --for SECONDS', 'e.g. --for 3600');
    const request = {
      task: task!,
      database: databaseFlag(database!, 'DATABASE'),
      seconds: intFlag(values.for, '--for', 1, 4_294_967_295),
    };
    return {
      request,
      async execute({ api, out }) {
        const unit = await api.unary('DelayUnit', request);
        if (out.json) out.document(unit);
        else out.line(`unit ${request.task} ${request.database} delayed until ${time(unit.delayedUntil) || '?'}`);
        return 0;
      },
    };
  },
});

export const runWatch = defineCommand({
  name: 'run watch',
  args: 'ID',
  summary: "follow a run's progress until it ends (exit 1 if it fails)",
  notes: 'On a terminal the bar redraws in place; in a pipe or log a line is printed every few seconds.',
  flags: {},
  prepare({ positionals }) {
    const [runId] = expectPositionals(positionals, ['ID'], 'run watch');
    const request = { runId: runId! };
    return { request, execute: (context) => watchAll(context, [request.runId]) };
  },
});

export const backupNow = defineCommand({
  name: 'backup now',
  args: 'TASK',
  summary: "run a task's units now (the schedule is unchanged)",
  flags: {
    database: { type: 'string', value: 'SOURCE/DB', help: 'only this unit' },
    full: { type: 'boolean', help: 'a full backup (starts a new chain)' },
    incr: { type: 'boolean', help: 'an incremental (a full when the chain cannot continue)' },
    ...WAIT_FLAG,
  },
  prepare({ values, positionals }) {
    const [task] = expectPositionals(positionals, ['TASK'], 'backup now');
    if (values.full && values.incr) {
      throw new UsageError(
        'backup now: --full and --incr cannot be used together',
        'leave both out to let the schedule choose',
      );
    }
    const request = {
      task: task!,
      database: values.database === undefined ? '' : databaseFlag(values.database, '--database'),
      level: values.full ? 'full' : values.incr ? 'incr' : '',
    };
    return {
      request,
      async execute(context) {
        const answer = await context.api.unary('BackupNow', request);
        if (values.wait) {
          if (!context.out.json) {
            const n = answer.runs.length;
            context.out.line(`started ${n} run${n === 1 ? '' : 's'}: ${answer.runs.map((r) => r.runId).join(', ')}`);
          }
          return watchAll(
            context,
            answer.runs.map((r) => r.runId),
          );
        }
        if (context.out.json) context.out.document(answer);
        else {
          context.out.line(runsTable(answer.runs));
          context.out.line('follow one with `backupctl run watch ID`, or use --wait');
        }
        return 0;
      },
    };
  },
});

export const backupOneTime = defineCommand({
  name: 'backup one-time',
  args: '',
  summary: 'back up any database once to the destinations given (no schedule, no retention)',
  notes: KEY_HELP,
  flags: {
    database: { type: 'string', value: 'SOURCE/DB', help: 'the database (required)' },
    type: { type: 'string', value: 'backup|snapshot', help: 'logical backup or raw snapshot (required)' },
    ...DEST_FLAGS,
    ...KEY_FLAGS,
    ...WAIT_FLAG,
  },
  prepare({ values, positionals }, env: Env) {
    expectPositionals(positionals, [], 'backup one-time');
    if (values.database === undefined) throw new UsageError('backup one-time: missing --database SOURCE/DB');
    if (values.type === undefined) throw new UsageError('backup one-time: missing --type backup|snapshot');
    const dests = destinations(values);
    if (dests.length === 0) {
      throw new UsageError(
        'backup one-time: missing --dest NAME:KIND:JSON or --dest-file FILE',
        `e.g. --dest disk:local:'{"path":"/var/backups"}'`,
      );
    }
    const key = readKey(values, env);
    const request = {
      database: databaseFlag(values.database, '--database'),
      type: choiceFlag(values.type, '--type', ['backup', 'snapshot']),
      encryptionKey: key ?? '',
      destinations: dests.map((d) => ({ name: d.name, kind: d.kind, configJson: JSON.stringify(d.config) })),
    };
    return {
      request,
      secrets: key ? [key] : [],
      async execute(context) {
        const run = await context.api.unary('OneTimeBackup', request);
        if (values.wait) {
          if (!context.out.json) context.out.line(`started run ${run.runId}`);
          return watchAll(context, [run.runId]);
        }
        if (context.out.json) context.out.document(run);
        else context.out.line(`${runSummary(run)}\nfollow it with \`backupctl run watch ${run.runId}\``);
        return 0;
      },
    };
  },
});

export const RUN_COMMANDS: Command[] = [status, runs, runGet, runCancel, runDelay, runWatch, backupNow, backupOneTime];
