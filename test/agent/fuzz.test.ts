// Property-based fuzzing of every Backupd method that takes input, against a real `backupd` process, with a
// client of its own: @grpc/grpc-js and proto-loader straight from the .proto (snake_case field names), not
// the project's client or loader. For every request, whatever it holds (half characters, 1 MB names, configs
// nested thousands deep, any token): the agent stays up, health stays SERVING, the reply has a proper status
// code (never INTERNAL, UNKNOWN or a deadline: every call ends with a status), and a rejected request changes
// nothing (the task list, run history and unit status asked over gRPC, and the store as the sqlite3 CLI dumps it).
// A fixed seed and FUZZ_RUNS (default 150) runs in the suite; `npm run fuzz` runs longer with a new seed
// (FUZZ_RUNS, FUZZ_SEED to replay one).

import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import fc from 'fast-check';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSampleDb } from '../../src/cli/sample-db.js';
import { type AgentProcess, startAgent } from '../harness/agent.js';
import { tempDir } from '../harness/process.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 150);
const SEED = process.env.FUZZ_SEED === 'random' ? Date.now() % 2 ** 31 : Number(process.env.FUZZ_SEED ?? 20261207);
const FULL = 'fuzz-full-token-0123456789';
const READ_ONLY = 'fuzz-read-only-token-0123456789';
const PROTO = join(import.meta.dirname, '..', '..', 'proto', 'backupd', 'v1', 'backupd.proto');
const OPTIONS: protoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

/** Codes a request may be answered with, whatever it holds. Bad input is never INTERNAL or UNKNOWN. */
const PROPER = new Set([
  grpc.status.OK,
  grpc.status.INVALID_ARGUMENT,
  grpc.status.NOT_FOUND,
  grpc.status.ALREADY_EXISTS,
  grpc.status.FAILED_PRECONDITION,
  grpc.status.PERMISSION_DENIED,
  grpc.status.UNAUTHENTICATED,
]);

type Method = protoLoader.MethodDefinition<object, object>;

function methodsOf(definition: protoLoader.PackageDefinition, service: string): Record<string, Method> {
  const found = definition[service];
  if (!found || 'format' in found) throw new Error(`${service} is not in ${PROTO}`);
  return found as unknown as Record<string, Method>;
}

const backupd = methodsOf(protoLoader.loadSync(PROTO, OPTIONS), 'backupd.v1.Backupd');
const health = methodsOf(protoLoader.loadSync(healthProtoPath, OPTIONS), 'grpc.health.v1.Health');

interface Reply {
  code: grpc.status;
  details: string;
  value?: unknown;
}

function metadataFor(token: string | undefined): grpc.Metadata {
  const metadata = new grpc.Metadata();
  if (token !== undefined) metadata.set('authorization', `Bearer ${token}`);
  return metadata;
}

/** One call by its definition, unary or server-streaming, ending in its status (or the deadline's). */
function send(client: grpc.Client, method: Method, request: object, token: string | undefined): Promise<Reply> {
  const options = { deadline: Date.now() + 15_000 };
  return new Promise((resolve) => {
    if (!method.responseStream) {
      client.makeUnaryRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        request,
        metadataFor(token),
        options,
        (error, value) =>
          resolve(error ? { code: error.code, details: error.details } : { code: grpc.status.OK, details: '', value }),
      );
      return;
    }
    const stream = client.makeServerStreamRequest(
      method.path,
      method.requestSerialize,
      method.responseDeserialize,
      request,
      metadataFor(token),
      options,
    );
    stream.on('data', () => {});
    // Errors come as the status too; the listener keeps them from being thrown.
    stream.on('error', () => {});
    stream.on('status', (status: grpc.StatusObject) => resolve({ code: status.code, details: status.details }));
  });
}

// ---- what requests are made of ----

/** Any UTF-16 code units, lone surrogates included. */
const anyText = fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)) });
const huge = fc.constantFrom('n'.repeat(1 << 20), '\u{1F600}'.repeat(1 << 18), 'x\uD800'.repeat(1 << 17));

