// Leadership: every node campaigns with the etcd3 Election API; the elected one assigns each unit a
// responsible node (assign.ts) and writes the assignments in transactions that hold only while its election
// key still exists (fencing), stamped with its term (the election key's create revision). It steps down on
// its own timer when its lease may have expired (membership.ts), not when etcd3 says so two TTLs later.
// A unit moves only when its owner can hold no unreported claims: not while the owner says it is settling
// (its outbox is not in etcd yet), and not within a grace after this leader took over (an owner missing then
// may be re-registering after an etcd outage, docs/CLUSTER.md).

import { EventEmitter } from 'node:events';
import type { Campaign, Election } from 'etcd3';
import type { Logger } from 'pino';
import { BackupdError, messageOf } from '../errors.js';
import { sourceUnits, taskDatabases } from '../task.js';
import { assignUnits, type MemberReach, type UnitToAssign } from './assign.js';
import type { EtcdConnection } from './etcd-client.js';
import { keys } from './etcd-keys.js';
import type { Assignment, EtcdStore } from './etcd-store.js';
import type { MemberInfo, Membership } from './membership.js';

export interface LeaderChange {
  node: string;
  term: number;
  at: string;
}

/** How one assignment pass went, for logs, cluster status and the scale benchmark. */
export interface AssignPass {
  at: string;
  units: number;
  written: number;
  removed: number;
  ms: number;
}

interface LeadershipEvents {
  /** This node became leader or stopped being leader. */
  change: [boolean];
  /** An assignment pass wrote something. */
  assigned: [AssignPass];
}

const HISTORY = 20;
const BATCH = 100;
const PARALLEL_TXNS = 4;
const CHECK_MS = 200;
const PERIODIC_PASS_MS = 5000;
const DEBOUNCE_MS = 50;
/** After an election, units of owners that are not members wait this many lease TTLs before they move. */
export const GRACE_TTLS = 3;

export class Leadership extends EventEmitter<LeadershipEvents> {
  private readonly election: Election;
  private campaign: Campaign | undefined;
  private leading: { term: number; key: string; since: number } | undefined;
  private checkTimer: NodeJS.Timeout | undefined;
  private passTimer: NodeJS.Timeout | undefined;
  private periodic: NodeJS.Timeout | undefined;
  private passing: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  lastPass: AssignPass | undefined;

  constructor(
    private readonly connection: EtcdConnection,
    private readonly node: string,
    private readonly membership: Membership,
    private readonly store: EtcdStore,
    private readonly log: Logger,
  ) {
    super();
    this.election = connection.ns.election(keys.election, membership.ttlSeconds);
  }

  start(): void {
    this.campaignNow();
    this.checkTimer = setInterval(() => this.check(), CHECK_MS);
    this.periodic = setInterval(() => this.requestPass(), PERIODIC_PASS_MS);
    this.membership.on('change', () => this.requestPass());
    this.store.subscribe((event) => {
      if (event.kind === 'task' || event.kind === 'assignment') this.requestPass();
    });
  }

  isLeader(): boolean {
    return this.leading !== undefined;
  }

  get term(): number {
    return this.leading?.term ?? 0;
  }

  /** The current leader and term as etcd has them (any node can ask); undefined when there is none or etcd is unreachable. */
  async current(): Promise<{ node: string; term: number } | undefined> {
    try {
      return await this.electionHead();
    } catch {
      return undefined;
    }
  }

  /** The oldest election key: the leader's, its create revision the term. */
  private async electionHead(): Promise<{ node: string; term: number; key: string } | undefined> {
    const result = await this.connection.ns
      .getAll()
      .prefix(`election/${keys.election}/`)
      .sort('Create', 'Ascend')
      .limit(1)
      .exec();
    const kv = result.kvs[0];
    return kv && { node: kv.value.toString(), term: Number(kv.create_revision), key: kv.key.toString() };
  }

  /** The last leader changes, for cluster status; empty when they cannot be read now (etcd away). */
  async history(): Promise<LeaderChange[]> {
    try {
      return (await this.readHistory()).changes;
    } catch {
      return [];
    }
  }

