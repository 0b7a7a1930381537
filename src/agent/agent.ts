// The agent on one node: it owns the store, the sources, the scheduler and the run queue, and answers every
// operation of the API (operations.ts). On the single-node embedded default it is its own leader and the
// responsible node of every unit whose source it has.

import { EventEmitter } from 'node:events';
import { mkdir } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Progress } from '../backup/requests.js';
import type { Cluster } from '../cluster/cluster.js';
import { EtcdCluster } from '../cluster/etcd-cluster.js';
import { openLocalStore } from '../cluster/local-store.js';
import { SoloCluster } from '../cluster/solo.js';
import type { RunFilter, RunRecord, Store, StoredTask } from '../cluster/store.js';
import { BackupdError, messageOf, ValidationError } from '../errors.js';
import type { BackupLevel } from '../layout.js';
import { type Clock, systemClock } from '../scheduler/clock.js';
import { RunQueue } from '../scheduler/run-queue.js';
import { Scheduler } from '../scheduler/scheduler.js';
import { type SourceRegistry, sourceEngines } from '../sources/registry.js';
import type { Source } from '../sources/source.js';
import { redactTask, splitDatabase, type TaskSpec, taskDatabases } from '../task.js';
import { checkTask, isDatabaseName, oneTimeProblems } from '../task-checks.js';
import { destinations as builtInDestinations, type DestinationRegistry } from '../uploader/registry.js';
import type { AgentConfig } from './config.js';
import { Discovery } from './discovery.js';
import { Drills } from './drills.js';
import { AgentMetrics } from './metrics.js';
import type {
  BackupLocation,
  BackupsView,
  ClusterView,
  DatabaseView,
  LeftOutView,
  OneTimeInput,
  Operations,
  RestoreInput,
  RunView,
  UnitView,
  VerifyInput,
} from './operations.js';
import { OwnedUnits } from './owned-units.js';
import type { PeerCalls, PeerFactory } from './peer-calls.js';
import { sweepPending } from './pending.js';
import { Recovery } from './recovery.js';
import { Restores } from './restores.js';
import { RunBook, type RunEvents } from './run-book.js';
import { isTerminal, type RunJob } from './run-context.js';
import { StatusView } from './status-view.js';

export const VERSION = '0.1.0';

export interface AgentOptions {
  config: AgentConfig;
  logger: Logger;
  clock?: Clock;
  destinations?: DestinationRegistry;
  sources?: SourceRegistry;
  /** How this node calls other nodes (the API layer's `grpcPeers`). */
  peers: PeerFactory;
  /** Aborts a start still waiting for etcd (a SIGTERM before the agent serves). */
  signal?: AbortSignal;
}

export class Agent implements Operations {
  readonly metrics = new AgentMetrics();
  /** 'run' fires at every change of a run's state or progress. */
  readonly events = new EventEmitter<RunEvents>();
  private discoveryTimer: { cancel(): void } | undefined;
  private readonly unsubscribe: (() => void)[] = [];
  private stopping = false;
  private readonly peers: PeerCalls;
  private readonly runs: RunBook;
  private readonly restores: Restores;
  private readonly drills: Drills;
  private readonly recovery: Recovery;
  private readonly status: StatusView;
  private readonly units: OwnedUnits;

