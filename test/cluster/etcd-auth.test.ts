// etcd with authentication on, against a real etcd 3.4: bad credentials and missing permissions are
// PERMISSION_DENIED and not retryable, never mistaken for an unreachable etcd (a start fails at once
// instead of waiting out startTimeoutSeconds; a tick claim etcd refuses is not claimed locally), and a
// leader history the new leader cannot read is left as it is, not overwritten with one entry. What etcd
// holds is read with etcdctl as root.

import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectEtcd, type EtcdConfig, type EtcdConnection } from '../../src/cluster/etcd-client.js';
import { EtcdCluster } from '../../src/cluster/etcd-cluster.js';
import { clusterPrefix, keys } from '../../src/cluster/etcd-keys.js';
import { EtcdStore } from '../../src/cluster/etcd-store.js';
import { Leadership } from '../../src/cluster/leader.js';
import { Membership } from '../../src/cluster/membership.js';
import { isBackupdError } from '../../src/errors.js';
import { BACKUPD, eventually } from '../harness/agent.js';
import { type EtcdServer, startEtcd } from '../harness/etcd.js';
import { freePort, tempDir } from '../harness/process.js';

const CLUSTER = 'auth';
const P = clusterPrefix(CLUSTER);

describe('etcd with authentication', () => {
  let etcd: EtcdServer;
  const dirs: ReturnType<typeof tempDir>[] = [];
  const connections: EtcdConnection[] = [];
  const closers: (() => Promise<void>)[] = [];

  const ctl = (args: string[], user = 'root:rootpw') =>
    execFileSync('etcdctl', ['--endpoints', etcd.endpoint, ...(user ? ['--user', user] : []), ...args], {
      encoding: 'utf8',
      env: { ...process.env, ETCDCTL_API: '3' },
    });
  const config = (password: string, startTimeoutSeconds = 10): EtcdConfig => ({
    endpoints: [etcd.endpoint],
    leaseTtlSeconds: 2,
    callTimeoutSeconds: 1,
    startTimeoutSeconds,
    username: 'node',
    password,
  });
  const connect = (password = 'nodepw') => {
    const connection = connectEtcd(config(password), CLUSTER);
    connections.push(connection);
    return connection;
  };
  const dir = () => {
    const d = tempDir('etcd-auth');
    dirs.push(d);
    return d.path;
  };

  beforeAll(async () => {
    etcd = await startEtcd();
    // The node's role reaches tasks/, members/ and the election, may write the leader history but not read
    // it, and has nothing under ticks/.
    ctl(['user', 'add', 'root:rootpw'], '');
    ctl(['user', 'grant-role', 'root', 'root'], '');
    ctl(['role', 'add', 'backupd'], '');
    for (const prefix of ['tasks/', 'members/', 'election/']) {
      ctl(['role', 'grant-permission', 'backupd', 'readwrite', `${P}${prefix}`, '--prefix=true'], '');
    }
    ctl(['role', 'grant-permission', 'backupd', 'write', `${P}${keys.leaderHistory}`], '');
    ctl(['user', 'add', 'node:nodepw'], '');
    ctl(['user', 'grant-role', 'node', 'backupd'], '');
    ctl(['auth', 'enable'], '');
  }, 30_000);
  afterAll(async () => {
    for (const close of closers.reverse()) await close().catch(() => undefined);
    for (const c of connections) c.close();
    await etcd?.close();
    for (const d of dirs) d.remove();
  });

  it('refuses a wrong password at once with PERMISSION_DENIED, not after the start timeout as UNAVAILABLE', async () => {
    const started = Date.now();
    let failure: unknown;
    try {
      await EtcdCluster.start({
        etcd: config('wrong-password', 8),
        cluster: CLUSTER,
        self: { node: 'n1', address: '127.0.0.1:1', version: 't', startedAt: new Date().toISOString(), sources: [] },
        dataDir: dir(),
        logger: pino({ level: 'silent' }),
      });
    } catch (error) {
      failure = error;
    }
    expect(isBackupdError(failure, 'PERMISSION_DENIED')).toBe(true);
    expect((failure as { retryable: boolean }).retryable).toBe(false);
    expect((failure as Error).message).toMatch(/etcd\.username/);
    expect(Date.now() - started).toBeLessThan(4000);
  }, 30_000);

  it('does not claim a tick locally when etcd refuses the claim', async () => {
    const store = await EtcdStore.open({
      connection: connect(),
      node: 'n1',
      dataDir: dir(),
      logger: pino({ level: 'silent' }),
    });
    closers.push(() => store.close());
    let failure: unknown;
    try {
      await store.claimTick('t', 'main/app.db', 'full', '2026-11-23T03:00:00.000Z');
    } catch (error) {
      failure = error;
    }
    expect(store.pendingReports).toBe(0);
    expect(isBackupdError(failure, 'PERMISSION_DENIED')).toBe(true);
    expect((failure as { retryable: boolean }).retryable).toBe(false);
  }, 30_000);

  it('leaves a leader history it cannot read as it is', async () => {
    const before = JSON.stringify([
      { node: 'old1', term: 1, at: '2026-11-01T00:00:00.000Z' },
      { node: 'old2', term: 2, at: '2026-11-02T00:00:00.000Z' },
      { node: 'old3', term: 3, at: '2026-11-03T00:00:00.000Z' },
    ]);
    ctl(['put', `${P}${keys.leaderHistory}`, before]);
    const lines: string[] = [];
    const logger = pino(
      { level: 'warn' },
      new Writable({
        write(chunk, _encoding, done) {
          lines.push(String(chunk));
          done();
        },
      }),
    );
    const connection = connect();
    const store = await EtcdStore.open({ connection, node: 'n1', dataDir: dir(), logger });
    closers.push(() => store.close());
    const self = { node: 'n1', address: '127.0.0.1:1', version: 't', startedAt: new Date().toISOString(), sources: [] };
    const membership = await Membership.start(connection, self, logger);
    closers.push(() => membership.stop());
    const leadership = new Leadership(connection, 'n1', membership, store, logger);
    closers.push(() => leadership.stop());
    leadership.start();
    await eventually('n1 to lead', async () => (leadership.isLeader() ? true : undefined), 15_000, 50);
    // Either the new leader said it could not record the change, or it wrote the history: then judge.
    await eventually(
      'the leader change to be recorded or refused',
      async () =>
        lines.some((l) => l.includes('could not record the leader change')) ||
        ctl(['get', '--print-value-only', `${P}${keys.leaderHistory}`]).trim() !== before
          ? true
          : undefined,
      10_000,
      50,
    );
    expect(ctl(['get', '--print-value-only', `${P}${keys.leaderHistory}`]).trim()).toBe(before);
  }, 30_000);

  it('ends the process with an error when a start fails after joining, instead of hanging', async () => {
    // The node's role has no access to runs/: loading its unfinished runs fails after it joined the cluster.
    const nodeDir = dir();
    mkdirSync(join(nodeDir, 'data'), { recursive: true });
    writeFileSync(join(nodeDir, 'etcd-password'), 'nodepw\n');
    const configFile = join(nodeDir, 'backupd.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        node: 'n7',
        cluster: CLUSTER,
        listen: `127.0.0.1:${await freePort()}`,
        dataDir: join(nodeDir, 'data'),
        sources: [],
        auth: { token: 'auth-test-token-0123456789' },
        etcd: {
          endpoints: [etcd.endpoint],
          leaseTtlSeconds: 2,
          callTimeoutSeconds: 1,
          startTimeoutSeconds: 30,
          username: 'node',
          passwordFile: join(nodeDir, 'etcd-password'),
        },
      }),
    );
    const child = spawn(process.execPath, [BACKUPD, '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => {
      output += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      output += d.toString();
    });
    const code = await new Promise<number | null>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`backupd did not exit within 15 s:\n${output}`));
      }, 15_000);
      child.once('exit', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    expect(code).toBe(1);
    expect(output).toMatch(/backupd: .*refused this node/);
    // It left the cluster on the way out: no member key waits for its lease to expire.
    expect(ctl(['get', '--print-value-only', `${P}${keys.member('n7')}`]).trim()).toBe('');
  }, 30_000);
});
