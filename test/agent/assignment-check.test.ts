// A node that holds units it is not scheduling says so and schedules them: the real agent (single node),
// which misses a change it was never told of, a task written into its state file by another connection
// (a stand-in for any lost ownership-change event, such as a watch that did not deliver). Judged from the
// state file (sqlite3 CLI: the unit's scheduled runs) and the agent's log.

import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSampleDb } from '../../src/cli/sample-db.js';
import { openLocalStore } from '../../src/cluster/local-store.js';
import { parseTaskSpec } from '../../src/task.js';
import { destinations } from '../../src/uploader/registry.js';
import { type AgentProcess, eventually, startAgent } from '../harness/agent.js';
import { tempDir } from '../harness/process.js';

describe('units assigned to a node that it does not schedule', () => {
  const dir = tempDir('assignment-check');
  const dbDir = join(dir.path, 'dbs');
  let agent: AgentProcess;

  beforeAll(async () => {
    mkdirSync(dbDir, { recursive: true });
    createSampleDb(join(dbDir, 'shop.db'), 500, 1);
    agent = await startAgent({
      dir: dir.path,
      token: 'assignment-check-token-0123456789',
      sources: [{ name: 'main', engine: 'sqlite', config: { path: dbDir } }],
    });
  }, 30_000);
  afterAll(async () => {
    await agent?.stop();
    dir.remove();
  });

  it('are reported and scheduled', async () => {
    const spec = parseTaskSpec(
      {
        name: 'unseen',
        target: { databases: ['main/shop.db'] },
        type: 'backup',
        schedule: { full: '*/2 * * * * *' },
        destinations: [{ name: 'd', kind: 'local', config: { path: join(dir.path, 'dest') } }],
      },
      destinations,
    );
    const other = await openLocalStore({ dataDir: agent.dataDir });
    try {
      await other.createTask(spec, undefined);
    } finally {
      await other.close();
    }
    const scheduled = () =>
      execFileSync(
        'sqlite3',
        [
          join(agent.dataDir, 'state.db'),
          "SELECT count(*) FROM runs WHERE task = 'unseen' AND json_extract(record, '$.trigger') = 'schedule' AND outcome = 'succeeded'",
        ],
        { encoding: 'utf8' },
      ).trim();
    await eventually('a scheduled run of the unit', async () => (Number(scheduled()) > 0 ? true : undefined), 25_000);
    expect(agent.logs()).toContain('holding assignments it was not scheduling: scheduling them now');
  }, 40_000);
});
