#!/usr/bin/env node
// `npm start`: one backupd node on the embedded default (no etcd), with a sample SQLite source and two local
// destinations, driven by the same backupctl commands an operator types: a task with a full backup every
// minute, an incremental every 20 s and a restore drill every 10 s, a backup now, the scheduled incremental,
// a database created later picked up by the server-wide task, a drill that passed, status, the backups held,
// a restore compared with the data, a verify.
// Then the agent keeps running its schedule until Ctrl-C (BACKUPD_DEMO_EXIT=1 stops after the demo).

import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Agent } from '../agent/agent.js';
import type { AgentConfig } from '../agent/config.js';
import type { RunView } from '../agent/operations.js';
import { grpcPeers } from '../api/forward.js';
import { startApiServer } from '../api/server.js';
import { run as backupctl } from './ctl/main.js';
import { changeSampleDb, contentChecksum, createSampleDb } from './sample-db.js';

const say = (line = '') => process.stdout.write(`${line}\n`);

async function main(): Promise<void> {
  const root = process.env.BACKUPD_DEMO_DIR ?? mkdtempSync(join(tmpdir(), 'backupd-demo-'));
  const dbDir = join(root, 'databases');
  mkdirSync(dbDir, { recursive: true });
  const rows = Number(process.env.BACKUPD_DEMO_ROWS ?? 50_000);
  const token = randomBytes(18).toString('base64url');
  const tokenFile = join(root, 'api.token');
  writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
  const keyFile = join(root, 'task.key');
  writeFileSync(keyFile, `demo key ${randomBytes(12).toString('hex')}\n`, { mode: 0o600 });

  const config: AgentConfig = {
    node: 'demo-node',
    cluster: 'demo',
    listen: `127.0.0.1:${process.env.BACKUPD_DEMO_PORT ?? 0}`,
    dataDir: join(root, 'agent-data'),
    sources: [{ name: 'demo', engine: 'sqlite', config: { path: dbDir, tempDir: join(root, 'tmp') } }],
    auth: { token },
    logLevel: 'info',
    maxConcurrentRuns: 1,
    discoverySeconds: 2,
    lateToleranceSeconds: 60,
    advertise: '127.0.0.1:0',
  };
  createSampleDb(join(dbDir, 'shop.db'), rows, 1);
  const logFile = join(root, 'backupd.log');
  const logger = pino({ level: 'info' }, pino.destination({ dest: logFile, sync: false }));
  const agent = await Agent.start({ config, logger, peers: grpcPeers });
  const api = await startApiServer({ operations: agent, listen: config.listen, auth: config.auth, logger });
  const address = `127.0.0.1:${api.port}`;

  say(`backupd is running: node demo-node, single-node embedded store in ${config.dataDir}`);
  say(`gRPC API on ${address} (bearer token required), logs in ${logFile}`);
  say(`sample database: ${join(dbDir, 'shop.db')} (${rows.toLocaleString('en')} orders, indexes, BLOBs, unicode)`);

  const ctl = async (...args: string[]) => {
    say();
    say(`$ backupctl ${args.map((a) => (/[\s"{}*]/.test(a) ? `'${a}'` : a)).join(' ')}`);
    const code = await backupctl(['--server', address, ...args], {
      stdout: process.stdout,
      stderr: process.stderr,
      env: { ...process.env, BACKUPD_TOKEN: token },
    });
    if (code !== 0) throw new Error(`backupctl ${args[0]} exited with ${code}`);
  };
  const succeeded = (match: (run: RunView) => boolean) =>
    new Promise<RunView>((resolve) => {
      const listener = (run: RunView) => {
        if (run.outcome === 'succeeded' && match(run)) {
          agent.events.off('run', listener);
          resolve(run);
        }
      };
      agent.events.on('run', listener);
    });

  const drillPassed = async (database: string) => {
    for (;;) {
      const unit = (await agent.taskStatus('shop')).find((u) => u.database === database);
      if (Object.values(unit?.drills ?? {}).some((d) => d.outcome === 'passed')) return;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  };

  try {
    await ctl('databases');
    const dest = (name: string) => `${name}:local:${JSON.stringify({ path: join(root, 'backups', name) })}`;
    await ctl(
      'task', 'create', 'shop',
      '--server-wide', 'demo',
      '--type', 'backup',
      '--full', '0 * * * * *',
      '--incremental', '*/20 * * * * *',
      '--drill', '*/10 * * * * *',
      '--dest', dest('primary'),
      '--dest', dest('mirror'),
      '--keep-chains', '3',
      '--key-file', keyFile,
    ); // biome-ignore format: one flag per line reads like the command
    await ctl('backup', 'now', 'shop', '--full', '--wait');

    const shop = join(dbDir, 'shop.db');
    changeSampleDb(shop, 2, Math.ceil(rows / 1000), Math.ceil(rows / 100));
    createSampleDb(join(dbDir, 'inventory.db'), 2_000, 3);
    const checksum = contentChecksum(shop);
    say();
    say(
      `...changed shop.db (${Math.ceil(rows / 1000)} rows updated, ${Math.ceil(rows / 100)} appended) and created inventory.db;`,
    );
    say('   waiting for the scheduled incremental (every 20 s) and for the server-wide task to pick up inventory.db');
    const incremental = await succeeded(
      (r) => r.database === 'demo/shop.db' && r.trigger !== 'now' && r.backupId?.endsWith('-incr') === true,
    );
    await succeeded((r) => r.database === 'demo/inventory.db');
    say(
      '   and for a restore drill of shop.db (every 10 s: verify --restore of the newest backup, destinations in turn)',
    );
    await drillPassed('demo/shop.db');

    await ctl('status', 'shop');
    await ctl('backups', 'list', '--task', 'shop', '--destination', 'mirror', '--database', 'demo/shop.db');
    await ctl(
      'restore', '--task', 'shop', '--destination', 'mirror', '--database', 'demo/shop.db',
      '--chain', incremental.chainId!, '--backup', incremental.backupId!, '--target', 'shop-restored.db',
    ); // biome-ignore format: grouped as an operator would type it
    const same = contentChecksum(join(dbDir, 'shop-restored.db')) === checksum;
    say(same ? '   restored data is identical to shop.db at the incremental' : '   RESTORED DATA DIFFERS');
    if (!same) process.exitCode = 1;
    await ctl(
      'verify', '--task', 'shop', '--destination', 'primary', '--database', 'demo/shop.db',
      '--chain', incremental.chainId!, '--backup', incremental.backupId!,
    ); // biome-ignore format: grouped as an operator would type it
  } catch (error) {
    process.exitCode = 1;
    say(`demo failed: ${error instanceof Error ? error.message : String(error)} (see ${logFile})`);
  }

  if (process.env.BACKUPD_DEMO_EXIT === '1' || process.exitCode === 1) {
    await api.close();
    await agent.stop();
    return;
  }
  say();
  say(
    'The agent keeps running the schedule (full every minute, incremental every 20 s, a drill every 10 s). In another terminal:',
  );
  say(`  BACKUPD_TOKEN=$(cat ${tokenFile}) node dist/src/cli/backupctl.js --server ${address} status shop`);
  say('Ctrl-C stops it.');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  await api.close();
  await agent.stop();
}

main().catch((error: unknown) => {
  process.stderr.write(`demo failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
