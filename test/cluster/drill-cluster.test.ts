// Scheduled drills on three real agents and a real etcd: a drill tick runs once cluster-wide, on the unit's
// responsible node. Judged by the agents' own logs of every node (each drill tick handed on is logged as
// "drill due" with its scheduledAt) and by etcd's own records of the tick claims (`ticks/.../drill/...`).

import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSampleDb } from '../../src/cli/sample-db.js';
import { ctl, eventually } from '../harness/agent.js';
import { auth, clusterStatus, startCluster, type TestCluster } from '../harness/cluster.js';

const NODES = ['n1', 'n2', 'n3'];

describe('drills on a three-node cluster', () => {
  let cluster: TestCluster;
  beforeAll(async () => {
    cluster = await startCluster(NODES, (dbDir) => createSampleDb(join(dbDir, 'a.db'), 2000, 1));
  }, 60_000);
  afterAll(async () => {
    await cluster?.close();
  });

  it('runs each drill tick once, on the responsible node', async () => {
    const address = cluster.agents.get('n1')!.address;
    const args = (extra: string[]) =>
      ['drilled', '--database', 'shop/a.db', '--type', 'backup', '--full', '0 0 1 1 *']
        .concat(['--dest', `d:local:${JSON.stringify({ path: cluster.destDir })}`])
        .concat(extra);
    expect((await ctl(address, ['task', 'create', ...args([])], auth)).code).toBe(0);
    const owner = await eventually('the unit assigned', async () => {
      const s = await clusterStatus(address);
      return s.assignments.find((a) => a.task === 'drilled')?.node || undefined;
    });
    const now = await ctl(cluster.agents.get(owner)!.address, ['backup', 'now', 'drilled', '--wait'], auth);
    expect(now.code, now.stderr + now.stdout).toBe(0);
    const update = await ctl(address, ['task', 'update', ...args(['--drill', '*/2 * * * * *'])], auth);
    expect(update.code, update.stderr).toBe(0);

    const dueLines = (node: string) =>
      cluster.agents
        .get(node)!
        .logs()
        .split('\n')
        .filter((l) => l.includes('"msg":"drill due"'))
        .map((l) => (JSON.parse(l) as { scheduledAt: string }).scheduledAt);
    const passed = (node: string) =>
      cluster.agents
        .get(node)!
        .logs()
        .split('\n')
        .filter((l) => l.includes('"msg":"drill passed"')).length;
    await eventually('three drills passed', async () => (passed(owner) >= 3 ? true : undefined), 60_000, 500);

    const all = NODES.flatMap(dueLines);
    expect(all.length).toBeGreaterThanOrEqual(3);
    // Once per tick cluster-wide, and only on the owner.
    expect(new Set(all).size).toBe(all.length);
    for (const node of NODES.filter((n) => n !== owner)) {
      expect(dueLines(node)).toEqual([]);
      expect(passed(node)).toBe(0);
    }
    // etcd holds one claim per drill tick handed on (a claim is create-if-absent).
    const claims = cluster.etcd
      .ctl(['get', '--prefix', '--keys-only', '/'])
      .split('\n')
      .filter((k) => k.includes('/ticks/drilled/shop/a.db/drill/'));
    for (const at of dueLines(owner)) expect(claims.some((k) => k.endsWith(`/drill/${at}`))).toBe(true);
  }, 120_000);
});