function nested(depth: number): string {
  return `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
}

interface Pools {
  names: string[];
  databases: string[];
  chains: string[];
  backups: string[];
  runs: string[];
  adhoc: string;
}

function arbitraries(pools: Pools) {
  const text = (known: string[]) =>
    fc.oneof(
      { weight: 3, arbitrary: fc.constantFrom(...known) },
      { weight: 3, arbitrary: anyText },
      { weight: 1, arbitrary: huge },
    );
  const name = text(pools.names);
  const database = text(pools.databases);
  const configJson = fc.oneof(
    fc.constantFrom(
      '',
      '\u{1F600}',
      '{"\\ud800":1}',
      '{"path":"\\udfff"}',
      `{"bucket":"b","credentials":${nested(10_000)}}`,
      nested(100),
      JSON.stringify({ path: pools.adhoc }),
      JSON.stringify({ path: pools.adhoc, pad: 'p'.repeat(70 * 1024) }),
      '{"bucket":"b","endpoint":"http://127.0.0.1:1"}',
    ),
    fc.jsonValue().map((v) => JSON.stringify(v)),
    fc.dictionary(anyText, anyText).map((v) => JSON.stringify(v)),
    anyText,
  );
  const destination = fc.record({
    name: text(['d', 'disk']),
    kind: text(['local', 's3', 'gcs', 'azure', 'ftp', 'glacier']),
    config_json: configJson,
  });
  const spec = fc.record(
    {
      name,
      databases: fc.record({ names: fc.array(database, { maxLength: 3 }) }),
      server_wide: fc.record({ source: text(['main']), exclude: fc.array(anyText, { maxLength: 2 }) }),
      type: text(['backup', 'snapshot']),
      schedule: fc.record({ full: text(['0 3 * * *', '61 * * * *']), incremental: anyText, time_zone: text(['UTC']) }),
      preferred_node: anyText,
      pin_to_preferred_node: fc.boolean(),
      retention: fc.record({
        max_age_days: fc.double(),
        keep_chains: fc.nat(),
        orphan_grace_hours: fc.double(),
      }),
      destinations: fc.array(destination, { maxLength: 3 }),
      disabled: fc.boolean(),
      missed_runs: text(['run-once', 'skip']),
      encrypted: fc.boolean(),
    },
    { requiredKeys: [] },
  );
  const from = fc.oneof(
    fc.record({ task: name, destination: text(['d']) }, { requiredKeys: [] }),
    fc.record({ spec: destination }),
    fc.record({ task: name, destination: text(['d']), spec: destination }, { requiredKeys: [] }),
  );
  const key = fc.oneof(fc.constant(''), anyText);
  const chain = text(pools.chains);
  const backup = text(pools.backups);
  const runId = text(pools.runs);
  const requests: Record<string, fc.Arbitrary<object>> = {
    CreateTask: fc.record({ spec, encryption_key: key }, { requiredKeys: [] }),
    UpdateTask: fc.record({ spec, encryption_key: key, expected_revision: fc.nat().map(String) }, { requiredKeys: [] }),
    DeleteTask: fc.record({ name: fc.oneof(anyText, huge) }),
    GetTask: fc.record({ name }),
    GetTaskStatus: fc.record({ name }),
    BackupNow: fc.record({ task: name, database, level: text(['full', 'incr']) }, { requiredKeys: [] }),
    OneTimeBackup: fc.record(
      {
        database,
        type: text(['backup', 'snapshot']),
        encryption_key: key,
        destinations: fc.array(destination, { maxLength: 2 }),
      },
      { requiredKeys: [] },
    ),
    CancelRun: fc.record({ run_id: runId }),
    DelayUnit: fc.record({ task: name, database, seconds: fc.nat() }, { requiredKeys: [] }),
    GetRun: fc.record({ run_id: runId }),
    ListRuns: fc.record({ task: name, database, limit: fc.nat() }, { requiredKeys: [] }),
    WatchRun: fc.record({ run_id: runId }),
    ListBackups: fc.record({ from, database, cluster: anyText }, { requiredKeys: [] }),
    // No known chain: a restore that could succeed would create databases wherever its target says.
    Restore: fc.record(
      {
        from,
        database,
        chain_id: anyText,
        backup_id: anyText,
        target: anyText,
        encryption_key: key,
        cluster: anyText,
        into_source: anyText,
      },
      { requiredKeys: [] },
    ),
    Verify: fc.record(
      { from, database, chain_id: chain, backup_id: backup, encryption_key: key },
      { requiredKeys: [] },
    ),
  };
  const token = fc.oneof(
    { weight: 5, arbitrary: fc.constant<string | undefined>(FULL) },
    { weight: 4, arbitrary: fc.constant<string | undefined>(READ_ONLY) },
    { weight: 1, arbitrary: fc.constantFrom<string | undefined>(undefined, '', 'not a token', FULL.slice(1)) },
  );
  const call = fc.oneof(
    ...Object.entries(requests).map(([method, request]) => fc.record({ method: fc.constant(method), request, token })),
  );
  return { call, requests };
}

// ---- the judge ----

describe('fuzzing every method that takes input', () => {
  const dir = tempDir('fuzz');
  const dbDir = join(dir.path, 'dbs');
  const destDir = join(dir.path, 'dest');
  let agent: AgentProcess;
  let client: grpc.Client;
  const pools: Pools = {
    names: ['shop', ''],
    databases: ['main/shop.db', ''],
    chains: [],
    backups: [],
    runs: ['run-1'],
    adhoc: '',
  };

  const unary = async (method: string, request: object): Promise<unknown> => {
    const reply = await send(client, backupd[method] as Method, request, FULL);
    if (reply.code !== grpc.status.OK) throw new Error(`${method}: ${grpc.status[reply.code]} ${reply.details}`);
    return reply.value;
  };

  /** What a rejected request must leave as it was, asked over gRPC and read from the store by sqlite3. */
  const snapshot = async () => {
    const status = await send(client, backupd.GetTaskStatus as Method, { name: 'shop' }, FULL);
    return {
      tasks: await unary('ListTasks', {}),
      runs: await unary('ListRuns', { limit: 1000 }),
      status: status.code === grpc.status.OK ? status.value : grpc.status[status.code],
      store: execFileSync(
        'sqlite3',
        ['-readonly', join(agent.dataDir, 'state.db'), '.dump tasks task_keys units runs'],
        {
          encoding: 'utf8',
        },
      ),
      destination: filesUnder(destDir),
    };
  };

  /** An accepted request may have started runs: wait until none is queued or running, so the state holds still. */
  const settled = async () => {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const { runs } = (await unary('ListRuns', { limit: 1000 })) as { runs: { outcome: string }[] };
      if (!runs.some((r) => r.outcome === 'queued' || r.outcome === 'running')) return;
      if (Date.now() > deadline) throw new Error('runs still going after 60 s');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };

  const healthy = async () => {
    for (const service of ['', 'backupd.v1.Backupd']) {
      const reply = await send(client, health.Check as Method, { service }, undefined);
      expect(reply.code).toBe(grpc.status.OK);
      expect((reply.value as { status: string }).status).toBe('SERVING');
    }
  };

  beforeAll(async () => {
    mkdirSync(dbDir, { recursive: true });
    mkdirSync(destDir, { recursive: true });
    createSampleDb(join(dbDir, 'shop.db'), 300, 1);
    pools.adhoc = join(dir.path, 'adhoc');
    agent = await startAgent({
      dir: dir.path,
      sources: [{ name: 'main', engine: 'sqlite', config: { path: dbDir } }],
      extra: { auth: { token: FULL, readOnlyToken: READ_ONLY } },
    });
    client = new grpc.Client(agent.address, grpc.credentials.createInsecure());
    // One task with one backup, so requests that name them go past the lookups into the real work.
    await unary('CreateTask', {
      spec: {
        name: 'shop',
        databases: { names: ['main/shop.db'] },
        type: 'backup',
        // 29 February only: no tick fires during the test and changes the state under it.
        schedule: { full: '0 3 29 2 *' },
        destinations: [{ name: 'd', kind: 'local', config_json: JSON.stringify({ path: destDir }) }],
      },
    });
    const { runs } = (await unary('BackupNow', { task: 'shop', level: 'full' })) as { runs: { run_id: string }[] };
    pools.runs.push(runs[0]?.run_id ?? 'no-run');
    const run = await send(client, backupd.WatchRun as Method, { run_id: runs[0]?.run_id }, FULL);
    expect(run.code).toBe(grpc.status.OK);
    const { chains } = (await unary('ListBackups', {
      from: { task: 'shop', destination: 'd' },
      database: 'main/shop.db',
    })) as {
      chains: { chain_id: string; backups: string[] }[];
    };
    expect(chains.length).toBe(1);
    pools.chains.push(...chains.map((c) => c.chain_id));
    pools.backups.push(...chains.flatMap((c) => c.backups));
  }, 60_000);

  afterAll(async () => {
    client?.close();
    await agent?.stop();
    dir.remove();
  });

  it(
    `${RUNS} requests (seed ${SEED}): proper codes, the agent serving, rejected requests change nothing`,
    async () => {
      const { call } = arbitraries(pools);
      const seen = new Map<string, Set<string>>();
      await fc.assert(
        fc.asyncProperty(call, async ({ method, request, token }) => {
          const before = await snapshot();
          const reply = await send(client, backupd[method] as Method, request, token);
          const codes = seen.get(method) ?? new Set<string>();
          codes.add(grpc.status[reply.code] ?? String(reply.code));
          seen.set(method, codes);
          // gRPC's own limit on a request's size (4 MiB): grpc-js refuses it before any handler runs.
          const size = (backupd[method] as Method).requestSerialize(request).length;
          const proper =
            PROPER.has(reply.code) || (size > 4 * 1024 * 1024 && reply.code === grpc.status.RESOURCE_EXHAUSTED);
          expect(proper, `${method} answered ${grpc.status[reply.code]}: ${reply.details.slice(0, 300)}`).toBe(true);
          expect(Buffer.byteLength(encodeURI(reply.details))).toBeLessThanOrEqual(8 * 1024);
          if (reply.code === grpc.status.OK) await settled();
          else expect(await snapshot()).toEqual(before);
          await healthy();
          expect(running(agent.pid), agent.logs().slice(-2000)).toBe(true);
        }),
        {
          seed: SEED,
          numRuns: RUNS,
          // The inputs that brought the agent down before, in every run.
          examples: [
            // Two requests that must be accepted, so the judge also sees real work done between rejections.
            [
              {
                method: 'Verify',
                token: READ_ONLY,
                request: {
                  from: { task: 'shop', destination: 'd' },
                  database: 'main/shop.db',
                  chain_id: pools.chains[0],
                  backup_id: pools.backups[0],
                },
              },
            ],
            [
              {
                method: 'OneTimeBackup',
                token: FULL,
                request: {
                  database: 'main/shop.db',
                  type: 'backup',
                  destinations: [{ name: 'adhoc', kind: 'local', config_json: JSON.stringify({ path: pools.adhoc }) }],
                },
              },
            ],
            [
              {
                method: 'ListBackups',
                token: READ_ONLY,
                request: {
                  from: { spec: { name: 'x', kind: 'local', config_json: '\u{1F600}' } },
                  database: 'main/shop.db',
                },
              },
            ],
            [
              {
                method: 'ListBackups',
                token: FULL,
                request: {
                  from: { spec: { name: 'x', kind: 'local', config_json: '\u{1F600}' } },
                  database: 'main/shop.db',
                },
              },
            ],
            [
              {
                method: 'Verify',
                token: FULL,
                request: {
                  from: { spec: { name: 'x', kind: 'local', config_json: '\u{1F600}' } },
                  database: 'main/shop.db',
                  chain_id: 'c',
                  backup_id: 'b',
                },
              },
            ],
            [
              {
                method: 'CreateTask',
                token: FULL,
                request: {
                  spec: { name: 't', destinations: [{ name: 'd', kind: 'local', config_json: '{"\\ud800":1}' }] },
                },
              },
            ],
            [
              {
                method: 'CreateTask',
                token: FULL,
                request: {
                  spec: {
                    name: 't',
                    databases: { names: ['main/shop.db'] },
                    type: 'backup',
                    schedule: { full: '0 3 * * *' },
                    destinations: [
                      { name: 'g', kind: 'gcs', config_json: `{"bucket":"b","credentials":${nested(10_000)}}` },
                    ],
                  },
                },
              },
            ],
            [{ method: 'GetTask', token: READ_ONLY, request: { name: 'n'.repeat(1 << 20) } }],
          ],
        },
      );
      if (process.env.FUZZ_REPORT) console.log(JSON.stringify([...seen].map(([m, c]) => [m, [...c]])));
      // Every method was tried, and the two requests that must succeed did.
      expect([...seen.keys()].sort()).toEqual(Object.keys(arbitraries(pools).requests).sort());
      expect(seen.get('Verify')).toContain('OK');
      expect(seen.get('OneTimeBackup')).toContain('OK');
    },
    120_000 + RUNS * 1_000,
  );
});

/** The process still exists, as the kernel says (signal 0 checks without sending anything). */
function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    // ESRCH: no such process.
    return false;
  }
}

function filesUnder(dir: string, prefix = ''): string[] {
  return readdirSync(dir)
    .flatMap((name) => {
      const path = join(dir, name);
      return statSync(path).isDirectory() ? filesUnder(path, `${prefix}${name}/`) : [`${prefix}${name}`];
    })
    .sort();
}
