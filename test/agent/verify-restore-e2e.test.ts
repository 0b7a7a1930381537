// backupctl verify --restore against a real agent on a real SQLite database: a restore point that restores
// right passes; one whose recorded fingerprint the restore does not give back fails (exit 1) naming the
// table; and a verify killed with SIGKILL mid-way leaves a scratch place that the next start takes back.

import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { KeyRing, loadManifest } from '../../src/backup/chain.js';
import { encodeManifest } from '../../src/backup/manifest.js';
import { createSampleDb } from '../../src/cli/sample-db.js';
import { manifestKey } from '../../src/layout.js';
import { LocalDestination } from '../../src/uploader/local.js';
import { ctl, eventually, startAgent } from '../harness/agent.js';
import { tempDir } from '../harness/process.js';

const TOKEN = 'e2e-token-0123456789abcdef';
const auth = { BACKUPD_TOKEN: TOKEN };

describe('backupctl verify --restore', () => {
  it('passes a good backup, fails a mismatching one by table, and takes back a killed one’s scratch', async () => {
    const dir = tempDir('e2e-verify-restore');
    const dbDir = join(dir.path, 'dbs');
    const dest = join(dir.path, 'dest');
    mkdirSync(dbDir, { recursive: true });
    createSampleDb(join(dbDir, 'shop.db'), 150_000, 3);
    const sources = [{ name: 'main', engine: 'sqlite', config: { path: dbDir, fingerprints: true } }];
    let agent = await startAgent({ dir: dir.path, token: TOKEN, sources });
    try {
      const create = await ctl(
        agent.address,
        ['task', 'create', 'shop', '--database', 'main/shop.db', '--type', 'backup', '--full', '0 0 1 1 *'].concat([
          '--dest',
          `disk:local:${JSON.stringify({ path: dest })}`,
        ]),
        auth,
      );
      expect(create.code, create.stderr).toBe(0);
      const now = await ctl(agent.address, ['backup', 'now', 'shop', '--full', '--wait'], auth);
      expect(now.code, now.stderr + now.stdout).toBe(0);
      const listed = await ctl(agent.address, ['--json', 'runs', '--task', 'shop'], auth);
      const run = (listed.json as { runs: { chainId: string; backupId: string }[] }).runs[0]!;
      const args = ['verify', '--task', 'shop', '--destination', 'disk', '--database', 'main/shop.db'].concat([
        '--chain',
        run.chainId,
        '--backup',
        run.backupId,
        '--restore',
      ]);

      const good = await ctl(agent.address, args, auth);
      expect(good.code, good.stderr + good.stdout).toBe(0);
      expect(good.stdout).toMatch(/verified by restoring main\/shop\.db .*restored in .*tables compared .*: OK/);
      const scratch = join(agent.dataDir, 'scratch');
      expect(existsSync(scratch) ? readdirSync(scratch) : []).toEqual([]);

      // The recorded fingerprint of one table made not to match, the manifest written again as backupd does.
      const destination = new LocalDestination('disk', dest);
      const ref = { cluster: 'e2e', source: 'main', database: 'shop.db' };
      const loaded = await loadManifest(destination, ref, run.chainId, run.backupId, new KeyRing(undefined));
      const orders = loaded.manifest.fingerprint!.tables.find((t) => t.name === 'orders')!;
      orders.rows += 1;
      const bytes = encodeManifest(loaded.manifest, undefined, undefined);
      await destination.put(manifestKey(ref, run.chainId, run.backupId), bytes, bytes.length);
      const bad = await ctl(agent.address, args, auth);
      expect(bad.code, bad.stderr + bad.stdout).toBe(1);
      expect(bad.stdout).toContain(`table orders: rows: expected ${orders.rows}, found ${orders.rows - 1}`);
      expect(bad.stdout).toContain('FAILED');
      expect(readdirSync(scratch)).toEqual([]);

      // Killed in the middle: the scratch place stays until the next start takes it back.
      const killed = ctl(agent.address, args, auth);
      await eventually(
        'the verify to restore into its scratch place',
        async () => (existsSync(scratch) && readdirSync(scratch).length > 0 ? true : undefined),
        30_000,
        20,
      );
      await agent.kill();
      await killed;
      expect(readdirSync(scratch)).toHaveLength(1);
      agent = await startAgent({ dir: dir.path, token: TOKEN, sources, port: agent.port });
      expect(existsSync(scratch)).toBe(false);
    } finally {
      await agent.stop();
      dir.remove();
    }
  });
});
