#!/usr/bin/env node
// `npm run cluster`: a three-node cluster as local processes (one etcd, three backupd, no containers) on a
// shared folder of SQLite databases, driven by backupctl as an operator would: a server-wide task, the
// units spread over the nodes, then the responsible node of a unit is killed (SIGKILL) and the demo shows
// the unit moving, the missed tick caught up on the new owner, and a restore compared with the database.
// Plain JavaScript over the build (dist/); everything lives in a temp folder (BACKUPD_DEMO_DIR to choose).
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { contentChecksum, createSampleDb } from '../dist/src/cli/sample-db.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const BACKUPD = join(root, 'dist/src/cli/backupd.js');
const BACKUPCTL = join(root, 'dist/src/cli/backupctl.js');
const NODES = ['node1', 'node2', 'node3'];
const EVERY = 10; // seconds between incrementals: a killed node certainly misses one
const TTL = 3; // lease TTL: a dead node's units move about this long after it dies

const say = (line = '') => process.stdout.write(`${line}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const children = new Set();
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(130));

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function start(command, args, log, env = {}) {
  const out = createWriteStream(log);
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  child.stdout.pipe(out);
  child.stderr.pipe(out);
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

async function waitFor(what, check, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await check().catch(() => undefined);
    if (value !== undefined && value !== false) return value;
    await sleep(250);
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function main() {
  if (spawnSync('sh', ['-c', 'command -v etcd'], { stdio: 'ignore' }).status !== 0) {
    throw new Error('etcd is missing: apt-get install -y etcd-server (npm run cluster does this as root)');
  }
  const dir = process.env.BACKUPD_DEMO_DIR ?? mkdtempSync(join(tmpdir(), 'backupd-cluster-'));
  const dbDir = join(dir, 'databases');
  const backups = join(dir, 'backups');
  mkdirSync(dbDir, { recursive: true });
  mkdirSync(backups, { recursive: true });
  const token = randomBytes(18).toString('base64url');

  const client = await freePort();
  const peer = await freePort();
  const etcdUrl = `http://127.0.0.1:${client}`;
  start(
    'etcd',
    [
      '--name=demo',
      `--data-dir=${join(dir, 'etcd-data')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=http://127.0.0.1:${peer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${peer}`,
      `--initial-cluster=demo=http://127.0.0.1:${peer}`,
      '--log-level=warn',
    ],
    join(dir, 'etcd.log'),
  );
  await waitFor('etcd', async () => (await (await fetch(`${etcdUrl}/health`)).json()).health === 'true');

  const names = ['shop.db', 'billing.db', 'users.db', 'audit.db'];
  for (const [i, name] of names.entries()) createSampleDb(join(dbDir, name), 20_000, i + 1);

  const agents = new Map();
  for (const node of NODES) {
    const port = await freePort();
    const config = join(dir, `${node}.json`);
    writeFileSync(
      config,
      JSON.stringify({
        node,
        cluster: 'demo',
        listen: `127.0.0.1:${port}`,
        dataDir: join(dir, `data-${node}`),
        sources: [{ name: 'shop', engine: 'sqlite', config: { path: dbDir } }],
        auth: { token },
        discoverySeconds: 2,
        etcd: { endpoints: [etcdUrl], leaseTtlSeconds: TTL },
      }),
    );
    const child = start(process.execPath, [BACKUPD, '--config', config], join(dir, `${node}.log`));
    agents.set(node, { address: `127.0.0.1:${port}`, child });
  }
  say(`etcd on ${etcdUrl}; nodes ${NODES.map((n) => `${n} on ${agents.get(n).address}`).join(', ')}`);
  say(`databases in ${dbDir}, backups in ${backups}, logs in ${dir}`);

  const alive = () => [...agents.values()].find((a) => a.child.exitCode === null && a.child.signalCode === null);
  const ctl = (args, { show = true, json = false } = {}) => {
    const server = alive().address;
    if (show) say(`\n$ backupctl --server ${server} ${args.map((a) => (/[\s"{}*]/.test(a) ? `'${a}'` : a)).join(' ')}`);
    const result = spawnSync(process.execPath, [BACKUPCTL, '--server', server, ...(json ? ['--json'] : []), ...args], {
      encoding: 'utf8',
      env: { ...process.env, BACKUPD_TOKEN: token },
    });
    if (show) process.stdout.write(result.stdout);
    if (result.status !== 0) throw new Error(`backupctl ${args.join(' ')} failed: ${result.stderr}`);
    return json ? JSON.parse(result.stdout) : result.stdout;
  };
  await waitFor('every node to answer', async () => {
    for (const a of agents.values()) {
      const r = spawnSync(process.execPath, [BACKUPCTL, '--server', a.address, 'cluster'], {
        env: { ...process.env, BACKUPD_TOKEN: token },
      });
      if (r.status !== 0) return false;
    }
    return true;
  });
  await waitFor('three members', async () => ctl(['cluster'], { show: false, json: true }).members.length === 3);

  ctl([
    'task',
    'create',
    'shop',
    '--server-wide',
    'shop',
    '--type',
    'backup',
    '--incremental',
    `*/${EVERY} * * * * *`,
    '--dest',
    `disk:local:${JSON.stringify({ path: backups })}`,
  ]);
  const runs = () => ctl(['runs', '--task', 'shop', '--limit', '1000'], { show: false, json: true }).runs;
  say(`\nwaiting for the first scheduled run of every unit (every ${EVERY} s) ...`);
  await waitFor(
    'a run of every unit',
    async () => names.every((n) => runs().some((r) => r.database === `shop/${n}` && r.outcome === 'succeeded')),
    60_000,
  );
  const before = ctl(['cluster'], { json: true, show: false });
  ctl(['cluster']);

  const unit = before.assignments.find((a) => a.node && a.node !== before.leader);
  const victim = unit.node;
  // Kill it 1.5 s before a tick: the tick falls due while the unit has no live owner, so the new owner
  // finds it missed and runs it as a catch-up.
  const nowS = Date.now() / 1000;
  let missedTick = Math.ceil(nowS / EVERY) * EVERY;
  if (missedTick - nowS < 2) missedTick += EVERY;
  await sleep((missedTick - nowS - 1.5) * 1000);
  say(`\n$ kill -9 ${agents.get(victim).child.pid}     # ${victim}, responsible node of ${unit.database}`);
  const killedAt = Date.now();
  agents.get(victim).child.kill('SIGKILL');
  const after = await waitFor('the unit to move', async () => {
    const s = ctl(['cluster'], { json: true, show: false });
    const a = s.assignments.find((x) => x.database === unit.database);
    return a?.node && a.node !== victim ? s : undefined;
  });
  const newOwner = after.assignments.find((a) => a.database === unit.database).node;
  say(
    `${unit.database} moved from ${victim} to ${newOwner} ${Date.now() - killedAt} ms after the kill (lease TTL ${TTL} s)`,
  );
  ctl(['cluster']);

  const missed = new Date(missedTick * 1000).toISOString();
  say(`\nwaiting for the tick ${victim} missed (${missed}) to run on ${newOwner} ...`);
  const caught = await waitFor(
    'the missed tick',
    async () =>
      runs().find(
        (r) =>
          r.database === unit.database && r.node === newOwner && r.scheduledAt >= missed && r.outcome === 'succeeded',
      ),
    60_000,
  );
  ctl(['runs', '--task', 'shop', '--database', unit.database, '--limit', '6']);
  const times = runs().filter((r) => r.database === unit.database && r.scheduledAt === caught.scheduledAt).length;
  say(
    `the tick due at ${caught.scheduledAt}, missed by ${victim}, ran ${times === 1 ? 'once' : `${times} times`} on ` +
      `${newOwner} (trigger ${caught.trigger}; a tick this late still counts as on time), continuing chain ${caught.chainId}`,
  );

  const target = `restored-${unit.database.split('/')[1]}`;
  ctl([
    'restore',
    '--task',
    'shop',
    '--destination',
    'disk',
    '--database',
    unit.database,
    '--chain',
    caught.chainId,
    '--backup',
    caught.backupId,
    '--target',
    target,
  ]);
  const same = contentChecksum(join(dbDir, target)) === contentChecksum(join(dbDir, unit.database.split('/')[1]));
  say(same ? `\n${target} holds the same rows as ${unit.database}` : `\n${target} DIFFERS from ${unit.database}`);
  if (!same) process.exitCode = 1;
  for (const a of agents.values()) a.child.kill('SIGTERM');
  await sleep(1500);
  say(`done; everything is in ${dir}`);
}

main().then(
  () => process.exit(process.exitCode ?? 0),
  (error) => {
    process.stderr.write(`cluster demo: ${error.message}\n`);
    process.exit(1);
  },
);
