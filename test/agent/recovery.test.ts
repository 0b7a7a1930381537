// A node killed while publishing, restarted: the real agent (single node, two local destinations, an
// encrypted chain), with run records and staged runs as a kill leaves them. Judged from the destination
// folders and the state file read with the sqlite3 CLI, not from the agent's own answers:
// - a run whose manifest is at every destination was published: recorded succeeded, nothing taken back;
// - a manifest at only some destinations that a later restore point names as its parent stays;
// - a manifest at only some destinations that nothing builds on is taken back, and its temp file goes;
// - a manifest is left alone when a destination cannot say whether it holds it (it may be published).

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listChains } from '../../src/backup/chain.js';
import { writeStaged } from '../../src/backup/staged.js';
import { changeSampleDb, createSampleDb } from '../../src/cli/sample-db.js';
import { openLocalStore } from '../../src/cluster/local-store.js';
import type { RunRecord } from '../../src/cluster/store.js';
import { manifestKey } from '../../src/layout.js';
import { parseTaskSpec } from '../../src/task.js';
import { LocalDestination } from '../../src/uploader/local.js';
import { destinations } from '../../src/uploader/registry.js';
import { type AgentProcess, ctl, eventually, startAgent } from '../harness/agent.js';
import { tempDir } from '../harness/process.js';

const TOKEN = 'recovery-token-0123456789abcdef';
const auth = { BACKUPD_TOKEN: TOKEN };
const REF = { cluster: 'e2e', source: 'main', database: 'shop.db' };

