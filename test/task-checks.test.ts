// The checks of a task and of a one-time backup that need the cluster's view of sources (task-checks.ts),
// shared by every caller: every bad field is reported at once, with its path, and a valid request passes.

import { describe, expect, it } from 'vitest';
import { ValidationError } from '../src/errors.js';
import { checkTask, isDatabaseName, oneTimeProblems, type SourceLookup } from '../src/task-checks.js';
import { destinations } from '../src/uploader/registry.js';

const sources: SourceLookup = {
  hasSource: (s) => s === 'pg' || s === 'lite',
  scopeOf: (s) => (s === 'pg' ? 'server' : 'database'),
  here: ['lite'],
};

const task = (fields: Record<string, unknown>) => ({
  name: 'nightly',
  target: { databases: ['lite/a.db'] },
  type: 'backup',
  schedule: { full: '0 3 * * *', timeZone: 'UTC' },
  destinations: [{ name: 'disk', kind: 'local', config: { path: '/backups' } }],
  ...fields,
});

function problemsOf(run: () => unknown): { path: string; message: string }[] {
  try {
    run();
  } catch (error) {
    if (error instanceof ValidationError) return error.problems.map((p) => ({ path: p.path, message: p.message }));
    throw error;
  }
  throw new Error('expected a ValidationError');
}

describe('checkTask', () => {
  it('passes a valid task and gives its spec', () => {
    const spec = checkTask(task({}), undefined, true, destinations, sources);
    expect(spec.name).toBe('nightly');
    expect(spec.target).toEqual({ databases: ['lite/a.db'] });
  });

  it('names an unknown source, a per-database snapshot of a server-scope source and a short key at once', () => {
    const problems = problemsOf(() =>
      checkTask(
        task({ type: 'snapshot', target: { databases: ['nowhere/x', 'pg/app'] } }),
        'short',
        true,
        destinations,
        sources,
      ),
    );
    expect(problems.map((p) => p.path).sort()).toEqual([
      'encrypted',
      'encryptionKey',
      'target.databases[0]',
      'target.databases[1]',
    ]);
    expect(problems.find((p) => p.path === 'target.databases[0]')?.message).toMatch(
      /no node has a source named nowhere \(sources here: lite\)/,
    );
    expect(problems.find((p) => p.path === 'target.databases[1]')?.message).toMatch(/whole server/);
  });

  it('asks for the key of a new encrypted task, and names an unknown source even when the spec is bad', () => {
    expect(problemsOf(() => checkTask(task({ encrypted: true }), undefined, true, destinations, sources))).toEqual([
      { path: 'encryptionKey', message: 'the task is encrypted: give its key (backupctl --key-file)' },
    ]);
    const paths = problemsOf(() =>
      checkTask(
        task({ schedule: 'never', target: { serverWide: { source: 'gone' } } }),
        undefined,
        true,
        destinations,
        sources,
      ),
    ).map((p) => p.path);
    expect(paths).toContain('target.serverWide.source');
    expect(paths).toContain('schedule');
  });
});

describe('oneTimeProblems', () => {
  it('passes a valid one-time backup', () => {
    const input = { database: 'lite/a.db', type: 'backup' as const, destinations: task({}).destinations };
    expect(oneTimeProblems(input, destinations, (s) => s === 'lite')).toEqual([]);
  });

  it('names every bad field at once', () => {
    const input = {
      database: 'pg/app',
      type: 'tape' as 'backup',
      destinations: [{ name: '../x', kind: 'local', config: { path: '/b' } }],
    };
    const paths = oneTimeProblems(input, destinations, (s) => s === 'lite').map((p) => p.path);
    expect(paths).toEqual(['database', 'type', 'destinations[0].name']);
    expect(oneTimeProblems({ ...input, database: 'no-slash', destinations: [] }, destinations, () => true)).toEqual([
      { path: 'database', message: 'must be "<source>/<database>", each a safe name' },
      { path: 'type', message: 'must be "backup" or "snapshot"' },
      { path: 'destinations', message: 'needs at least one destination' },
    ]);
    expect(isDatabaseName('lite/a.db')).toBe(true);
    expect(isDatabaseName('../a')).toBe(false);
  });
});
