// What one run needs from the agent (RunContext) and the queued run itself (RunJob): shared by the runner
// (runner.ts) and the pending publisher (pending.ts), so neither imports the other.

import type { Logger } from 'pino';
import type { RetentionPolicy } from '../backup/retention.js';
import type { RunRecord, Store } from '../cluster/store.js';
import type { QueueJob } from '../scheduler/run-queue.js';
import type { Source } from '../sources/source.js';
import type { DestinationRegistry, DestinationSpec } from '../uploader/registry.js';
import type { AgentMetrics } from './metrics.js';

/** One queued run with everything it needs; `id` is the run id. */
export interface RunJob extends QueueJob {
  record: RunRecord;
  destinations: DestinationSpec[];
  key?: string;
  /** Applied after a successful run of a task; never for one-time backups. */
  retention?: RetentionPolicy;
}

export interface RunContext {
  cluster: string;
  node: string;
  dataDir: string;
  store: Store;
  metrics: AgentMetrics;
  registry: DestinationRegistry;
  logger: Logger;
  sourceFor(name: string): Source | undefined;
  /** The fencing term of the unit's assignment (0 on a single node), stamped on its manifests. */
  term(task: string, database: string): number;
  now(): Date;
  /** True once the agent is stopping: runs it aborts are 'interrupted' and run again at the next start. */
  stopping(): boolean;
}

export const isTerminal = (outcome: RunRecord['outcome']) => outcome !== 'queued' && outcome !== 'running';
