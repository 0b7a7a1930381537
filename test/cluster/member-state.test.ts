// `backupctl cluster` shows each member's true state: another member is asked (the standard gRPC health
// check), not assumed healthy because its lease is still alive. Two real agents on a real etcd; one is
// paused with SIGSTOP (a hung node: its lease outlives it for a TTL, its server answers nothing).

import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AgentProcess, ctl, eventually, startAgent } from '../harness/agent.js';
import { auth, CLUSTER_TOKEN } from '../harness/cluster.js';
import { type EtcdServer, startEtcd } from '../harness/etcd.js';
import { tempDir } from '../harness/process.js';

interface Member {
  node: string;
  healthy: boolean;
  state: string;
}

describe('members in the cluster status', () => {
  const dir = tempDir('member-state');
  let etcd: EtcdServer;
  let a: AgentProcess;
  let b: AgentProcess;

  async function members(): Promise<Member[]> {
    const answer = await ctl(a.address, ['--json', 'cluster'], auth);
    if (answer.code !== 0) throw new Error(`backupctl cluster failed: ${answer.stderr}`);
    return (answer.json as { members: Member[] }).members;
  }

  beforeAll(async () => {
    etcd = await startEtcd();
    // A lease far longer than the test needs: the paused node stays listed throughout.
    const etcdConfig = { endpoints: [etcd.endpoint], leaseTtlSeconds: 30, callTimeoutSeconds: 2 };
    const start = (node: string) =>
      startAgent({ dir: join(dir.path, node), node, token: CLUSTER_TOKEN, sources: [], extra: { etcd: etcdConfig } });
    a = await start('a');
    b = await start('b');
    await eventually('both members', async () => ((await members()).length === 2 ? true : undefined));
  }, 60_000);
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await etcd?.close();
    dir.remove();
  });

  it('a hung member is shown unreachable, and serving again once it answers', async () => {
    expect(await members()).toEqual([
      expect.objectContaining({ node: 'a', healthy: true, state: 'serving' }),
      expect.objectContaining({ node: 'b', healthy: true, state: 'serving' }),
    ]);
    process.kill(b.pid, 'SIGSTOP');
    try {
      const [self, hung] = await members();
      expect(self).toMatchObject({ node: 'a', healthy: true, state: 'serving' });
      expect(hung).toMatchObject({ node: 'b', healthy: false });
      expect(hung?.state).toMatch(/^unreachable: /);
      // The table says it too.
      const table = await ctl(a.address, ['cluster'], auth);
      expect(table.stdout).toMatch(/^b\s.*unreachable: /m);
    } finally {
      process.kill(b.pid, 'SIGCONT');
    }
    await eventually('b serving again', async () =>
      (await members()).find((m) => m.node === 'b')?.state === 'serving' ? true : undefined,
    );
  }, 60_000);
});
