// Membership: this node's entry under `members/<node>`, bound to a lease it keeps alive (so it disappears
// about one TTL after the node dies), and a watched view of every member. The lease's keepalives also tell
// whether this node is in contact with etcd: the leader steps down on that timer (leader.ts), because
// etcd3's `lost` event only fires after about twice the TTL. The lease is given up only when etcd says it
// expired, never on a client timer: etcd keeps leases alive across its own restart, so a node that was cut
// off only by an etcd outage keeps its member key, and its units stay (docs/CLUSTER.md, "etcd outages").

import { EventEmitter } from 'node:events';
import { EtcdLeaseInvalidError, type Lease, type Watcher } from 'etcd3';
import type { Logger } from 'pino';
import { messageOf } from '../errors.js';
import type { EtcdConnection } from './etcd-client.js';
import { keys } from './etcd-keys.js';

export interface SourceInfo {
  name: string;
  engine: string;
  snapshotScope: 'database' | 'server';
  databases: string[];
}

export interface MemberInfo {
  node: string;
  /** gRPC address other nodes forward calls to. */
  address: string;
  version: string;
  startedAt: string;
  sources: SourceInfo[];
  /**
   * True while the node holds reports made while etcd was unreachable (tick claims, unit states, runs) that
   * etcd does not have yet: the leader moves none of its units meanwhile (leader.ts).
   */
  settling?: boolean;
}

interface MembershipEvents {
  /** A member joined, left or changed what it can reach. */
  change: [];
}

export class Membership extends EventEmitter<MembershipEvents> {
  private readonly view = new Map<string, MemberInfo>();
  private lease: Lease | undefined;
  private watcher: Watcher | undefined;
  private lastContact = Date.now();
  private stopped = false;
  private renewing = false;
  private keepTimer: NodeJS.Timeout | undefined;
  private keeping = false;
  private outOfContact = false;

  private constructor(
    private readonly connection: EtcdConnection,
    private info: MemberInfo,
    private readonly log: Logger,
    private readonly settling: () => boolean,
  ) {
    super();
  }

  /** `settling` says whether this node holds reports etcd does not have yet (MemberInfo.settling). */
  static async start(
    connection: EtcdConnection,
    info: MemberInfo,
    logger: Logger,
    settling: () => boolean = () => false,
  ): Promise<Membership> {
    const membership = new Membership(connection, info, logger.child({ component: 'membership' }), settling);
    await membership.register();
    membership.keepTimer = setInterval(() => void membership.keepAlive(), (membership.ttlSeconds * 1000) / 3);
    await membership.watch();
    return membership;
  }

  get ttlSeconds(): number {
    return this.connection.config.leaseTtlSeconds;
  }

  /** Every live member, this node included once registered. */
  members(): MemberInfo[] {
    return [...this.view.values()].sort((a, b) => a.node.localeCompare(b.node));
  }

  member(node: string): MemberInfo | undefined {
    return this.view.get(node);
  }

  /**
   * True while this node's lease was renewed recently enough that it cannot have expired: a lease lives a
   * TTL after its last renewal, and this answers false from two thirds of that on.
   */
  connected(): boolean {
    return Date.now() - this.lastContact < (this.ttlSeconds * 1000 * 2) / 3;
  }

  /** Publish a change of what this node can reach (or of whether it is settling). */
  async update(info: MemberInfo = this.info): Promise<void> {
    this.info = info;
    if (!this.lease) return;
    try {
      await this.lease.put(keys.member(info.node)).value(this.memberRecord()).exec();
    } catch (error) {
      // The next registration (after etcd returns) writes the newest info.
      this.log.warn({ error: messageOf(error) }, 'could not announce this node in etcd');
    }
  }

  /** Leave the cluster at once (revoking the lease deletes the member key), so units move without waiting a TTL. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.keepTimer);
    await this.watcher?.cancel().catch(() => undefined);
    await this.lease?.revoke().catch(() => undefined);
  }

  private memberRecord(): string {
    return JSON.stringify({ ...this.info, settling: this.settling() });
  }

  private async register(): Promise<void> {
    // Kept alive by keepAlive() below, not by etcd3's loop, whose `lost` fires on a client timer.
    const lease = this.connection.ns.lease(this.ttlSeconds, { autoKeepAlive: false });
    try {
      await lease.put(keys.member(this.info.node)).value(this.memberRecord()).exec();
    } catch (error) {
      lease.release();
      throw error;
    }
    this.lease = lease;
    this.lastContact = Date.now();
    this.log.info({ ttlSeconds: this.ttlSeconds }, 'joined the cluster');
  }

  /**
   * One keepalive of the lease, every third of the TTL. Only etcd's answer that the lease is gone makes this
   * node register again; while etcd cannot be reached the lease is kept, since etcd may keep it alive.
   */
  private async keepAlive(): Promise<void> {
    const lease = this.lease;
    if (!lease || this.keeping || this.stopped) return;
    this.keeping = true;
    try {
      await lease.keepaliveOnce({ deadline: Date.now() + this.connection.config.callTimeoutSeconds * 1000 });
      this.lastContact = Date.now();
      if (this.outOfContact) {
        this.outOfContact = false;
        this.log.info('in contact with etcd again; the membership lease lived on');
        // Reports made meanwhile are in the outbox: say so before they are flushed (MemberInfo.settling).
        void this.update();
      }
    } catch (error) {
      if (this.stopped || lease !== this.lease) return;
      if (error instanceof EtcdLeaseInvalidError) {
        this.log.warn({ error: messageOf(error) }, 'etcd let the membership lease expire: registering again');
        this.outOfContact = false;
        void this.renew();
      } else if (!this.outOfContact && !this.connected()) {
        this.outOfContact = true;
        this.log.warn({ error: messageOf(error) }, 'no contact with etcd: keeping the membership lease meanwhile');
      }
    } finally {
      this.keeping = false;
    }
  }

  /** Register under a new lease, retrying until etcd answers. */
  private async renew(): Promise<void> {
    if (this.renewing) return;
    this.renewing = true;
    const old = this.lease;
    this.lease = undefined;
    old?.release();
    try {
      while (!this.stopped) {
        try {
          await this.register();
          return;
        } catch (error) {
          this.log.debug({ error: messageOf(error) }, 'etcd still unreachable');
          await new Promise((resolve) => setTimeout(resolve, 500));
        }
      }
    } finally {
      this.renewing = false;
    }
  }

  private async watch(): Promise<void> {
    const all = await this.connection.ns.getAll().prefix(keys.members).exec();
    for (const kv of all.kvs)
      this.view.set(kv.key.toString().slice(keys.members.length), JSON.parse(kv.value.toString()));
    const watcher = await this.connection.ns
      .watch()
      .prefix(keys.members)
      .startRevision(String(Number(all.header.revision) + 1))
      .create();
    watcher.on('put', (kv) => {
      this.view.set(kv.key.toString().slice(keys.members.length), JSON.parse(kv.value.toString()) as MemberInfo);
      this.emit('change');
    });
    watcher.on('delete', (kv) => {
      const node = kv.key.toString().slice(keys.members.length);
      this.view.delete(node);
      this.log.info({ member: node }, 'member left');
      this.emit('change');
    });
    watcher.on('error', (error) => this.log.warn({ error: messageOf(error) }, 'member watch failed'));
    this.watcher = watcher;
    this.emit('change');
  }
}
