// backupctl argument parsing: every command's request, every usage error (exit 2, the flag named, the
// server never contacted), help for every command, global flags and the environment.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { COMMANDS } from '../../src/cli/ctl/commands.js';
import { cli, fakeApi, runMessage } from './support.js';

const dir = mkdtempSync(join(tmpdir(), 'backupctl-args-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};
const keyFile = file('key', 'correct horse battery staple\n');
const emptyKey = file('empty-key', '');
const badJson = file('bad.json', '{ "name": ');
const taskFile = file(
  'task.json',
  JSON.stringify({
    name: 'nightly',
    target: { databases: ['main/orders'] },
    type: 'backup',
    schedule: { full: '0 2 * * *' },
    destinations: [{ name: 'disk', kind: 'local', config: { path: '/b' } }],
  }),
);
const destFile = file('dest.json', JSON.stringify({ name: 'disk', kind: 'local', config: { path: '/b' } }));
const twoDests = file(
  'dests.json',
  JSON.stringify([
    { name: 'a', kind: 'local', config: { path: '/a' } },
    { name: 'b', kind: 'local', config: { path: '/b' } },
  ]),
);

const DEST = 'disk:local:{"path":"/b"}';
const CREATE = [
  'task',
  'create',
  'nightly',
  '--database',
  'main/orders',
  '--type',
  'backup',
  '--full',
  '0 2 * * *',
  '--dest',
  DEST,
];
const LOC = ['--task', 'nightly', '--destination', 'disk', '--database', 'main/orders'];

describe('usage errors exit 2, name the flag and never contact the server', () => {
  const cases: [string, string[], RegExp][] = [
    ['unknown command', ['tsk'], /unknown command "tsk"[\s\S]*did you mean `backupctl task`/],
    [
      'unknown subcommand',
      ['task', 'creat'],
      /unknown command "task creat"[\s\S]*did you mean `backupctl task create`/,
    ],
    ['group without subcommand', ['task'], /task needs a command: create, update, delete, get, list/],
    [
      'command flag before the command',
      ['--database', 'x', 'status', 'T'],
      /unknown flag --database before the command/,
    ],
    [
      'unknown flag with a guess',
      [...CREATE, '--typ', 'x'],
      /task create: unknown flag --typ[\s\S]*did you mean --type/,
    ],
    ['unknown flag', ['cluster', '--frobnicate'], /cluster: unknown flag --frobnicate/],
    [
      'key on the command line',
      [...CREATE, '--key', 'secret'],
      /--key is not accepted[\s\S]*--key-file FILE or --key-env VAR/,
    ],
    ['string flag without value', ['task', 'create', 'n', '--type'], /--type needs a value/],
    ['string flag followed by a flag', ['task', 'create', 'n', '--type', '--pin'], /--type needs a value/],
    ['boolean flag with a value', [...CREATE, '--pin=yes'], /--pin takes no value/],
    ['flag given twice', [...CREATE, '--type', 'snapshot'], /--type is given twice/],
    ['extra positional', ['task', 'get', 'a', 'b'], /task get: unexpected argument "b"/],
    ['missing positional', ['task', 'get'], /task get: missing NAME/],
    ['bad --timeout', ['cluster', '--timeout', 'soon'], /--timeout must be a number > 0/],
    ['--tls-cert without --tls-key', ['cluster', '--tls-cert', keyFile], /--tls-cert needs --tls-key/],
    [
      'unreadable --tls-ca',
      ['cluster', '--tls-ca', join(dir, 'nope.pem')],
      /--tls-ca .*nope.pem: cannot read it \(no such file\)/,
    ],
    // task create / update
    [
      'no target',
      ['task', 'create', 'n', '--type', 'backup', '--full', '* * * * *', '--dest', DEST],
      /missing --database SOURCE\/DB or --server-wide SOURCE/,
    ],
    ['both targets', [...CREATE, '--server-wide', 'main'], /--database and --server-wide cannot be used together/],
    ['--exclude without --server-wide', [...CREATE, '--exclude', 'x'], /--exclude needs --server-wide/],
    [
      'database without source',
      ['task', 'create', 'n', '--database', 'orders', '--type', 'backup', '--full', '* * * * *', '--dest', DEST],
      /--database must be <source>\/<database>/,
    ],
    [
      'no --type',
      ['task', 'create', 'n', '--database', 'a/b', '--full', '* * * * *', '--dest', DEST],
      /missing --type backup\|snapshot/,
    ],
    [
      'bad --type',
      ['task', 'create', 'n', '--database', 'a/b', '--type', 'dump', '--full', '* * * * *', '--dest', DEST],
      /--type must be backup or snapshot/,
    ],
    [
      'no cron',
      ['task', 'create', 'n', '--database', 'a/b', '--type', 'backup', '--dest', DEST],
      /missing --full CRON and\/or --incremental CRON/,
    ],
    [
      'no destination',
      ['task', 'create', 'n', '--database', 'a/b', '--type', 'backup', '--full', '* * * * *'],
      /missing --dest NAME:KIND:JSON or --dest-file FILE/,
    ],
    ['--dest without config', [...CREATE, '--dest', 'disk:local'], /--dest must be NAME:KIND:JSONCONFIG/],
    ['--dest with bad JSON', [...CREATE, '--dest', 'x:local:{path:/b}'], /--dest x: the config is not valid JSON/],
    ['--dest with a non-object', [...CREATE, '--dest', 'x:local:[1]'], /--dest x: the config must be a JSON object/],
    ['--dest-file malformed', [...CREATE, '--dest-file', badJson], /--dest-file .*bad.json: not valid JSON/],
    ['--keep-chains 0', [...CREATE, '--keep-chains', '0'], /--keep-chains must be a whole number >= 1/],
    ['--max-age-days negative', [...CREATE, '--max-age-days=-3'], /--max-age-days must be a number > 0/],
    ['--missed-runs bad', [...CREATE, '--missed-runs', 'later'], /--missed-runs must be run-once or skip/],
    ['--pin without --preferred-node', [...CREATE, '--pin'], /--pin needs --preferred-node/],
    [
      '--file with spec flags',
      ['task', 'create', '--file', taskFile, '--type', 'backup'],
      /--file cannot be combined with --type/,
    ],
    [
      '--file missing',
      ['task', 'create', '--file', join(dir, 'missing.json')],
      /--file .*missing.json: cannot read it/,
    ],
    ['--file not JSON', ['task', 'create', '--file', badJson], /--file .*bad.json: not valid JSON/],
    [
      '--file name differs',
      ['task', 'create', 'other', '--file', taskFile],
      /NAME "other" differs from the file's name "nightly"/,
    ],
    [
      'task file with unknown field',
      ['task', 'create', '--file', file('typo.json', '{"name":"n","schedlue":{}}')],
      /invalid task file[\s\S]* {2}schedlue: unknown field/,
    ],
    [
      'both key sources',
      [...CREATE, '--key-file', keyFile, '--key-env', 'K'],
      /--key-file and --key-env cannot be used together/,
    ],
    ['--key-env unset', [...CREATE, '--key-env', 'NOPE'], /--key-env NOPE: the environment variable NOPE is not set/],
    ['--key-file empty', [...CREATE, '--key-file', emptyKey], /--key-file .*: the file is empty/],
    [
      '--expected-revision bad',
      ['task', 'update', ...CREATE.slice(2), '--expected-revision', 'x'],
      /--expected-revision must be a whole number/,
    ],
    ['task delete without NAME', ['task', 'delete'], /task delete: missing NAME/],
    ['task list with an argument', ['task', 'list', 'x'], /task list: unexpected argument "x"/],
    // status, runs, run ...
    ['status without TASK', ['status'], /status: missing TASK/],
    ['runs --limit 0', ['runs', '--limit', '0'], /--limit must be a whole number 1\.\.4294967295/],
    ['runs --database bad', ['runs', '--database', 'orders'], /--database must be <source>\/<database>/],
    ['run get without ID', ['run', 'get'], /run get: missing ID/],
    ['run cancel without ID', ['run', 'cancel'], /run cancel: missing ID/],
    ['run watch without ID', ['run', 'watch'], /run watch: missing ID/],
    ['run delay without DATABASE', ['run', 'delay', 'nightly', '--for', '60'], /run delay: missing DATABASE/],
    ['run delay without --for', ['run', 'delay', 'nightly', 'main/orders'], /run delay: missing --for SECONDS/],
    [
      'run delay --for 0',
      ['run', 'delay', 'nightly', 'main/orders', '--for', '0'],
      /--for must be a whole number 1\.\./,
    ],
    // backup ...
    ['backup now without TASK', ['backup', 'now'], /backup now: missing TASK/],
    [
      'backup now --full --incr',
      ['backup', 'now', 'T', '--full', '--incr'],
      /--full and --incr cannot be used together/,
    ],
    [
      'one-time without --database',
      ['backup', 'one-time', '--type', 'backup', '--dest', DEST],
      /missing --database SOURCE\/DB/,
    ],
    [
      'one-time without --type',
      ['backup', 'one-time', '--database', 'a/b', '--dest', DEST],
      /missing --type backup\|snapshot/,
    ],
    [
      'one-time without --dest',
      ['backup', 'one-time', '--database', 'a/b', '--type', 'backup'],
      /missing --dest NAME:KIND:JSON/,
    ],
    // backups, restore, verify, databases, cluster
    ['backups list without location', ['backups', 'list', '--database', 'a/b'], /missing the location of the backups/],
    [
      'backups list with two locations',
      ['backups', 'list', ...LOC, '--dest', DEST],
      /give one location of the backups, not several/,
    ],
    [
      '--task without --destination',
      ['backups', 'list', '--task', 'T', '--database', 'a/b'],
      /--task needs --destination NAME/,
    ],
    [
      '--destination without --task',
      ['backups', 'list', '--destination', 'd', '--database', 'a/b'],
      /--destination needs --task TASK/,
    ],
    [
      '--dest-file with two destinations',
      ['backups', 'list', '--dest-file', twoDests, '--database', 'a/b'],
      /exactly one destination/,
    ],
    [
      'restore without --database',
      ['restore', '--task', 'T', '--destination', 'd', '--chain', 'c', '--backup', 'b', '--target', 'new'],
      /missing --database SOURCE\/DB/,
    ],
    [
      'restore without --chain',
      ['restore', ...LOC, '--backup', 'b', '--target', 'new'],
      /restore: missing --chain CHAIN/,
    ],
    [
      'restore without --backup',
      ['restore', ...LOC, '--chain', 'c', '--target', 'new'],
      /restore: missing --backup BACKUP/,
    ],
    [
      'restore without --target',
      ['restore', ...LOC, '--chain', 'c', '--backup', 'b'],
      /restore: missing --target NEWNAME/,
    ],
    ['verify without --chain', ['verify', ...LOC, '--backup', 'b'], /verify: missing --chain CHAIN/],
    ['databases with an argument', ['databases', 'x'], /databases: unexpected argument "x"/],
    ['cluster with an argument', ['cluster', 'x'], /cluster: unexpected argument "x"/],
  ];
  for (const [name, argv, message] of cases) {
    it(name, async () => {
      const result = await cli(argv);
      expect(result.stderr).toMatch(message);
      expect(result.stderr).toMatch(/^error: /);
      expect(result.stdout).toBe('');
      expect(result.code).toBe(2);
    });
  }

  it('no arguments prints the overview on stderr and exits 2', async () => {
    const result = await cli([]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('Usage: backupctl');
  });

  it('with --json a usage error is also one JSON document on stdout', async () => {
    const result = await cli(['--json', 'task', 'get']);
    expect(result.code).toBe(2);
    expect(JSON.parse(result.stdout)).toEqual({
      error: { code: 'USAGE', message: 'task get: missing NAME', hint: 'usage: backupctl task get NAME' },
    });
  });
});

describe('help', () => {
  it('the overview lists every command and the exit codes', async () => {
    const result = await cli(['--help']);
    expect(result.code).toBe(0);
    for (const command of COMMANDS) expect(result.stdout).toContain(command.name);
    expect(result.stdout).toMatch(/Exit codes:[\s\S]*2 {2}usage error[\s\S]*6 {2}already exists/);
  });

  for (const command of COMMANDS) {
    it(`${command.name} --help shows its flags`, async () => {
      const result = await cli([...command.name.split(' '), '--help']);
      expect(result.code).toBe(0);
      expect(result.stdout).toContain(`Usage: backupctl ${command.name}`);
      for (const flag of Object.keys(command.flags)) expect(result.stdout).toContain(`--${flag}`);
    });
  }

  it('help TOPIC and group --help', async () => {
    expect((await cli(['help', 'task', 'create'])).stdout).toContain('Usage: backupctl task create');
    const group = await cli(['run', '--help']);
    expect(group.code).toBe(0);
    expect(group.stdout).toContain('run watch ID');
  });

  it('commands that take a key say it is never given on the command line', async () => {
    for (const name of ['task create', 'task update', 'backup one-time', 'restore', 'verify']) {
      const result = await cli([...name.split(' '), '--help']);
      expect(result.stdout).toContain('never accepted on the command line');
    }
  });
});

/** Run argv against a fake API answering every call with `answer`; returns the first call. */
async function requestOf(argv: string[], env: Record<string, string> = {}) {
  const run = runMessage();
  const task = { spec: null, createdAt: '', updatedAt: '', revision: 1 };
  const unit = { delayedUntil: '2026-11-22T06:00:00Z' } as never;
  const fake = fakeApi(
    {
      CreateTask: () => task,
      UpdateTask: () => task,
      DeleteTask: () => ({}),
      GetTask: () => task,
      ListTasks: () => ({ tasks: [] }),
      GetTaskStatus: () => ({ name: 'nightly', units: [] }),
      BackupNow: () => ({ runs: [] }),
      OneTimeBackup: () => run,
      CancelRun: () => run,
      DelayUnit: () => unit,
      GetRun: () => run,
      ListRuns: () => ({ runs: [] }),
      ListDatabases: () => ({ databases: [], leftOut: [] }),
      ListBackups: () => ({ chains: [], searched: 'disk (local): /b/' }),
      GetClusterStatus: () => ({
        cluster: 'c',
        node: 'n',
        mode: 'single-node',
        leader: 'n',
        term: 1,
        members: [],
        assignments: [],
        leaderChanges: [],
        pendingReports: 0,
      }),
    },
    {
      WatchRun: () => [{ run }],
      Restore: () => [{ progress: null, result: { location: '/db/new', note: '', bytes: 1, seconds: 1 } }],
      Verify: () => [
        { progress: null, result: { packs: 1, chunks: 1, rawBytes: 1, packBytes: 1, seconds: 1, restore: null } },
      ],
    },
  );
  const result = await cli(argv, { connect: fake.connect, env });
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  expect(fake.closed).toBe(1);
  return { call: fake.calls[0]!, options: fake.options[0]! };
}

describe('every command sends the request its arguments describe', () => {
  const spec = {
    name: 'nightly',
    databases: { names: ['main/orders'] },
    type: 'backup',
    schedule: { full: '0 2 * * *', incremental: '', timeZone: '' },
    preferredNode: '',
    pinToPreferredNode: false,
    retention: { maxAgeDays: 0, keepChains: 0, orphanGraceHours: 0 },
    destinations: [{ name: 'disk', kind: 'local', configJson: '{"path":"/b"}' }],
    disabled: false,
    missedRuns: '',
    encrypted: false,
  };

  const cases: [string[], string, unknown][] = [
    [CREATE, 'CreateTask', { spec, encryptionKey: '' }],
    [['task', 'create', '--file', taskFile], 'CreateTask', { spec, encryptionKey: '' }],
    [
      ['task', 'update', ...CREATE.slice(2), '--expected-revision', '7'],
      'UpdateTask',
      { spec, encryptionKey: '', expectedRevision: 7 },
    ],
    [['task', 'delete', 'nightly'], 'DeleteTask', { name: 'nightly' }],
    [['task', 'get', 'nightly'], 'GetTask', { name: 'nightly' }],
    [['task', 'list'], 'ListTasks', {}],
    [['status', 'nightly'], 'GetTaskStatus', { name: 'nightly' }],
    [['runs'], 'ListRuns', { task: '', database: '', limit: 0 }],
    [
      ['runs', '--task', 'nightly', '--database', 'main/orders', '--limit', '5'],
      'ListRuns',
      { task: 'nightly', database: 'main/orders', limit: 5 },
    ],
    [['run', 'get', 'r1'], 'GetRun', { runId: 'r1' }],
    [['run', 'cancel', 'r1'], 'CancelRun', { runId: 'r1' }],
    [
      ['run', 'delay', 'nightly', 'main/orders', '--for', '3600'],
      'DelayUnit',
      { task: 'nightly', database: 'main/orders', seconds: 3600 },
    ],
    [['run', 'watch', 'r1'], 'WatchRun', { runId: 'r1' }],
    [['backup', 'now', 'nightly'], 'BackupNow', { task: 'nightly', database: '', level: '' }],
    [
      ['backup', 'now', 'nightly', '--database', 'main/orders', '--full'],
      'BackupNow',
      { task: 'nightly', database: 'main/orders', level: 'full' },
    ],
    [['backup', 'now', 'nightly', '--incr'], 'BackupNow', { task: 'nightly', database: '', level: 'incr' }],
    [
      [
        'backup',
        'one-time',
        '--database',
        'main/orders',
        '--type',
        'snapshot',
        '--dest',
        DEST,
        '--dest-file',
        destFile,
      ],
      'OneTimeBackup',
      {
        database: 'main/orders',
        type: 'snapshot',
        encryptionKey: '',
        destinations: [
          { name: 'disk', kind: 'local', configJson: '{"path":"/b"}' },
          { name: 'disk', kind: 'local', configJson: '{"path":"/b"}' },
        ],
      },
    ],
    [['databases'], 'ListDatabases', {}],
    [
      ['backups', 'list', ...LOC],
      'ListBackups',
      { from: { task: 'nightly', destination: 'disk' }, database: 'main/orders', cluster: '' },
    ],
    [
      ['backups', 'list', '--dest', DEST, '--database', 'main/orders'],
      'ListBackups',
      {
        from: { spec: { name: 'disk', kind: 'local', configJson: '{"path":"/b"}' } },
        database: 'main/orders',
        cluster: '',
      },
    ],
    [
      ['backups', 'list', '--dest-file', destFile, '--cluster', 'prod'],
      'ListBackups',
      { from: { spec: { name: 'disk', kind: 'local', configJson: '{"path":"/b"}' } }, database: '', cluster: 'prod' },
    ],
    [
      ['restore', ...LOC, '--chain', 'c1', '--backup', 'b1', '--target', 'orders_copy'],
      'Restore',
      {
        from: { task: 'nightly', destination: 'disk' },
        database: 'main/orders',
        chainId: 'c1',
        backupId: 'b1',
        target: 'orders_copy',
        encryptionKey: '',
        cluster: '',
        intoSource: '',
      },
    ],
    [
      [
        'restore',
        '--dest',
        DEST,
        '--database',
        'main/orders',
        '--cluster',
        'prod',
        '--into',
        'pg2',
        '--chain',
        'c1',
        '--backup',
        'b1',
        '--target',
        'orders_copy',
      ],
      'Restore',
      {
        from: { spec: { name: 'disk', kind: 'local', configJson: '{"path":"/b"}' } },
        database: 'main/orders',
        chainId: 'c1',
        backupId: 'b1',
        target: 'orders_copy',
        encryptionKey: '',
        cluster: 'prod',
        intoSource: 'pg2',
      },
    ],
    [
      ['verify', ...LOC, '--chain', 'c1', '--backup', 'b1'],
      'Verify',
      {
        from: { task: 'nightly', destination: 'disk' },
        database: 'main/orders',
        chainId: 'c1',
        backupId: 'b1',
        encryptionKey: '',
      },
    ],
    [
      ['verify', ...LOC, '--chain', 'c1', '--backup', 'b1', '--restore'],
      'Verify',
      {
        from: { task: 'nightly', destination: 'disk' },
        database: 'main/orders',
        chainId: 'c1',
        backupId: 'b1',
        encryptionKey: '',
        restore: true,
      },
    ],
    [['cluster'], 'GetClusterStatus', {}],
  ];
  for (const [argv, method, request] of cases) {
    it(argv.join(' '), async () => {
      const { call } = await requestOf(argv);
      expect(call.method).toBe(method);
      expect(call.request).toEqual(request);
    });
  }

  it('keys come from --key-file (trailing newline dropped) or --key-env', async () => {
    const fromFile = await requestOf([...CREATE, '--key-file', keyFile]);
    expect(fromFile.call.request).toMatchObject({
      encryptionKey: 'correct horse battery staple',
      spec: { encrypted: true },
    });
    const fromEnv = await requestOf(['verify', ...LOC, '--chain', 'c', '--backup', 'b', '--key-env', 'K'], {
      K: 'k3y-from-env',
    });
    expect(fromEnv.call.request).toMatchObject({ encryptionKey: 'k3y-from-env' });
  });

  it('global flags go before or after the command; the environment fills in', async () => {
    const before = await requestOf(['--server', 'node2:7000', '--timeout', '2.5', 'task', 'get', 'n']);
    expect(before.options).toMatchObject({ address: 'node2:7000', timeoutMs: 2500 });
    const after = await requestOf(['task', 'get', 'n', '--server=node3:7000', '--token', 't0ken']);
    expect(after.options).toMatchObject({ address: 'node3:7000', token: 't0ken' });
    const env = await requestOf(['cluster'], { BACKUPD_SERVER: 'envhost:1', BACKUPD_TOKEN: 'envtoken' });
    expect(env.options).toMatchObject({ address: 'envhost:1', token: 'envtoken' });
    const defaults = await requestOf(['cluster']);
    expect(defaults.options).toEqual({ address: '127.0.0.1:50051' });
  });

  it('--tls-ca, --tls-cert and --tls-key are read and passed to the client', async () => {
    const ca = file('ca.pem', 'CA');
    const cert = file('cert.pem', 'CERT');
    const key = file('key.pem', 'KEY');
    const { options } = await requestOf(['cluster', '--tls-ca', ca, '--tls-cert', cert, '--tls-key', key]);
    expect(options.tls?.ca?.toString()).toBe('CA');
    expect(options.tls?.cert?.toString()).toBe('CERT');
    expect(options.tls?.key?.toString()).toBe('KEY');
  });
});
