// A task spec built from flags equals the same spec written as a --file (src/task.ts's shape), and the
// file's shape is checked with every problem named at once.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { taskSpecFromFlags, taskSpecFromJson, toProtoSpec } from '../../src/cli/ctl/task-spec.js';
import { ValidationError } from '../../src/errors.js';
import type { TaskSpec } from '../../src/task.js';
import { cli, fakeApi } from './support.js';

const dir = mkdtempSync(join(tmpdir(), 'backupctl-spec-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const write = (name: string, value: unknown) => {
  const path = join(dir, name);
  writeFileSync(path, typeof value === 'string' ? value : JSON.stringify(value, null, 2));
  return path;
};

/** The request a command line sends, through run() with a fake agent. */
async function createRequest(argv: string[]): Promise<unknown> {
  const fake = fakeApi({ CreateTask: () => ({ spec: null, createdAt: '', updatedAt: '', revision: 1 }) });
  const result = await cli(argv, { connect: fake.connect, env: { TASK_KEY: 'secret-key' } });
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  return fake.calls[0]?.request;
}

describe('task spec from flags equals the --file form', () => {
  it('named databases, every optional field set', async () => {
    const spec: Omit<TaskSpec, 'encrypted'> = {
      name: 'nightly',
      target: { databases: ['main/orders', 'main/users'] },
      type: 'snapshot',
      schedule: { full: '0 2 * * 0', incremental: '*/15 * * * *', timeZone: 'Europe/Berlin' },
      preferredNode: 'node2',
      pinToPreferredNode: true,
      retention: { keepChains: 4, maxAgeDays: 30.5 },
      destinations: [
        { name: 'disk', kind: 'local', config: { path: '/var/backups' } },
        { name: 'offsite', kind: 's3', config: { bucket: 'b', forcePathStyle: true, partSizeMiB: 8 } },
      ],
      disabled: true,
      missedRuns: 'skip',
      drill: { schedule: '*/30 * * * *', destinations: ['offsite'] },
    };
    const fromFile = await createRequest([
      'task',
      'create',
      '--file',
      write('full.json', spec),
      '--key-env',
      'TASK_KEY',
    ]);
    const fromFlags = await createRequest([
      'task',
      'create',
      'nightly',
      '--database',
      'main/orders',
      '--database',
      'main/users',
      '--type',
      'snapshot',
      '--full',
      '0 2 * * 0',
      '--incremental',
      '*/15 * * * *',
      '--tz',
      'Europe/Berlin',
      '--preferred-node',
      'node2',
      '--pin',
      '--keep-chains',
      '4',
      '--max-age-days',
      '30.5',
      '--dest',
      'disk:local:{"path":"/var/backups"}',
      '--dest-file',
      write('offsite.json', spec.destinations[1]),
      '--disabled',
      '--missed-runs',
      'skip',
      '--drill',
      '*/30 * * * *',
      '--drill-dest',
      'offsite',
      '--key-env',
      'TASK_KEY',
    ]);
    expect(fromFlags).toEqual(fromFile);
    expect(fromFlags).toEqual({
      encryptionKey: 'secret-key',
      spec: {
        name: 'nightly',
        databases: { names: ['main/orders', 'main/users'] },
        type: 'snapshot',
        schedule: { full: '0 2 * * 0', incremental: '*/15 * * * *', timeZone: 'Europe/Berlin' },
        preferredNode: 'node2',
        pinToPreferredNode: true,
        retention: { maxAgeDays: 30.5, keepChains: 4, orphanGraceHours: 0 },
        destinations: [
          { name: 'disk', kind: 'local', configJson: '{"path":"/var/backups"}' },
          { name: 'offsite', kind: 's3', configJson: '{"bucket":"b","forcePathStyle":true,"partSizeMiB":8}' },
        ],
        disabled: true,
        missedRuns: 'skip',
        encrypted: true,
        drill: { schedule: '*/30 * * * *', destinations: ['offsite'] },
      },
    });
  });

  it('server-wide with exclusions, only the required fields', async () => {
    const spec = {
      name: 'all',
      target: { serverWide: { source: 'main', exclude: ['scratch', 'tmp'] } },
      type: 'backup',
      schedule: { incremental: '0 * * * *' },
      destinations: [{ name: 'disk', kind: 'local', config: { path: '/b' } }],
    };
    const fromFile = await createRequest(['task', 'create', '--file', write('sw.json', spec)]);
    const fromFlags = await createRequest([
      'task',
      'create',
      'all',
      '--server-wide',
      'main',
      '--exclude',
      'scratch',
      '--exclude',
      'tmp',
      '--type',
      'backup',
      '--incremental',
      '0 * * * *',
      '--dest',
      'disk:local:{"path":"/b"}',
    ]);
    expect(fromFlags).toEqual(fromFile);
    expect(fromFlags).toMatchObject({
      spec: { serverWide: { source: 'main', exclude: ['scratch', 'tmp'] }, encrypted: false },
    });
    expect((fromFlags as { spec: object }).spec).not.toHaveProperty('databases');
  });

  it('the flags build exactly the object a person would write in the file', () => {
    const values = {
      database: ['main/orders'],
      exclude: [],
      type: 'backup',
      full: '0 2 * * *',
      pin: false,
      disabled: false,
      dest: ['disk:local:{"path":"/b"}'],
      'dest-file': [],
      'drill-dest': [],
      'keep-chains': '3',
    };
    expect(taskSpecFromFlags('n', values, 'task create')).toEqual({
      name: 'n',
      target: { databases: ['main/orders'] },
      type: 'backup',
      schedule: { full: '0 2 * * *' },
      retention: { keepChains: 3 },
      destinations: [{ name: 'disk', kind: 'local', config: { path: '/b' } }],
    });
  });

  it('a NAME on the command line fills in a file without one', async () => {
    const request = await createRequest([
      'task',
      'create',
      'named',
      '--file',
      write('noname.json', {
        target: { databases: ['a/b'] },
        type: 'backup',
        schedule: { full: '* * * * *' },
        destinations: [],
      }),
    ]);
    expect(request).toMatchObject({ spec: { name: 'named' } });
  });
});

describe('the file shape is checked, every problem at once', () => {
  it('unknown fields and wrong types are named with their paths', () => {
    let error: unknown;
    try {
      taskSpecFromJson({
        name: 3,
        target: { databases: ['a/b'], serverWide: { source: 'x' } },
        schedule: { full: 5, every: 'day' },
        retention: { keepChains: '4' },
        destinations: [{ name: 'd', kind: 'local', config: 'path=/b', extra: 1 }, 'disk'],
        pinToPreferredNode: 'yes',
        colour: 'blue',
      });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).problems).toEqual([
      { path: 'colour', message: 'unknown field' },
      { path: 'name', message: 'must be a string' },
      { path: 'pinToPreferredNode', message: 'must be a boolean' },
      { path: 'target', message: 'must be {"databases": [...]} or {"serverWide": {"source": ...}}' },
      { path: 'schedule.every', message: 'unknown field' },
      { path: 'schedule.full', message: 'must be a string' },
      { path: 'retention.keepChains', message: 'must be a number' },
      { path: 'destinations[0].extra', message: 'unknown field' },
      { path: 'destinations[0].config', message: 'must be an object' },
      { path: 'destinations[1]', message: 'must be {"name", "kind", "config"}' },
    ]);
  });

  it('run() prints each problem and exits 2 without contacting the server', async () => {
    const path = write('bad.json', { name: 'n', schedule: [], destinations: {} });
    const result = await cli(['task', 'create', '--file', path]);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      'error: invalid task file\n  schedule: must be an object\n  destinations: must be an array\n',
    );
  });

  it('a file that is not an object', () => {
    expect(() => taskSpecFromJson([1])).toThrow(ValidationError);
  });

  it('toProtoSpec keeps a file\'s "encrypted" and defaults the rest', () => {
    expect(toProtoSpec({ name: 'n', encrypted: true }, false)).toMatchObject({
      name: 'n',
      encrypted: true,
      destinations: [],
      schedule: { full: '', incremental: '', timeZone: '' },
    });
  });
});
