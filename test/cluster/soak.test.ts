// Issue 27's soak: a 3-node cluster on a real etcd, with real agents, under random faults (SIGKILL of a node
// or of the leader, SIGTERM, SIGSTOP/SIGCONT, etcd stopped for a while) while its databases change, then
// judged from what the destination and etcd hold (harness/soak-check.ts), never from the product's summary:
// no tick ran twice, none was missed or cut off without a rerun, every chain is linear, and the newest
// restore point of every database restores identical to its source (compared with the sqlite3 CLI).
// Seeded: the seed is printed; BACKUPD_SOAK_SEED replays a run, BACKUPD_SOAK_SECONDS makes it longer
// (90 s of faults by default, about two minutes in all).

import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSampleDb, prng } from '../../src/cli/sample-db.js';
import { ctl, eventually } from '../harness/agent.js';
import { auth, clusterStatus, startCluster, type TestCluster } from '../harness/cluster.js';
import {
  checkSoak,
  invariants,
  newestRestorePoint,
  readEtcdRecords,
  readManifests,
  readRunHistory,
  runStateInvariant,
  type SoakRun,
} from '../harness/soak-check.js';

const NODES = ['n1', 'n2', 'n3'];
const DATABASES = ['a.db', 'b.db', 'c.db'];
const EVERY = 3;
const SEED = Number(process.env.BACKUPD_SOAK_SEED ?? Math.floor(Math.random() * 2 ** 31));
const SECONDS = Number(process.env.BACKUPD_SOAK_SECONDS ?? 90);
/** A tick waits at most this long for its run: the longest fault (an etcd outage of 12 s) plus failover. */
const MAX_DELAY_MS = 25_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The sqlite3 CLI's dump of a database: the independent judge of what it holds. */
function dump(path: string): string {
  return execFileSync('sqlite3', ['-readonly', path, '.dump'], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
}

describe('a 3-node cluster under random faults', () => {
  let cluster: TestCluster;
  const down = new Set<string>();
  const paused = new Set<string>();
  const faults: string[] = [];

  beforeAll(async () => {
    console.info(`soak seed ${SEED} (BACKUPD_SOAK_SEED=${SEED} replays it), ${SECONDS} s of faults`);
    cluster = await startCluster(NODES, (dbDir) => {
      for (const [i, name] of DATABASES.entries()) createSampleDb(join(dbDir, name), 3000, i + 1);
    });
  }, 60_000);
  afterAll(async () => {
    for (const node of paused) cluster?.agents.get(node)?.signal('SIGCONT');
    await cluster?.close();
  });

  const liveAddress = () =>
    NODES.filter((n) => !down.has(n) && !paused.has(n)).map((n) => cluster.agents.get(n)!.address);

  async function leader(): Promise<string | undefined> {
    for (const address of liveAddress()) {
      try {
        const status = await clusterStatus(address);
        if (status.leader) return status.leader;
      } catch {
        // this node cannot answer now (etcd away, or busy): ask the next one
      }
    }
    return undefined;
  }

  function runsInEtcd(): SoakRun[] {
    return readEtcdRecords(cluster.etcd, 'e2e', 'soak').runs;
  }

  it(
    'runs every tick once, loses none, keeps every chain linear and every newest restore point identical',
    async () => {
      const random = prng(SEED);
      const pick = <T>(items: readonly T[]) => items[Math.floor(random() * items.length)]!;
      const between = (low: number, high: number) => low + random() * (high - low);
      const spec = [
        '--server-wide',
        'shop',
        '--type',
        'backup',
        '--incremental',
        `*/${EVERY} * * * * *`,
        '--full',
        '*/30 * * * * *',
        '--dest',
        `d:local:${JSON.stringify({ path: cluster.destDir })}`,
      ];
      const create = await ctl(cluster.agents.get('n1')!.address, ['task', 'create', 'soak', ...spec], auth);
      expect(create.code, create.stderr).toBe(0);
      await eventually(
        'a first run of every database',
        async () => {
          const done = runsInEtcd().filter((r) => r.outcome === 'succeeded');
          return DATABASES.every((db) => done.some((r) => r.database === `shop/${db}`)) ? true : undefined;
        },
        30_000,
        500,
      );
      const from = new Date(Date.now() + EVERY * 1000);

      // The databases change all along, so incrementals carry data and a stale restore point would show.
      const handles = DATABASES.map((db) => new Database(join(cluster.dbDir, db)));
      let writes = 0;
      // Its own generator: the writer's draws come at moments that vary, and must not shift the faults'.
      const writeRandom = prng(SEED + 1);
      const writer = setInterval(() => {
        const db = handles[Math.floor(writeRandom() * handles.length)]!;
        db.prepare('INSERT INTO events (kind, body, at) VALUES (?, ?, ?)').run('soak', `write ${++writes}`, Date.now());
      }, 300);

      const ends = Date.now() + SECONDS * 1000;
      try {
        while (Date.now() < ends) {
          await sleep(between(3000, 9000));
          // etcd outages twice as often as each other fault: they are what issue 27 is about.
          const kind = pick(['kill', 'kill-leader', 'term', 'pause', 'etcd', 'etcd'] as const);
          const started = new Date().toISOString();
          if (kind === 'etcd') {
            const ms = between(3000, 12_000);
            faults.push(`${started} etcd stopped for ${Math.round(ms)} ms`);
            await cluster.etcd.stop();
            await sleep(ms);
            await cluster.etcd.start();
            continue;
          }
          // Drawn whatever the fault, so a seed replays the same sequence of draws.
          const drawn = pick(NODES);
          const node = kind === 'kill-leader' ? ((await leader()) ?? drawn) : drawn;
          if (kind === 'pause') {
            const ms = between(1000, 6000);
            faults.push(`${started} ${node} paused (SIGSTOP) for ${Math.round(ms)} ms`);
            cluster.agents.get(node)!.signal('SIGSTOP');
            paused.add(node);
            await sleep(ms);
            cluster.agents.get(node)!.signal('SIGCONT');
            paused.delete(node);
            continue;
          }
          const ms = between(500, 4000);
          faults.push(
            `${started} ${node} ${kind === 'term' ? 'stopped (SIGTERM)' : 'killed (SIGKILL)'}${kind === 'kill-leader' ? ' as leader' : ''}, restarted after ${Math.round(ms)} ms`,
          );
          down.add(node);
          if (kind === 'term') await cluster.agents.get(node)!.stop();
          else await cluster.agents.get(node)!.kill();
          await sleep(ms);
          // A node cannot start while etcd is away (docs/CLUSTER.md); none is away here.
          await cluster.start(node);
          down.delete(node);
        }
      } finally {
        clearInterval(writer);
        for (const db of handles) db.close();
      }
      const lastWrite = Date.now();
      const to = new Date();
      console.info(`faults (${faults.length}):\n  ${faults.join('\n  ')}`);

      // Settle: every database backed up after its last change, every outbox drained.
      await eventually(
        'a run of every database after the last write, and every outbox drained',
        async () => {
          const done = runsInEtcd().filter(
            (r) => r.outcome === 'succeeded' && r.startedAt && Date.parse(r.startedAt) > lastWrite,
          );
          if (!DATABASES.every((db) => done.some((r) => r.database === `shop/${db}`))) return undefined;
          const statuses = await Promise.all(NODES.map((n) => clusterStatus(cluster.agents.get(n)!.address)));
          return statuses.every((s) => s.pendingReports === 0) ? true : undefined;
        },
        60_000,
        500,
      );
      const disable = await ctl(
        cluster.agents.get('n1')!.address,
        ['task', 'update', 'soak', ...spec, '--disabled'],
        auth,
      );
      expect(disable.code, disable.stderr).toBe(0);
      await eventually(
        'no run of the task in progress',
        async () => (runsInEtcd().every((r) => r.outcome !== 'queued' && r.outcome !== 'running') ? true : undefined),
        30_000,
        500,
      );

      const manifests = readManifests(cluster.destDir, 'e2e');
      const { runs, claims } = readEtcdRecords(cluster.etcd, 'e2e', 'soak');
      const databases = DATABASES.map((db) => `shop/${db}`);
      const succeeded = runs.filter((r) => r.outcome === 'succeeded').length;
      console.info(
        `soak: ${runs.length} run records (${succeeded} succeeded), ${claims.length} tick claims, ${manifests.length} manifests`,
      );
      expect(succeeded, 'the soak ran backups').toBeGreaterThan(databases.length * 5);
      const violations = checkSoak(
        {
          manifests,
          runs,
          claims,
          runHistory: readRunHistory(cluster.etcd, 'e2e', 'soak'),
          databases,
          from,
          to,
          everySeconds: EVERY,
          maxDelayMs: MAX_DELAY_MS,
        },
        [...invariants, runStateInvariant],
      );
      expect(violations, `seed ${SEED}`).toEqual({});

      // The newest restore point of every database restores identical to its source.
      for (const database of databases) {
        const newest = newestRestorePoint(manifests, database)!;
        expect(newest, `${database} has a restore point`).toBeDefined();
        const target = `restored-${database.split('/')[1]!.replace('.db', '')}.db`;
        const restore = await ctl(
          cluster.agents.get('n1')!.address,
          [
            'restore',
            '--task',
            'soak',
            '--destination',
            'd',
            '--database',
            database,
            '--chain',
            newest.chainId,
            '--backup',
            newest.backupId,
            '--target',
            target,
          ],
          auth,
        );
        expect(restore.code, restore.stderr).toBe(0);
        expect(dump(join(cluster.dbDir, target)), `${database} restored from ${newest.backupId}`).toBe(
          dump(join(cluster.dbDir, database.split('/')[1]!)),
        );
      }
    },
    (SECONDS + 240) * 1000,
  );
});
