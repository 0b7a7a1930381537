// A run cut off when its node dies is run again, once, by the unit's new owner: two real agents on a real
// etcd, a full of a big database killed (SIGKILL) while it runs, judged from etcd's own run records
// (etcdctl). The new owner runs it as trigger `failover` (a cut-off full does not wait for the next day's
// full), the cut-off run is ended interrupted, and the killed node, restarted, does not run it a second time.

import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSampleDb } from '../../src/cli/sample-db.js';
import type { RunRecord } from '../../src/cluster/store.js';
import { ctl, eventually } from '../harness/agent.js';
import { addBulkRows } from '../harness/bulk.js';
import { auth, clusterStatus, startCluster, type TestCluster } from '../harness/cluster.js';

describe('a run cut off by the death of its node', () => {
  let cluster: TestCluster;

  beforeAll(async () => {
    cluster = await startCluster(['n1', 'n2'], (dbDir) => {
      createSampleDb(join(dbDir, 'big.db'), 20_000, 5);
      addBulkRows(join(dbDir, 'big.db'), 300_000);
    });
  }, 60_000);
  afterAll(async () => {
    await cluster?.close();
  });

  /** Every run record as etcd holds it. */
  const records = (): RunRecord[] =>
    cluster.etcd
      .ctl(['get', '--prefix', '--print-value-only', '/backupd/e2e/runs/'])
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as RunRecord);

  it('runs again once on the new owner, as failover', async () => {
    const any = cluster.agents.get('n1')!.address;
    const dest = `d:local:${JSON.stringify({ path: cluster.destDir })}`;
    const create = await ctl(
      any,
      ['task', 'create', 'big', '--database', 'shop/big.db', '--type', 'backup', '--full', '0 3 1 1 *', '--dest', dest],
      auth,
    );
    expect(create.code, create.stderr).toBe(0);
    const owner = await eventually('the unit to be assigned', async () => {
      const a = (await clusterStatus(any)).assignments[0];
      return a?.node ? a.node : undefined;
    });
    const other = owner === 'n1' ? 'n2' : 'n1';
    const now = await ctl(cluster.agents.get(owner)!.address, ['backup', 'now', 'big', '--full'], auth);
    expect(now.code, now.stderr).toBe(0);
    const cut = await eventually(
      'the full to run',
      async () => records().find((r) => (r.outcome === 'running' || r.outcome === 'queued') && r.node === owner),
      30_000,
      50,
    );
    // Well inside the backup (it reads ~100 MB), not before it starts.
    await new Promise((resolve) => setTimeout(resolve, 700));
    await cluster.agents.get(owner)!.kill();

    const rerun = await eventually(
      'the new owner to run it again',
      async () => records().find((r) => r.trigger === 'failover' && r.outcome === 'succeeded'),
      60_000,
      200,
    );
    expect(rerun.node).toBe(other);
    expect(rerun.level).toBe('full');
    const ended = records().find((r) => r.runId === cut.runId)!;
    expect(ended.outcome).toBe('interrupted');

    // The killed node comes back: it does not run the cut-off run again.
    await cluster.start(owner);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const reruns = records().filter((r) => r.trigger === 'failover' || r.trigger === 'retry');
    expect(reruns.map((r) => r.runId)).toEqual([rerun.runId]);
    // backupctl shows the trigger.
    const listed = await ctl(any, ['runs', '--task', 'big'], auth);
    expect(listed.stdout).toContain('failover');
  }, 120_000);
});