  private constructor(
    readonly config: AgentConfig,
    private readonly log: Logger,
    private readonly clock: Clock,
    private readonly registry: DestinationRegistry,
    private readonly cluster: Cluster,
    private readonly sources: Map<string, Source>,
    private readonly discovery: Discovery,
    private readonly scheduler: Scheduler,
    private readonly queue: RunQueue<RunJob>,
    peers: PeerFactory,
  ) {
    this.peers = peers({
      addressOf: (node) => cluster.addressOf(node),
      token: config.auth.token,
      tls: config.tls,
    });
    this.restores = new Restores({
      config,
      log,
      registry,
      cluster,
      sources,
      peers: this.peers,
      requireTask: (name) => this.requireTask(name),
    });
    this.drills = new Drills({
      cluster: config.cluster,
      log: log.child({ component: 'drills' }),
      clock,
      store: cluster.store,
      restores: this.restores,
      metrics: this.metrics,
      queue,
    });
    this.runs = new RunBook({
      config,
      log,
      clock,
      store: cluster.store,
      registry,
      cluster,
      sources,
      metrics: this.metrics,
      queue,
      events: this.events,
      stopping: () => this.stopping,
      taskType: (task) => this.units.taskType(task),
    });
    this.status = new StatusView({
      config,
      clock,
      store: cluster.store,
      cluster,
      scheduler,
      peers: this.peers,
      progress: this.runs.progress,
      unitsOf: (spec) => this.unitsOf(spec),
    });
    this.recovery = new Recovery({
      config,
      log,
      clock,
      store: cluster.store,
      registry,
      cluster,
      owns: (task, database) => this.owns(task, database),
      stopping: () => this.stopping,
      sweepScratch: () => this.restores.sweepScratch(),
      enqueueTaskRun: (spec, database, level, trigger, scheduledAt) =>
        this.runs.enqueueTaskRun(spec, database, level, trigger, scheduledAt),
    });
    this.units = new OwnedUnits({
      config,
      log,
      clock,
      store: cluster.store,
      cluster,
      scheduler,
      metrics: this.metrics,
      owns: (task, database) => this.owns(task, database),
      unitsOf: (spec) => this.unitsOf(spec),
      stopping: () => this.stopping,
      takeOver: (units) => this.recovery.takeOver(units),
    });
  }

  private get store(): Store {
    return this.cluster.store;
  }

  /** Open the store and sources, recover from an unclean stop, and start scheduling. */
  static async start(options: AgentOptions): Promise<Agent> {
    const { config } = options;
    const log = options.logger.child({ node: config.node });
    const clock = options.clock ?? systemClock;
    const engines = options.sources ?? sourceEngines;
    await mkdir(config.dataDir, { recursive: true });
    const sources = new Map<string, Source>();
    for (const [i, spec] of config.sources.entries()) sources.set(spec.name, await engines.open(spec, `sources[${i}]`));
    const discovery = await Discovery.start(sources, log);
    const self = {
      node: config.node,
      address: config.advertise,
      version: VERSION,
      startedAt: clock.now().toISOString(),
    };
    let cluster: Cluster;
    try {
      cluster = config.etcd
        ? await EtcdCluster.start({
            etcd: config.etcd,
            cluster: config.cluster,
            self: { ...self, sources: discovery.infos() },
            dataDir: config.dataDir,
            logger: log,
            now: () => clock.now(),
            signal: options.signal,
          })
        : new SoloCluster(await openLocalStore({ dataDir: config.dataDir, now: () => clock.now() }), self);
    } catch (error) {
      await Promise.allSettled([...sources.values()].map((s) => s.close()));
      throw error;
    }
    await cluster.announceSources(discovery.infos());
    const store = cluster.store;

    let agent: Agent | undefined;
    const scheduler = new Scheduler({
      store,
      clock,
      logger: log.child({ component: 'scheduler' }),
      lateToleranceMs: config.lateToleranceSeconds * 1000,
      onDue: (due) => agent?.runs.onDue(due),
      onDrill: (due) => agent?.drills.onDrill(due),
    });
    const queue = new RunQueue<RunJob>({
      concurrency: config.maxConcurrentRuns,
      execute: (job, signal) => agent!.runs.execute(job, signal),
    });
    agent = new Agent(
      config,
      log,
      clock,
      options.destinations ?? builtInDestinations,
      cluster,
      sources,
      discovery,
      scheduler,
      queue,
      options.peers,
    );
    for (const source of sources.values()) await discovery.reportLeftOut(source);
    try {
      await agent.recovery.recover();
    } catch (error) {
      // Nothing is scheduled yet: leave the cluster (revoking the lease) and close what is open, so a start
      // that fails here ends cleanly instead of leaving timers and a member key behind.
      await Promise.allSettled([...sources.values()].map((s) => s.close()));
      await cluster.stop().catch(() => undefined);
      throw error;
    }
    const refresh = () => void agent!.units.refresh();
    agent.unsubscribe.push(
      store.subscribe((event) => {
        if (event.kind === 'task') refresh();
        // Another node changed a unit this node runs (a delay): plan it again. Only units owned here: other
        // nodes report thousands of states, and re-planning every unit for each would starve this node.
        if (event.kind === 'unit' && agent!.owns(event.task, event.database)) scheduler.wake();
      }),
      cluster.onOwnershipChange(refresh),
      cluster.onLeadershipChange((leading) => {
        agent!.metrics.leader.set(leading ? 1 : 0);
        agent!.metrics.leaderChanges.inc();
      }),
    );
    agent.metrics.leader.set(cluster.isLeader() ? 1 : 0);
    await agent.units.refresh();
    scheduler.start();
    agent.scheduleDiscovery();
    agent.units.startChecks();
    log.info({ sources: [...sources.keys()], store: store.mode }, 'agent started');
    return agent;
  }

