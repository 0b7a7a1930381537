// The guards of the etcd store against a real etcd 3.4, judged from etcd's own records (etcdctl), never from
// the store's answers: a node that can reach etcd claims ticks through etcd even with reports waiting in its
// outbox; a unit's state from an old owner (directly or flushed from its outbox) never overwrites the new
// owner's; a run record never moves back, whichever write lands last, also from the outbox.

import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectEtcd, type EtcdConnection } from '../../src/cluster/etcd-client.js';
import { clusterPrefix, keys } from '../../src/cluster/etcd-keys.js';
import { EtcdStore } from '../../src/cluster/etcd-store.js';
import type { RunRecord, UnitState } from '../../src/cluster/store.js';
import { eventually } from '../harness/agent.js';
import { type EtcdServer, startEtcd } from '../harness/etcd.js';
import { tempDir } from '../harness/process.js';

const CLUSTER = 'guards';
const UNIT = ['t', 'main/app.db'] as const;

function run(runId: string, outcome: RunRecord['outcome']): RunRecord {
  return {
    runId,
    task: 't',
    database: 'main/app.db',
    type: 'backup',
    level: 'full',
    trigger: 'schedule',
    outcome,
    node: 'n1',
    queuedAt: '2026-11-23T00:00:00.000Z',
    rawBytes: 0,
    storedBytes: 0,
    destinations: [],
  };
}

