// Membership across an etcd restart, against a real etcd 3.4: etcd keeps leases alive across its own restart,
// so a node cut off only by the outage keeps its member key (same lease, never deleted) and its units stay,
// although etcd3's own client timer would have declared the lease lost after two TTLs. The figures printed
// here are the ones docs/CLUSTER.md quotes.

import type { Lease } from 'etcd3';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectEtcd, type EtcdConnection } from '../../src/cluster/etcd-client.js';
import { Membership } from '../../src/cluster/membership.js';
import { eventually } from '../harness/agent.js';
import { type EtcdServer, startEtcd } from '../harness/etcd.js';

const TTL = 2;
const OUTAGE_MS = 3 * TTL * 1000;

describe('membership across an etcd restart', () => {
  let etcd: EtcdServer;
  let connection: EtcdConnection;
  let membership: Membership | undefined;

  beforeAll(async () => {
    etcd = await startEtcd();
    connection = connectEtcd(
      { endpoints: [etcd.endpoint], leaseTtlSeconds: TTL, callTimeoutSeconds: 1, startTimeoutSeconds: 10 },
      'membership-test',
    );
  }, 30_000);
  afterAll(async () => {
    await membership?.stop();
    connection?.close();
    await etcd?.close();
  });

  const memberKey = () => {
    // Read from the text: a lease id is 64 bits, more than a JSON number keeps.
    const out = etcd.ctl(['get', '/backupd/membership-test/members/n1', '-w', 'json']);
    const lease = /"lease":(\d+)/.exec(out)?.[1];
    const created = /"create_revision":(\d+)/.exec(out)?.[1];
    return lease && created ? { lease: BigInt(lease).toString(16), created: Number(created) } : undefined;
  };
  const ttlLeft = (leaseHex: string) => {
    const line = etcd.ctl(['lease', 'timetolive', leaseHex]);
    const match = /remaining\((-?\d+)s\)/.exec(line);
    return match ? Number(match[1]) : Number.NaN;
  };

  it(`keeps its member key on the same lease through an etcd outage of ${OUTAGE_MS / 1000} s (3 TTLs)`, async () => {
    let outboxPending = false;
    membership = await Membership.start(
      connection,
      { node: 'n1', address: '127.0.0.1:1', version: 'test', startedAt: new Date().toISOString(), sources: [] },
      pino({ level: 'silent' }),
      () => outboxPending,
    );
    const before = memberKey();
    expect(before).toBeDefined();
    // etcd3's own keepalive loop on a lease beside it, to measure when its client timer says "lost".
    const plain: Lease = connection.client.lease(TTL);
    const plainId = BigInt(await plain.grant()).toString(16);
    let lostAfterMs: number | undefined;

    await etcd.stop();
    const stoppedAt = Date.now();
    // Reports made during the outage wait in the outbox: back in contact, the member key says it is settling.
    outboxPending = true;
    plain.on('lost', () => {
      lostAfterMs = Date.now() - stoppedAt;
    });
    await new Promise((resolve) => setTimeout(resolve, OUTAGE_MS));
    await etcd.start();
    const restartedAt = Date.now();
    const plainLeft = ttlLeft(plainId);
    const memberLeft = ttlLeft(before!.lease);
    await eventually('contact with etcd again', async () => (membership!.connected() ? true : undefined), 20_000, 50);
    const backMs = Date.now() - restartedAt;
    // Longer than a TTL after etcd is back: a lease nobody renewed would have expired by now.
    await new Promise((resolve) => setTimeout(resolve, 2 * TTL * 1000));
    const after = memberKey();
    const published = JSON.parse(etcd.ctl(['get', '--print-value-only', '/backupd/membership-test/members/n1'])) as {
      settling?: boolean;
    };
    expect(published.settling, 'the member key says the node is settling').toBe(true);
    console.info(
      `etcd down ${OUTAGE_MS} ms, TTL ${TTL} s: etcd3's client "lost" fired ${lostAfterMs ?? 'never'} ms after etcd stopped; ` +
        `right after etcd's restart the leases had ${plainLeft} s and ${memberLeft} s to live (etcd kept them); ` +
        `this node renewed its member lease ${backMs} ms after etcd was back`,
    );
    plain.release();
    expect(lostAfterMs, 'etcd3 declares the lease lost on its client timer').toBeDefined();
    expect(memberLeft, 'etcd kept the member lease alive across its restart').toBeGreaterThan(0);
    expect(after, 'the member key is still there').toBeDefined();
    expect(after!.lease, 'on the same lease').toBe(before!.lease);
    expect(after!.created, 'never deleted and created again').toBe(before!.created);
  }, 60_000);
});
