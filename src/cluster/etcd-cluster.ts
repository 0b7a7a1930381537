// A node of a cluster on etcd: the connection, the etcd store (tasks, statuses, assignments, outbox),
// membership under a lease, and the campaign for leadership. Ownership of a unit is what the leader last
// assigned; while etcd is unreachable the node keeps the units it had (DESIGN.md, "Cluster down"), and until
// its outbox has reached etcd again it takes no unit it did not run already.

import type { Logger } from 'pino';
import type { Cluster, ClusterState, UnitOwner } from './cluster.js';
import { connectEtcd, type EtcdConfig, type EtcdConnection, untilEtcdAnswers, waitForEtcd } from './etcd-client.js';
import { EtcdStore } from './etcd-store.js';
import { Leadership, sourceView } from './leader.js';
import { type MemberInfo, Membership, type SourceInfo } from './membership.js';

const CHANGE_DEBOUNCE_MS = 50;

export interface EtcdClusterOptions {
  etcd: EtcdConfig;
  cluster: string;
  self: MemberInfo;
  dataDir: string;
  logger: Logger;
  now?: () => Date;
  /** Aborts a start still waiting for etcd (a SIGTERM): it then throws CANCELLED. */
  signal?: AbortSignal;
}

export class EtcdCluster implements Cluster {
  readonly mode = 'etcd' as const;
  private readonly listeners = new Set<() => void>();
  private changeTimer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly connection: EtcdConnection,
    readonly store: EtcdStore,
    private readonly membership: Membership,
    readonly leadership: Leadership,
    private self: MemberInfo,
  ) {}

  static async start(options: EtcdClusterOptions): Promise<EtcdCluster> {
    const log = options.logger.child({ component: 'cluster' });
    const connection = connectEtcd(options.etcd, options.cluster);
    try {
      // Every step that reads etcd is retried while etcd is unreachable, until startTimeoutSeconds: etcd may
      // answer the first read and be gone for the next.
      await waitForEtcd(connection, options.signal);
      const store = await untilEtcdAnswers(
        options.etcd,
        () =>
          EtcdStore.open({
            connection,
            node: options.self.node,
            dataDir: options.dataDir,
            logger: log,
            now: options.now,
          }),
        options.signal,
      );
      let membership: Membership;
      try {
        membership = await untilEtcdAnswers(
          options.etcd,
          () => Membership.start(connection, options.self, log, () => store.pendingReports > 0),
          options.signal,
        );
      } catch (error) {
        await store.close();
        throw error;
      }
      const leadership = new Leadership(connection, options.self.node, membership, store, log);
      const cluster = new EtcdCluster(connection, store, membership, leadership, options.self);
      store.subscribe((event) => {
        if (event.kind === 'assignment' || event.kind === 'task') cluster.changed();
        // Tell the leader this node's reports are in etcd (MemberInfo.settling), and take held units.
        if (event.kind === 'settled') {
          void membership.update();
          cluster.changed();
        }
      });
      membership.on('change', () => cluster.changed());
      leadership.start();
      return cluster;
    } catch (error) {
      connection.close();
      throw error;
    }
  }

  databasesOf(source: string): string[] {
    return sourceView(this.membership.members()).get(source)?.databases ?? [];
  }

  scopeOf(source: string): 'database' | 'server' {
    return sourceView(this.membership.members()).get(source)?.scope ?? 'database';
  }

  hasSource(source: string): boolean {
    return this.membership.members().some((m) => m.sources.some((s) => s.name === source));
  }

  nodesWith(source: string): string[] {
    return this.membership
      .members()
      .filter((m) => m.sources.some((s) => s.name === source))
      .map((m) => m.node)
      .sort((a, b) => Number(b === this.self.node) - Number(a === this.self.node));
  }

  settling(): boolean {
    return this.store.pendingReports > 0;
  }

  owner(task: string, database: string): UnitOwner | undefined {
    const assignment = this.store.assignment(task, database);
    return assignment && { node: assignment.node, reason: assignment.reason, term: assignment.term };
  }

  async announceSources(sources: SourceInfo[]): Promise<void> {
    this.self = { ...this.self, sources };
    await this.membership.update(this.self);
  }

  addressOf(node: string): string | undefined {
    return this.membership.member(node)?.address;
  }

  async state(): Promise<ClusterState> {
    const leader = await this.leadership.current();
    const connected = this.membership.connected();
    return {
      leader: leader?.node ?? '',
      term: leader?.term ?? 0,
      members: this.membership.members().map((m) => ({ ...m, healthy: m.node === this.self.node ? connected : true })),
      leaderChanges: await this.leadership.history(),
      pendingReports: this.store.pendingReports,
    };
  }

  isLeader(): boolean {
    return this.leadership.isLeader();
  }

  onLeadershipChange(listener: (leading: boolean) => void): () => void {
    this.leadership.on('change', listener);
    return () => {
      this.leadership.off('change', listener);
    };
  }

  watchLostSince(): number | undefined {
    return this.store.watchLostSince;
  }

  onOwnershipChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** Leave the cluster (units move at once), then close the store and the connection. */
  async stop(): Promise<void> {
    clearTimeout(this.changeTimer);
    await this.leadership.stop();
    await this.membership.stop();
    await this.store.close();
    this.connection.close();
  }

  /** Coalesced: a pass that reassigns thousands of units is one change for the agent. */
  private changed(): void {
    if (this.changeTimer) return;
    this.changeTimer = setTimeout(() => {
      this.changeTimer = undefined;
      for (const listener of this.listeners) listener();
    }, CHANGE_DEBOUNCE_MS);
  }
}