  /** Stop scheduling, interrupt runs in progress (they run again at the next start), close everything. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.discoveryTimer?.cancel();
    this.units.stop();
    for (const unsubscribe of this.unsubscribe) unsubscribe();
    await this.scheduler.stop();
    await Promise.all([this.drills.stop(), this.queue.stop()]);
    this.peers.close();
    await Promise.allSettled([...this.sources.values()].map((s) => s.close()));
    await this.cluster.stop();
    this.log.info('agent stopped');
  }

  // ---- tasks ----

  async createTask(input: unknown, key: string | undefined): Promise<StoredTask> {
    const spec = this.checkTask(input, key, true);
    const stored = await this.store.createTask(spec, key || undefined);
    this.log.info({ task: spec.name }, 'task created');
    return this.redacted(stored);
  }

  async updateTask(input: unknown, key: string | undefined, expectedRevision?: number): Promise<StoredTask> {
    const name = (input as { name?: unknown } | undefined)?.name;
    const current = typeof name === 'string' ? await this.store.getTask(name) : undefined;
    // An update without a key keeps the task's key, and with it its encryption: a spec sent back as it was
    // read (encrypted shown, key never shown) must not turn encryption off by accident.
    const keepsKey = !key && current?.spec.encrypted === true;
    const spec = this.checkTask(keepsKey ? { ...(input as object), encrypted: true } : input, key, false);
    if (!current) throw new BackupdError('NOT_FOUND', `no task named ${spec.name}`);
    if (spec.encrypted && !key && !current.spec.encrypted) {
      throw new ValidationError('task', [{ path: 'encryptionKey', message: 'an encrypted task needs a key' }]);
    }
    const stored = await this.store.updateTask(spec, key || undefined, expectedRevision || undefined);
    this.log.info({ task: spec.name, revision: stored.revision }, 'task updated');
    return this.redacted(stored);
  }

  async deleteTask(name: string): Promise<void> {
    for (const job of [...this.queue.running(), ...this.queue.waiting()]) {
      if (job.record.task === name) this.queue.cancel(job.id);
    }
    await this.store.deleteTask(name);
    this.log.info({ task: name }, 'task deleted');
    await sweepPending(this.config.dataDir, this.config.node, this.store, this.log);
  }

  async getTask(name: string): Promise<StoredTask> {
    return this.redacted(await this.requireTask(name));
  }

  async listTasks(): Promise<StoredTask[]> {
    return (await this.store.listTasks()).map((t) => this.redacted(t));
  }

  async taskStatus(name: string): Promise<UnitView[]> {
    const task = await this.requireTask(name);
    const views: UnitView[] = [];
    for (const database of this.unitsOf(task.spec)) views.push(await this.status.unitView(task.spec, database));
    return views;
  }

  // ---- runs ----

  async backupNow(taskName: string, database?: string, level?: BackupLevel): Promise<RunView[]> {
    const task = await this.requireTask(taskName);
    const units = this.unitsOf(task.spec).filter((db) => database === undefined || db === database);
    if (database !== undefined && units.length === 0) {
      throw new BackupdError('NOT_FOUND', `task ${taskName} has no database ${database}`);
    }
    const byNode = new Map<string, string[]>();
    for (const db of units) {
      const node = this.cluster.owner(taskName, db)?.node ?? '';
      byNode.set(node, [...(byNode.get(node) ?? []), db]);
    }
    const unowned = byNode.get('') ?? [];
    byNode.delete('');
    if (byNode.size === 0) {
      throw new BackupdError(
        'UNAVAILABLE',
        `no live node is responsible for ${unowned.join(', ') || `any database of task ${taskName}`} yet`,
      );
    }
    const chosen = level ?? (task.spec.schedule.incremental ? 'incr' : 'full');
    const runs: RunView[] = [];
    for (const [node, databases] of byNode) {
      for (const db of databases) {
        if (node === this.config.node) {
          runs.push(await this.runs.enqueueTaskRun(task.spec, db, chosen, 'now'));
          continue;
        }
        runs.push(...(await this.peers.backupNow(node, taskName, db, chosen)));
      }
    }
    if (unowned.length > 0)
      this.log.warn({ task: taskName, databases: unowned }, 'backup now: no responsible node yet');
    return runs;
  }

  async oneTimeBackup(input: OneTimeInput): Promise<RunView> {
    const { source } = splitDatabase(input.database);
    if (isDatabaseName(input.database) && !this.sources.has(source)) {
      // Any node answers: the backup runs on a node that has the source.
      const node = this.cluster.nodesWith(source)[0];
      if (node) return this.peers.oneTimeBackup(node, input);
    }
    const problems = oneTimeProblems(input, this.registry, (name) => this.sources.has(name));
    if (problems.length > 0) throw new ValidationError('one-time backup', problems);
    const record = this.runs.newRecord('', input.database, input.type, 'full', 'one-time');
    return this.runs.enqueue({
      id: record.runId,
      unitKey: `one-time/${record.runId}`,
      level: 'full',
      record,
      destinations: input.destinations,
      key: input.key || undefined,
    });
  }

  async cancelRun(runId: string): Promise<RunView> {
    const run = await this.getRun(runId);
    if (isTerminal(run.outcome)) {
      throw new BackupdError('INVALID_ARGUMENT', `run ${runId} already ended (${run.outcome}); nothing to cancel`);
    }
    if (run.node !== this.config.node) {
      return this.peers.cancelRun(run.node, runId);
    }
    const how = this.queue.cancel(runId);
    if (how === 'removed') {
      const record: RunRecord = {
        ...run,
        outcome: 'cancelled',
        finishedAt: this.clock.now().toISOString(),
        error: 'cancelled before it started',
      };
      await this.store.putRun(record);
      this.runs.announceRun(record);
      return record;
    }
    if (how === 'unknown')
      throw new BackupdError('NOT_FOUND', `run ${runId} is not queued or running on node ${this.config.node}`);
    return this.getRun(runId);
  }

  async delayUnit(taskName: string, database: string, seconds: number): Promise<UnitView> {
    const task = await this.requireTask(taskName);
    if (!this.unitsOf(task.spec).includes(database))
      throw new BackupdError('NOT_FOUND', `task ${taskName} has no database ${database}`);
    if (!(seconds > 0)) throw new ValidationError('delay', [{ path: 'seconds', message: 'must be more than 0' }]);
    const owner = this.cluster.owner(taskName, database)?.node;
    if (owner && owner !== this.config.node) {
      await this.peers.delayUnit(owner, taskName, database, seconds);
      return this.status.unitView(task.spec, database);
    }
    const until = new Date(this.clock.now().getTime() + seconds * 1000).toISOString();
    await this.store.setUnitRequest(taskName, database, { delayedUntil: until });
    for (const job of this.queue.running()) {
      if (job.record.task === taskName && job.record.database === database) this.queue.cancel(job.id);
    }
    this.scheduler.wake();
    this.log.info({ task: taskName, database, until }, 'unit delayed');
    return this.status.unitView(task.spec, database);
  }

  async getRun(runId: string): Promise<RunView> {
    const live = this.runs.progress.get(runId);
    if (live) return { ...live.record, progress: live.progress };
    const run = await this.store.getRun(runId);
    if (!run) throw new BackupdError('NOT_FOUND', `no run ${runId}`);
    if (!isTerminal(run.outcome) && run.node !== this.config.node) {
      // Its progress lives on the node running it; the store's record stands in when that node is gone.
      try {
        return await this.peers.getRun(run.node, runId);
      } catch (error) {
        this.log.debug({ run: runId, error: messageOf(error) }, 'progress of a run elsewhere unavailable');
      }
    }
    return run;
  }

  async listRuns(filter: RunFilter): Promise<RunView[]> {
    return (await this.store.listRuns(filter)).map((r) => {
      const live = this.runs.progress.get(r.runId);
      return live ? { ...live.record, progress: live.progress } : r;
    });
  }

  async watchRun(runId: string, onUpdate: (run: RunView) => void, signal?: AbortSignal): Promise<RunView> {
    let latest = await this.getRun(runId);
    onUpdate(latest);
    if (isTerminal(latest.outcome)) return latest;
    if (latest.node !== this.config.node) {
      for await (const run of this.peers.watchRun(latest.node, runId)) {
        if (signal?.aborted) break;
        latest = run;
        onUpdate(latest);
      }
      return latest;
    }
    return new Promise<RunView>((resolve) => {
      const listener = (run: RunView) => {
        if (run.runId !== runId) return;
        latest = run;
        onUpdate(run);
        if (isTerminal(run.outcome)) finish();
      };
      const finish = () => {
        this.events.off('run', listener);
        signal?.removeEventListener('abort', finish);
        resolve(latest);
      };
      this.events.on('run', listener);
      signal?.addEventListener('abort', finish, { once: true });
    });
  }

  // ---- databases and backups ----

  listLeftOut(): Promise<LeftOutView[]> {
    return this.discovery.leftOut();
  }

  listDatabases(): Promise<DatabaseView[]> {
    return this.discovery.databases();
  }

  async listBackups(from: BackupLocation, filter: { cluster?: string; database?: string }): Promise<BackupsView> {
    return this.restores.listBackups(from, filter);
  }

  restore(input: RestoreInput, onProgress: (progress: Progress) => void, signal?: AbortSignal) {
    return this.restores.restore(input, onProgress, signal);
  }

  verify(input: VerifyInput, onProgress: (progress: Progress) => void, signal?: AbortSignal) {
    return this.restores.verify(input, onProgress, signal);
  }

  clusterStatus(): Promise<ClusterView> {
    return this.status.clusterStatus();
  }

  // ---- inside ----

  private checkTask(input: unknown, key: string | undefined, creating: boolean): TaskSpec {
    return checkTask(input, key, creating, this.registry, {
      hasSource: (source) => this.cluster.hasSource(source),
      scopeOf: (source) => this.cluster.scopeOf(source),
      here: [...this.sources.keys()],
    });
  }

  private redacted(task: StoredTask): StoredTask {
    return { ...task, spec: redactTask(task.spec, this.registry) };
  }

  private async requireTask(name: string): Promise<StoredTask> {
    const task = await this.store.getTask(name);
    if (!task) throw new BackupdError('NOT_FOUND', `no task named ${name}`);
    return task;
  }

  private unitsOf(spec: TaskSpec): string[] {
    return taskDatabases(
      spec,
      (source) => this.cluster.databasesOf(source),
      (source) => this.cluster.scopeOf(source),
    );
  }

  /** Whether this node is the unit's responsible node. */
  owns(task: string, database: string): boolean {
    return this.cluster.owner(task, database)?.node === this.config.node;
  }

  private scheduleDiscovery(): void {
    if (this.stopping) return;
    this.discoveryTimer = this.clock.setTimeout(() => {
      this.discover()
        .catch((error: unknown) => this.log.warn({ error: messageOf(error) }, 'database discovery failed'))
        .finally(() => this.scheduleDiscovery());
    }, this.config.discoverySeconds * 1000);
  }

  /** List every source's databases; re-plan units when a server-wide task gained or lost one. */
  private async discover(): Promise<void> {
    if (!(await this.discovery.refresh())) return;
    await this.cluster.announceSources(this.discovery.infos());
    await this.units.refresh();
  }
}
