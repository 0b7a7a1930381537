// Tick claims of a cluster in etcd (`ticks/...`, etcd-keys.ts), for the etcd store (etcd-store.ts): a tick is
// claimed create-if-absent, so it runs once cluster-wide; a claim made while etcd is unreachable waits in the
// outbox, and the outbox remembers every tick this node claimed, so it never claims one twice.

import type { Logger } from 'pino';
import { messageOf } from '../errors.js';
import { type EtcdConnection, etcdFailure, isUnreachable } from './etcd-client.js';
import { keys } from './etcd-keys.js';
import type { Outbox } from './outbox.js';
import type { TickKind } from './store.js';

export interface EtcdTicksDeps {
  connection: EtcdConnection;
  /** This node's name, written in its claims. */
  node: string;
  outbox: Outbox;
  log: Logger;
  /** Tick claims expire after this long; the unit's cursor covers them by then. */
  tickTtlSeconds: number;
  now: () => Date;
}

export class EtcdTicks {
  private claimsLease: { id: string; grantedAt: number } | undefined;

  constructor(private readonly deps: EtcdTicksDeps) {}

  /** As Store.claimTick. */
  async claim(task: string, database: string, level: TickKind, scheduledAt: string): Promise<boolean> {
    const key = keys.tick(task, database, level, scheduledAt);
    // A tick this node claimed before, through etcd or locally, also before a restart: never again, whatever
    // the unit's cursor says (a mirror that lags, a claim already flushed from the outbox).
    if (this.deps.outbox.has(key) || this.deps.outbox.claimed(key)) return false;
    const value = JSON.stringify({ claimedAt: this.deps.now().toISOString(), node: this.deps.node });
    const remember = () =>
      this.deps.outbox.remember(
        key,
        { task, database, kind: level, scheduledAt },
        Date.now() + this.deps.tickTtlSeconds * 1000,
      );
    // Always asked of etcd first, whatever the outbox holds: a node that can reach etcd never runs a tick
    // another node claimed (a claim does not depend on the order of the reports waiting in the outbox).
    try {
      const claimed = await this.createIfAbsent(key, value);
      if (claimed) remember();
      return claimed;
    } catch (error) {
      if (!isUnreachable(error)) throw etcdFailure(this.deps.connection.config, 'claiming a tick', error);
      this.deps.log.warn(
        { task, database, level, scheduledAt, error: messageOf(error) },
        'etcd unreachable: claiming a tick locally',
      );
    }
    // etcd is unreachable: the owner runs its units anyway (DESIGN.md, "Cluster down"); the claim is written
    // when etcd returns. Another node may then have run the tick too, which the flush logs.
    this.deps.outbox.add({ key, value, kind: 'claim' });
    remember();
    return true;
  }

  /** Create a tick claim unless one exists: false when one did (the outbox flush claims through here too). */
  async createIfAbsent(key: string, value: string): Promise<boolean> {
    const lease = await this.tickLease();
    const result = await this.deps.connection.ns
      .if(key, 'Create', '==', 0)
      .then(this.deps.connection.ns.put(key).value(value).lease(lease))
      .commit();
    return result.succeeded;
  }

  /**
   * Tick claims hang on a lease of this node that is never kept alive, so they expire on their own; a new one
   * is granted every half TTL, so a claim lives at least half the TTL.
   */
  private async tickLease(): Promise<string> {
    const at = Date.now();
    if (!this.claimsLease || at - this.claimsLease.grantedAt > (this.deps.tickTtlSeconds * 1000) / 2) {
      const lease = this.deps.connection.client.lease(this.deps.tickTtlSeconds, { autoKeepAlive: false });
      this.claimsLease = { id: await lease.grant(), grantedAt: at };
    }
    return this.claimsLease.id;
  }
}
