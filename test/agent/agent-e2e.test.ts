// Issue 4's acceptance, end to end: a real `backupd` process on the embedded store, driven by the real
// `backupctl` binary. Schedules run on the wall clock here (6-field crons every 20 s), so this file is slow
// by nature; the scheduler's rules are tested with an injected clock in test/scheduler/.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { changeSampleDb, contentChecksum, createSampleDb } from '../../src/cli/sample-db.js';
import { type AgentProcess, ctl, eventually, startAgent } from '../harness/agent.js';
import { addBulkRows } from '../harness/bulk.js';
import { freePort, tempDir } from '../harness/process.js';

const TOKEN = 'e2e-token-0123456789abcdef';
const auth = { BACKUPD_TOKEN: TOKEN };

interface RunJson {
  runId: string;
  task: string;
  database: string;
  level: string;
  trigger: string;
  outcome: string;
  chainId: string;
  backupId: string;
  error: string;
}

/** Every file under `dir`, relative, sorted. */
function filesUnder(dir: string, prefix = ''): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .flatMap((name) => {
      const path = join(dir, name);
      return statSync(path).isDirectory() ? filesUnder(path, `${prefix}${name}/`) : [`${prefix}${name}`];
    })
    .sort();
}

async function runs(address: string, task: string): Promise<RunJson[]> {
  const result = await ctl(address, ['--json', 'runs', '--task', task, '--limit', '100'], auth);
  expect(result.code, result.stderr).toBe(0);
  return (result.json as { runs: RunJson[] }).runs;
}

