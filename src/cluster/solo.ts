// The single-node embedded default: this node is its own leader (term 0) and the responsible node of every
// unit whose source it has. The store is the local SQLite file (local-store.ts).

import type { Cluster, ClusterState, UnitOwner } from './cluster.js';
import type { MemberInfo, SourceInfo } from './membership.js';
import type { Store } from './store.js';

export class SoloCluster implements Cluster {
  readonly mode = 'single-node' as const;
  private sources: SourceInfo[] = [];

  constructor(
    readonly store: Store,
    private readonly self: Omit<MemberInfo, 'sources'>,
  ) {}

  databasesOf(source: string): string[] {
    return this.sources.find((s) => s.name === source)?.databases ?? [];
  }

  scopeOf(source: string): 'database' | 'server' {
    return this.sources.find((s) => s.name === source)?.snapshotScope ?? 'database';
  }

  hasSource(source: string): boolean {
    return this.sources.some((s) => s.name === source);
  }

  nodesWith(source: string): string[] {
    return this.hasSource(source) ? [this.self.node] : [];
  }

  owner(_task: string, database: string): UnitOwner {
    const source = database.split('/')[0] ?? '';
    return this.hasSource(source)
      ? { node: this.self.node, reason: 'single node: every unit whose source is here', term: 0 }
      : { node: '', reason: `no node has source ${source}`, term: 0 };
  }

  async announceSources(sources: SourceInfo[]): Promise<void> {
    this.sources = sources;
  }

  addressOf(node: string): string | undefined {
    return node === this.self.node ? this.self.address : undefined;
  }

  async state(): Promise<ClusterState> {
    return {
      leader: this.self.node,
      term: 0,
      members: [{ ...this.self, sources: this.sources, healthy: true }],
      leaderChanges: [],
      pendingReports: 0,
    };
  }

  isLeader(): boolean {
    return true;
  }

  onLeadershipChange(_listener: (leading: boolean) => void): () => void {
    // A single node leads from its start to its stop.
    return () => undefined;
  }

  watchLostSince(): undefined {
    return undefined;
  }

  onOwnershipChange(): () => void {
    // Ownership follows the sources, which the agent itself announces.
    return () => undefined;
  }

  async stop(): Promise<void> {
    await this.store.close();
  }
}
