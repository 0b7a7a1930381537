// Scheduled restore drills on a real agent and a real SQLite database (logical backups): a drill every
// 2 seconds (6-field cron, real clock: the agent runs as its own process) verifies by restoring the newest
// restore point at one destination, then the next one in turn; a restore point made to restore wrong at one
// destination (its recorded fingerprint changed, the manifest written again as backupd does) fails there,
// is shown by `backupctl status` and by the metrics, and names the table; a pack with one byte changed at the
// other destination fails its drill there too, naming the pack. The source database is never
// touched: the `sqlite3` CLI dumps it the same before and after.

import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { KeyRing, loadManifest } from '../../src/backup/chain.js';
import { encodeManifest } from '../../src/backup/manifest.js';
import { createSampleDb } from '../../src/cli/sample-db.js';
import { manifestKey } from '../../src/layout.js';
import { LocalDestination } from '../../src/uploader/local.js';
import { ctl, eventually, startAgent } from '../harness/agent.js';
import { freePort, tempDir } from '../harness/process.js';

const TOKEN = 'e2e-token-0123456789abcdef';
const auth = { BACKUPD_TOKEN: TOKEN };

interface Drill {
  destination: string;
  outcome: string;
  backupId: string;
  problem: string;
  finishedAt: string;
}