describe('backupd + backupctl on one node', () => {
  const dir = tempDir('e2e');
  const dbDir = join(dir.path, 'dbs');
  const destA = join(dir.path, 'dest-a');
  const destB = join(dir.path, 'dest-b');
  const keyFile = join(dir.path, 'key');
  let agent: AgentProcess;
  let address: string;
  let metricsPort: number;

  beforeAll(async () => {
    mkdirSync(dbDir, { recursive: true });
    createSampleDb(join(dbDir, 'shop.db'), 20_000, 1);
    writeFileSync(keyFile, 'an e2e encryption key\n');
    metricsPort = await freePort();
    agent = await startAgent({
      dir: dir.path,
      token: TOKEN,
      sources: [{ name: 'main', engine: 'sqlite', config: { path: dbDir } }],
      extra: { maxConcurrentRuns: 2, metricsListen: `127.0.0.1:${metricsPort}` },
    });
    address = agent.address;
  });
  afterAll(async () => {
    await agent?.stop();
    dir.remove();
  });

  const dest = (name: string, path: string) => ['--dest', `${name}:local:${JSON.stringify({ path })}`];

  it('refuses a missing or wrong token, and bad input, changing nothing', async () => {
    const none = await ctl(address, ['task', 'list']);
    expect(none.code).toBe(5);
    expect(none.stderr).toMatch(/token/i);
    const wrong = await ctl(address, ['task', 'list'], { BACKUPD_TOKEN: 'not-the-token-at-all' });
    expect(wrong.code).toBe(5);

    const badCron = await ctl(
      address,
      [
        'task',
        'create',
        'bad',
        '--database',
        'main/shop.db',
        '--type',
        'backup',
        '--full',
        '61 * * * *',
        ...dest('a', destA),
      ],
      auth,
    );
    expect(badCron.code).toBe(2);
    expect(badCron.stderr).toContain('schedule.full');

    const badKind = await ctl(
      address,
      [
        'task',
        'create',
        'bad',
        '--database',
        'main/shop.db',
        '--type',
        'backup',
        '--full',
        '0 * * * *',
        '--dest',
        'a:tape:{}',
      ],
      auth,
    );
    expect(badKind.code).toBe(2);
    expect(badKind.stderr).toMatch(/destinations\[0\]\.kind.*tape/);

    // A traversal in a database name is refused by backupctl itself; one in a task name by the agent.
    const traversalDb = await ctl(
      address,
      [
        'task',
        'create',
        'x',
        '--database',
        'main/../../etc',
        '--type',
        'backup',
        '--full',
        '0 * * * *',
        ...dest('a', destA),
      ],
      auth,
    );
    expect(traversalDb.code).toBe(2);
    expect(traversalDb.stderr).toContain('main/../../etc');
    const traversalName = await ctl(
      address,
      [
        'task',
        'create',
        '..',
        '--database',
        'main/shop.db',
        '--type',
        'backup',
        '--full',
        '0 * * * *',
        ...dest('a', destA),
      ],
      auth,
    );
    expect(traversalName.code).toBe(2);
    expect(traversalName.stderr).toMatch(/^\s+name: /m);

    // Every problem of one request at once: bad cron, unknown source, unknown destination kind.
    const many = await ctl(
      address,
      [
        'task',
        'create',
        'bad',
        '--database',
        'nowhere/x.db',
        '--type',
        'backup',
        '--full',
        'every day',
        '--dest',
        'a:tape:{}',
      ],
      auth,
    );
    expect(many.code).toBe(2);
    for (const field of ['schedule.full', 'target.databases[0]', 'destinations[0].kind'])
      expect(many.stderr).toContain(field);

    const taskFile = join(dir.path, 'encrypted-no-key.json');
    writeFileSync(
      taskFile,
      JSON.stringify({
        name: 'nokey',
        target: { databases: ['main/shop.db'] },
        type: 'backup',
        schedule: { full: '0 * * * *' },
        destinations: [{ name: 'a', kind: 'local', config: { path: destA } }],
        encrypted: true,
      }),
    );
    const noKey = await ctl(address, ['task', 'create', '--file', taskFile], auth);
    expect(noKey.code).toBe(2);
    expect(noKey.stderr).toContain('encryptionKey');

    const list = await ctl(address, ['--json', 'task', 'list'], auth);
    expect(list.code).toBe(0);
    expect((list.json as { tasks: unknown[] }).tasks).toEqual([]);
    expect(filesUnder(destA)).toEqual([]);
  });

  it('runs a task on its schedule to two destinations, backs up now, restores and verifies', async () => {
    const create = await ctl(
      address,
      [
        '--json',
        'task',
        'create',
        'shop',
        '--database',
        'main/shop.db',
        '--type',
        'backup',
        '--full',
        '0 * * * * *',
        '--incremental',
        '*/20 * * * * *',
        ...dest('a', destA),
        ...dest('b', destB),
        '--key-file',
        keyFile,
      ],
      auth,
    );
    expect(create.code, create.stderr).toBe(0);
    const created = create.json as { spec: { encrypted: boolean }; revision: number };
    expect(created.spec.encrypted).toBe(true);
    expect(create.stdout).not.toContain('an e2e encryption key');

    const now = await ctl(address, ['backup', 'now', 'shop', '--full', '--wait'], auth);
    expect(now.code, now.stderr + now.stdout).toBe(0);
    const checksumAtFull = contentChecksum(join(dbDir, 'shop.db'));
    changeSampleDb(join(dbDir, 'shop.db'), 2, 20, 200);
    const checksumAfterChange = contentChecksum(join(dbDir, 'shop.db'));

    // The schedule fires on its own: an incremental (or the minute's full) from a tick, not from "now".
    const scheduled = await eventually(
      'a scheduled run to succeed',
      async () =>
        (await runs(address, 'shop')).find(
          (r) => r.trigger === 'schedule' && r.outcome === 'succeeded' && r.backupId.endsWith('-incr'),
        ),
      45_000,
      500,
    );
    expect(scheduled.database).toBe('main/shop.db');

    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(metrics).toMatch(
      /backupd_unit_last_success_timestamp_seconds\{task="shop",database="main\/shop.db",level="incr"\} \d+/,
    );
    expect(metrics).toMatch(/backupd_runs_total\{task="shop",outcome="succeeded"\} [1-9]/);

    const status = await ctl(address, ['--json', 'status', 'shop'], auth);
    expect(status.code).toBe(0);
    const unit = (status.json as { units: Record<string, unknown>[] }).units[0]!;
    expect(unit.state).toBe('active');
    expect(unit.responsibleNode).toBe('node1');
    expect(unit.nextEstimatedAt).not.toBe('');
    expect((unit.lastFull as RunJson).outcome).toBe('succeeded');
    expect((unit.lastIncremental as RunJson).outcome).toBe('succeeded');

    // Both destinations hold the same restore points.
    const listed = await ctl(
      address,
      ['--json', 'backups', 'list', '--task', 'shop', '--destination', 'b', '--database', 'main/shop.db'],
      auth,
    );
    expect(listed.code, listed.stderr).toBe(0);
    const chains = (listed.json as { chains: { chainId: string; backups: string[] }[] }).chains;
    const manifestsOf = (root: string) => filesUnder(root).filter((f) => f.endsWith('.manifest'));
    expect(manifestsOf(destA)).toEqual(manifestsOf(destB));
    const chain = chains.find((c) => c.chainId === scheduled.chainId)!;
    expect(chain.backups).toContain(scheduled.backupId);
    // The full taken by "backup now" (the minute's scheduled full may have started a newer chain since).
    const fullRun = (await runs(address, 'shop')).find((r) => r.trigger === 'now' && r.outcome === 'succeeded')!;
    expect(chains.find((c) => c.chainId === fullRun.chainId)?.backups).toContain(fullRun.backupId);

    const restore = async (chainId: string, backupId: string, target: string) =>
      ctl(
        address,
        [
          'restore',
          '--task',
          'shop',
          '--destination',
          'b',
          '--database',
          'main/shop.db',
          '--chain',
          chainId,
          '--backup',
          backupId,
          '--target',
          target,
        ],
        auth,
      );
    const r1 = await restore(fullRun.chainId, fullRun.backupId, 'at-full.db');
    expect(r1.code, r1.stderr).toBe(0);
    expect(contentChecksum(join(dbDir, 'at-full.db'))).toBe(checksumAtFull);
    const r2 = await restore(scheduled.chainId, scheduled.backupId, 'at-incr.db');
    expect(r2.code, r2.stderr).toBe(0);
    expect(contentChecksum(join(dbDir, 'at-incr.db'))).toBe(checksumAfterChange);
    const again = await restore(scheduled.chainId, scheduled.backupId, 'at-incr.db');
    expect(again.code).toBe(6);
    expect(again.stderr).toMatch(/exists/);

    const verifyArgs = ['--database', 'main/shop.db', '--chain', chain.chainId, '--backup', scheduled.backupId];
    const verified = await ctl(address, ['verify', '--task', 'shop', '--destination', 'a', ...verifyArgs], auth);
    expect(verified.code, verified.stderr).toBe(0);

    // One flipped byte in a pack at destination a: verify there fails naming the pack, b still verifies.
    const pack = filesUnder(destA).find((f) => f.includes(`${chain.chainId}/packs/`))!;
    const packPath = join(destA, pack);
    const bytes = readFileSync(packPath);
    bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
    writeFileSync(packPath, bytes);
    const corrupt = await ctl(address, ['verify', '--task', 'shop', '--destination', 'a', ...verifyArgs], auth);
    expect(corrupt.code).not.toBe(0);
    expect(corrupt.stderr).toMatch(/pack/i);
    const other = await ctl(address, ['verify', '--task', 'shop', '--destination', 'b', ...verifyArgs], auth);
    expect(other.code, other.stderr).toBe(0);
  });

  it("delays a unit: status shows it, and the agent's state file keeps it as the unit's request", async () => {
    const args = ['task', 'create', 'held', '--database', 'main/shop.db', '--type', 'backup', '--full', '0 0 1 1 *'];
    expect((await ctl(address, [...args, ...dest('a', destA)], auth)).code).toBe(0);
    const before = Date.now();
    const delayed = await ctl(address, ['run', 'delay', 'held', 'main/shop.db', '--for', '3600'], auth);
    expect(delayed.code, delayed.stderr).toBe(0);
    const status = await ctl(address, ['--json', 'status', 'held'], auth);
    expect(status.code, status.stderr).toBe(0);
    const [unit] = (status.json as { units: { delayedUntil: string }[] }).units;
    const until = Date.parse(unit!.delayedUntil);
    expect(until).toBeGreaterThanOrEqual(before + 3_600_000 - 1000);
    expect(until).toBeLessThanOrEqual(Date.now() + 3_600_000 + 1000);
    // The agent's state file, read with the sqlite3 CLI: the delay is the unit's request row.
    const rows = execFileSync(
      'sqlite3',
      ['-json', '-readonly', join(agent.dataDir, 'state.db'), "SELECT request FROM unit_requests WHERE task = 'held'"],
      { encoding: 'utf8' },
    );
    expect((JSON.parse(rows) as { request: string }[]).map((r) => JSON.parse(r.request))).toEqual([
      { delayedUntil: unit!.delayedUntil },
    ]);
    expect((await ctl(address, ['task', 'delete', 'held'], auth)).code).toBe(0);
  });

  it('a server-wide task picks up a database created after the task', async () => {
    const create = await ctl(
      address,
      [
        'task',
        'create',
        'all',
        '--server-wide',
        'main',
        '--type',
        'snapshot',
        '--full',
        '0 0 1 1 *',
        ...dest('a', destA),
      ],
      auth,
    );
    expect(create.code, create.stderr).toBe(0);
    createSampleDb(join(dbDir, 'late.db'), 500, 7);
    const units = await eventually('late.db to become a unit of the server-wide task', async () => {
      const status = await ctl(address, ['--json', 'status', 'all'], auth);
      const names = (status.json as { units: { database: string }[] }).units.map((u) => u.database);
      return names.includes('main/late.db') ? names : undefined;
    });
    expect(units).toContain('main/shop.db');
    const now = await ctl(address, ['backup', 'now', 'all', '--database', 'main/late.db', '--wait'], auth);
    expect(now.code, now.stderr + now.stdout).toBe(0);
    expect(filesUnder(join(destA, 'e2e', 'main', 'late.db')).some((f) => f.endsWith('-full.manifest'))).toBe(true);

    // A database no backup can name is left out of the task, and told: in the log once, and by backupctl.
    createSampleDb(join(dbDir, 'late app.db'), 50, 8);
    await eventually('a warning of the left-out database', async () =>
      agent.logs().includes('databases left out') ? true : undefined,
    );
    const listed = await ctl(address, ['databases'], auth);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(/left out: main\/"late app\.db": its name is not a safe path segment/);
    const status = await ctl(address, ['--json', 'status', 'all'], auth);
    const names = (status.json as { units: { database: string }[] }).units.map((u) => u.database);
    expect(names).not.toContain('main/late app.db');
    await new Promise((resolve) => setTimeout(resolve, 2500)); // two more discoveries: still one warning
    const warnings = agent
      .logs()
      .split('\n')
      .filter((l) => l.includes('databases left out'));
    expect(warnings, warnings.join('\n')).toHaveLength(1);
  });
});

