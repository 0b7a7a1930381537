// Prometheus metrics of one agent (DESIGN.md "Observability"): last success per unit, run durations, bytes
// per destination, failures. Each agent has its own registry (tests run several in one process), served
// over HTTP at /metrics when the config names an address.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export class AgentMetrics {
  readonly registry = new Registry();
  readonly lastSuccess = new Gauge({
    name: 'backupd_unit_last_success_timestamp_seconds',
    help: 'Time of the last successful run of a unit, by task, database and level.',
    labelNames: ['task', 'database', 'level'] as const,
    registers: [this.registry],
  });
  readonly runDuration = new Histogram({
    name: 'backupd_run_duration_seconds',
    help: 'Duration of runs, by type, level and outcome.',
    labelNames: ['type', 'level', 'outcome'] as const,
    buckets: [1, 5, 15, 60, 300, 900, 3600, 4 * 3600],
    registers: [this.registry],
  });
  readonly runs = new Counter({
    name: 'backupd_runs_total',
    help: 'Finished runs, by task and outcome.',
    labelNames: ['task', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly bytesRead = new Counter({
    name: 'backupd_bytes_read_total',
    help: 'Bytes of database content read by runs.',
    labelNames: ['task'] as const,
    registers: [this.registry],
  });
  readonly bytesWritten = new Counter({
    name: 'backupd_bytes_written_total',
    help: 'Bytes of new packs written (after dedupe, compression and encryption).',
    labelNames: ['task'] as const,
    registers: [this.registry],
  });
  readonly bytesUploaded = new Counter({
    name: 'backupd_bytes_uploaded_total',
    help: 'Bytes uploaded, by destination.',
    labelNames: ['task', 'destination'] as const,
    registers: [this.registry],
  });
  readonly destinationFailures = new Counter({
    name: 'backupd_destination_failures_total',
    help: 'Runs that a destination failed, by destination.',
    labelNames: ['task', 'destination'] as const,
    registers: [this.registry],
  });
  readonly retentionFailures = new Counter({
    name: 'backupd_retention_failures_total',
    help: 'Retention at a destination that failed after a successful run (the backup stands), by destination.',
    labelNames: ['task', 'destination'] as const,
    registers: [this.registry],
  });
  readonly ticksNotQueued = new Counter({
    name: 'backupd_ticks_not_queued_total',
    help: 'Claimed scheduled ticks the agent could not queue a run for (each has a failed run record).',
    labelNames: ['task'] as const,
    registers: [this.registry],
  });
  readonly runningRuns = new Gauge({
    name: 'backupd_runs_running',
    help: 'Runs in progress on this node.',
    registers: [this.registry],
  });
  readonly leader = new Gauge({
    name: 'backupd_leader',
    help: '1 while this node is the cluster leader (always 1 on a single node).',
    registers: [this.registry],
  });
  readonly leaderChanges = new Counter({
    name: 'backupd_leader_changes_total',
    help: 'Times this node became or stopped being the leader.',
    registers: [this.registry],
  });
  readonly unitsNotScheduled = new Gauge({
    name: 'backupd_units_not_scheduled',
    help: 'Units assigned to this node that its scheduler was not running at the last check (then scheduled).',
    registers: [this.registry],
  });
  readonly drillRuns = new Counter({
    name: 'backupd_drill_runs_total',
    help: 'Finished restore drills (verify --restore of the newest backup), by task, destination and outcome (passed, failed, skipped).',
    labelNames: ['task', 'destination', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly drillDuration = new Histogram({
    name: 'backupd_drill_duration_seconds',
    help: 'Duration of restore drills, restore and checks, by outcome.',
    labelNames: ['outcome'] as const,
    buckets: [1, 5, 15, 60, 300, 900, 3600, 4 * 3600],
    registers: [this.registry],
  });
  readonly drillLastSuccess = new Gauge({
    name: 'backupd_drill_last_success_timestamp_seconds',
    help: 'Time of the last restore drill of a unit that passed, by task and database.',
    labelNames: ['task', 'database'] as const,
    registers: [this.registry],
  });
  readonly unitsOwned = new Gauge({
    name: 'backupd_units_owned',
    help: 'Units this node is the responsible node of.',
    registers: [this.registry],
  });
}

/** Serve `metrics` at http://<listen>/metrics; resolves once listening, with the bound port. */
export async function serveMetrics(
  metrics: AgentMetrics,
  listen: string,
): Promise<{ port: number; close(): Promise<void> }> {
  const at = listen.lastIndexOf(':');
  const host = listen.slice(0, at).replace(/^\[|\]$/g, '');
  const server: Server = createServer((request, response) => {
    if (request.url !== '/metrics') {
      response.writeHead(404).end('see /metrics\n');
      return;
    }
    metrics.registry.metrics().then(
      (body) => response.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body),
      (error: unknown) => response.writeHead(500).end(String(error)),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(listen.slice(at + 1)), host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
