// The cluster at scale (issue 5): 5 real agents on one real etcd, 100 server-wide tasks over a source of
// 100 databases = 10,000 units. Measures the time for the leader to assign every unit, the time to move a
// SIGKILLed node's units, and etcd's writes per second while the cluster idles (no run due). Everything
// shares this machine's 2 cores, etcd included.
// Run: npm run bench:cluster   (BENCH_NODES, BENCH_TASKS, BENCH_DATABASES to change the shape)

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Etcd3 } from 'etcd3';
import { createClient } from '../src/api/client.js';
import { clusterPrefix, parseTaskKey } from '../src/cluster/etcd-keys.js';
import { CLUSTER_TOKEN, clusterStatus, startCluster } from '../test/harness/cluster.js';

const say = (line: string) => process.stdout.write(`${line}\n`);
const NODES = Number(process.env.BENCH_NODES ?? 5);
const TASKS = Number(process.env.BENCH_TASKS ?? 100);
const DATABASES = Number(process.env.BENCH_DATABASES ?? 100);
const UNITS = TASKS * DATABASES;

/** etcd's own counters (its /metrics), summed over the names given. */
async function etcdCounter(endpoint: string, names: string[]): Promise<number> {
  const text = await (await fetch(`${endpoint}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    const [name, value] = line.split(' ');
    if (name && names.includes(name)) sum += Number(value);
  }
  return sum;
}

async function main(): Promise<void> {
  const nodes = Array.from({ length: NODES }, (_, i) => `b${i + 1}`);
  say(`starting etcd and ${NODES} agents; ${TASKS} server-wide tasks x ${DATABASES} databases = ${UNITS} units`);
  const cluster = await startCluster(
    nodes,
    (dbDir) => {
      mkdirSync(dbDir, { recursive: true });
      for (let i = 0; i < DATABASES; i++) {
        const db = new Database(join(dbDir, `db${String(i).padStart(4, '0')}.db`));
        db.exec('CREATE TABLE t (x)');
        db.close();
      }
    },
    Number(process.env.BENCH_TTL ?? 5),
    // The default call deadline: on 2 cores shared by etcd, five agents and this script, 1 s is too tight.
    {},
  );
  const etcd = new Etcd3({ hosts: cluster.etcd.endpoint });
  const ns = etcd.namespace(clusterPrefix('e2e'));
  // Every unit's responsible node, kept by a watch: polling 10,000 keys would load etcd more than the cluster.
  const byUnit = new Map<string, string>();
  const watcher = await ns.watch().prefix('tasks/').create();
  watcher.on('put', (kv) => {
    const parsed = parseTaskKey(kv.key.toString());
    if (parsed.kind === 'assignment') {
      byUnit.set(`${parsed.task}/${parsed.database}`, JSON.parse(kv.value.toString()).node);
    }
  });
  const until = async (what: string, done: () => boolean, timeoutMs: number) => {
    const start = performance.now();
    while (!done()) {
      if (performance.now() - start > timeoutMs) throw new Error(`${what} not reached after ${timeoutMs / 1000} s`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return performance.now() - start;
  };
  const countOn = (node: string) => [...byUnit.values()].filter((v) => v === node).length;
  try {
    const first = cluster.agents.get(nodes[0]!)!;
    const status = await clusterStatus(first.address);
    if (status.members.length !== NODES) throw new Error(`only ${status.members.length} members joined`);
    const api = createClient({ address: first.address, token: CLUSTER_TOKEN });

    // 1. Assign every unit: tasks created one after another, as an operator's script would.
    const created = performance.now();
    for (let i = 0; i < TASKS; i++) {
      await api.unary('CreateTask', {
        spec: {
          name: `t${String(i).padStart(4, '0')}`,
          serverWide: { source: 'shop', exclude: [] },
          type: 'backup',
          schedule: { full: '0 3 * * *', incremental: '', timeZone: 'UTC' },
          destinations: [{ name: 'd', kind: 'local', configJson: JSON.stringify({ path: cluster.destDir }) }],
        },
      });
    }
    const tasksMs = performance.now() - created;
    const afterLast = await until(
      'every unit assigned',
      () => byUnit.size === UNITS && [...byUnit.values()].every(Boolean),
      120_000,
    );
    const assignMs = performance.now() - created;
    say(
      `created ${TASKS} tasks one by one in ${(tasksMs / 1000).toFixed(2)} s; all ${UNITS} units assigned ` +
        `${(assignMs / 1000).toFixed(2)} s after the first create, ${(afterLast / 1000).toFixed(2)} s after the last`,
    );
    say(`units per node: ${nodes.map(countOn).join(', ')}`);
    const passes = [...cluster.agents.values()]
      .flatMap((a) => a.logs().split('\n'))
      .filter((l) => l.includes('"msg":"assigned units"'))
      .map((l) => JSON.parse(l) as { written: number; ms: number; units: number });
    const biggest = passes.sort((a, b) => b.written - a.written)[0];
    if (biggest) {
      say(`largest assignment pass: ${biggest.written} written for ${biggest.units} units in ${biggest.ms} ms`);
    }

    // 2. Idle steady state: etcd writes per second, once the burst of every new unit's first status (its
    // scheduler cursor, one write per unit) is over.
    const writeMetrics = ['etcd_mvcc_put_total', 'etcd_mvcc_delete_total', 'etcd_mvcc_txn_total'];
    const settleStart = performance.now();
    let last = await etcdCounter(cluster.etcd.endpoint, writeMetrics);
    while (performance.now() - settleStart < 180_000) {
      await new Promise((r) => setTimeout(r, 2000));
      const now = await etcdCounter(cluster.etcd.endpoint, writeMetrics);
      if (now - last < 4) break;
      last = now;
    }
    say(`first-status burst over ${((performance.now() - settleStart) / 1000).toFixed(1)} s after assignment`);
    const w0 = await etcdCounter(cluster.etcd.endpoint, writeMetrics);
    const windowS = 20;
    await new Promise((r) => setTimeout(r, windowS * 1000));
    const writes = ((await etcdCounter(cluster.etcd.endpoint, writeMetrics)) - w0) / windowS;
    say(`steady state (no run due): ${writes.toFixed(2)} etcd writes/s (puts + deletes + txns)`);

    // 3. SIGKILL a node that is not the leader; time until its units have moved.
    const statusStart = performance.now();
    const full = await clusterStatus(first.address);
    say(
      `backupctl cluster --json with ${full.assignments.length} assignments: ${((performance.now() - statusStart) / 1000).toFixed(2)} s`,
    );
    const leader = full.leader;
    const victim = nodes.find((n) => n !== leader && n !== nodes[0])!;
    const victimUnits = countOn(victim);
    await cluster.agents.get(victim)!.kill();
    const movedMs = await until(
      'the killed node’s units moved',
      () => [...byUnit.values()].every((v) => v && v !== victim),
      60_000,
    );
    say(
      `SIGKILL of ${victim} (${victimUnits} units): all moved ${(movedMs / 1000).toFixed(2)} s later, ` +
        `${(movedMs / 1000 - cluster.ttlSeconds).toFixed(2)} s after its lease (TTL ${cluster.ttlSeconds} s) expired`,
    );
    say(
      `units per live node after: ${nodes
        .filter((n) => n !== victim)
        .map(countOn)
        .join(', ')}`,
    );
    cluster.agents.delete(victim);
    api.close();
  } finally {
    await watcher.cancel();
    etcd.close();
    await cluster.close();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench/cluster: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