describe('backupd killed with SIGKILL in the middle of a backup', () => {
  it('publishes no half-backup, runs the unit again after restart, keeps tasks and history', async () => {
    const dir = tempDir('e2e-kill');
    const dbDir = join(dir.path, 'dbs');
    const destA = join(dir.path, 'dest-a');
    const destB = join(dir.path, 'dest-b');
    mkdirSync(dbDir, { recursive: true });
    createSampleDb(join(dbDir, 'big.db'), 300_000, 5);
    // ~250 MB more, so the run is still reading when a loaded machine's backupctl polls get to see it
    // (the sample alone was backed up between two polls, and the kill never came mid-run).
    addBulkRows(join(dbDir, 'big.db'));
    const sources = [{ name: 'main', engine: 'sqlite', config: { path: dbDir } }];
    let agent = await startAgent({ dir: dir.path, token: TOKEN, sources });
    try {
      const create = await ctl(
        agent.address,
        [
          'task',
          'create',
          'big',
          '--database',
          'main/big.db',
          '--type',
          'backup',
          '--full',
          '0 0 1 1 *',
          '--dest',
          `a:local:${JSON.stringify({ path: destA })}`,
          '--dest',
          `b:local:${JSON.stringify({ path: destB })}`,
        ],
        auth,
      );
      expect(create.code, create.stderr).toBe(0);
      const now = await ctl(agent.address, ['--json', 'backup', 'now', 'big', '--full'], auth);
      expect(now.code, now.stderr).toBe(0);
      const runId = (now.json as { runs: RunJson[] }).runs[0]!.runId;
      await eventually(
        'the run to be reading',
        async () => {
          const run = await ctl(agent.address, ['--json', 'run', 'get', runId], auth);
          const r = run.json as RunJson & { progress?: { bytesDone: number } };
          return r.outcome === 'running' && (r.progress?.bytesDone ?? 0) > 0 ? r : undefined;
        },
        30_000,
        50,
      );
      await agent.kill();

      const manifests = (root: string) => filesUnder(root).filter((f) => f.endsWith('.manifest'));
      expect(manifests(destA)).toEqual(manifests(destB));

      agent = await startAgent({ dir: dir.path, token: TOKEN, sources, port: agent.port });
      const task = await ctl(agent.address, ['--json', 'task', 'get', 'big'], auth);
      expect(task.code, task.stderr).toBe(0);
      const done = await eventually(
        'the unit to run again and succeed',
        async () => {
          const all = await runs(agent.address, 'big');
          const killed = all.find((r) => r.runId === runId);
          const retry = all.find((r) => r.trigger === 'retry' && r.outcome === 'succeeded');
          return killed && retry ? { killed, retry } : undefined;
        },
        60_000,
        500,
      );
      expect(done.killed.outcome).toBe('interrupted');
      expect(manifests(destA)).toEqual(manifests(destB));
      expect(manifests(destA)).toHaveLength(1);
      const verify = await ctl(
        agent.address,
        [
          'verify',
          '--task',
          'big',
          '--destination',
          'b',
          '--database',
          'main/big.db',
          '--chain',
          done.retry.chainId,
          '--backup',
          done.retry.backupId,
        ],
        auth,
      );
      expect(verify.code, verify.stderr).toBe(0);
      // The staging folder of the killed run is gone.
      expect(filesUnder(join(agent.dataDir, 'staging'))).toEqual([]);
      expect(agent.logs()).toContain('running an unfinished run again');
    } finally {
      await agent.stop();
      dir.remove();
    }
  });
});

