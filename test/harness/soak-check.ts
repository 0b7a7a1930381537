// The judge of a cluster fault soak (test/cluster/soak.test.ts): it reads what the destination holds (every
// manifest, decoded here from its bytes, docs/FORMAT.md) and what etcd holds (run records and tick claims,
// read with etcdctl), never the product's own summary, and checks a list of named invariants. Each invariant
// returns its violations, so a failing soak names every broken rule at once; add a rule by adding an entry.

import { spawnSync } from 'node:child_process';
import { type Dirent, readdirSync, readFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import * as zstd from 'zstd-napi';
import type { EtcdServer } from './etcd.js';

/** A restore point as its manifest at the destination says. */
export interface SoakManifest {
  /** `<source>/<db>` */
  database: string;
  chainId: string;
  backupId: string;
  parent?: string;
  level: string;
  node: string;
  term: number;
  startedAt: string;
  finishedAt: string;
}

/** A run record as etcd holds it (`runs/<id>`). */
export interface SoakRun {
  runId: string;
  task: string;
  database: string;
  level: string;
  trigger: string;
  scheduledAt?: string;
  outcome: string;
  node: string;
  queuedAt: string;
  startedAt?: string;
  finishedAt?: string;
  chainId?: string;
  backupId?: string;
  duplicate?: { claimedBy: string };
  /** The backup of an earlier failed run that this run published first. */
  pending?: { chainId: string; backupId: string; outcome: string };
}

/** A tick claim as etcd holds it (`ticks/<task>/<source>/<db>/<level>/<time>`). */
export interface SoakClaim {
  task: string;
  database: string;
  level: string;
  scheduledAt: string;
  node?: string;
}

export interface SoakEvidence {
  manifests: SoakManifest[];
  runs: SoakRun[];
  claims: SoakClaim[];
  /** The task's units, `<source>/<db>`. */
  databases: string[];
  /** Ticks of the schedule from this instant on must each be served (the first runs are done by then). */
  from: Date;
  /** ... up to this one (the end of the fault phase). */
  to: Date;
  /** The schedule's period, seconds (one cron, every N seconds). */
  everySeconds: number;
  /** The longest a tick may wait for the run that serves it (the longest fault plus failover). */
  maxDelayMs: number;
  /** Every state each run record had in etcd, oldest first (readRunHistory), for the invariants that need it. */
  runHistory?: Map<string, string[]>;
}

export interface Invariant {
  name: string;
  /** Every violation, each a sentence naming what broke; empty when the rule holds. */
  check(evidence: SoakEvidence): string[];
}

const manifestKey = (database: string, chainId: string, backupId: string) => `${database}/${chainId}/${backupId}`;
const tickKey = (database: string, scheduledAt: string) => `${database} ${scheduledAt}`;

/** Succeeded runs by the tick they served. */
function succeededByTick(runs: SoakRun[]): Map<string, SoakRun[]> {
  const byTick = new Map<string, SoakRun[]>();
  for (const run of runs) {
    if (run.outcome !== 'succeeded' || !run.scheduledAt) continue;
    const key = tickKey(run.database, run.scheduledAt);
    byTick.set(key, [...(byTick.get(key) ?? []), run]);
  }
  return byTick;
}

/** Per database, the sorted times (ms) of the ticks served by a succeeded run. */
function servedTimes(runs: SoakRun[]): Map<string, number[]> {
  const served = new Map<string, number[]>();
  for (const run of runs) {
    if (run.outcome !== 'succeeded' || !run.scheduledAt) continue;
    served.set(run.database, [...(served.get(run.database) ?? []), Date.parse(run.scheduledAt)]);
  }
  for (const times of served.values()) times.sort((a, b) => a - b);
  return served;
}

/** The invariants of issue 27: a tick runs once, none is lost, chains stay linear. */
export const invariants: Invariant[] = [
  {
    name: 'no tick ran twice',
    check: ({ runs, manifests }) => {
      const violations: string[] = [];
      const published = new Set(manifests.map((m) => manifestKey(m.database, m.chainId, m.backupId)));
      for (const [tick, served] of succeededByTick(runs)) {
        // A run whose manifest is not at the destination published nothing (retention may have removed an
        // old chain, which a later check of chains would show); every published one counts.
        const atDestination = served.filter(
          (r) => r.chainId && r.backupId && published.has(manifestKey(r.database, r.chainId, r.backupId)),
        );
        if (served.length > 1 || atDestination.length > 1) {
          violations.push(
            `tick ${tick} ran ${served.length} times: ${served.map((r) => `${r.runId} on ${r.node} (${r.trigger}${r.duplicate ? ', marked duplicate' : ''}) -> ${r.backupId}`).join('; ')}`,
          );
        }
      }
      return violations;
    },
  },
  {
    name: 'no tick was missed',
    check: ({ runs, databases, from, to, everySeconds, maxDelayMs }) => {
      const violations: string[] = [];
      const served = servedTimes(runs);
      const period = everySeconds * 1000;
      for (const database of databases) {
        const times = served.get(database) ?? [];
        const first = Math.ceil(from.getTime() / period) * period;
        // A missed tick is served by one catch-up run of a later tick (docs/CLUSTER.md), within maxDelayMs.
        for (let tick = first; tick + maxDelayMs <= to.getTime(); tick += period) {
          if (!times.some((t) => t >= tick && t <= tick + maxDelayMs)) {
            violations.push(
              `${database}: no run served the tick of ${new Date(tick).toISOString()} nor any within ${maxDelayMs} ms after it`,
            );
          }
        }
      }
      return violations;
    },
  },
  {
    name: 'every claimed tick ran, or a later tick of its unit did',
    check: ({ runs, claims, to, maxDelayMs }) => {
      const served = servedTimes(runs);
      return claims
        .filter((c) => Date.parse(c.scheduledAt) + maxDelayMs <= to.getTime())
        .filter((c) => !(served.get(c.database) ?? []).some((t) => t >= Date.parse(c.scheduledAt)))
        .map(
          (c) => `${c.database}: the tick of ${c.scheduledAt} was claimed (by ${c.node ?? '?'}) and no run served it`,
        );
    },
  },
  {
    name: 'no run was cut off without a rerun',
    check: ({ runs }) => {
      const served = servedTimes(runs);
      return runs
        .filter((r) => r.scheduledAt && r.outcome !== 'succeeded')
        .filter((r) => !(served.get(r.database) ?? []).some((t) => t >= Date.parse(r.scheduledAt!)))
        .map(
          (r) =>
            `${r.database}: run ${r.runId} of the tick of ${r.scheduledAt} on ${r.node} ended ${r.outcome} and no run of that tick or a later one succeeded`,
        );
    },
  },
  {
    name: 'every chain is linear: one full, every parent present, one child per parent',
    check: ({ manifests }) => {
      const violations: string[] = [];
      const chains = new Map<string, SoakManifest[]>();
      for (const m of manifests) {
        const key = `${m.database}/${m.chainId}`;
        chains.set(key, [...(chains.get(key) ?? []), m]);
      }
      for (const [chain, members] of chains) {
        const ids = new Set(members.map((m) => m.backupId));
        const fulls = members.filter((m) => !m.parent);
        if (fulls.length !== 1) violations.push(`${chain}: ${fulls.length} restore points without a parent`);
        const children = new Map<string, string[]>();
        for (const m of members) {
          if (!m.parent) continue;
          if (!ids.has(m.parent))
            violations.push(`${chain}: ${m.backupId} names parent ${m.parent}, which is not there`);
          children.set(m.parent, [...(children.get(m.parent) ?? []), `${m.backupId} (${m.node})`]);
        }
        for (const [parent, kids] of children) {
          if (kids.length > 1) violations.push(`${chain}: ${parent} has ${kids.length} children: ${kids.join(', ')}`);
        }
      }
      return violations;
    },
  },
  {
    name: 'every manifest has a succeeded run record',
    check: ({ manifests, runs }) => {
      const recorded = new Set<string>();
      for (const r of runs) {
        if (r.outcome === 'succeeded' && r.chainId && r.backupId)
          recorded.add(manifestKey(r.database, r.chainId, r.backupId));
        if (r.pending?.outcome === 'published')
          recorded.add(manifestKey(r.database, r.pending.chainId, r.pending.backupId));
      }
      return manifests
        .filter((m) => !recorded.has(manifestKey(m.database, m.chainId, m.backupId)))
        .map(
          (m) =>
            `${m.database}/${m.chainId}/${m.backupId} (by ${m.node}) is at the destination, no succeeded run records it`,
        );
    },
  },
  {
    name: 'every restore point leads back to its chain’s full',
    check: ({ manifests }) => {
      const byKey = new Map(manifests.map((m) => [manifestKey(m.database, m.chainId, m.backupId), m]));
      const violations: string[] = [];
      for (const m of manifests) {
        let at: SoakManifest | undefined = m;
        const seen = new Set<string>();
        while (at?.parent && !seen.has(at.backupId)) {
          seen.add(at.backupId);
          at = byKey.get(manifestKey(m.database, m.chainId, at.parent));
        }
        if (!at || at.parent) violations.push(`${m.database}/${m.chainId}/${m.backupId} does not lead back to a full`);
      }
      return violations;
    },
  },
];

const RANK: Record<string, number> = { queued: 0, running: 1 };

/**
 * Issue 28's rule, on etcd's history of the run records (readRunHistory): a record only moves forward
 * (queued -> running -> its outcome). Apart from `invariants` since it needs that history as evidence.
 */
export const runStateInvariant: Invariant = {
  name: 'no run record’s state goes backwards',
  check: ({ runHistory }) => {
    if (!runHistory) return ['no history of the run records was read'];
    const violations: string[] = [];
    for (const [runId, states] of runHistory) {
      for (let i = 1; i < states.length; i++) {
        const [before, after] = [states[i - 1]!, states[i]!];
        const back = (RANK[after] ?? 2) < (RANK[before] ?? 2) || ((RANK[before] ?? 2) === 2 && after !== before);
        if (back) violations.push(`run ${runId} went from ${before} to ${after} (${states.join(' -> ')})`);
      }
    }
    return violations;
  },
};

/** Run every invariant; the violations by invariant name (only those with any). */
export function checkSoak(evidence: SoakEvidence, rules: Invariant[] = invariants): Record<string, string[]> {
  const failed: Record<string, string[]> = {};
  for (const rule of rules) {
    const violations = rule.check(evidence);
    if (violations.length > 0) failed[rule.name] = violations;
  }
  return failed;
}

/** The newest restore point of a database at the destination (by backup id: UTC time, then level). */
export function newestRestorePoint(manifests: SoakManifest[], database: string): SoakManifest | undefined {
  return manifests
    .filter((m) => m.database === database)
    .sort((a, b) => a.finishedAt.localeCompare(b.finishedAt) || a.backupId.localeCompare(b.backupId))
    .at(-1);
}

// ---- reading the evidence ----

/** Every manifest under `<destDir>/<cluster>/`, decoded from its bytes (unencrypted tasks only). */
export function readManifests(destDir: string, cluster: string): SoakManifest[] {
  const root = join(destDir, cluster);
  const found: SoakManifest[] = [];
  const walk = (dir: string) => {
    let entries: Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch (error) {
      if ((error as { code?: string }).code === 'ENOENT') return; // nothing published yet
      throw error;
    }
    for (const entry of entries) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.manifest')) found.push(decodeManifest(path, relative(root, path)));
    }
  };
  walk(root);
  return found;
}

