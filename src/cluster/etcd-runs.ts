// The run history of a cluster in etcd (`runs/<run id>`, etcd-keys.ts), for the etcd store (etcd-store.ts): a
// run record is written only if it moves the stored one forward (queued -> running -> its outcome), checked
// in etcd's transaction; one reported while etcd is unreachable waits in the outbox and is read from there
// meanwhile; the oldest finished records beyond the bound are dropped.

import type { Namespace } from 'etcd3';
import type { Logger } from 'pino';
import { BackupdError, messageOf } from '../errors.js';
import { type EtcdConnection, etcdFailure, isUnreachable } from './etcd-client.js';
import { keys } from './etcd-keys.js';
import type { Outbox } from './outbox.js';
import {
  type RunFilter,
  type RunOutcome,
  type RunRecord,
  runFinished,
  runLimit,
  runMatches,
  runMovesForward,
  type StoreEvent,
} from './store.js';

export interface EtcdRunsDeps {
  ns: Namespace;
  config: EtcdConnection['config'];
  outbox: Outbox;
  log: Logger;
  /** Run records kept (finished ones beyond it are dropped oldest first). */
  maxRuns: number;
  /** The etcd revision of this node's last write per key (the mirror's: older watch echoes are ignored). */
  written: Map<string, number>;
  /** The run, marked a duplicate when another node had claimed its tick too (outbox-flush.ts). */
  markedDuplicate: (run: RunRecord) => RunRecord;
  emit: (event: StoreEvent) => void;
}

/** Puts between two trims of the history. */
const TRIM_EVERY = 50;
/** Attempts of a guarded write whose key another writer changed in between. */
export const GUARDED_ATTEMPTS = 10;
/** Deletes sent at once when trimming the run history. */
const DELETES_AT_ONCE = 100;

export class EtcdRuns {
  /**
   * The etcd mod revision and the outcome of each run record this node wrote last and that is not finished yet
   * (the outcome copied: callers write the same record object again as it moves on).
   */
  private readonly revisions = new Map<string, { revision: number; outcome: RunOutcome }>();
  private putsSinceTrim = 0;

  constructor(private readonly deps: EtcdRunsDeps) {}

  /** As Store.putRun: a record that would move back is ignored (false), checked in etcd's transaction. */
  async put(given: RunRecord): Promise<boolean> {
    const { outbox, log } = this.deps;
    const run = this.deps.markedDuplicate(given);
    const key = keys.run(run.runId);
    let written = true;
    const waiting = outbox.pending().find((e) => e.key === key);
    if (waiting && !runMovesForward(JSON.parse(waiting.value) as RunRecord, run)) {
      written = false;
    } else if (outbox.size > 0) {
      outbox.add({ key, value: JSON.stringify(run), kind: 'put' });
    } else {
      try {
        written = await this.write(key, run);
      } catch (error) {
        if (!isUnreachable(error)) throw etcdFailure(this.deps.config, 'recording a run', error);
        log.warn({ key, error: messageOf(error) }, 'etcd unreachable: keeping status reports in the local outbox');
        outbox.add({ key, value: JSON.stringify(run), kind: 'put' });
      }
    }
    if (!written) {
      log.warn({ run: run.runId, outcome: run.outcome }, 'ignored a run record that would move its run back');
      return false;
    }
    this.deps.emit({ kind: 'run', run });
    if (++this.putsSinceTrim >= TRIM_EVERY) {
      this.putsSinceTrim = 0;
      void this.trim().catch((error: unknown) =>
        log.warn({ error: messageOf(error) }, 'could not trim the run history'),
      );
    }
    return true;
  }

  async get(runId: string): Promise<RunRecord | undefined> {
    const pending = this.pending().find((r) => r.runId === runId);
    if (pending) return pending;
    const value = await this.etcd('reading a run', () => this.deps.ns.get(keys.run(runId)).string());
    return value === null ? undefined : (JSON.parse(value) as RunRecord);
  }

  /** As Store.listRuns; INVALID_ARGUMENT when `limit` is not a positive integer. */
  async list(filter: RunFilter = {}): Promise<RunRecord[]> {
    const limit = runLimit(filter);
    const stored = await this.etcd('listing runs', () => this.deps.ns.getAll().prefix(keys.runs).strings());
    const byId = new Map<string, RunRecord>();
    for (const value of Object.values(stored)) {
      const run = JSON.parse(value) as RunRecord;
      byId.set(run.runId, run);
    }
    // Reports still in the outbox are newer than what etcd holds.
    for (const run of this.pending()) byId.set(run.runId, run);
    return [...byId.values()]
      .filter((r) => runMatches(r, filter))
      .sort((a, b) => b.queuedAt.localeCompare(a.queuedAt) || b.runId.localeCompare(a.runId))
      .slice(0, limit);
  }

  /**
   * Write a run record unless etcd holds one further along (compare-and-swap on the key's revision, so
   * two writers, such as a run's queued and running reports, cannot pass each other). False when ignored.
   * The outbox flush writes through here too.
   */
  async write(key: string, run: RunRecord): Promise<boolean> {
    const { ns } = this.deps;
    const value = JSON.stringify(run);
    const mine = this.revisions.get(key);
    // Etcd still holding this node's last write proves nothing about order: the record must move forward from it.
    if (mine && !runMovesForward({ ...run, outcome: mine.outcome }, run)) return false;
    let known = mine?.revision ?? 0;
    for (let attempt = 0; attempt < GUARDED_ATTEMPTS; attempt++) {
      const result = await ns.if(key, 'Mod', '==', known).then(ns.put(key).value(value)).else(ns.get(key)).commit();
      if (result.succeeded) {
        const revision = Number(result.header.revision);
        this.deps.written.set(key, revision);
        if (runFinished(run.outcome)) this.revisions.delete(key);
        else this.revisions.set(key, { revision, outcome: run.outcome });
        return true;
      }
      const kv = result.responses[0]?.response_range?.kvs[0];
      if (kv && !runMovesForward(JSON.parse(kv.value.toString()) as RunRecord, run)) {
        this.revisions.delete(key);
        return false;
      }
      known = kv ? Number(kv.mod_revision) : 0;
    }
    throw new BackupdError('UNAVAILABLE', `run record ${run.runId} kept changing while it was written: retry`);
  }

  /** Run records waiting in the outbox. */
  private pending(): RunRecord[] {
    return this.deps.outbox
      .pending()
      .filter((e) => e.key.startsWith(keys.runs))
      .map((e) => JSON.parse(e.value) as RunRecord);
  }

  /** Drop the oldest finished runs beyond maxRuns (any node may; deleting twice is harmless). */
  private async trim(): Promise<void> {
    const { ns } = this.deps;
    const stored = await ns.getAll().prefix(keys.runs).strings();
    const runs = Object.entries(stored)
      .map(([key, value]) => ({ key, run: JSON.parse(value) as RunRecord }))
      .sort((a, b) => a.run.queuedAt.localeCompare(b.run.queuedAt));
    const excess = runs.length - this.deps.maxRuns;
    if (excess <= 0) return;
    const drop = runs
      .filter((r) => r.run.outcome !== 'queued' && r.run.outcome !== 'running')
      .slice(0, excess)
      .map((r) => r.key);
    for (let i = 0; i < drop.length; i += DELETES_AT_ONCE) {
      await Promise.all(drop.slice(i, i + DELETES_AT_ONCE).map((key) => ns.delete().key(key).exec()));
    }
  }

  private async etcd<T>(what: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      throw etcdFailure(this.deps.config, what, error);
    }
  }
}
