// The etcd store against a real etcd 3.4: the Store contract (store-conformance.ts), what a second node sees
// through its watch (tasks, keys, revisions, claims, units and their requests, runs), the history trimmed in etcd, and etcd going
// away: task changes fail with UNAVAILABLE at once, status reports and tick claims wait in the outbox, and
// appear in etcd when it returns.

import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectEtcd, type EtcdConnection } from '../../src/cluster/etcd-client.js';
import { clusterPrefix, keys } from '../../src/cluster/etcd-keys.js';
import { EtcdStore } from '../../src/cluster/etcd-store.js';
import type { RunRecord, StoreEvent } from '../../src/cluster/store.js';
import { isBackupdError } from '../../src/errors.js';
import { parseTaskSpec } from '../../src/task.js';
import { destinations } from '../../src/uploader/registry.js';
import { eventually } from '../harness/agent.js';
import { type EtcdServer, startEtcd } from '../harness/etcd.js';
import { tempDir } from '../harness/process.js';
import { startTcpProxy, type TcpProxy } from '../harness/tcp-proxy.js';
import { storeConformance } from './store-conformance.js';

// The contract, each case on its own etcd prefix (a cluster name) of one server; `again` is another node.
let shared: EtcdServer | undefined;
const sharedConnections: EtcdConnection[] = [];
const sharedDirs: { remove: () => void }[] = [];
let namespaces = 0;
beforeAll(async () => {
  shared = await startEtcd();
}, 30_000);
afterAll(async () => {
  for (const c of sharedConnections.splice(0)) c.close();
  await shared?.close();
  for (const d of sharedDirs.splice(0)) d.remove();
});
storeConformance('the etcd store', {
  open: async ({ now }) => {
    if (!shared) throw new Error('etcd did not start (test/harness/etcd.ts)');
    const endpoint = shared.endpoint;
    const cluster = `conformance-${++namespaces}`;
    const node = async (name: string) => {
      const connection = connectEtcd(
        { endpoints: [endpoint], leaseTtlSeconds: 2, callTimeoutSeconds: 5, startTimeoutSeconds: 10 },
        cluster,
      );
      sharedConnections.push(connection);
      const dir = tempDir(`etcd-conformance-${name}`);
      sharedDirs.push(dir);
      return EtcdStore.open({ connection, node: name, dataDir: dir.path, logger: pino({ level: 'silent' }), now });
    };
    return { store: await node('n1'), again: () => node('n2') };
  },
});

const spec = (name: string) =>
  parseTaskSpec(
    {
      name,
      target: { databases: ['main/app.db'] },
      type: 'backup',
      schedule: { full: '0 3 * * *' },
      destinations: [{ name: 'd', kind: 'local', config: { path: '/tmp/x' } }],
    },
    destinations,
  );

