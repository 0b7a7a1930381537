// Any node answers every call: a node without the source forwards a one-time backup and a restore to a
// node that has it. Two real agents on a real etcd; only one of them reads the SQLite folder.

import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { contentChecksum, createSampleDb } from '../../src/cli/sample-db.js';
import { type AgentProcess, ctl, eventually, startAgent } from '../harness/agent.js';
import { auth, CLUSTER_TOKEN, clusterStatus } from '../harness/cluster.js';
import { type EtcdServer, startEtcd } from '../harness/etcd.js';
import { tempDir } from '../harness/process.js';

describe('a node without the source', () => {
  const dir = tempDir('cluster-forward');
  const dbDir = join(dir.path, 'dbs');
  const destDir = join(dir.path, 'dest');
  let etcd: EtcdServer;
  let withSource: AgentProcess;
  let without: AgentProcess;

  beforeAll(async () => {
    mkdirSync(dbDir, { recursive: true });
    createSampleDb(join(dbDir, 'a.db'), 3000, 1);
    etcd = await startEtcd();
    const etcdConfig = { endpoints: [etcd.endpoint], leaseTtlSeconds: 2, callTimeoutSeconds: 1 };
    withSource = await startAgent({
      dir: join(dir.path, 'f1'),
      node: 'f1',
      token: CLUSTER_TOKEN,
      sources: [{ name: 'shop', engine: 'sqlite', config: { path: dbDir } }],
      extra: { etcd: etcdConfig },
    });
    without = await startAgent({
      dir: join(dir.path, 'f2'),
      node: 'f2',
      token: CLUSTER_TOKEN,
      sources: [],
      extra: { etcd: etcdConfig },
    });
    await eventually('both members', async () =>
      (await clusterStatus(without.address)).members.length === 2 ? true : undefined,
    );
  }, 60_000);
  afterAll(async () => {
    await withSource?.stop();
    await without?.stop();
    await etcd?.close();
    dir.remove();
  });

  it('forwards a one-time backup and a restore to the node that has the source', async () => {
    const dest = `d:local:${JSON.stringify({ path: destDir })}`;
    const once = await ctl(
      without.address,
      ['--json', 'backup', 'one-time', '--database', 'shop/a.db', '--type', 'backup', '--dest', dest, '--wait'],
      auth,
    );
    expect(once.code, once.stderr + once.stdout).toBe(0);
    const runs = await ctl(without.address, ['--json', 'runs', '--limit', '10'], auth);
    const run = (runs.json as { runs: { node: string; outcome: string; chainId: string; backupId: string }[] })
      .runs[0]!;
    expect(run).toMatchObject({ node: 'f1', outcome: 'succeeded' });

    const restore = await ctl(
      without.address,
      [
        'restore',
        '--dest',
        dest,
        '--database',
        'shop/a.db',
        '--chain',
        run.chainId,
        '--backup',
        run.backupId,
        '--target',
        'copy.db',
      ],
      auth,
    );
    expect(restore.code, restore.stderr).toBe(0);
    expect(restore.stdout).toMatch(/restored on node f1/);
    expect(existsSync(join(dbDir, 'copy.db'))).toBe(true);
    expect(contentChecksum(join(dbDir, 'copy.db'))).toBe(contentChecksum(join(dbDir, 'a.db')));
  }, 60_000);
});
