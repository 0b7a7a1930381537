// The data dir of a real `backupd` process: only its owner may enter it or read anything in it, and a second
// agent on the same dir refuses to start naming the first one's pid, until the first is gone (also by SIGKILL).
// Modes are read with stat, pids from the kernel (the harness's child process), not from the agent's logs.

import { mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createSampleDb } from '../../src/cli/sample-db.js';
import { type AgentProcess, ctl, eventually, startAgent } from '../harness/agent.js';
import { tempDir } from '../harness/process.js';

const TOKEN = 'data-dir-token-0123456789';
const auth = { BACKUPD_TOKEN: TOKEN };

/** Every entry under `dir` with its permission bits, relative paths. */
function modesUnder(dir: string, prefix = ''): { path: string; mode: number; isDir: boolean }[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    const stat = statSync(path);
    const entry = { path: `${prefix}${name}`, mode: stat.mode & 0o777, isDir: stat.isDirectory() };
    return stat.isDirectory() ? [entry, ...modesUnder(path, `${prefix}${name}/`)] : [entry];
  });
}

const agents: AgentProcess[] = [];
const dirs: { remove(): void }[] = [];
afterEach(async () => {
  for (const agent of agents.splice(0)) await agent.stop();
  for (const dir of dirs.splice(0)) dir.remove();
});

function setup(): { dir: string; sources: { name: string; engine: string; config: unknown }[] } {
  const dir = tempDir('data-dir');
  dirs.push(dir);
  const dbDir = join(dir.path, 'dbs');
  mkdirSync(dbDir, { recursive: true });
  createSampleDb(join(dbDir, 'shop.db'), 200, 1);
  return { dir: dir.path, sources: [{ name: 'main', engine: 'sqlite', config: { path: dbDir } }] };
}

describe('the data dir', () => {
  it('is 0700 and everything the agent creates in it is 0600 (folders 0700), pending backups included', async () => {
    const { dir, sources } = setup();
    // A destination that cannot be written (a folder under a regular file): the run's backup stays pending.
    writeFileSync(join(dir, 'not-a-folder'), 'x');
    const agent = await startAgent({ dir, token: TOKEN, sources });
    agents.push(agent);
    // The harness created the data dir 0755 before the start: the agent tightens it.
    const dest = ['--dest', `d:local:${JSON.stringify({ path: join(dir, 'not-a-folder', 'sub') })}`];
    const create = await ctl(
      agent.address,
      ['task', 'create', 'shop', '--database', 'main/shop.db', '--type', 'backup', '--full', '0 3 * * *', ...dest],
      auth,
    );
    expect(create.code, create.stderr).toBe(0);
    const now = await ctl(agent.address, ['backup', 'now', 'shop', '--full', '--wait'], auth);
    expect(now.code, now.stdout).not.toBe(0);
    const entries = await eventually('a pending backup in the data dir', async () => {
      const all = modesUnder(agent.dataDir);
      return all.some((e) => e.path.startsWith('pending/') && !e.isDir) ? all : undefined;
    });
    expect(statSync(agent.dataDir).mode & 0o777).toBe(0o700);
    const loose = entries.filter((e) => e.mode !== (e.isDir ? 0o700 : 0o600));
    expect(loose).toEqual([]);
    expect(entries.map((e) => e.path)).toEqual(expect.arrayContaining(['state.db', 'agent.lock']));
  });

  it('a second agent on it refuses to start naming the first one pid, and starts once the first is killed or stopped', async () => {
    const { dir, sources } = setup();
    const first = await startAgent({ dir, token: TOKEN, sources });
    agents.push(first);
    const refused = await startAgent({ dir, token: TOKEN, sources }).then(
      (second) => {
        agents.push(second);
        return 'started';
      },
      (error: unknown) => String(error),
    );
    expect(refused).toContain(`in use by another backupd (pid ${first.pid},`);
    expect(refused).toMatch(/exited with 1 before listening/);
    // The first still serves.
    expect((await ctl(first.address, ['task', 'list'], auth)).code).toBe(0);

    await first.kill();
    agents.splice(agents.indexOf(first), 1);
    const third = await startAgent({ dir, token: TOKEN, sources });
    expect((await ctl(third.address, ['task', 'list'], auth)).code).toBe(0);
    // A clean stop gives the dir up too.
    expect(await third.stop()).toBe(0);
    const fourth = await startAgent({ dir, token: TOKEN, sources });
    agents.push(fourth);
    expect((await ctl(fourth.address, ['task', 'list'], auth)).code).toBe(0);
  });
});
