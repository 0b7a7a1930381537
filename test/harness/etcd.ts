// A real etcd 3.4 for the cluster tests (../shared/TESTING.md): one member on free ports in a temp dir,
// ready when GET /health says so (not when a client connects: etcd3's circuit breaker would make a slow
// start look like a failure). It can be stopped and started again on the same ports and data, to take the
// cluster's etcd away for a while.

import { execFileSync } from 'node:child_process';
import { freePort, type ServerProcess, startProcess, tempDir } from './process.js';

export interface EtcdServer {
  endpoint: string;
  /** Stop etcd (SIGTERM) and keep its data. */
  stop(): Promise<void>;
  /** Start it again on the same ports and data. */
  start(): Promise<void>;
  /** Stop it and remove its data. */
  close(): Promise<void>;
  /** etcdctl against this server, e.g. ['get', '--prefix', '/backupd/']. */
  ctl(args: string[]): string;
}

export async function startEtcd(): Promise<EtcdServer> {
  const client = await freePort();
  const peer = await freePort();
  const dir = tempDir('etcd');
  const endpoint = `http://127.0.0.1:${client}`;
  let server: ServerProcess | undefined;
  const start = async () => {
    server = await startProcess({
      what: 'etcd',
      install: 'Install it with: apt-get install -y etcd-server etcd-client (npm test does this when run as root).',
      command: 'etcd',
      args: [
        '--name',
        't',
        '--data-dir',
        `${dir.path}/data`,
        '--listen-client-urls',
        endpoint,
        '--advertise-client-urls',
        endpoint,
        '--listen-peer-urls',
        `http://127.0.0.1:${peer}`,
        '--initial-advertise-peer-urls',
        `http://127.0.0.1:${peer}`,
        '--initial-cluster',
        `t=http://127.0.0.1:${peer}`,
        '--logger',
        'zap',
        '--log-level',
        'warn',
      ],
      port: client,
      ready: async () => {
        const response = await fetch(`${endpoint}/health`);
        const body = (await response.json()) as { health?: string };
        return body.health === 'true';
      },
      timeoutMs: 15_000,
    });
  };
  await start();
  return {
    endpoint,
    stop: async () => {
      await server?.stop();
      server = undefined;
    },
    start,
    close: async () => {
      await server?.stop();
      dir.remove();
    },
    ctl: (args) =>
      execFileSync('etcdctl', ['--endpoints', endpoint, ...args], {
        encoding: 'utf8',
        env: { ...process.env, ETCDCTL_API: '3' },
      }),
  };
}
