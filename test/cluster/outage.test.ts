// Issue 5's acceptance, part two: etcd away for longer than the lease TTL, and preferred and pinned nodes.
// While etcd is stopped, units keep running on their owners (their manifests keep landing at the
// destination), task changes fail with UNAVAILABLE, and every status report made meanwhile appears in the
// history once etcd is back. A unit follows its preferred node away and back; a pinned unit waits for it.

import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSampleDb } from '../../src/cli/sample-db.js';
import { ctl, eventually } from '../harness/agent.js';
import { auth, clusterStatus, startCluster, type TestCluster } from '../harness/cluster.js';

interface RunJson {
  runId: string;
  database: string;
  scheduledAt: string;
  startedAt: string;
  outcome: string;
  node: string;
  backupId: string;
}

const NODES = ['n1', 'n2', 'n3'];
const EVERY = 3;

/** Manifests at the shared destination, over every chain of every database. */
function manifests(destDir: string): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.isDirectory()) walk(join(dir, entry.name));
      else if (entry.name.endsWith('.manifest')) found.push(entry.name);
    }
  };
  try {
    walk(destDir);
  } catch {
    // nothing published yet
  }
  return found;
}

describe('a cluster whose etcd goes away, and preferred nodes', () => {
  let cluster: TestCluster;
  const address = (node: string) => cluster.agents.get(node)!.address;

  beforeAll(async () => {
    cluster = await startCluster(NODES, (dbDir) => {
      for (const [i, name] of ['a.db', 'b.db', 'p.db', 'q.db'].entries())
        createSampleDb(join(dbDir, name), 1000, i + 1);
    });
  }, 60_000);
  afterAll(async () => {
    await cluster?.close();
  });

  const dest = () => `d:local:${JSON.stringify({ path: cluster.destDir })}`;

  async function runs(task: string): Promise<RunJson[]> {
    const result = await ctl(address('n1'), ['--json', 'runs', '--task', task, '--limit', '1000'], auth);
    expect(result.code, result.stderr).toBe(0);
    return (result.json as { runs: RunJson[] }).runs;
  }

  it('keeps running units on schedule while etcd is stopped, refuses task changes, and reports afterwards', async () => {
    const create = await ctl(
      address('n1'),
      [
        'task',
        'create',
        'often',
        '--database',
        'shop/a.db',
        '--database',
        'shop/b.db',
        '--type',
        'backup',
        '--full',
        `*/${EVERY} * * * * *`,
        '--dest',
        dest(),
      ],
      auth,
    );
    expect(create.code, create.stderr).toBe(0);
    await eventually('both units to have run', async () => {
      const done = (await runs('often')).filter((r) => r.outcome === 'succeeded');
      return new Set(done.map((r) => r.database)).size === 2 ? done : undefined;
    });
    const owners = await clusterStatus(address('n1'));

    await cluster.etcd.stop();
    const stoppedAt = new Date();
    const before = manifests(cluster.destDir).length;
    // Longer than the lease TTL (twice it, so every lease has expired by etcd's clock too).
    await new Promise((r) => setTimeout(r, cluster.ttlSeconds * 2 * 1000 + EVERY * 1000));
    const during = manifests(cluster.destDir).length;
    expect(during, 'backups published while etcd was down').toBeGreaterThanOrEqual(before + 2);

    const refused = await ctl(
      address('n2'),
      [
        'task',
        'create',
        'nope',
        '--database',
        'shop/a.db',
        '--type',
        'backup',
        '--full',
        '0 0 * * *',
        '--dest',
        dest(),
      ],
      auth,
    );
    expect(refused.code).toBe(4);
    expect(refused.stderr).toMatch(/etcd/);
    const down = await clusterStatus(address('n1'));
    expect(down.pendingReports).toBeGreaterThan(0);

    await cluster.etcd.start();
    const restartedAt = new Date();
    // The reports of runs made while etcd was away appear, each run once, on the nodes that owned the units.
    const reported = await eventually(
      'the outage’s runs to be reported',
      async () => {
        const during = (await runs('often')).filter(
          (r) =>
            r.outcome === 'succeeded' &&
            r.scheduledAt > stoppedAt.toISOString() &&
            r.startedAt < restartedAt.toISOString(),
        );
        return new Set(during.map((r) => r.database)).size === 2 ? during : undefined;
      },
      30_000,
    );
    for (const run of reported) {
      expect(run.node).toBe(owners.assignments.find((a) => a.database === run.database)!.node);
    }
    const back = await eventually('the outboxes to drain', async () => {
      const statuses = await Promise.all(NODES.map((n) => clusterStatus(address(n))));
      return statuses.every((s) => s.pendingReports === 0 && s.leader) ? statuses : undefined;
    });
    expect(back[0]!.members).toHaveLength(NODES.length);
    // Nothing lost: every published manifest has its succeeded run in the history. The task keeps running,
    // and a run publishes before it records its end, so the manifests are listed first and the history is
    // read until it holds them (or the wait runs out, and the check below names the one missing).
    const published = manifests(cluster.destDir).map((m) => m.replace(/\.manifest$/, ''));
    const history = async () =>
      new Set((await runs('often')).filter((r) => r.outcome === 'succeeded').map((r) => r.backupId));
    const succeeded = await eventually(
      'the published runs to be in the history',
      async () => {
        const seen = await history();
        return published.every((id) => seen.has(id)) ? seen : undefined;
      },
      15_000,
    ).catch(history);
    for (const backupId of published)
      expect(succeeded.has(backupId), `run of ${backupId} is in the history`).toBe(true);
    const del = await ctl(address('n1'), ['task', 'delete', 'often'], auth);
    expect(del.code, del.stderr).toBe(0);
  }, 90_000);

  it('moves a unit away from its preferred node and back; a pinned unit waits for its node', async () => {
    for (const [name, db, pin] of [
      ['preferred', 'shop/p.db', []],
      ['pinned', 'shop/q.db', ['--pin']],
    ] as const) {
      const create = await ctl(
        address('n1'),
        [
          'task',
          'create',
          name,
          '--database',
          db,
          '--type',
          'backup',
          '--full',
          '0 0 1 1 *',
          '--preferred-node',
          'n3',
          ...pin,
          '--dest',
          dest(),
        ],
        auth,
      );
      expect(create.code, create.stderr).toBe(0);
    }
    const nodeOf = (s: Awaited<ReturnType<typeof clusterStatus>>, task: string) =>
      s.assignments.find((a) => a.task === task)?.node;
    await eventually('both on n3', async () => {
      const s = await clusterStatus(address('n1'));
      return nodeOf(s, 'preferred') === 'n3' && nodeOf(s, 'pinned') === 'n3' ? s : undefined;
    });

    // A stop (SIGTERM) leaves the cluster at once: the unit moves without waiting for the lease to expire.
    expect(await cluster.agents.get('n3')!.stop()).toBe(0);
    const away = await eventually('the preferred unit to move', async () => {
      const s = await clusterStatus(address('n1'));
      const node = nodeOf(s, 'preferred');
      return node && node !== 'n3' ? s : undefined;
    });
    expect(nodeOf(away, 'pinned')).toBe('');
    expect(away.assignments.find((a) => a.task === 'pinned')!.reason).toMatch(/pinned to n3/);

    await cluster.start('n3');
    await eventually('both back on n3', async () => {
      const s = await clusterStatus(address('n1'));
      return nodeOf(s, 'preferred') === 'n3' && nodeOf(s, 'pinned') === 'n3' ? s : undefined;
    });
  }, 60_000);
});
