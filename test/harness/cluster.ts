// A backupd cluster for end-to-end tests: one real etcd and N real `backupd` processes (harness/agent.ts)
// that share one SQLite folder (every node can reach every database, as nodes of a database cluster reach
// its servers) and one local destination folder (as a NAS), with a short lease TTL so failover is quick.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type AgentProcess, ctl, startAgent } from './agent.js';
import { type EtcdServer, startEtcd } from './etcd.js';
import { tempDir } from './process.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';

export const CLUSTER_TOKEN = 'cluster-e2e-token-0123456789';
export const auth = { BACKUPD_TOKEN: CLUSTER_TOKEN };

export interface TestCluster {
  etcd: EtcdServer;
  dir: string;
  dbDir: string;
  destDir: string;
  ttlSeconds: number;
  agents: Map<string, AgentProcess>;
  /** The nodes that reach etcd through a TCP proxy of their own (to cut one node off from etcd). */
  proxies: Map<string, TcpProxy>;
  /** Start (or restart, on its old port and data) node `name`. */
  start(name: string): Promise<AgentProcess>;
  close(): Promise<void>;
}

export interface ClusterStatusJson {
  leader: string;
  term: number;
  members: { node: string; healthy: boolean }[];
  assignments: { task: string; database: string; node: string; reason: string; term: number }[];
  leaderChanges: { node: string; term: number }[];
  pendingReports: number;
}

/** `prepare` fills the shared database folder before the nodes start, so they all report the same databases. */
export async function startCluster(
  nodes: string[],
  prepare: (dbDir: string) => void,
  ttlSeconds = 2,
  /** etcd settings of every agent beyond endpoints and TTL (the tests use a 1 s call deadline). */
  etcdExtra: Record<string, unknown> = { callTimeoutSeconds: 1 },
  /** Nodes that reach etcd through a proxy of their own (TestCluster.proxies). */
  proxied: string[] = [],
): Promise<TestCluster> {
  const dir = tempDir('cluster');
  const dbDir = join(dir.path, 'dbs');
  const destDir = join(dir.path, 'dest');
  mkdirSync(dbDir, { recursive: true });
  prepare(dbDir);
  const etcd = await startEtcd();
  const proxies = new Map<string, TcpProxy>();
  for (const node of proxied) proxies.set(node, await startTcpProxy(Number(new URL(etcd.endpoint).port)));
  const endpointOf = (node: string) => {
    const proxy = proxies.get(node);
    return proxy ? `http://127.0.0.1:${proxy.port}` : etcd.endpoint;
  };
  const agents = new Map<string, AgentProcess>();
  const ports = new Map<string, number>();
  const start = async (name: string) => {
    const nodeDir = join(dir.path, name);
    mkdirSync(nodeDir, { recursive: true });
    const agent = await startAgent({
      dir: nodeDir,
      node: name,
      token: CLUSTER_TOKEN,
      port: ports.get(name),
      sources: [{ name: 'shop', engine: 'sqlite', config: { path: dbDir, tempDir: join(nodeDir, 'tmp') } }],
      extra: { etcd: { endpoints: [endpointOf(name)], leaseTtlSeconds: ttlSeconds, ...etcdExtra } },
    });
    ports.set(name, agent.port);
    agents.set(name, agent);
    return agent;
  };
  try {
    await Promise.all(nodes.map(start));
  } catch (error) {
    await Promise.allSettled([...agents.values()].map((a) => a.kill()));
    await Promise.allSettled([...proxies.values()].map((p) => p.close()));
    await etcd.close();
    dir.remove();
    throw error;
  }
  return {
    etcd,
    dir: dir.path,
    dbDir,
    destDir,
    ttlSeconds,
    agents,
    proxies,
    start,
    close: async () => {
      for (const proxy of proxies.values()) proxy.heal();
      await Promise.allSettled([...agents.values()].map((a) => a.stop()));
      await Promise.allSettled([...proxies.values()].map((p) => p.close()));
      await etcd.close();
      dir.remove();
    },
  };
}

export async function clusterStatus(address: string): Promise<ClusterStatusJson> {
  const result = await ctl(address, ['--json', '--timeout', '120', 'cluster'], auth);
  if (result.code !== 0) throw new Error(`backupctl cluster failed: ${result.stderr}`);
  return result.json as ClusterStatusJson;
}
