// What the agent learns of leadership and of a lost watch through the Cluster interface, on both clusters:
// a single node leads from its start and never loses a watch; an etcd node that wins the election says so
// through onLeadershipChange and isLeader, and the election key etcd holds (read with etcdctl) names it.

import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EtcdCluster } from '../../src/cluster/etcd-cluster.js';
import { clusterPrefix, keys } from '../../src/cluster/etcd-keys.js';
import { openLocalStore } from '../../src/cluster/local-store.js';
import { SoloCluster } from '../../src/cluster/solo.js';
import { eventually } from '../harness/agent.js';
import { type EtcdServer, startEtcd } from '../harness/etcd.js';
import { tempDir } from '../harness/process.js';

const self = (node: string) => ({ node, address: '127.0.0.1:1', version: 't', startedAt: new Date().toISOString() });

describe('leadership events of the Cluster interface', () => {
  const dir = tempDir('leadership-events');
  let etcd: EtcdServer;
  const closers: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    etcd = await startEtcd();
  }, 60_000);

  afterAll(async () => {
    for (const close of closers.reverse()) await close().catch(() => undefined);
    await etcd?.close();
    dir.remove();
  });

  it('a single node is the leader and never has a lost watch', async () => {
    const cluster = new SoloCluster(await openLocalStore({ dataDir: `${dir.path}/solo` }), self('solo'));
    closers.push(() => cluster.stop());
    expect(cluster.isLeader()).toBe(true);
    expect(cluster.watchLostSince()).toBeUndefined();
    const unsubscribe = cluster.onLeadershipChange(() => undefined);
    expect(typeof unsubscribe).toBe('function');
  });

  it('an etcd node that takes over leadership hears of it, as etcd records it', async () => {
    const start = (node: string) =>
      EtcdCluster.start({
        etcd: { endpoints: [etcd.endpoint], leaseTtlSeconds: 2, callTimeoutSeconds: 1, startTimeoutSeconds: 10 },
        cluster: 'events',
        self: { ...self(node), sources: [] },
        dataDir: `${dir.path}/${node}`,
        logger: pino({ level: 'silent' }),
      });
    const electionKeys = () => etcd.ctl(['get', '--prefix', `${clusterPrefix('events')}election/${keys.election}/`]);
    const n1 = await start('n1');
    closers.push(() => n1.stop());
    await eventually('n1 to lead', async () => (n1.isLeader() ? true : undefined), 20_000);
    const n2 = await start('n2');
    closers.push(() => n2.stop());
    const changes: boolean[] = [];
    n2.onLeadershipChange((leading) => changes.push(leading));
    expect(n2.isLeader()).toBe(false);
    expect(n2.watchLostSince()).toBeUndefined();
    await n1.stop();
    await eventually('n2 to hear it leads', async () => (changes.length > 0 ? true : undefined), 20_000);
    expect(changes).toEqual([true]);
    expect(n2.isLeader()).toBe(true);
    // etcd's first election key (the leader) is now n2's.
    const lines = electionKeys().trim().split('\n');
    expect(lines[1]).toBe('n2');
  }, 60_000);
});
