// The local store's file (local-store.ts): its schema, the settings it is opened with (a newer file refused,
// never rewritten), and the statements the store runs on it.

import type Database from 'better-sqlite3';
import { BackupdError } from '../errors.js';

/** The schema this code writes (PRAGMA user_version). A file with a higher one is refused, never rewritten. */
const SCHEMA_VERSION = 1;

const SCHEMA = `
CREATE TABLE tasks (
  name TEXT PRIMARY KEY,
  spec TEXT NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  revision INTEGER NOT NULL
);
-- Keys live apart from specs so nothing that reads or lists specs can leak one.
CREATE TABLE task_keys (
  name TEXT PRIMARY KEY,
  key TEXT NOT NULL
);
-- A unit's status (the scheduler's cursor, the results) and the operator's request, apart (store.ts).
CREATE TABLE units (
  task TEXT NOT NULL,
  database TEXT NOT NULL,
  status TEXT NOT NULL,
  PRIMARY KEY (task, database)
);
CREATE TABLE unit_requests (
  task TEXT NOT NULL,
  database TEXT NOT NULL,
  request TEXT NOT NULL,
  PRIMARY KEY (task, database)
);
CREATE TABLE ticks (
  task TEXT NOT NULL,
  database TEXT NOT NULL,
  level TEXT NOT NULL,
  scheduled_at TEXT NOT NULL,
  claimed_at TEXT NOT NULL,
  PRIMARY KEY (task, database, level, scheduled_at)
);
CREATE INDEX ticks_claimed_at ON ticks (claimed_at);
CREATE TABLE runs (
  run_id TEXT PRIMARY KEY,
  task TEXT NOT NULL,
  database TEXT NOT NULL,
  outcome TEXT NOT NULL,
  node TEXT NOT NULL,
  queued_at TEXT NOT NULL,
  record TEXT NOT NULL
);
CREATE INDEX runs_queued ON runs (queued_at, run_id);
CREATE INDEX runs_task ON runs (task, queued_at, run_id);
CREATE INDEX runs_database ON runs (database, queued_at, run_id);
CREATE INDEX runs_outcome ON runs (outcome, queued_at, run_id);
CREATE INDEX runs_node ON runs (node, queued_at, run_id);
`;

/** The statements the store runs, prepared once. */
export function prepare(db: Database.Database) {
  return {
    listTasks: db.prepare('SELECT spec, created_at, updated_at, revision FROM tasks ORDER BY name'),
    getTask: db.prepare('SELECT spec, created_at, updated_at, revision FROM tasks WHERE name = ?'),
    insertTask: db.prepare('INSERT INTO tasks (name, spec, created_at, updated_at, revision) VALUES (?, ?, ?, ?, ?)'),
    updateTask: db.prepare('UPDATE tasks SET spec = ?, updated_at = ?, revision = ? WHERE name = ?'),
    deleteTask: db.prepare('DELETE FROM tasks WHERE name = ?'),
    getKey: db.prepare('SELECT key FROM task_keys WHERE name = ?'),
    putKey: db.prepare('INSERT OR REPLACE INTO task_keys (name, key) VALUES (?, ?)'),
    deleteKey: db.prepare('DELETE FROM task_keys WHERE name = ?'),
    getUnit: db.prepare('SELECT task, database, status FROM units WHERE task = ? AND database = ?'),
    listUnits: db.prepare('SELECT task, database, status FROM units'),
    listTaskUnits: db.prepare('SELECT task, database, status FROM units WHERE task = ?'),
    putUnit: db.prepare('INSERT OR REPLACE INTO units (task, database, status) VALUES (?, ?, ?)'),
    deleteUnits: db.prepare('DELETE FROM units WHERE task = ?'),
    getRequest: db.prepare('SELECT task, database, request FROM unit_requests WHERE task = ? AND database = ?'),
    listRequests: db.prepare('SELECT task, database, request FROM unit_requests'),
    listTaskRequests: db.prepare('SELECT task, database, request FROM unit_requests WHERE task = ?'),
    putRequest: db.prepare('INSERT OR REPLACE INTO unit_requests (task, database, request) VALUES (?, ?, ?)'),
    deleteRequests: db.prepare('DELETE FROM unit_requests WHERE task = ?'),
    claimTick: db.prepare(
      'INSERT OR IGNORE INTO ticks (task, database, level, scheduled_at, claimed_at) VALUES (?, ?, ?, ?, ?)',
    ),
    deleteTicks: db.prepare('DELETE FROM ticks WHERE task = ?'),
    pruneTicks: db.prepare('DELETE FROM ticks WHERE claimed_at < ?'),
    putRun: db.prepare(
      `INSERT OR REPLACE INTO runs (run_id, task, database, outcome, node, queued_at, record)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    ),
    countRuns: db.prepare('SELECT count(*) AS count FROM runs'),
    pruneRuns: db.prepare(
      `DELETE FROM runs WHERE run_id IN (
         SELECT run_id FROM runs WHERE outcome NOT IN ('queued', 'running') ORDER BY queued_at, run_id LIMIT ?)`,
    ),
    getRun: db.prepare('SELECT record FROM runs WHERE run_id = ?'),
  };
}

export /** Settings for durability, then the schema: created on a new file, refused when newer than this code. */
function migrate(db: Database.Database, path: string): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > SCHEMA_VERSION) {
    throw new BackupdError(
      'UNSUPPORTED_FORMAT',
      `${path} has schema version ${version}, written by a newer backupd (this one reads up to ${SCHEMA_VERSION}): upgrade backupd`,
    );
  }
  const journal = db.pragma('journal_mode = WAL', { simple: true }) as string;
  if (journal.toLowerCase() !== 'wal') {
    throw new BackupdError('UNAVAILABLE', `${path} cannot use a write-ahead log (journal mode ${journal})`, {
      retryable: false,
    });
  }
  // FULL, not NORMAL: in WAL mode NORMAL may lose the last commits on power loss, and a task definition or
  // a run's outcome the operator was told about must not vanish.
  db.pragma('synchronous = FULL');
  if (version === SCHEMA_VERSION) return;
  db.transaction(() => {
    // Read again under the write lock: another process opening the same new file may have created it first.
    if ((db.pragma('user_version', { simple: true }) as number) === SCHEMA_VERSION) return;
    db.exec(SCHEMA);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }).immediate();
}