function decodeManifest(path: string, where: string): SoakManifest {
  const bytes = readFileSync(path);
  const first = bytes.indexOf(10);
  const second = bytes.indexOf(10, first + 1);
  if (!bytes.subarray(0, first).toString().startsWith('BACKUPD-MANIFEST ')) throw new Error(`${path}: not a manifest`);
  const header = JSON.parse(bytes.subarray(first + 1, second).toString()) as { encryption: string; bodyLength: number };
  if (header.encryption !== 'none') throw new Error(`${path}: the soak reads unencrypted manifests only`);
  const body = JSON.parse(
    zstd.decompress(bytes.subarray(second + 1, second + 1 + header.bodyLength)).toString(),
  ) as SoakManifest & { source: string };
  const [source, db, chainId] = where.split(sep);
  if (`${body.source}/${body.database}` !== `${source}/${db}` || body.chainId !== chainId) {
    throw new Error(`${path}: the manifest says ${body.source}/${body.database}/${body.chainId}`);
  }
  return {
    database: `${body.source}/${body.database}`,
    chainId: body.chainId,
    backupId: body.backupId,
    parent: body.parent,
    level: body.level,
    node: body.node,
    term: body.term,
    startedAt: body.startedAt,
    finishedAt: body.finishedAt,
  };
}

