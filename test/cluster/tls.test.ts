// Forwarding between nodes over mutual TLS: two agents on a real etcd whose gRPC servers require a client
// certificate; a backup now sent to the node that does not own the unit reaches the one that does, which
// accepts the caller only because it presents the node certificate. The certificate is a throwaway one
// made by openssl (fails loudly where openssl is missing).

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSampleDb } from '../../src/cli/sample-db.js';
import { type AgentProcess, ctl, eventually, startAgent } from '../harness/agent.js';
import { selfSignedCertificate } from '../harness/certificate.js';
import { CLUSTER_TOKEN } from '../harness/cluster.js';
import { type EtcdServer, startEtcd } from '../harness/etcd.js';
import { freePort, tempDir } from '../harness/process.js';

describe('a cluster whose nodes require mutual TLS', () => {
  const dir = tempDir('cluster-tls');
  const dbDir = join(dir.path, 'dbs');
  // selfSignedCertificate writes these in beforeAll.
  const cert = join(dir.path, 'cert.pem');
  const key = join(dir.path, 'key.pem');
  let etcd: EtcdServer;
  const agents = new Map<string, AgentProcess>();
  const tlsFlags = ['--tls-ca', cert, '--tls-cert', cert, '--tls-key', key];
  const env = { BACKUPD_TOKEN: CLUSTER_TOKEN };
  const on = (node: string) => `localhost:${agents.get(node)!.port}`;

  beforeAll(async () => {
    mkdirSync(dbDir, { recursive: true });
    createSampleDb(join(dbDir, 'a.db'), 1000, 1);
    selfSignedCertificate(dir.path);
    etcd = await startEtcd();
    for (const node of ['t1', 't2']) {
      const port = await freePort();
      const nodeDir = join(dir.path, node);
      mkdirSync(nodeDir, { recursive: true });
      agents.set(
        node,
        await startAgent({
          dir: nodeDir,
          node,
          port,
          token: CLUSTER_TOKEN,
          sources: [{ name: 'shop', engine: 'sqlite', config: { path: dbDir, tempDir: join(nodeDir, 'tmp') } }],
          extra: {
            etcd: { endpoints: [etcd.endpoint], leaseTtlSeconds: 2, callTimeoutSeconds: 1 },
            tls: { certFile: cert, keyFile: key, caFile: cert, requireClientCert: true },
            advertise: `localhost:${port}`,
          },
        }),
      );
    }
  }, 60_000);
  afterAll(async () => {
    await Promise.allSettled([...agents.values()].map((a) => a.stop()));
    await etcd?.close();
    dir.remove();
  });

  it('forwards backup now to the responsible node, which requires the node certificate', async () => {
    // Without a client certificate a node refuses the call: the peers' certificate is what gets them in.
    const bare = await ctl(on('t1'), ['--tls-ca', cert, 'cluster'], env);
    expect(bare.code).not.toBe(0);

    const dest = `d:local:${JSON.stringify({ path: join(dir.path, 'dest') })}`;
    const create = await ctl(
      on('t1'),
      [
        ...tlsFlags,
        'task',
        'create',
        'tls',
        '--database',
        'shop/a.db',
        '--type',
        'backup',
        '--full',
        '0 0 1 1 *',
        '--dest',
        dest,
      ],
      env,
    );
    expect(create.code, create.stderr).toBe(0);
    const owner = await eventually('the unit to be assigned', async () => {
      const status = await ctl(on('t1'), [...tlsFlags, '--json', 'cluster'], env);
      const a = (status.json as { assignments: { node: string }[] } | undefined)?.assignments[0];
      return a?.node || undefined;
    });
    // Each node asks the other's health over the same mutual TLS (what `backupctl cluster` shows).
    const members = await ctl(on('t1'), [...tlsFlags, '--json', 'cluster'], env);
    expect((members.json as { members: { node: string; state: string }[] }).members).toEqual([
      expect.objectContaining({ node: 't1', state: 'serving' }),
      expect.objectContaining({ node: 't2', state: 'serving' }),
    ]);
    const other = owner === 't1' ? 't2' : 't1';
    const now = await ctl(on(other), [...tlsFlags, '--json', 'backup', 'now', 'tls', '--wait'], env);
    expect(now.code, now.stderr).toBe(0);
    const runs = await ctl(on(other), [...tlsFlags, '--json', 'runs', '--task', 'tls'], env);
    const [run] = (runs.json as { runs: { node: string; outcome: string }[] }).runs;
    expect(run).toMatchObject({ node: owner, outcome: 'succeeded' });
  }, 60_000);
});
