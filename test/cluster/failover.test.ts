// Issue 5's acceptance, part one: three real agents on a real etcd. Units spread over the nodes; SIGKILL
// of a unit's responsible node moves its units within lease TTL + 2 s and the missed tick runs on the new
// owner, whose backup restores; SIGKILL of the leader elects another within TTL + 2 s without moving units
// that had a live owner; no tick runs twice.

import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { contentChecksum, createSampleDb } from '../../src/cli/sample-db.js';
import { ctl, eventually } from '../harness/agent.js';
import { addBulkRows } from '../harness/bulk.js';
import { auth, clusterStatus, startCluster, type TestCluster } from '../harness/cluster.js';

interface RunJson {
  runId: string;
  task: string;
  database: string;
  trigger: string;
  scheduledAt: string;
  outcome: string;
  node: string;
  chainId: string;
  backupId: string;
}

const NODES = ['n1', 'n2', 'n3'];
const DATABASES = ['a.db', 'b.db', 'c.db', 'd.db', 'e.db', 'f.db'];
/** Every 6 s: often enough to kill a node between two ticks, rare enough for the runs to finish. */
const EVERY = 6;

describe('a three-node cluster on etcd', () => {
  let cluster: TestCluster;
  const address = (node: string) => cluster.agents.get(node)!.address;
  const live = () => [...cluster.agents.entries()].filter(([n]) => !killed.has(n)).map(([, a]) => a.address);
  const killed = new Set<string>();

  beforeAll(async () => {
    cluster = await startCluster(NODES, (dbDir) => {
      for (const [i, name] of DATABASES.entries()) createSampleDb(join(dbDir, name), 2000, i + 1);
      // Big enough that a backup of it runs for a while, so it can be cancelled through another node.
      createSampleDb(join(dbDir, 'big.db'), 100_000, 99);
      addBulkRows(join(dbDir, 'big.db'));
    });
  }, 60_000);
  afterAll(async () => {
    await cluster?.close();
  });

  async function runs(): Promise<RunJson[]> {
    const result = await ctl(live()[0]!, ['--json', 'runs', '--task', 'every', '--limit', '1000'], auth);
    expect(result.code, result.stderr).toBe(0);
    return (result.json as { runs: RunJson[] }).runs;
  }

  it('elects one leader and spreads the units of a server-wide task over the nodes', async () => {
    const dest = `d:local:${JSON.stringify({ path: cluster.destDir })}`;
    const create = await ctl(
      address('n2'),
      [
        'task',
        'create',
        'every',
        '--server-wide',
        'shop',
        '--exclude',
        'big.db',
        '--type',
        'backup',
        // Incrementals only: the first run of each unit is a full, every later one continues its chain,
        // also on the node a unit moves to.
        '--incremental',
        `*/${EVERY} * * * * *`,
        '--dest',
        dest,
      ],
      auth,
    );
    expect(create.code, create.stderr).toBe(0);
    const status = await eventually('every unit assigned', async () => {
      const s = await clusterStatus(address('n1'));
      return s.assignments.length === DATABASES.length && s.assignments.every((a) => a.node) ? s : undefined;
    });
    expect(NODES).toContain(status.leader);
    expect(status.term).toBeGreaterThan(0);
    expect(status.members.map((m) => m.node).sort()).toEqual(NODES);
    const perNode = NODES.map((n) => status.assignments.filter((a) => a.node === n).length);
    expect(perNode).toEqual([2, 2, 2]);
    // Every node knows when every unit runs next, also units other nodes run.
    const unitsStatus = await ctl(address('n3'), ['--json', 'status', 'every'], auth);
    expect(unitsStatus.code, unitsStatus.stderr).toBe(0);
    const units = (
      unitsStatus.json as { units: { database: string; responsibleNode: string; nextEstimatedAt: string }[] }
    ).units;
    expect(units).toHaveLength(DATABASES.length);
    for (const unit of units) {
      expect(unit.responsibleNode).not.toBe('');
      expect(Date.parse(unit.nextEstimatedAt) - Date.now()).toBeLessThanOrEqual(EVERY * 1000 + 1000);
    }
    // Every node answers the same.
    const other = await clusterStatus(address('n3'));
    expect(other.assignments.map((a) => `${a.database}=${a.node}`).sort()).toEqual(
      status.assignments.map((a) => `${a.database}=${a.node}`).sort(),
    );
    // Scheduled runs happen on the owners.
    await eventually(
      'a scheduled run of every unit',
      async () => {
        const done = (await runs()).filter((r) => r.outcome === 'succeeded');
        return DATABASES.every((db) => done.some((r) => r.database === `shop/${db}`)) ? done : undefined;
      },
      30_000,
    );
    for (const run of await runs()) {
      const owner = status.assignments.find((a) => a.database === run.database)!.node;
      expect(run.node, `${run.database} ran on its owner`).toBe(owner);
    }
  }, 60_000);

  it('forwards backup now for a unit owned elsewhere to its responsible node, and any node follows the run', async () => {
    const status = await clusterStatus(address('n1'));
    const unit = status.assignments.find((a) => a.node !== 'n1')!;
    const now = await ctl(address('n1'), ['--json', 'backup', 'now', 'every', '--database', unit.database], auth);
    expect(now.code, now.stderr).toBe(0);
    const [run] = (now.json as { runs: RunJson[] }).runs;
    expect(run!.node).toBe(unit.node);
    // Any node follows it to its end, the third one included.
    const third = NODES.find((n) => n !== 'n1' && n !== unit.node)!;
    const done = await eventually('the forwarded run to end', async () => {
      const r = (await ctl(address(third), ['--json', 'run', 'get', run!.runId], auth)).json as RunJson;
      return r.outcome === 'succeeded' ? r : undefined;
    });
    expect(done.node).toBe(unit.node);
    // Cancelling a run that ended is refused, whichever node is asked.
    const cancel = await ctl(address('n1'), ['run', 'cancel', run!.runId], auth);
    expect(cancel.code).toBe(2);
    expect(cancel.stderr).toMatch(/already ended/);
  }, 60_000);

  it('cancels a running backup through a node that does not run it, with its live progress on the way', async () => {
    const dest = `d:local:${JSON.stringify({ path: cluster.destDir })}`;
    const create = await ctl(
      address('n1'),
      ['task', 'create', 'big', '--database', 'shop/big.db', '--type', 'backup', '--full', '0 0 1 1 *', '--dest', dest],
      auth,
    );
    expect(create.code, create.stderr).toBe(0);
    const owner = await eventually('big.db assigned', async () => {
      const a = (await clusterStatus(address('n1'))).assignments.find((x) => x.task === 'big');
      return a?.node || undefined;
    });
    const other = NODES.find((n) => n !== owner)!;
    const now = await ctl(address(other), ['--json', 'backup', 'now', 'big'], auth);
    expect(now.code, now.stderr).toBe(0);
    const runId = (now.json as { runs: RunJson[] }).runs[0]!.runId;
    // Live progress, read through a node that does not run it: only the owner has it.
    await eventually(
      'progress seen through another node',
      async () => {
        const r = (await ctl(address(other), ['--json', 'run', 'get', runId], auth)).json as RunJson & {
          progress?: { bytesDone: number };
        };
        return r.outcome === 'running' && (r.progress?.bytesDone ?? 0) > 0 ? r : undefined;
      },
      30_000,
      100,
    );
    const cancel = await ctl(address(other), ['--json', 'run', 'cancel', runId], auth);
    expect(cancel.code, cancel.stderr).toBe(0);
    const ended = await eventually('the run to end', async () => {
      const r = (await ctl(address(other), ['--json', 'run', 'get', runId], auth)).json as RunJson;
      return r.outcome !== 'running' && r.outcome !== 'queued' ? r : undefined;
    });
    expect(ended.outcome).toBe('cancelled');
    expect(ended.node).toBe(owner);
  }, 60_000);

  it('moves the units of a killed node within TTL + 2 s, and runs its missed tick on the new owner', async () => {
    const before = await clusterStatus(address('n1'));
    const victim = NODES.find((n) => n !== before.leader)!;
    const victimUnits = before.assignments
      .filter((a) => a.task === 'every' && a.node === victim)
      .map((a) => a.database);
    expect(victimUnits.length).toBeGreaterThan(0);
    // Kill it just after a tick's runs began, so the next tick is certainly missed by it.
    const nowS = Date.now() / 1000;
    const nextTick = Math.ceil(nowS / EVERY) * EVERY;
    await new Promise((r) => setTimeout(r, (nextTick - nowS + 1) * 1000));
    const killedAt = Date.now();
    await cluster.agents.get(victim)!.kill();
    killed.add(victim);
    const survivor = NODES.find((n) => n !== victim)!;
    const after = await eventually(
      'the victim’s units to move',
      async () => {
        const s = await clusterStatus(address(survivor));
        const moved = s.assignments.filter((a) => victimUnits.includes(a.database));
        return moved.every((a) => a.node && a.node !== victim) ? s : undefined;
      },
      20_000,
      100,
    );
    const movedMs = Date.now() - killedAt;
    console.info(`reassignment after SIGKILL: ${movedMs} ms (lease TTL ${cluster.ttlSeconds} s)`);
    expect(movedMs).toBeLessThan((cluster.ttlSeconds + 2) * 1000);
    // Units that had a live owner did not move.
    for (const a of before.assignments.filter((x) => x.node !== victim)) {
      expect(after.assignments.find((b) => b.database === a.database)!.node).toBe(a.node);
    }
    // The tick the victim missed runs on the new owner, and its backup restores.
    const unit = victimUnits[0]!;
    const newOwner = after.assignments.find((a) => a.database === unit)!.node;
    const missed = new Date((nextTick + EVERY) * 1000).toISOString();
    const run = await eventually(
      'the missed tick to run on the new owner',
      async () =>
        (await runs()).find(
          (r) => r.database === unit && r.node === newOwner && r.scheduledAt >= missed && r.outcome === 'succeeded',
        ),
      30_000,
    );
    // It continued the dead node's chain (the destination proves the chain's state), as an incremental.
    const victimRuns = (await runs()).filter(
      (r) => r.database === unit && r.node === victim && r.outcome === 'succeeded',
    );
    expect(victimRuns.length).toBeGreaterThan(0);
    expect(run.chainId).toBe(victimRuns[0]!.chainId);
    expect(run.chainId).toContain(`-${victim}`);
    expect(run.backupId).toMatch(/-incr$/);
    const target = `restored-${Date.now()}.db`;
    const restore = await ctl(
      address(newOwner),
      [
        'restore',
        '--task',
        'every',
        '--destination',
        'd',
        '--database',
        unit,
        '--chain',
        run.chainId,
        '--backup',
        run.backupId,
        '--target',
        target,
      ],
      auth,
    );
    expect(restore.code, restore.stderr).toBe(0);
    expect(contentChecksum(join(cluster.dbDir, target))).toBe(
      contentChecksum(join(cluster.dbDir, unit.split('/')[1]!)),
    );
  }, 90_000);

  it('elects a new leader within TTL + 2 s after SIGKILL of the leader, moving only the dead leader’s units', async () => {
    // The node killed above comes back first, so two nodes remain after the leader dies.
    const victim = [...killed][0]!;
    await cluster.start(victim);
    killed.delete(victim);
    const before = await eventually('the restarted node to be a member', async () => {
      const s = await clusterStatus(address(victim));
      return s.members.length === NODES.length ? s : undefined;
    });
    const leader = before.leader;
    const killedAt = Date.now();
    await cluster.agents.get(leader)!.kill();
    killed.add(leader);
    const survivor = NODES.find((n) => !killed.has(n))!;
    const after = await eventually(
      'a new leader',
      async () => {
        const s = await clusterStatus(address(survivor));
        return s.leader && s.leader !== leader ? s : undefined;
      },
      20_000,
      100,
    );
    const electedMs = Date.now() - killedAt;
    console.info(`new leader after SIGKILL of the leader: ${electedMs} ms (lease TTL ${cluster.ttlSeconds} s)`);
    expect(electedMs).toBeLessThan((cluster.ttlSeconds + 2) * 1000);
    expect(after.term).toBeGreaterThan(before.term);
    // The new leader records its term in the history right after it takes over, not atomically with it.
    const recorded = await eventually(
      'the new leader in the leader history',
      async () => {
        const s = await clusterStatus(address(survivor));
        const last = s.leaderChanges.at(-1);
        return last?.node === after.leader && last.term === after.term ? s : undefined;
      },
      5_000,
      100,
    );
    expect(recorded.leaderChanges.at(-1)).toMatchObject({ node: after.leader, term: after.term });
    // Once the dead leader's units have moved, every other unit is where it was.
    const settled = await eventually(
      'the dead leader’s units to move',
      async () => {
        const s = await clusterStatus(address(survivor));
        return s.assignments.every((a) => a.node && a.node !== leader) ? s : undefined;
      },
      20_000,
    );
    for (const a of before.assignments.filter((x) => x.node !== leader)) {
      expect(settled.assignments.find((b) => b.database === a.database)?.node, a.database).toBe(a.node);
    }
  }, 60_000);

  it('never ran one tick twice', async () => {
    // A run cut off by its node's death ends interrupted and runs again (trigger failover) for the same tick.
    const all = (await runs()).filter((r) => r.scheduledAt && r.outcome !== 'cancelled' && r.outcome !== 'interrupted');
    expect(all.length).toBeGreaterThan(DATABASES.length);
    const seen = new Map<string, RunJson>();
    for (const run of all) {
      const key = `${run.database} ${run.scheduledAt}`;
      const twin = seen.get(key);
      expect(twin, `${key} ran on ${twin?.node} and on ${run.node}`).toBeUndefined();
      seen.set(key, run);
    }
  });
});
