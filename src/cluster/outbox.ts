// The durable local outbox of a cluster node: status reports (unit states, run records) and tick claims made
// while etcd could not be reached, kept in `<dataDir>/outbox.db` until they are written to etcd. One row per
// etcd key, so a unit reported ten times during an outage is flushed once, with its newest state; rows are
// flushed in the order their newest value was written. It also remembers every tick this node claimed
// (through etcd or here) until the claim expires, so a restarted or re-registered node never claims a tick
// again, and which of them another node had claimed too (its run is then marked a duplicate).

import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { createPrivate } from './private-file.js';
import type { TickKind } from './store.js';

/** 'put' overwrites the key; 'claim' creates it only if absent (a tick claim) and reports when it existed. */
export type OutboxKind = 'put' | 'claim';

export interface OutboxEntry {
  key: string;
  value: string;
  kind: OutboxKind;
}

export const OUTBOX_FILE = 'outbox.db';

/** The tick a claim is about. */
export interface ClaimedTick {
  task: string;
  database: string;
  /** What the tick is for: a full, an incremental or a drill at the same time are three ticks. */
  kind: TickKind;
  scheduledAt: string;
}

export class Outbox {
  private constructor(private readonly db: Database.Database) {}

  static async open(dataDir: string): Promise<Outbox> {
    await mkdir(dataDir, { recursive: true });
    const path = join(dataDir, OUTBOX_FILE);
    // Created 0600 before SQLite opens it: SQLite gives its -wal and -shm files the database file's mode.
    await createPrivate(path, dataDir);
    const db = new Database(path);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.exec(`CREATE TABLE IF NOT EXISTS outbox (
      key TEXT PRIMARY KEY,
      value TEXT NOT NULL,
      kind TEXT NOT NULL,
      seq INTEGER NOT NULL
    )`);
    db.exec(`CREATE TABLE IF NOT EXISTS claims (
      key TEXT PRIMARY KEY,
      task TEXT NOT NULL,
      database TEXT NOT NULL,
      kind TEXT NOT NULL,
      scheduled_at TEXT NOT NULL,
      expires INTEGER NOT NULL,
      claimed_by TEXT
    )`);
    db.exec('CREATE INDEX IF NOT EXISTS claims_by_tick ON claims (task, database, kind, scheduled_at)');
    db.exec('CREATE INDEX IF NOT EXISTS claims_by_expiry ON claims (expires)');
    return new Outbox(db);
  }

  get size(): number {
    return (this.db.prepare('SELECT count(*) AS n FROM outbox').get() as { n: number }).n;
  }

  has(key: string): boolean {
    return this.db.prepare('SELECT 1 FROM outbox WHERE key = ?').get(key) !== undefined;
  }

  /** Keep `value` for `key`, replacing an older one (a claim is never replaced: the first one counts). */
  add(entry: OutboxEntry): void {
    const seq = (this.db.prepare('SELECT coalesce(max(seq), 0) + 1 AS s FROM outbox').get() as { s: number }).s;
    if (entry.kind === 'claim') {
      this.db
        .prepare('INSERT OR IGNORE INTO outbox (key, value, kind, seq) VALUES (?, ?, ?, ?)')
        .run(entry.key, entry.value, entry.kind, seq);
      return;
    }
    this.db
      .prepare('INSERT OR REPLACE INTO outbox (key, value, kind, seq) VALUES (?, ?, ?, ?)')
      .run(entry.key, entry.value, entry.kind, seq);
  }

  /** The entries in the order they were last written. */
  pending(): (OutboxEntry & { seq: number })[] {
    return this.db.prepare('SELECT key, value, kind, seq FROM outbox ORDER BY seq').all() as (OutboxEntry & {
      seq: number;
    })[];
  }

  /** Drop an entry once written, unless it was replaced by a newer value meanwhile. */
  done(key: string, seq: number): void {
    this.db.prepare('DELETE FROM outbox WHERE key = ? AND seq = ?').run(key, seq);
  }

  /** Whether this node claimed the tick `key` before (and the claim has not expired). */
  claimed(key: string, now = Date.now()): boolean {
    return this.db.prepare('SELECT 1 FROM claims WHERE key = ? AND expires > ?').get(key, now) !== undefined;
  }

  /** Remember a tick this node claimed, until `expires` (ms); forgets the expired ones. */
  remember(key: string, tick: ClaimedTick, expires: number, now = Date.now()): void {
    this.db.prepare('DELETE FROM claims WHERE expires <= ?').run(now);
    this.db
      .prepare(
        'INSERT OR IGNORE INTO claims (key, task, database, kind, scheduled_at, expires) VALUES (?, ?, ?, ?, ?, ?)',
      )
      .run(key, tick.task, tick.database, tick.kind, tick.scheduledAt, expires);
  }

  /** Forget the ticks of a deleted task: its claims went with it, and a new task of its name starts with none. */
  forgetTask(task: string): void {
    this.db.prepare('DELETE FROM claims WHERE task = ?').run(task);
  }

  /** Another node had claimed the tick `key` too: this node's run of it is a duplicate. */
  markDuplicate(key: string, claimedBy: string): void {
    this.db.prepare('UPDATE claims SET claimed_by = ? WHERE key = ?').run(claimedBy, key);
  }

  /** The node that had claimed this tick before this node did, when this node's run of it is a duplicate. */
  duplicateOf(tick: ClaimedTick): string | undefined {
    const row = this.db
      .prepare(
        'SELECT claimed_by AS by FROM claims WHERE task = ? AND database = ? AND kind = ? AND scheduled_at = ? ' +
          'AND claimed_by IS NOT NULL',
      )
      .get(tick.task, tick.database, tick.kind, tick.scheduledAt) as { by: string } | undefined;
    return row?.by;
  }

  close(): void {
    this.db.close();
  }
}