function run(runId: string, overrides: Partial<RunRecord> = {}): RunRecord {
  return {
    runId,
    task: 't',
    database: 'main/app.db',
    type: 'backup',
    level: 'full',
    trigger: 'schedule',
    outcome: 'succeeded',
    node: 'n1',
    queuedAt: `2026-11-23T00:00:${runId.slice(-2)}.000Z`,
    rawBytes: 1,
    storedBytes: 1,
    destinations: [],
    ...overrides,
  };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('the etcd store', () => {
  let etcd: EtcdServer;
  const dirs = [tempDir('etcd-store-a'), tempDir('etcd-store-b')];
  const connections: EtcdConnection[] = [];
  let a: EtcdStore;
  let b: EtcdStore;

  const open = async (dir: string, maxRuns?: number) => {
    const connection = connectEtcd(
      { endpoints: [etcd.endpoint], leaseTtlSeconds: 2, callTimeoutSeconds: 1, startTimeoutSeconds: 10 },
      'store-test',
    );
    connections.push(connection);
    return EtcdStore.open({ connection, node: 'n1', dataDir: dir, logger: pino({ level: 'silent' }), maxRuns });
  };

  beforeAll(async () => {
    etcd = await startEtcd();
    a = await open(dirs[0]!.path, 5);
    b = await open(dirs[1]!.path);
  }, 30_000);
  afterAll(async () => {
    await a?.close();
    await b?.close();
    for (const c of connections) c.close();
    await etcd?.close();
    for (const d of dirs) d.remove();
  });

  it('another node sees a task and its key', async () => {
    const created = await a.createTask(spec('t'), 'the task key');
    expect(created.revision).toBe(1);
    await eventually('node b to see the task', async () => (await b.getTask('t')) ?? undefined, 5000, 50);
    expect(await b.getTaskKey('t')).toBe('the task key');
  });

  it('another node sees an update, with the key kept when none is given', async () => {
    const updated = await b.updateTask({ ...spec('t'), disabled: true }, undefined, 1);
    expect(updated.revision).toBe(2);
    await eventually('node a to see revision 2', async () =>
      (await a.getTask('t'))?.revision === 2 ? true : undefined,
    );
    expect(await a.getTaskKey('t')).toBe('the task key');
  });

  it('claims a tick once cluster-wide', async () => {
    const at = '2026-11-23T03:00:00.000Z';
    expect(await a.claimTick('t', 'main/app.db', 'full', at)).toBe(true);
    expect(await b.claimTick('t', 'main/app.db', 'full', at)).toBe(false);
    expect(await b.claimTick('t', 'main/app.db', 'incr', at)).toBe(true);
  });

  it('keeps unit states and runs, filters runs, and bounds the history', async () => {
    await a.updateUnitStatus('t', 'main/app.db', (u) => ({ ...u, cursor: { full: '2026-11-23T03:00:00.000Z' } }));
    await eventually('node b to see the unit', async () =>
      (await b.getUnit('t', 'main/app.db'))?.cursor.full ? true : undefined,
    );
    for (let i = 0; i < 50; i++) await a.putRun(run(`r${String(i).padStart(2, '0')}`, { node: i % 2 ? 'n1' : 'n2' }));
    const n2 = await b.listRuns({ node: 'n2', limit: 100 });
    expect(n2.length).toBeGreaterThan(0);
    expect(n2.every((r) => r.node === 'n2')).toBe(true);
    // The 50th put trims the history to maxRuns (5), oldest first.
    const kept = await eventually(
      'the history to be trimmed',
      async () => {
        const all = await b.listRuns({ limit: 1000 });
        return all.length <= 5 ? all : undefined;
      },
      5000,
      100,
    );
    expect(kept.map((r) => r.runId)).toEqual(['r49', 'r48', 'r47', 'r46', 'r45']);
    expect(await b.getRun('r00')).toBeUndefined();
    expect((await b.getRun('r49'))?.node).toBe('n1');
  });

  it("keeps a unit's request in its own key beside the status; the other node sees it by its watch", async () => {
    const unit = ['t', 'main/other.db'] as const;
    const until = '2026-11-23T06:00:00.000Z';
    const events: StoreEvent[] = [];
    const unsubscribe = b.subscribe((event) => events.push(event));
    try {
      await a.setUnitRequest(...unit, { delayedUntil: until });
      await eventually('node b to see the request', async () =>
        (await b.getUnit(...unit))?.delayedUntil === until ? true : undefined,
      );
      expect(events).toContainEqual({ kind: 'unit', task: 't', database: 'main/other.db' });
      // The node that reports the status next (an owner after failover) keeps the request it did not write.
      const reported = await b.updateUnitStatus(...unit, (u) => ({
        ...u,
        cursor: { full: '2026-11-23T05:00:00.000Z' },
      }));
      expect(reported.delayedUntil).toBe(until);
    } finally {
      unsubscribe();
    }
    // etcd's own records, read with a client of its own: the request in its key, the status without it.
    const reader = connectEtcd(
      { endpoints: [etcd.endpoint], leaseTtlSeconds: 2, callTimeoutSeconds: 5, startTimeoutSeconds: 10 },
      'store-test',
    );
    connections.push(reader);
    const stored = await reader.client
      .namespace(clusterPrefix('store-test'))
      .getAll()
      .prefix(`${keys.task('t')}units/main/other.db/`)
      .strings();
    expect(Object.keys(stored).sort()).toEqual([keys.unitRequest(...unit), keys.unitStatus(...unit)]);
    expect(JSON.parse(stored[keys.unitRequest(...unit)]!)).toEqual({ delayedUntil: until });
    const status = JSON.parse(stored[keys.unitStatus(...unit)]!);
    expect(status.cursor).toEqual({ full: '2026-11-23T05:00:00.000Z' });
    expect(status).not.toHaveProperty('delayedUntil');
  });

  it('while etcd is down: task changes fail at once, reports and claims wait in the outbox, then land', async () => {
    await etcd.stop();
    try {
      const started = Date.now();
      const refused = await rejection(a.createTask(spec('during'), undefined));
      expect(isBackupdError(refused, 'UNAVAILABLE')).toBe(true);
      expect((refused as Error).message).toMatch(/etcd at .* is unreachable/);
      expect(Date.now() - started).toBeLessThan(3000);
      // The operator's request is no status report: it fails as a task change does.
      const unrequested = await rejection(
        a.setUnitRequest('t', 'main/app.db', { delayedUntil: '2026-11-24T00:00:00Z' }),
      );
      expect(isBackupdError(unrequested, 'UNAVAILABLE')).toBe(true);
      // Reads come from the mirror.
      expect((await a.getTask('t'))?.revision).toBe(2);
      await a.updateUnitStatus('t', 'main/app.db', (u) => ({ ...u, cursor: { full: '2026-11-23T04:00:00.000Z' } }));
      await a.putRun(run('outage-run-01', { node: 'n1' }));
      const at = '2026-11-23T04:00:00.000Z';
      expect(await a.claimTick('t', 'main/app.db', 'full', at)).toBe(true);
      expect(await a.claimTick('t', 'main/app.db', 'full', at)).toBe(false);
      expect(a.pendingReports).toBe(3);
      expect((await a.getRun('outage-run-01'))?.runId).toBe('outage-run-01');
    } finally {
      await etcd.start();
    }
    await eventually('the outbox to drain', async () => (a.pendingReports === 0 ? true : undefined), 20_000, 200);
    await eventually('node b to see the outage’s reports', async () => {
      const unit = await b.getUnit('t', 'main/app.db');
      const outageRun = await b.getRun('outage-run-01');
      return unit?.cursor.full === '2026-11-23T04:00:00.000Z' && outageRun ? true : undefined;
    });
    // The claim made during the outage is in etcd now: nobody else can take that tick.
    expect(await b.claimTick('t', 'main/app.db', 'full', '2026-11-23T04:00:00.000Z')).toBe(false);
  }, 60_000);
});

describe('the etcd store of a node cut off from etcd while others reach it', () => {
  let etcd: EtcdServer;
  let proxy: TcpProxy;
  const dirs = [tempDir('etcd-store-cut'), tempDir('etcd-store-other')];
  const connections: EtcdConnection[] = [];
  let cut: EtcdStore;
  let other: EtcdStore;

  const open = async (endpoint: string, dir: string, node: string) => {
    const connection = connectEtcd(
      { endpoints: [endpoint], leaseTtlSeconds: 2, callTimeoutSeconds: 1, startTimeoutSeconds: 10 },
      'store-cut-test',
    );
    connections.push(connection);
    return EtcdStore.open({ connection, dataDir: dir, node, logger: pino({ level: 'silent' }) });
  };

  beforeAll(async () => {
    etcd = await startEtcd();
    proxy = await startTcpProxy(Number(new URL(etcd.endpoint).port));
    cut = await open(`http://127.0.0.1:${proxy.port}`, dirs[0]!.path, 'n1');
    other = await open(etcd.endpoint, dirs[1]!.path, 'n2');
  }, 30_000);
  afterAll(async () => {
    proxy?.heal();
    await cut?.close();
    await other?.close();
    for (const c of connections) c.close();
    await proxy?.close();
    await etcd?.close();
    for (const d of dirs) d.remove();
  });

  it('never claims a tick it claimed through etcd again, also while cut off', async () => {
    const at = '2026-12-07T22:13:30.000Z';
    expect(await cut.claimTick('t', 'main/app.db', 'full', at)).toBe(true);
    proxy.cut();
    try {
      expect(await cut.claimTick('t', 'main/app.db', 'full', at)).toBe(false);
      expect(cut.pendingReports).toBe(0);
    } finally {
      proxy.heal();
    }
  });

  it('marks its run of a tick another node claimed too as a duplicate, in etcd', async () => {
    const at = '2026-12-07T22:14:00.000Z';
    proxy.cut();
    try {
      expect(await cut.claimTick('t', 'main/app.db', 'incr', at)).toBe(true);
      await cut.putRun(run('dup-run-01', { node: 'n1', scheduledAt: at, level: 'incr', outcome: 'running' }));
      // The partition: the other side claims the same tick in etcd and runs it too.
      expect(await other.claimTick('t', 'main/app.db', 'incr', at)).toBe(true);
      await other.putRun(run('dup-run-02', { node: 'n2', scheduledAt: at, level: 'incr' }));
    } finally {
      proxy.heal();
    }
    await eventually(
      'the cut-off node’s outbox to drain',
      async () => (cut.pendingReports === 0 ? true : undefined),
      20_000,
      200,
    );
    // A later report of the same run (it finished) stays marked.
    await cut.putRun(run('dup-run-01', { node: 'n1', scheduledAt: at, level: 'incr', outcome: 'succeeded' }));
    const stored = JSON.parse(
      etcd.ctl(['get', '--print-value-only', '/backupd/store-cut-test/runs/dup-run-01']),
    ) as RunRecord;
    expect(stored.outcome).toBe('succeeded');
    expect(stored.duplicate).toEqual({ claimedBy: 'n2' });
    const first = JSON.parse(
      etcd.ctl(['get', '--print-value-only', '/backupd/store-cut-test/runs/dup-run-02']),
    ) as RunRecord;
    expect(first.duplicate).toBeUndefined();
    // The claim in etcd says who made it.
    const claim = etcd.ctl(['get', '--print-value-only', `/backupd/store-cut-test/ticks/t/main/app.db/incr/${at}`]);
    expect(JSON.parse(claim)).toMatchObject({ node: 'n2' });
  }, 60_000);
});
