// The units of a task: named databases, every database of a source, and the one server-wide unit of a
// snapshot task on a source whose snapshots cover the whole server (PostgreSQL).

import { describe, expect, it } from 'vitest';
import { SERVER_UNIT } from '../src/sources/source.js';
import { sourceUnits, type TaskSpec, taskDatabases } from '../src/task.js';

function spec(target: TaskSpec['target'], type: TaskSpec['type']): TaskSpec {
  return {
    name: 't',
    target,
    type,
    schedule: { full: '0 3 * * *', timeZone: 'UTC' },
    pinToPreferredNode: false,
    destinations: [{ name: 'disk', kind: 'local', config: { path: '/backups' } }],
    disabled: false,
    missedRuns: 'run-once',
    encrypted: false,
  };
}

const available = (source: string): string[] => (source === 'pg' ? ['app', 'billing', 'scratch'] : []);
const serverScope = (source: string): 'database' | 'server' => (source === 'pg' ? 'server' : 'database');

describe('taskDatabases', () => {
  it('names the listed databases once each, whatever the type and scope', () => {
    const listed = spec({ databases: ['pg/app', 'pg/app', 'lite/a.db'] }, 'snapshot');
    expect(taskDatabases(listed, available, serverScope)).toEqual(['pg/app', 'lite/a.db']);
  });

  it('gives a server-wide backup task one unit per database, without the excluded ones', () => {
    const wide = spec({ serverWide: { source: 'pg', exclude: ['scratch'] } }, 'backup');
    expect(taskDatabases(wide, available, serverScope)).toEqual(['pg/app', 'pg/billing']);
  });

  it('gives a server-wide snapshot task on a server-scope source its one server unit', () => {
    const wide = spec({ serverWide: { source: 'pg', exclude: ['scratch'] } }, 'snapshot');
    expect(taskDatabases(wide, available, serverScope)).toEqual([`pg/${SERVER_UNIT}`]);
    // Even before any database was discovered: the server itself is the unit.
    expect(taskDatabases(wide, () => [], serverScope)).toEqual([`pg/${SERVER_UNIT}`]);
  });

  it('gives a server-wide snapshot task on a database-scope source one unit per database', () => {
    const wide = spec({ serverWide: { source: 'pg', exclude: [] } }, 'snapshot');
    expect(taskDatabases(wide, available, () => 'database')).toEqual(['pg/app', 'pg/billing', 'pg/scratch']);
  });

  it('treats every source as database-scope when no scope is given (as before)', () => {
    const wide = spec({ serverWide: { source: 'pg', exclude: [] } }, 'snapshot');
    expect(taskDatabases(wide, available)).toEqual(['pg/app', 'pg/billing', 'pg/scratch']);
  });
});

describe('sourceUnits', () => {
  it('names each database of a source, and its server unit when its snapshots cover the server', () => {
    expect(sourceUnits({ name: 'lite', databases: ['a.db', 'b.db'], snapshotScope: 'database' })).toEqual([
      'lite/a.db',
      'lite/b.db',
    ]);
    expect(sourceUnits({ name: 'pg', databases: ['app'], snapshotScope: 'server' })).toEqual([
      'pg/app',
      `pg/${SERVER_UNIT}`,
    ]);
  });
});
