// What a run leaves in the unit's status, metrics and log (issue 21): the last full / incremental carry the
// run's end, a retention that fails after a successful publish is recorded per destination and counted
// (the run stays succeeded: its backup is published), and every log line keeps pino's numeric `level`.
// executeRun() against a real SQLite source and real local folders.

import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentMetrics } from '../../src/agent/metrics.js';
import type { RunContext, RunJob } from '../../src/agent/run-context.js';
import { executeRun } from '../../src/agent/runner.js';
import type { RetentionPolicy } from '../../src/backup/retention.js';
import { createSampleDb } from '../../src/cli/sample-db.js';
import type { RunRecord } from '../../src/cluster/store.js';
import { BackupdError } from '../../src/errors.js';
import type { BackupLevel } from '../../src/layout.js';
import type { DestinationFactory } from '../../src/uploader/destination.js';
import { type LocalConfig, LocalDestination, local } from '../../src/uploader/local.js';
import { DestinationRegistry, type DestinationSpec } from '../../src/uploader/registry.js';
import { MemoryStore } from '../support/memory-store.js';
import { type Workspace, workspace } from '../support/workspace.js';

const TASK = 't';
const DB = 'local/shop.db';
const HOUR = 3_600_000;

/** A real local folder whose deletes are refused while `refuse` is set (a destination that denies deletes). */
class NoDeleteLocal extends LocalDestination {
  static refuse = false;
  override async delete(key: string): Promise<void> {
    if (NoDeleteLocal.refuse) throw new BackupdError('PERMISSION_DENIED', `delete ${key}: access denied`);
    return super.delete(key);
  }
}

const noDelete: DestinationFactory<LocalConfig> = {
  kind: 'nodelete',
  parseConfig: (input, path) => local.parseConfig(input, path),
  redact: (config) => config,
  open: async (name, config) => new NoDeleteLocal(name, config.path),
};

describe('what a run records', () => {
  let ws: Workspace;
  let store: MemoryStore;
  let now: number;
  let lines: string[];
  let metrics: AgentMetrics;
  let runs = 0;

  beforeEach(async () => {
    ws = await workspace();
    createSampleDb(join(ws.dbDir, 'shop.db'), 2_000, 3);
    store = new MemoryStore();
    now = Date.parse('2026-03-01T00:00:00Z');
    lines = [];
    metrics = new AgentMetrics();
    NoDeleteLocal.refuse = false;
  });
  afterEach(() => ws.cleanup());

  function context(): RunContext {
    return {
      cluster: 'test',
      node: 'n1',
      dataDir: join(ws.dir, 'data'),
      store,
      metrics,
      registry: new DestinationRegistry([local, noDelete]),
      logger: pino({ level: 'info' }, { write: (line: string) => void lines.push(line) }),
      sourceFor: (name) => (name === 'local' ? ws.source : undefined),
      term: () => 0,
      // Every reading is a second later: a run's start and end differ.
      now: () => {
        now += 1000;
        return new Date(now);
      },
      stopping: () => false,
    };
  }

  function run(destinations: DestinationSpec[], level: BackupLevel, retention?: RetentionPolicy): Promise<RunRecord> {
    runs += 1;
    const record: RunRecord = {
      runId: `run-${runs}`,
      task: TASK,
      database: DB,
      type: 'backup',
      level,
      trigger: 'now',
      outcome: 'queued',
      node: 'n1',
      queuedAt: new Date(now).toISOString(),
      rawBytes: 0,
      storedBytes: 0,
      destinations: [],
    };
    const job: RunJob = { id: record.runId, unitKey: `${TASK}/${DB}`, level, record, destinations, retention };
    return executeRun(context(), job, new AbortController().signal, () => {});
  }

  const disk: DestinationSpec = { name: 'disk', kind: 'local', config: { path: '' } };
  const at = (name: string) => ({ ...disk, name, config: { path: join(ws.dir, name) } });

  it("the unit's last full and last incremental carry the run's end, not only its start", async () => {
    const full = await run([at('disk')], 'full');
    const incr = await run([at('disk')], 'incr');
    expect(full.outcome, full.error).toBe('succeeded');
    expect(incr.outcome, incr.error).toBe('succeeded');
    const unit = (await store.getUnit(TASK, DB))!;
    expect(unit.lastFull?.finishedAt).toBeDefined();
    expect(unit.lastFull).toMatchObject({ runId: full.runId, startedAt: full.startedAt, finishedAt: full.finishedAt });
    expect(Date.parse(unit.lastFull!.finishedAt!)).toBeGreaterThan(Date.parse(unit.lastFull!.startedAt!));
    expect(unit.lastIncremental).toMatchObject({ runId: incr.runId, finishedAt: incr.finishedAt });
    expect(unit.lastIncremental?.finishedAt).toBeDefined();
  });

  it("a failed retention is in the unit's status for its destination and in a metric; the run stays succeeded", async () => {
    const both = [at('disk'), { name: 'locked', kind: 'nodelete', config: { path: join(ws.dir, 'locked') } }];
    const first = await run(both, 'full');
    expect(first.outcome, first.error).toBe('succeeded');

    // A second chain retires the first (keepChains 1): 'disk' deletes it, 'locked' refuses.
    now += HOUR;
    NoDeleteLocal.refuse = true;
    const second = await run(both, 'full', { keepChains: 1 });
    expect(second.outcome, second.error).toBe('succeeded');
    const locked = second.destinations.find((d) => d.destination === 'locked');
    expect(locked).toMatchObject({ ok: true, retentionErrorCode: 'PERMISSION_DENIED' });
    expect(locked?.retentionError).toContain('access denied');
    expect(second.destinations.find((d) => d.destination === 'disk')?.retentionError).toBeUndefined();

    // The unit's status (its last run, per destination) and the stored run say so.
    const unit = (await store.getUnit(TASK, DB))!;
    expect(unit.lastRun?.destinations.find((d) => d.destination === 'locked')).toMatchObject({
      retentionErrorCode: 'PERMISSION_DENIED',
    });
    expect((await store.getRun(second.runId))?.destinations).toEqual(second.destinations);
    const metric = await metrics.registry.getSingleMetricAsString('backupd_retention_failures_total');
    expect(metric).toContain('backupd_retention_failures_total{task="t",destination="locked"} 1');
    expect(metric).not.toContain('destination="disk"');

    // Once deletes work again, the next run's retention succeeds and its record carries no error.
    NoDeleteLocal.refuse = false;
    now += HOUR;
    const third = await run(both, 'full', { keepChains: 1 });
    expect(third.destinations.every((d) => d.retentionError === undefined)).toBe(true);
  });

  it("every log line keeps pino's numeric level; the backup level is backupLevel", async () => {
    const record = await run([at('disk')], 'full');
    expect(record.outcome, record.error).toBe('succeeded');
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) {
      // JSON.parse keeps the last of two keys: a second "level" would replace the severity.
      expect((line.match(/"level":/g) ?? []).length, line).toBe(1);
      expect(typeof JSON.parse(line).level, line).toBe('number');
    }
    const started = lines.map((l) => JSON.parse(l)).find((l) => l.msg === 'run started');
    expect(started).toMatchObject({ level: 30, backupLevel: 'full', run: record.runId });
  });
});