describe('cancelling a running backup', () => {
  it('ends the run as cancelled and publishes nothing; the next run succeeds', async () => {
    const dir = tempDir('e2e-cancel');
    const dbDir = join(dir.path, 'dbs');
    const destA = join(dir.path, 'dest-a');
    mkdirSync(dbDir, { recursive: true });
    createSampleDb(join(dbDir, 'big.db'), 300_000, 6);
    // Plus ~250 MB of incompressible rows: the backup must still be running when the cancel lands (a few
    // hundred ms after it is seen running, with the CLI's start).
    addBulkRows(join(dbDir, 'big.db'));
    const agent = await startAgent({
      dir: dir.path,
      token: TOKEN,
      sources: [{ name: 'main', engine: 'sqlite', config: { path: dbDir } }],
    });
    try {
      const dest = `a:local:${JSON.stringify({ path: destA })}`;
      const args = ['task', 'create', 'big', '--database', 'main/big.db', '--type', 'backup', '--full', '0 0 1 1 *'];
      expect((await ctl(agent.address, [...args, '--dest', dest], auth)).code).toBe(0);
      const now = await ctl(agent.address, ['--json', 'backup', 'now', 'big'], auth);
      const runId = (now.json as { runs: RunJson[] }).runs[0]!.runId;
      await eventually(
        'the run to be reading',
        async () => {
          const r = (await ctl(agent.address, ['--json', 'run', 'get', runId], auth)).json as RunJson & {
            progress?: { bytesDone: number };
          };
          return r.outcome === 'running' && (r.progress?.bytesDone ?? 0) > 0 ? r : undefined;
        },
        30_000,
        50,
      );
      const cancel = await ctl(agent.address, ['run', 'cancel', runId], auth);
      expect(cancel.code, cancel.stderr).toBe(0);
      const watched = await ctl(agent.address, ['run', 'watch', runId], auth);
      expect(watched.code).toBe(1);
      const run = (await ctl(agent.address, ['--json', 'run', 'get', runId], auth)).json as RunJson;
      expect(run.outcome).toBe('cancelled');
      expect(filesUnder(destA).filter((f) => f.endsWith('.manifest'))).toEqual([]);
      const again = await ctl(agent.address, ['backup', 'now', 'big', '--wait'], auth);
      expect(again.code, again.stderr).toBe(0);
      expect(filesUnder(destA).filter((f) => f.endsWith('.manifest'))).toHaveLength(1);
    } finally {
      await agent.stop();
      dir.remove();
    }
  });
});