/** Run records and tick claims of a task, as etcd holds them. */
export function readEtcdRecords(
  etcd: EtcdServer,
  cluster: string,
  task: string,
): { runs: SoakRun[]; claims: SoakClaim[] } {
  const prefix = `/backupd/${cluster}/`;
  const runs = readPrefix(etcd, `${prefix}runs/`)
    .map(([, value]) => JSON.parse(value) as SoakRun)
    .filter((r) => r.task === task);
  const claims = readPrefix(etcd, `${prefix}ticks/${task}/`).map(([key, value]) => {
    const [, , , , , source, db, level, scheduledAt] = key.split('/');
    const parsed = JSON.parse(value) as { node?: string };
    return { task, database: `${source}/${db}`, level: level!, scheduledAt: scheduledAt!, node: parsed.node };
  });
  return { runs, claims };
}

function readPrefix(etcd: EtcdServer, prefix: string): [string, string][] {
  const out = JSON.parse(etcd.ctl(['get', '--prefix', prefix, '-w', 'json'])) as {
    kvs?: { key: string; value: string }[];
  };
  return (out.kvs ?? []).map((kv) => [
    Buffer.from(kv.key, 'base64').toString(),
    Buffer.from(kv.value, 'base64').toString(),
  ]);
}

/** Every state each run record of a task had in etcd, oldest first, from etcd's history (never compacted here). */
export function readRunHistory(etcd: EtcdServer, cluster: string, task: string): Map<string, string[]> {
  // A watch from revision 1 replays the history, then waits: stopped after a few seconds.
  const out = spawnSync(
    'timeout',
    [
      '3',
      'etcdctl',
      '--endpoints',
      etcd.endpoint,
      'watch',
      '--rev',
      '1',
      '--prefix',
      `/backupd/${cluster}/runs/`,
      '-w',
      'json',
    ],
    { encoding: 'utf8', env: { ...process.env, ETCDCTL_API: '3' }, maxBuffer: 256 * 1024 * 1024 },
  );
  const history = new Map<string, string[]>();
  for (const line of out.stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    const batch = JSON.parse(line) as { Events?: { kv: { value?: string } }[] };
    for (const event of batch.Events ?? []) {
      if (!event.kv.value) continue; // a delete (history trimmed)
      const run = JSON.parse(Buffer.from(event.kv.value, 'base64').toString()) as SoakRun;
      if (run.task !== task) continue;
      history.set(run.runId, [...(history.get(run.runId) ?? []), run.outcome]);
    }
  }
  if (history.size === 0) throw new Error(`no history of run records read from etcd: ${out.stderr}`);
  return history;
}