describe('restarting after a kill mid-publish', () => {
  const dir = tempDir('recovery');
  const dbDir = join(dir.path, 'dbs');
  const destA = join(dir.path, 'dest-a');
  const destB = join(dir.path, 'dest-b');
  const keyFile = join(dir.path, 'key');
  let agent: AgentProcess | undefined;
  let port: number;
  const setup = () => ({
    dir: dir.path,
    token: TOKEN,
    port,
    sources: [{ name: 'main', engine: 'sqlite', config: { path: dbDir } }],
  });

  beforeAll(async () => {
    mkdirSync(dbDir, { recursive: true });
    createSampleDb(join(dbDir, 'shop.db'), 2000, 1);
    writeFileSync(keyFile, 'a recovery test key\n');
    agent = await startAgent({ ...setup(), port: undefined });
    port = agent.port;
  }, 30_000);
  afterAll(async () => {
    await agent?.stop();
    dir.remove();
  });

  /** Every run record in the state file, read with the sqlite3 CLI. */
  const records = (): RunRecord[] =>
    execFileSync('sqlite3', [join(agent!.dataDir, 'state.db'), 'SELECT record FROM runs'], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as RunRecord);

  it('records a published run as succeeded, keeps a parent, takes back the rest', async () => {
    const dest = (name: string, path: string) => ['--dest', `${name}:local:${JSON.stringify({ path })}`];
    const create = await ctl(
      agent!.address,
      ['task', 'create', 'shop', '--database', 'main/shop.db', '--type', 'backup', '--full', '0 3 1 1 *'].concat([
        '--incremental',
        '0 4 1 1 *',
        ...dest('a', destA),
        ...dest('b', destB),
        '--key-file',
        keyFile,
      ]),
      auth,
    );
    expect(create.code, create.stderr).toBe(0);
    // A chain F <- I1 <- I2 <- I3, published to both destinations.
    for (const level of ['--full', '--incr', '--incr', '--incr']) {
      const now = await ctl(agent!.address, ['backup', 'now', 'shop', level, '--wait'], auth);
      expect(now.code, now.stderr + now.stdout).toBe(0);
      changeSampleDb(join(dbDir, 'shop.db'), 2, 5, 50);
    }
    await agent!.stop();
    const [chain] = await listChains(new LocalDestination('a', destA), REF);
    expect(chain?.backups).toHaveLength(4);
    const [full, i1, i2, i3] = chain!.backups as [string, string, string, string];
    const key = (backupId: string) => manifestKey(REF, chain!.chainId, backupId);

    // What a kill mid-publish leaves: a record still running beside its staged run. I1 reached both
    // destinations, F and I3 only destination a (I1 names F as its parent; nothing names I3), and I3's put
    // at b was cut off mid-write.
    rmSync(join(destB, key(full)));
    rmSync(join(destB, key(i3)));
    writeFileSync(join(destB, `${key(i3)}.partial-0123456789ab`), 'half a manifest');
    // A second task whose destination c cannot be checked (its folder lies under a file), with a copy of
    // I2's manifest at its destination a2 as a cut-off publish would leave it.
    const destA2 = join(dir.path, 'dest-a2');
    writeFileSync(join(dir.path, 'a-file'), 'not a folder');
    mkdirSync(join(destA2, key(i2), '..'), { recursive: true });
    writeFileSync(join(destA2, key(i2)), readFileSync(join(destA, key(i2))));
    const store = await openLocalStore({ dataDir: agent!.dataDir });
    const cutOff: Record<string, string> = {
      'cut-published': i1,
      'cut-parent': full,
      'cut-half': i3,
      'cut-unsure': i2,
    };
    try {
      const unsureTask = parseTaskSpec(
        {
          name: 'shop2',
          target: { databases: ['main/shop.db'] },
          type: 'backup',
          schedule: { full: '0 3 1 1 *' },
          destinations: [
            { name: 'a2', kind: 'local', config: { path: destA2 } },
            { name: 'c', kind: 'local', config: { path: join(dir.path, 'a-file', 'dest') } },
          ],
        },
        destinations,
      );
      await store.createTask(unsureTask, readFileSync(keyFile, 'utf8').trim());
      for (const [runId, backupId] of Object.entries(cutOff)) {
        const staging = join(agent!.dataDir, 'staging', runId);
        mkdirSync(join(staging, 'run'), { recursive: true });
        const manifest = readFileSync(join(destA, key(backupId)));
        const staged = { ref: REF, chainId: chain!.chainId, backupId, manifestKey: key(backupId), packs: [] };
        await writeStaged(join(staging, 'run'), staged, manifest);
        await store.putRun({
          runId,
          task: runId === 'cut-unsure' ? 'shop2' : 'shop',
          database: 'main/shop.db',
          type: 'backup',
          level: backupId === full ? 'full' : 'incr',
          trigger: 'schedule',
          outcome: 'running',
          node: 'node1',
          queuedAt: '2026-01-01T00:00:00.000Z',
          startedAt: '2026-01-01T00:00:00.000Z',
          rawBytes: 0,
          storedBytes: 0,
          destinations: [],
          staging,
        });
      }
    } finally {
      await store.close();
    }

    agent = await startAgent(setup());
    const ended = await eventually('the cut-off runs to be ended', async () => {
      const byId = new Map(records().map((r) => [r.runId, r]));
      const all = Object.keys(cutOff).map((id) => byId.get(id));
      return all.every((r) => r && r.outcome !== 'running') ? (all as RunRecord[]) : undefined;
    });
    const [published, parent, half, unsure] = ended as [RunRecord, RunRecord, RunRecord, RunRecord];
    expect(published.outcome).toBe('succeeded');
    expect(published.backupId).toBe(i1);
    expect(existsSync(join(destA, key(i1))) && existsSync(join(destB, key(i1)))).toBe(true);
    expect(parent.outcome).toBe('interrupted');
    expect(parent.error).toContain(`${i1} builds on it`);
    expect(existsSync(join(destA, key(full)))).toBe(true);
    expect(half.outcome).toBe('interrupted');
    expect(existsSync(join(destA, key(i3)))).toBe(false);
    expect(unsure.outcome).toBe('interrupted');
    expect(unsure.error).toContain('could not be checked');
    expect(existsSync(join(destA2, key(i2)))).toBe(true);
    const chainAtB = readdirSync(join(destB, key(i3), '..'));
    expect(chainAtB.filter((name) => name.includes('.partial-'))).toEqual([]);
    // The unit runs again (the two cut-off runs of one unit may join in one waiting run) and succeeds; the
    // run that had published does not run again.
    const retries = await eventually('the retries to finish', async () => {
      const retries = records().filter((r) => r.trigger === 'retry' && r.task === 'shop');
      return retries.length > 0 && retries.every((r) => r.outcome === 'succeeded') ? retries : undefined;
    });
    expect(retries.length).toBeLessThanOrEqual(2);
  }, 120_000);
});
