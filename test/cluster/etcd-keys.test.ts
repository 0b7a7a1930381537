// The etcd key layout: every task key that etcd-keys.ts builds parses back into its parts, and nothing else does.

import { describe, expect, it } from 'vitest';
import { clusterPrefix, keys, parseTaskKey } from '../../src/cluster/etcd-keys.js';
import { SERVER_UNIT } from '../../src/sources/source.js';

describe('parseTaskKey', () => {
  it('parses a task spec key back to its task', () => {
    expect(parseTaskKey(keys.taskSpec('nightly'))).toEqual({ kind: 'spec', task: 'nightly' });
  });

  it('parses a task key (the encryption key record) back to its task', () => {
    expect(parseTaskKey(keys.taskKey('nightly'))).toEqual({ kind: 'key', task: 'nightly' });
  });

  it.each(['local/app.db', 'pg/orders', `pg/${SERVER_UNIT}`, 'local/status', 'local/assignment', 'local/request'])(
    'round trips the assignment, status and request keys of %s',
    (database) => {
      expect(parseTaskKey(keys.assignment('nightly', database))).toEqual({
        kind: 'assignment',
        task: 'nightly',
        database,
      });
      expect(parseTaskKey(keys.unitStatus('nightly', database))).toEqual({ kind: 'status', task: 'nightly', database });
      expect(parseTaskKey(keys.unitRequest('nightly', database))).toEqual({
        kind: 'request',
        task: 'nightly',
        database,
      });
    },
  );

  it('tells apart tasks whose names look like the words of the layout', () => {
    expect(parseTaskKey(keys.taskSpec('units'))).toEqual({ kind: 'spec', task: 'units' });
    expect(parseTaskKey(keys.taskKey('spec'))).toEqual({ kind: 'key', task: 'spec' });
    expect(parseTaskKey(keys.assignment('status', 'local/spec'))).toEqual({
      kind: 'assignment',
      task: 'status',
      database: 'local/spec',
    });
  });

  it.each([
    ['a member', keys.member('node1')],
    ['the election', keys.election],
    ['the leader history', keys.leaderHistory],
    ['a tick', keys.tick('nightly', 'local/app.db', 'full', '2026-11-22T05:00:00.000Z')],
    ['a run', keys.run('run-1')],
    ['the tasks prefix', keys.tasks],
    ['a task prefix', keys.task('nightly')],
    ['an unknown record of a task', 'tasks/nightly/notes'],
    ['a spec with something after it', 'tasks/nightly/spec/extra'],
    ['a unit key with no source', 'tasks/nightly/units/app.db/status'],
    ['a unit key with an unknown record', 'tasks/nightly/units/local/app.db/progress'],
    ['a unit key one level too deep', 'tasks/nightly/units/local/dir/app.db/status'],
    ['a key with an empty task', 'tasks//spec'],
    ['a key under the namespace prefix', `${clusterPrefix('prod')}${keys.taskSpec('nightly')}`],
    ['an empty key', ''],
  ])('parses %s as other', (_what, key) => {
    expect(parseTaskKey(key)).toEqual({ kind: 'other' });
  });
});
