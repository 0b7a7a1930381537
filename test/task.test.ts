// The units of a task: named databases, every database of a source, and the one server-wide unit of a
// snapshot task on a source whose snapshots cover the whole server (PostgreSQL).

import { describe, expect, it } from 'vitest';
import { ValidationError } from '../src/errors.js';
import { SERVER_UNIT } from '../src/sources/source.js';
import { drillDestinations, parseTaskSpec, sourceUnits, type TaskSpec, taskDatabases } from '../src/task.js';
import { destinations } from '../src/uploader/registry.js';

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

describe('a task drill', () => {
  const base = {
    name: 't',
    target: { databases: ['lite/a.db'] },
    type: 'backup',
    schedule: { full: '0 3 * * *' },
    destinations: [
      { name: 'disk', kind: 'local', config: { path: '/backups' } },
      { name: 'disk2', kind: 'local', config: { path: '/backups2' } },
    ],
  };

  function problems(input: unknown): { path: string; message: string }[] {
    try {
      parseTaskSpec(input, destinations);
    } catch (error) {
      if (error instanceof ValidationError) return error.problems;
      throw error;
    }
    throw new Error('expected a ValidationError');
  }

  it('is kept with its schedule and destinations, and absent when not given', () => {
    const spec = parseTaskSpec(
      { ...base, drill: { schedule: '*/5 * * * * *', destinations: ['disk2'] } },
      destinations,
    );
    expect(spec.drill).toEqual({ schedule: '*/5 * * * * *', destinations: ['disk2'] });
    expect(drillDestinations(spec)).toEqual(['disk2']);
    const none = parseTaskSpec(base, destinations);
    expect('drill' in none).toBe(false);
    const every = parseTaskSpec({ ...base, drill: { schedule: '0 4 * * *' } }, destinations);
    expect(drillDestinations(every)).toEqual(['disk', 'disk2']);
  });

  it('reports every bad field at once: its cron, unknown and repeated destinations, and the others', () => {
    const found = problems({
      ...base,
      type: 'weird',
      drill: { schedule: 'every day', destinations: ['disk', 'nowhere', 'disk'], extra: 1 },
    });
    const paths = found.map((p) => p.path).sort();
    expect(paths).toEqual(['drill', 'drill.destinations[1]', 'drill.destinations[2]', 'drill.schedule', 'type'].sort());
    expect(found.find((p) => p.path === 'drill.destinations[1]')?.message).toContain('not a destination of the task');
    expect(found.find((p) => p.path === 'drill.destinations[2]')?.message).toContain('named twice');
  });

  it('refuses an empty list of drill destinations', () => {
    expect(problems({ ...base, drill: { schedule: '0 4 * * *', destinations: [] } }).map((p) => p.path)).toEqual([
      'drill.destinations',
    ]);
  });
});
