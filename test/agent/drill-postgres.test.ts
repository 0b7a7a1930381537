// A scheduled drill of a PostgreSQL logical backup on a real server: verify --restore into a scratch database
// passes, and the scratch database is gone afterwards (judged by the server's own pg_database), the source
// database unchanged (judged by pg_dump).

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ctl, eventually, startAgent } from '../harness/agent.js';
import { startPostgres } from '../harness/postgres.js';
import { tempDir } from '../harness/process.js';

const TOKEN = 'e2e-token-0123456789abcdef';
const auth = { BACKUPD_TOKEN: TOKEN };

describe('a drill of a PostgreSQL logical backup', () => {
  it('passes, leaves no scratch database, and does not touch the source', async () => {
    const pg = await startPostgres();
    const dir = tempDir('e2e-drill-pg');
    mkdirSync(dir.path, { recursive: true });
    await pg.psql('CREATE DATABASE shop');
    await pg.psql(
      `CREATE TABLE orders (id serial PRIMARY KEY, item text, qty int);
       INSERT INTO orders (item, qty) SELECT 'item ' || i, i % 7 FROM generate_series(1, 500) i;`,
      'shop',
    );
    // \restrict keys are random per dump (PostgreSQL 15.14+); the rest must be identical.
    const dump = async () =>
      (await pg.tool('pg_dump', ['--no-owner', '-d', 'shop'])).replace(/^\\(un)?restrict .*$/gm, '');
    const before = await dump();
    const agent = await startAgent({
      dir: dir.path,
      token: TOKEN,
      sources: [{ name: 'pg', engine: 'postgres', config: pg.sourceConfig() }],
    });
    const args = (extra: string[]) =>
      ['pgdrill', '--database', 'pg/shop', '--type', 'backup', '--full', '0 0 1 1 *']
        .concat(['--dest', `disk:local:${JSON.stringify({ path: join(dir.path, 'dest') })}`])
        .concat(extra);
    try {
      expect((await ctl(agent.address, ['task', 'create', ...args([])], auth)).code).toBe(0);
      const now = await ctl(agent.address, ['backup', 'now', 'pgdrill', '--full', '--wait'], auth);
      expect(now.code, now.stderr + now.stdout).toBe(0);
      const update = await ctl(agent.address, ['task', 'update', ...args(['--drill', '*/2 * * * * *'])], auth);
      expect(update.code, update.stderr).toBe(0);
      const drill = await eventually(
        'a finished drill',
        async () => {
          const answer = await ctl(agent.address, ['--json', 'status', 'pgdrill'], auth);
          const found = (answer.json as { units: { drills: { outcome: string; problem: string }[] }[] }).units[0]
            ?.drills;
          return found?.find((d) => d.outcome !== 'skipped');
        },
        60_000,
        500,
      );
      expect(drill.problem).toBe('');
      expect(drill.outcome).toBe('passed');
      await agent.stop();
      const scratch = await pg.psql("SELECT datname FROM pg_database WHERE datname LIKE 'backupd_verify_%'");
      expect(scratch.trim()).toBe('');
      expect(await dump()).toBe(before);
    } finally {
      await agent.stop();
      await pg.stop();
      dir.remove();
    }
  }, 120_000);
});