  /** The leader history and its key's revision (0: none yet); throws when it cannot be read. */
  private async readHistory(): Promise<{ changes: LeaderChange[]; revision: number }> {
    const kv = (await this.connection.ns.get(keys.leaderHistory).exec()).kvs[0];
    if (!kv) return { changes: [], revision: 0 };
    let changes: unknown;
    try {
      changes = JSON.parse(kv.value.toString());
    } catch (error) {
      throw new BackupdError('INTERNAL', `the leader history in etcd is not JSON: ${messageOf(error)}`);
    }
    if (!Array.isArray(changes)) throw new BackupdError('INTERNAL', 'the leader history in etcd is not a list');
    return { changes: changes as LeaderChange[], revision: Number(kv.mod_revision) };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.checkTimer);
    clearInterval(this.periodic);
    clearTimeout(this.passTimer);
    await this.passing;
    this.leading = undefined;
    await this.campaign?.resign().catch(() => undefined);
  }

  // ---- inside ----

  private campaignNow(): void {
    if (this.stopped || this.campaign) return;
    const campaign = this.election.campaign(this.node);
    this.campaign = campaign;
    campaign.on('elected', () => {
      if (campaign === this.campaign) void this.becomeLeader(campaign);
    });
    campaign.on('error', (error) => {
      if (campaign !== this.campaign) return;
      this.log.warn({ error: messageOf(error) }, 'campaign failed');
      this.stepDown('the campaign failed');
    });
  }

  private async becomeLeader(campaign: Campaign): Promise<void> {
    try {
      const head = await this.electionHead();
      if (!head || head.node !== this.node || campaign !== this.campaign) {
        throw new Error('the election key is not this node’s');
      }
      this.leading = { term: head.term, key: head.key, since: Date.now() };
    } catch (error) {
      this.log.warn({ error: messageOf(error) }, 'elected, but could not read the election key');
      this.stepDown('could not confirm leadership');
      return;
    }
    this.log.info({ term: this.leading.term }, 'became leader');
    this.emit('change', true);
    await this.recordChange().catch((error: unknown) =>
      this.log.warn({ error: messageOf(error) }, 'could not record the leader change'),
    );
    this.requestPass();
  }

  /** Stop acting as leader now; campaign again once in contact with etcd. */
  private stepDown(why: string): void {
    const was = this.leading;
    this.leading = undefined;
    const campaign = this.campaign;
    this.campaign = undefined;
    void campaign?.resign().catch(() => undefined);
    if (was) {
      this.log.warn({ term: was.term, why }, 'stepped down as leader');
      this.emit('change', false);
    }
  }

  private check(): void {
    if (this.stopped) return;
    const connected = this.membership.connected();
    if (this.leading && !connected) this.stepDown('no contact with etcd for two thirds of the lease TTL');
    if (!this.campaign && connected) this.campaignNow();
  }

  private async recordChange(): Promise<void> {
    const leading = this.leading;
    if (!leading) return;
    // A history that cannot be read is an error, never an empty one to overwrite; the write holds only if
    // nobody changed the history since it was read.
    const { changes, revision } = await this.readHistory();
    changes.push({ node: this.node, term: leading.term, at: new Date().toISOString() });
    const result = await this.connection.ns
      .if(leading.key, 'Create', '==', leading.term)
      .and(keys.leaderHistory, 'Mod', '==', revision)
      .then(this.connection.ns.put(keys.leaderHistory).value(JSON.stringify(changes.slice(-HISTORY))))
      .commit();
    if (!result.succeeded) {
      throw new BackupdError(
        'UNAVAILABLE',
        'the leader history changed while it was written, or this node no longer leads',
      );
    }
  }

  private requestPass(): void {
    if (!this.leading || this.stopped) return;
    if (this.passing) {
      this.again = true;
      return;
    }
    clearTimeout(this.passTimer);
    this.passTimer = setTimeout(() => {
      this.passing = this.passLoop().finally(() => {
        this.passing = undefined;
      });
    }, DEBOUNCE_MS);
  }

  private async passLoop(): Promise<void> {
    do {
      this.again = false;
      try {
        await this.assignPass();
      } catch (error) {
        this.log.warn({ error: messageOf(error) }, 'assignment pass failed');
      }
    } while (this.again && this.leading);
  }

  /** Assign every unit and write what changed, fenced by the election key. */
  private async assignPass(): Promise<void> {
    const leading = this.leading;
    if (!leading) return;
    const started = performance.now();
    const members = this.membership.members();
    const reach = memberReach(members);
    const bySource = sourceView(members);
    const units: UnitToAssign[] = [];
    const wanted = new Set<string>();
    for (const { spec } of await this.store.listTasks()) {
      const databases = taskDatabases(
        spec,
        (source) => bySource.get(source)?.databases ?? [],
        (source) => bySource.get(source)?.scope ?? 'database',
      );
      for (const database of databases) {
        wanted.add(`${spec.name}/${database}`);
        units.push({
          task: spec.name,
          database,
          preferredNode: spec.preferredNode,
          pinToPreferredNode: spec.pinToPreferredNode,
          current: this.store.assignment(spec.name, database)?.node || undefined,
        });
      }
    }
    // Just elected (after an etcd outage every leader is new: it steps down when it loses etcd): a node
    // missing now may be re-registering, with tick claims in its outbox, so its units wait GRACE_TTLS lease
    // TTLs before they move (a dead node's units move at the first pass after that).
    const settleLeft = leading.since + GRACE_TTLS * this.membership.ttlSeconds * 1000 - Date.now();
    const settling = settleLeft > 0;
    let waited = false;
    const alive = new Set(members.map((m) => m.node));
    // A live owner still flushing its outbox keeps its units until it has (its member key then changes).
    const flushing = new Set(members.filter((m) => m.settling).map((m) => m.node));
    const at = new Date().toISOString();
    const writes: [string, string][] = [];
    for (const choice of assignUnits(units, reach)) {
      const current = this.store.assignment(choice.task, choice.database);
      if (current && current.node === choice.node) continue;
      if (current?.node && flushing.has(current.node)) continue;
      if (settling && current?.node && !alive.has(current.node)) {
        waited = true;
        continue;
      }
      const value: Assignment = { node: choice.node, term: leading.term, reason: choice.reason, at };
      writes.push([keys.assignment(choice.task, choice.database), JSON.stringify(value)]);
    }
    const removals = this.store
      .assignments()
      .filter((a) => !wanted.has(`${a.task}/${a.database}`))
      .map((a) => keys.assignment(a.task, a.database));
    const changes: ([string, string] | string)[] = [...writes, ...removals];
    const batches: ([string, string] | string)[][] = [];
    for (let i = 0; i < changes.length; i += BATCH) batches.push(changes.slice(i, i + BATCH));
    // A few transactions in flight at once: each is fenced on its own, and their order does not matter.
    let lost = false;
    const writeBatch = async (batch: ([string, string] | string)[]) => {
      const ops = batch.map((c) =>
        typeof c === 'string' ? this.connection.ns.delete().key(c) : this.connection.ns.put(c[0]).value(c[1]),
      );
      const result = await this.connection.ns
        .if(leading.key, 'Create', '==', leading.term)
        .then(...ops)
        .commit();
      if (!result.succeeded) lost = true;
    };
    for (let i = 0; i < batches.length && !lost; i += PARALLEL_TXNS) {
      await Promise.all(batches.slice(i, i + PARALLEL_TXNS).map(writeBatch));
    }
    if (lost) {
      this.stepDown('the election key is gone: another node leads');
      return;
    }
    if (waited) setTimeout(() => this.requestPass(), settleLeft + 10).unref();
    const pass: AssignPass = {
      at,
      units: units.length,
      written: writes.length,
      removed: removals.length,
      ms: Math.round(performance.now() - started),
    };
    this.lastPass = pass;
    if (writes.length + removals.length > 0) {
      this.log.info(pass, 'assigned units');
      this.emit('assigned', pass);
    }
  }
}

function memberReach(members: readonly MemberInfo[]): MemberReach[] {
  return members.map((m) => ({
    node: m.node,
    databases: new Set(m.sources.flatMap(sourceUnits)),
  }));
}

/** Per source name, every database any member reports, and the source's snapshot scope. */
export function sourceView(
  members: readonly MemberInfo[],
): Map<string, { databases: string[]; scope: 'database' | 'server' }> {
  const view = new Map<string, { databases: Set<string>; scope: 'database' | 'server' }>();
  for (const member of members) {
    for (const source of member.sources) {
      const entry = view.get(source.name) ?? { databases: new Set<string>(), scope: source.snapshotScope };
      for (const db of source.databases) entry.databases.add(db);
      view.set(source.name, entry);
    }
  }
  return new Map([...view].map(([name, v]) => [name, { databases: [...v.databases].sort(), scope: v.scope }]));
}
