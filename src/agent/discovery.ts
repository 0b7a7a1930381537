// Database discovery: which databases each of this node's sources holds, listed at start and every
// `discoverySeconds`, and the databases a source leaves out (warned of when they change). The agent
// publishes what it finds to the cluster (SourceInfo) and re-plans its units when a list changed.

import type { Logger } from 'pino';
import type { SourceInfo } from '../cluster/membership.js';
import { messageOf } from '../errors.js';
import type { Source } from '../sources/source.js';
import type { DatabaseView, LeftOutView } from './operations.js';

export class Discovery {
  /** Databases each source held at the last discovery. */
  private readonly discovered = new Map<string, string[]>();
  /** The left-out databases last warned of, per source (names joined). */
  private readonly leftOutWarned = new Map<string, string>();

  private constructor(
    private readonly sources: Map<string, Source>,
    private readonly log: Logger,
  ) {}

  /** The first listing of every source (a source that cannot be listed now holds none yet). */
  static async start(sources: Map<string, Source>, log: Logger): Promise<Discovery> {
    const discovery = new Discovery(sources, log);
    for (const source of sources.values()) {
      discovery.discovered.set(source.name, (await listNames(source, log)) ?? []);
    }
    return discovery;
  }

  /** What this node's sources hold, as the cluster publishes it. */
  infos(): SourceInfo[] {
    return [...this.sources.values()].map((s) => ({
      name: s.name,
      engine: s.engine,
      snapshotScope: s.snapshotScope,
      databases: this.discovered.get(s.name) ?? [],
    }));
  }

  /** The databases each source leaves out, as they are now. */
  async leftOut(): Promise<LeftOutView[]> {
    const views: LeftOutView[] = [];
    for (const source of this.sources.values()) {
      for (const db of (await source.listLeftOut?.()) ?? []) views.push({ source: source.name, ...db });
    }
    return views;
  }

  /** Every database of this node's sources, as they are now. */
  async databases(): Promise<DatabaseView[]> {
    const views: DatabaseView[] = [];
    for (const source of this.sources.values()) {
      for (const db of await source.listDatabases()) {
        views.push({
          source: source.name,
          name: db.name,
          engine: source.engine,
          sizeBytes: db.sizeBytes,
          types: [...source.types],
        });
      }
    }
    return views;
  }

  /** List every source's databases again; true when some source's list changed. */
  async refresh(): Promise<boolean> {
    let changed = false;
    for (const source of this.sources.values()) {
      // Asked at once: a postgres source answers both from one psql (PgCatalog.databases).
      const [names] = await Promise.all([listNames(source, this.log), this.reportLeftOut(source)]);
      if (names === undefined) continue;
      const before = this.discovered.get(source.name);
      if (before?.join('\n') !== names.join('\n')) {
        if (before) this.log.info({ source: source.name, databases: names }, 'databases changed');
        this.discovered.set(source.name, names);
        changed = true;
      }
    }
    return changed;
  }

  /**
   * Warn of the databases a source leaves out (listLeftOut) when they differ from the last warning: a
   * server-wide task backs up every database but those, and an operator must hear of them.
   */
  async reportLeftOut(source: Source): Promise<void> {
    const leftOut = await source.listLeftOut?.().catch(() => undefined); // listNames warns of a failed listing
    if (!leftOut) return;
    const names = leftOut.map((d) => d.name);
    if ((this.leftOutWarned.get(source.name) ?? '') === names.join('\n')) return;
    this.leftOutWarned.set(source.name, names.join('\n'));
    if (names.length > 0) {
      this.log.warn(
        { source: source.name, databases: names, reason: leftOut[0]!.reason },
        'databases left out: no task can back them up',
      );
    }
  }
}

/** A source's database names, sorted; undefined (logged) when it cannot be listed now. */
async function listNames(source: Source, log: Logger): Promise<string[] | undefined> {
  try {
    return (await source.listDatabases()).map((d) => d.name).sort();
  } catch (error) {
    log.warn({ source: source.name, error: messageOf(error) }, 'cannot list databases');
    return undefined;
  }
}
