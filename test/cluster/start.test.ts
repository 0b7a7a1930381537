// Starting a cluster node while etcd is away, as an operator would: the compiled backupd in its own process.
// It waits for etcd up to `startTimeoutSeconds` and then exits with a clear error (a non-zero code, and the
// process really ends); it joins when etcd comes up within that time; and a SIGTERM while it waits stops it
// cleanly. Judged from the process's exit and etcd's own records (etcdctl).

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clusterPrefix, keys } from '../../src/cluster/etcd-keys.js';
import { BACKUPD, eventually } from '../harness/agent.js';
import { type EtcdServer, startEtcd } from '../harness/etcd.js';
import { freePort, tempDir } from '../harness/process.js';

interface Started {
  child: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; at: number }>;
}

describe('starting a node while etcd is unreachable', () => {
  const dir = tempDir('cluster-start');
  const children = new Set<ChildProcess>();
  let etcd: EtcdServer;

  const launch = async (node: string, endpoint: string, startTimeoutSeconds: number): Promise<Started> => {
    const nodeDir = join(dir.path, node);
    mkdirSync(nodeDir, { recursive: true });
    const config = join(nodeDir, 'backupd.json');
    writeFileSync(
      config,
      JSON.stringify({
        node,
        cluster: 'start',
        listen: `127.0.0.1:${await freePort()}`,
        dataDir: join(nodeDir, 'data'),
        sources: [],
        auth: { token: 'start-test-token-0123456789' },
        etcd: { endpoints: [endpoint], leaseTtlSeconds: 2, callTimeoutSeconds: 1, startTimeoutSeconds },
      }),
    );
    const child = spawn(process.execPath, [BACKUPD, '--config', config], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, BACKUPD_TOKEN: '' },
    });
    children.add(child);
    let output = '';
    child.stdout?.on('data', (d: Buffer) => {
      output += d.toString();
    });
    child.stderr?.on('data', (d: Buffer) => {
      output += d.toString();
    });
    const exited = new Promise<{ code: number | null; at: number }>((resolve) =>
      child.once('exit', (code) => {
        children.delete(child);
        resolve({ code, at: Date.now() });
      }),
    );
    return { child, output: () => output, exited };
  };

  /** The exit, or a failure naming what the process printed when it did not exit within `ms`. */
  const exitWithin = async (started: Started, ms: number) => {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`backupd did not exit within ${ms} ms:\n${started.output()}`)), ms);
    });
    try {
      return await Promise.race([started.exited, late]);
    } finally {
      clearTimeout(timer);
    }
  };

  beforeAll(async () => {
    etcd = await startEtcd();
  }, 30_000);
  afterAll(async () => {
    for (const child of children) child.kill('SIGKILL');
    await etcd?.close();
    dir.remove();
  });

  it('retries until startTimeoutSeconds, then exits non-zero with a clear error', async () => {
    const nothing = `http://127.0.0.1:${await freePort()}`;
    const began = Date.now();
    const started = await launch('late', nothing, 4);
    const { code, at } = await exitWithin(started, 20_000);
    expect(code).not.toBe(0);
    expect(code).not.toBeNull();
    // It waited out the timeout (not a second), and not much longer.
    expect(at - began).toBeGreaterThanOrEqual(4000);
    expect(at - began).toBeLessThan(12_000);
    expect(started.output()).toMatch(/cannot start after 4 s: etcd at http:\/\/127\.0\.0\.1:\d+ is unreachable/);
  }, 30_000);

  it('joins once etcd comes up within startTimeoutSeconds', async () => {
    await etcd.stop();
    let started: Started;
    try {
      started = await launch('patient', etcd.endpoint, 30);
      await new Promise((resolve) => setTimeout(resolve, 2500));
    } finally {
      await etcd.start();
    }
    await eventually(
      'the node to listen',
      async () => (started.output().includes('"msg":"listening"') ? true : undefined),
      25_000,
      100,
    );
    const member = etcd.ctl(['get', '--print-value-only', `${clusterPrefix('start')}${keys.member('patient')}`]);
    expect(JSON.parse(member).node).toBe('patient');
    started.child.kill('SIGTERM');
    expect((await exitWithin(started, 15_000)).code).toBe(0);
  }, 60_000);

  it('stops cleanly on SIGTERM while it waits for etcd', async () => {
    const nothing = `http://127.0.0.1:${await freePort()}`;
    const started = await launch('stopped', nothing, 60);
    await eventually('the node to start', async () =>
      started.output().includes('"msg":"starting"') ? true : undefined,
    );
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const sent = Date.now();
    started.child.kill('SIGTERM');
    const { code, at } = await exitWithin(started, 10_000);
    expect(code).toBe(0);
    expect(at - sent).toBeLessThan(5000);
    expect(started.output()).toContain('"msg":"stopping"');
  }, 30_000);
});
