// Issue 27: after an etcd outage, a unit waits for its owner. etcd stops for longer than two lease TTLs (so
// every client timer has fired); when it comes back, one node (n2) stays cut off from it for a while longer
// (its own TCP proxy), as a node whose reconnection is slow. Its lease expires meanwhile, but the leader,
// new after the outage, moves none of its units within its grace; n2 re-registers, flushes the claims it
// made while cut off, and keeps its units. Then a real partition: n2 alone is cut off from etcd while the
// others reach it; its units move and both sides run them, and every tick both ran is marked a duplicate on
// the cut-off node's run. Judged from etcd's records and the destination's manifests.

import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSampleDb } from '../../src/cli/sample-db.js';
import { ctl, eventually } from '../harness/agent.js';
import { auth, clusterStatus, startCluster, type TestCluster } from '../harness/cluster.js';
import { invariants, readEtcdRecords, readManifests } from '../harness/soak-check.js';

const NODES = ['n1', 'n2', 'n3'];
const DATABASES = ['a.db', 'b.db', 'c.db'];
const EVERY = 3;
const TTL = 2;

describe('a unit whose owner comes back late after an etcd outage', () => {
  let cluster: TestCluster;
  const address = (node: string) => cluster.agents.get(node)!.address;

  beforeAll(async () => {
    cluster = await startCluster(
      NODES,
      (dbDir) => {
        for (const [i, name] of DATABASES.entries()) createSampleDb(join(dbDir, name), 1000, i + 1);
      },
      TTL,
      { callTimeoutSeconds: 1 },
      ['n2'],
    );
  }, 60_000);
  afterAll(async () => {
    await cluster?.close();
  });

  it('stays on its owner, which flushes its claims before anything moves: no tick runs twice', async () => {
    const create = await ctl(
      address('n1'),
      [
        'task',
        'create',
        'late',
        '--server-wide',
        'shop',
        '--type',
        'backup',
        '--incremental',
        `*/${EVERY} * * * * *`,
        '--dest',
        `d:local:${JSON.stringify({ path: cluster.destDir })}`,
      ],
      auth,
    );
    expect(create.code, create.stderr).toBe(0);
    const before = await eventually('every unit assigned, one on n2, and a first run of each', async () => {
      const s = await clusterStatus(address('n1'));
      const runs = readEtcdRecords(cluster.etcd, 'e2e', 'late').runs.filter((r) => r.outcome === 'succeeded');
      return s.assignments.length === DATABASES.length &&
        s.assignments.some((a) => a.node === 'n2') &&
        DATABASES.every((db) => runs.some((r) => r.database === `shop/${db}`))
        ? s
        : undefined;
    });
    const onN2 = before.assignments.filter((a) => a.node === 'n2').map((a) => a.database);

    await cluster.etcd.stop();
    // Past two TTLs: etcd3's client timers have all fired; the nodes keep running their units meanwhile.
    await new Promise((resolve) => setTimeout(resolve, 2 * TTL * 1000 + 1000));
    cluster.proxies.get('n2')!.cut();
    await cluster.etcd.start();
    const backAt = Date.now();
    // n2 stays away longer than its lease lives after etcd's restart (one TTL) and than the one TTL a new
    // leader used to wait, within the grace it waits now (three TTLs after its election, itself about
    // 1.6 TTLs after etcd is back: the old election key lives that long).
    await new Promise((resolve) => setTimeout(resolve, 3 * TTL * 1000));
    cluster.proxies.get('n2')!.heal();

    await eventually(
      'every outbox drained, and a run of every unit after n2 came back',
      async () => {
        const statuses = await Promise.all(NODES.map((n) => clusterStatus(address(n))));
        if (!statuses.every((s) => s.pendingReports === 0)) return undefined;
        const runs = readEtcdRecords(cluster.etcd, 'e2e', 'late').runs;
        const after = runs.filter((r) => r.outcome === 'succeeded' && Date.parse(r.startedAt ?? '') > backAt + 5000);
        return DATABASES.every((db) => after.some((r) => r.database === `shop/${db}`)) ? true : undefined;
      },
      40_000,
      500,
    );
    const now = await clusterStatus(address('n1'));
    for (const database of onN2) {
      expect(now.assignments.find((a) => a.database === database)?.node, `${database} stayed on n2`).toBe('n2');
    }
    const { runs, claims } = readEtcdRecords(cluster.etcd, 'e2e', 'late');
    const twice = invariants.find((i) => i.name === 'no tick ran twice')!;
    const evidence = {
      manifests: readManifests(cluster.destDir, 'e2e'),
      runs,
      claims,
      databases: DATABASES.map((db) => `shop/${db}`),
      from: new Date(0),
      to: new Date(),
      everySeconds: EVERY,
      maxDelayMs: 0,
    };
    expect(twice.check(evidence)).toEqual([]);
    expect(runs.filter((r) => r.duplicate)).toEqual([]);
  }, 120_000);

  it('marks every tick both sides of a partition ran as a duplicate on the cut-off node’s run', async () => {
    const before = await clusterStatus(address('n1'));
    const onN2 = before.assignments.filter((a) => a.node === 'n2').map((a) => a.database);
    expect(onN2.length).toBeGreaterThan(0);
    const cutAt = Date.now();
    cluster.proxies.get('n2')!.cut();
    const moved = await eventually(
      'n2’s units to move',
      async () => {
        const s = await clusterStatus(address('n1'));
        return onN2.every((db) => s.assignments.find((a) => a.database === db)?.node !== 'n2') ? Date.now() : undefined;
      },
      30_000,
      200,
    );
    // Two more ticks on both sides, then n2 is back.
    await new Promise((resolve) => setTimeout(resolve, 2 * EVERY * 1000));
    cluster.proxies.get('n2')!.heal();
    const healedAt = Date.now();
    await eventually(
      'n2’s outbox to drain',
      async () => ((await clusterStatus(address('n2'))).pendingReports === 0 ? true : undefined),
      30_000,
      500,
    );
    const { runs } = readEtcdRecords(cluster.etcd, 'e2e', 'late');
    const during = runs.filter(
      (r) =>
        r.outcome === 'succeeded' && r.scheduledAt && onN2.includes(r.database) && Date.parse(r.scheduledAt) >= cutAt,
    );
    const byTick = new Map<string, typeof during>();
    for (const r of during)
      byTick.set(`${r.database} ${r.scheduledAt}`, [...(byTick.get(`${r.database} ${r.scheduledAt}`) ?? []), r]);
    const twice = [...byTick.values()].filter((served) => served.length > 1);
    console.info(
      `partition of n2 for ${healedAt - cutAt} ms (TTL ${TTL} s, a tick every ${EVERY} s): its units moved after ` +
        `${moved - cutAt} ms; ${twice.length} of ${byTick.size} ticks of its units ran on both sides, ` +
        `${twice.filter((s) => s.some((r) => r.duplicate)).length} of them marked duplicate`,
    );
    for (const served of twice) {
      const marked = served.filter((r) => r.duplicate);
      expect(
        marked.map((r) => r.node),
        `${served[0]!.database} ${served[0]!.scheduledAt}`,
      ).toEqual(['n2']);
      expect(marked[0]!.duplicate!.claimedBy).not.toBe('n2');
    }
    // Nothing marked that ran once.
    for (const served of byTick.values()) if (served.length === 1) expect(served[0]!.duplicate).toBeUndefined();
  }, 90_000);
});