function sqliteDump(path: string): string {
  try {
    return execFileSync('sqlite3', [path, '.dump'], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  } catch (error) {
    throw new Error(`this test needs the sqlite3 CLI on PATH to judge the source database: ${String(error)}`);
  }
}

describe('scheduled drills', () => {
  it('drill each destination in turn, pass a good backup, fail one that restores wrong, naming the table', async () => {
    const dir = tempDir('e2e-drill');
    const dbDir = join(dir.path, 'dbs');
    const dests = { disk: join(dir.path, 'dest1'), disk2: join(dir.path, 'dest2') };
    mkdirSync(dbDir, { recursive: true });
    const dbPath = join(dbDir, 'shop.db');
    createSampleDb(dbPath, 5_000, 3);
    const before = sqliteDump(dbPath);
    const sources = [{ name: 'main', engine: 'sqlite', config: { path: dbDir, fingerprints: true } }];
    const metricsPort = await freePort();
    const agent = await startAgent({
      dir: dir.path,
      token: TOKEN,
      sources,
      extra: { metricsListen: `127.0.0.1:${metricsPort}` },
    });
    const taskArgs = (extra: string[]) =>
      ['shop', '--database', 'main/shop.db', '--type', 'backup', '--full', '0 0 1 1 *']
        .concat(['--dest', `disk:local:${JSON.stringify({ path: dests.disk })}`])
        .concat(['--dest', `disk2:local:${JSON.stringify({ path: dests.disk2 })}`])
        .concat(extra);
    const drills = async (): Promise<Drill[]> => {
      const answer = await ctl(agent.address, ['--json', 'status', 'shop'], auth);
      expect(answer.code, answer.stderr).toBe(0);
      return (answer.json as { units: { drills: Drill[] }[] }).units[0]?.drills ?? [];
    };
    const metrics = async () => (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    try {
      // The backup first, then the drill: no drill finds nothing to restore.
      const create = await ctl(agent.address, ['task', 'create', ...taskArgs([])], auth);
      expect(create.code, create.stderr).toBe(0);
      const now = await ctl(agent.address, ['backup', 'now', 'shop', '--full', '--wait'], auth);
      expect(now.code, now.stderr + now.stdout).toBe(0);
      const run = (
        (await ctl(agent.address, ['--json', 'runs', '--task', 'shop'], auth)).json as {
          runs: { chainId: string; backupId: string }[];
        }
      ).runs[0]!;
      const update = await ctl(agent.address, ['task', 'update', ...taskArgs(['--drill', '*/2 * * * * *'])], auth);
      expect(update.code, update.stderr + update.stdout).toBe(0);

      // One drill passes at the first destination, the next at the second: both drilled, in turn.
      const both = await eventually(
        'a passed drill at each destination',
        async () => {
          const found = await drills();
          return found.length === 2 && found.every((d) => d.outcome === 'passed') ? found : undefined;
        },
        60_000,
        500,
      );
      expect(both.map((d) => d.destination)).toEqual(['disk', 'disk2']);
      for (const d of both) expect(d.backupId).toBe(run.backupId);
      // In turn: the first drill was at the task's first destination, the second at its second.
      const order = agent
        .logs()
        .split('\n')
        .filter((line) => line.includes('"msg":"drill passed"'))
        .map((line) => (JSON.parse(line) as { destination: string }).destination);
      expect(order.slice(0, 4)).toEqual(['disk', 'disk2', 'disk', 'disk2'].slice(0, Math.min(4, order.length)));
      const good = await metrics();
      expect(good).toMatch(/backupd_drill_runs_total\{task="shop",destination="disk",outcome="passed"\} [1-9]/);
      expect(good).toMatch(/backupd_drill_runs_total\{task="shop",destination="disk2",outcome="passed"\} [1-9]/);
      expect(good).toMatch(/backupd_drill_last_success_timestamp_seconds\{task="shop",database="main\/shop.db"\} \d/);
      expect(good).toMatch(/backupd_drill_duration_seconds_count\{outcome="passed"\} [1-9]/);

      // At disk2 the recorded fingerprint of one table no longer matches what the restore gives back.
      const destination = new LocalDestination('disk2', dests.disk2);
      const ref = { cluster: 'e2e', source: 'main', database: 'shop.db' };
      const loaded = await loadManifest(destination, ref, run.chainId, run.backupId, new KeyRing(undefined));
      const orders = loaded.manifest.fingerprint!.tables.find((t) => t.name === 'orders')!;
      orders.rows += 1;
      const bytes = encodeManifest(loaded.manifest, undefined, undefined);
      await destination.put(manifestKey(ref, run.chainId, run.backupId), bytes, bytes.length);

      const failed = await eventually(
        'a failed drill at disk2',
        async () => (await drills()).find((d) => d.destination === 'disk2' && d.outcome === 'failed'),
        60_000,
        500,
      );
      expect(failed.problem).toContain('table orders');
      expect(failed.problem).toContain(`expected ${orders.rows}, found ${orders.rows - 1}`);
      // disk is still fine: drilled again in turn, and passing.
      expect((await drills()).find((d) => d.destination === 'disk')?.outcome).toBe('passed');
      const shown = await ctl(agent.address, ['status', 'shop'], auth);
      expect(shown.code).toBe(0);
      expect(shown.stdout).toContain('drill at disk2 failed: table orders');
      expect(shown.stdout).toMatch(/disk2 +FAILED/);
      expect(await metrics()).toMatch(
        /backupd_drill_runs_total\{task="shop",destination="disk2",outcome="failed"\} [1-9]/,
      );
      expect(agent.logs()).toContain('"msg":"drill failed"');

      // At disk one byte of a pack is changed: the drill there fails too, naming the pack.
      const packs = readdirSync(dests.disk, { recursive: true, encoding: 'utf8' }).filter((f) => f.includes('/packs/'));
      const pack = join(dests.disk, packs.find((f) => statSync(join(dests.disk, f)).isFile())!);
      const content = readFileSync(pack);
      content[Math.floor(content.length / 2)]! ^= 0xff;
      writeFileSync(pack, content);
      const corrupt = await eventually(
        'a failed drill at disk',
        async () => (await drills()).find((d) => d.destination === 'disk' && d.outcome === 'failed'),
        60_000,
        500,
      );
      expect(corrupt.problem).toMatch(/^PACK_CORRUPT: /);
      expect(corrupt.problem).toContain(basename(pack, '.pack').slice(0, 12));

      // No drill wrote to the source database.
      expect(sqliteDump(dbPath)).toBe(before);
    } finally {
      await agent.stop();
      dir.remove();
    }
  }, 180_000);

  it('drills a SQLite snapshot too, and it passes', async () => {
    const dir = tempDir('e2e-drill-snapshot');
    const dbDir = join(dir.path, 'dbs');
    mkdirSync(dbDir, { recursive: true });
    createSampleDb(join(dbDir, 'shop.db'), 2_000, 5);
    const sources = [{ name: 'main', engine: 'sqlite', config: { path: dbDir, fingerprints: true } }];
    const agent = await startAgent({ dir: dir.path, token: TOKEN, sources });
    const args = (extra: string[]) =>
      ['snap', '--database', 'main/shop.db', '--type', 'snapshot', '--full', '0 0 1 1 *']
        .concat(['--dest', `disk:local:${JSON.stringify({ path: join(dir.path, 'dest') })}`])
        .concat(extra);
    try {
      expect((await ctl(agent.address, ['task', 'create', ...args([])], auth)).code).toBe(0);
      const now = await ctl(agent.address, ['backup', 'now', 'snap', '--full', '--wait'], auth);
      expect(now.code, now.stderr + now.stdout).toBe(0);
      expect((await ctl(agent.address, ['task', 'update', ...args(['--drill', '*/2 * * * * *'])], auth)).code).toBe(0);
      const drill = await eventually(
        'a finished drill of the snapshot',
        async () => {
          const answer = await ctl(agent.address, ['--json', 'status', 'snap'], auth);
          const found = (answer.json as { units: { drills: Drill[] }[] }).units[0]?.drills ?? [];
          return found.find((d) => d.outcome !== 'skipped');
        },
        60_000,
        500,
      );
      expect(drill.problem).toBe('');
      expect(drill.outcome).toBe('passed');
    } finally {
      await agent.stop();
      dir.remove();
    }
  }, 120_000);
});
