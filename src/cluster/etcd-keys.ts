// The etcd key space, built in this one module. Every key lives under `/backupd/<cluster>/` (the client is
// namespaced there, so the names below are relative). Task, source and database names are safe names
// (no "/"), so a key splits back into its parts unambiguously.

import type { TickKind } from './store.js';

export const clusterPrefix = (cluster: string) => `/backupd/${cluster}/`;

export const keys = {
  members: 'members/',
  member: (node: string) => `members/${node}`,
  /** The etcd3 Election's name; its keys live under `election/leader/`. */
  election: 'leader',
  /** The last leader changes, newest last (a bounded list in one key). */
  leaderHistory: 'leader-history',
  tasks: 'tasks/',
  task: (task: string) => `tasks/${task}/`,
  taskSpec: (task: string) => `tasks/${task}/spec`,
  taskKey: (task: string) => `tasks/${task}/key`,
  assignment: (task: string, database: string) => `tasks/${task}/units/${database}/assignment`,
  /** What the unit's responsible node reports: the scheduler's cursor and the results. */
  unitStatus: (task: string, database: string) => `tasks/${task}/units/${database}/status`,
  /** What the operator asked of the unit (a delay), apart from its status. */
  unitRequest: (task: string, database: string) => `tasks/${task}/units/${database}/request`,
  ticks: 'ticks/',
  taskTicks: (task: string) => `ticks/${task}/`,
  tick: (task: string, database: string, level: TickKind, scheduledAt: string) =>
    `ticks/${task}/${database}/${level}/${scheduledAt}`,
  runs: 'runs/',
  run: (runId: string) => `runs/${runId}`,
};

/** What a key under `tasks/` is about. */
export type TaskKey =
  | { kind: 'spec' | 'key'; task: string }
  | { kind: 'assignment' | 'status' | 'request'; task: string; database: string }
  | { kind: 'other' };

export function parseTaskKey(key: string): TaskKey {
  const parts = key.split('/');
  if (parts[0] !== 'tasks' || !parts[1]) return { kind: 'other' };
  const task = parts[1];
  if (parts.length === 3 && (parts[2] === 'spec' || parts[2] === 'key')) return { kind: parts[2], task };
  if (
    parts.length === 6 &&
    parts[2] === 'units' &&
    (parts[5] === 'assignment' || parts[5] === 'status' || parts[5] === 'request')
  ) {
    return { kind: parts[5], task, database: `${parts[3]}/${parts[4]}` };
  }
  return { kind: 'other' };
}