describe('the etcd store guards', () => {
  let etcd: EtcdServer;
  const dirs: ReturnType<typeof tempDir>[] = [];
  const connections: EtcdConnection[] = [];
  const stores: EtcdStore[] = [];

  /** etcd's own value of a key under the cluster (etcdctl), or undefined. */
  const stored = (key: string): string | undefined => {
    const out = etcd.ctl(['get', '--print-value-only', `${clusterPrefix(CLUSTER)}${key}`]).trim();
    return out === '' ? undefined : out;
  };
  const storedRun = (runId: string) => JSON.parse(stored(keys.run(runId)) ?? 'null') as RunRecord | null;
  const storedUnit = () => JSON.parse(stored(keys.unitStatus(...UNIT)) ?? 'null') as UnitState | null;
  const assign = (node: string, term: number) =>
    etcd.ctl([
      'put',
      `${clusterPrefix(CLUSTER)}${keys.assignment(...UNIT)}`,
      JSON.stringify({ node, term, reason: 'test', at: new Date().toISOString() }),
    ]);

  /** A store of node `node` whose outbox is flushed only when the test says so. */
  const open = async (node: string) => {
    const dir = tempDir(`guards-${node}`);
    dirs.push(dir);
    const connection = connectEtcd(
      { endpoints: [etcd.endpoint], leaseTtlSeconds: 2, callTimeoutSeconds: 1, startTimeoutSeconds: 10 },
      CLUSTER,
    );
    connections.push(connection);
    const store = await EtcdStore.open({
      connection,
      node,
      dataDir: dir.path,
      logger: pino({ level: 'silent' }),
      flushIntervalMs: 3_600_000,
    });
    stores.push(store);
    return store;
  };

  /** Run `during` while etcd is stopped, so what the store writes goes to its outbox. */
  const withEtcdDown = async (during: () => Promise<void>) => {
    await etcd.stop();
    try {
      await during();
    } finally {
      await etcd.start();
    }
  };

  beforeAll(async () => {
    etcd = await startEtcd();
  }, 30_000);
  afterAll(async () => {
    for (const s of stores) await s.close();
    for (const c of connections) c.close();
    await etcd?.close();
    for (const d of dirs) d.remove();
  });

  it('claims through etcd whenever etcd answers, even with reports waiting in the outbox', async () => {
    const a = await open('n1');
    const b = await open('n2');
    await withEtcdDown(async () => {
      await a.putRun(run('claim-outbox-01', 'running'));
    });
    expect(a.pendingReports).toBe(1);
    const at = '2026-11-23T05:00:00.000Z';
    expect(await b.claimTick(...UNIT, 'full', at)).toBe(true);
    // etcd is back, the report still waits: the claim is etcd's answer, and b already has the tick.
    expect(await a.claimTick(...UNIT, 'full', at)).toBe(false);
    expect(a.pendingReports).toBe(1);
    // A tick nobody claimed is claimed in etcd itself, not in the outbox.
    expect(await a.claimTick(...UNIT, 'full', '2026-11-23T06:00:00.000Z')).toBe(true);
    expect(stored(keys.tick(...UNIT, 'full', '2026-11-23T06:00:00.000Z'))).toBeDefined();
    expect(a.pendingReports).toBe(1);
    await a.flush();
    expect(a.pendingReports).toBe(0);
  }, 60_000);

  it('never lets an old owner’s report, direct or from its outbox, overwrite the new owner’s unit state', async () => {
    const a = await open('n1');
    const b = await open('n2');
    assign('n1', 5);
    await eventually('n1 to see its assignment', async () => (a.assignment(...UNIT)?.node === 'n1' ? true : undefined));
    await a.updateUnitStatus(...UNIT, (u) => ({ ...u, cursor: { full: '2026-11-23T01:00:00.000Z' } }));
    expect(storedUnit()?.cursor.full).toBe('2026-11-23T01:00:00.000Z');
    // n1 reports a tick while etcd is away; meanwhile the unit moves to n2, which runs a later tick.
    await withEtcdDown(async () => {
      await a.updateUnitStatus(...UNIT, (u) => ({ ...u, cursor: { full: '2026-11-23T02:00:00.000Z' } }));
    });
    expect(a.pendingReports).toBe(1);
    assign('n2', 6);
    await eventually('n2 to see its assignment', async () => (b.assignment(...UNIT)?.node === 'n2' ? true : undefined));
    await b.updateUnitStatus(...UNIT, (u) => ({ ...u, cursor: { full: '2026-11-23T03:00:00.000Z' } }));
    await a.flush();
    expect(a.pendingReports).toBe(0);
    expect(storedUnit()?.cursor.full).toBe('2026-11-23T03:00:00.000Z');
    // A direct report of n1, which no longer holds the unit, is dropped too, and n1 gets etcd's state back.
    await eventually('n1 to see the move', async () => (a.assignment(...UNIT)?.node === 'n2' ? true : undefined));
    const answer = await a.updateUnitStatus(...UNIT, (u) => ({ ...u, cursor: { full: '2026-11-23T00:30:00.000Z' } }));
    expect(storedUnit()?.cursor.full).toBe('2026-11-23T03:00:00.000Z');
    expect(answer.cursor.full).toBe('2026-11-23T03:00:00.000Z');
    // The report carries the term of the assignment it was made under.
    expect(storedUnit()?.reportedUnder?.term).toBe(6);
    // The leader writing the same node's assignment again (a new revision) does not cost the owner a report
    // made before its watch brought the new revision.
    assign('n2', 7);
    await b.updateUnitStatus(...UNIT, (u) => ({ ...u, cursor: { full: '2026-11-23T04:00:00.000Z' } }));
    expect(storedUnit()?.cursor.full).toBe('2026-11-23T04:00:00.000Z');
    expect(storedUnit()?.reportedUnder?.term).toBe(7);
  }, 60_000);

  it('never moves a run record back, whichever write lands last', async () => {
    const a = await open('n1');
    const b = await open('n2');
    // The running report lands first, the queued one after it: etcd keeps running.
    await a.putRun(run('forward-01', 'running'));
    const queuedAfter = await b.putRun(run('forward-01', 'queued'));
    expect(storedRun('forward-01')?.outcome).toBe('running');
    expect(queuedAfter).toBe(false);
    // Two writers at once, many times: the record ends running every time.
    for (let i = 0; i < 20; i++) {
      const id = `forward-race-${String(i).padStart(2, '0')}`;
      await Promise.all([a.putRun(run(id, 'queued')), b.putRun(run(id, 'running'))]);
      expect(storedRun(id)?.outcome).toBe('running');
    }
    // An outcome is final: neither running nor another outcome replaces it.
    await a.putRun(run('forward-01', 'succeeded'));
    const answers = [await b.putRun(run('forward-01', 'running')), await b.putRun(run('forward-01', 'interrupted'))];
    expect(storedRun('forward-01')?.outcome).toBe('succeeded');
    expect(answers).toEqual([false, false]);
    // From the outbox: a queued report made while etcd was away does not undo the running one written since.
    await withEtcdDown(async () => {
      await a.putRun(run('forward-02', 'queued'));
    });
    await b.putRun(run('forward-02', 'running'));
    await a.flush();
    expect(a.pendingReports).toBe(0);
    expect(storedRun('forward-02')?.outcome).toBe('running');
  }, 60_000);
});
