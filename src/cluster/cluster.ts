// What the agent asks of the cluster layer: the store, which databases exist cluster-wide, who is
// responsible for each unit, and where other nodes are. The single-node embedded default (solo.ts) answers
// from this node alone; a cluster (etcd-cluster.ts) answers from etcd. The cluster layer decides *who* runs
// a unit; it never touches backup data.

import type { LeaderChange } from './leader.js';
import type { MemberInfo, SourceInfo } from './membership.js';
import type { Store } from './store.js';

export interface UnitOwner {
  /** Empty when no live node can take the unit. */
  node: string;
  reason: string;
  /** Term of the leader that assigned it (0 on a single node): the fencing token stamped on its backups. */
  term: number;
}

export interface ClusterState {
  leader: string;
  term: number;
  /** Live members; `healthy` is false for this node while it has lost contact with etcd. */
  members: (MemberInfo & { healthy: boolean })[];
  leaderChanges: LeaderChange[];
  /** Reports waiting in this node's outbox for etcd. */
  pendingReports: number;
}

export interface Cluster {
  readonly mode: 'single-node' | 'etcd';
  readonly store: Store;
  /** Every database of a source that some live node reports, sorted. */
  databasesOf(source: string): string[];
  /** Whether a source is a per-database or a per-server snapshot source (the first node reporting it says). */
  scopeOf(source: string): 'database' | 'server';
  /** Whether some live node has the source. */
  hasSource(source: string): boolean;
  /** The live nodes that have the source, this one first when it does. */
  nodesWith(source: string): string[];
  /**
   * True while this node holds reports made while etcd was unreachable that etcd does not have yet: it then
   * schedules no unit it was not scheduling already (etcd only).
   */
  settling?(): boolean;
  /** The unit's responsible node, undefined while it has none yet. */
  owner(task: string, database: string): UnitOwner | undefined;
  /** Announce what this node's sources hold now (in etcd: its member record). */
  announceSources(sources: SourceInfo[]): Promise<void>;
  /** The gRPC address of a live member. */
  addressOf(node: string): string | undefined;
  state(): Promise<ClusterState>;
  /** Whether this node is the leader now (a single node always is). */
  isLeader(): boolean;
  /** Called when this node wins (true) or loses (false) leadership. Returns an unsubscribe. */
  onLeadershipChange(listener: (leading: boolean) => void): () => void;
  /**
   * Since when (ms since the epoch) this node has missed changes to tasks and assignments because its watch
   * is down; undefined while it hears of every change (always, on a single node).
   */
  watchLostSince(): number | undefined;
  /** Called whenever the units this node is responsible for may have changed. Returns an unsubscribe. */
  onOwnershipChange(listener: () => void): () => void;
  stop(): Promise<void>;
}
