// The README's run command (`npm start` = setup, build, then this demo) must keep working: run the compiled
// demo to its end (BACKUPD_DEMO_EXIT=1) and check what it says it did.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { tempDir } from '../harness/process.js';

const DEMO = join(import.meta.dirname, '..', '..', 'dist', 'src', 'cli', 'demo.js');

it('npm start: the demo runs the agent through backupctl and restores identical data', async () => {
  if (!existsSync(DEMO)) throw new Error(`${DEMO} is missing: run "npm run build" first (npm test does it)`);
  const dir = tempDir('demo');
  try {
    const child = spawn(process.execPath, [DEMO], {
      env: { ...process.env, BACKUPD_DEMO_EXIT: '1', BACKUPD_DEMO_DIR: dir.path, BACKUPD_DEMO_ROWS: '5000' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => {
      output += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      output += d.toString();
    });
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code, output).toBe(0);
    for (const step of [
      '$ backupctl task create shop',
      '$ backupctl backup now shop',
      '$ backupctl restore',
      '$ backupctl verify',
    ]) {
      expect(output).toContain(step);
    }
    expect(output).toContain('restored data is identical to shop.db at the incremental');
    expect(output).toMatch(/verified demo\/shop\.db .*: OK/);
    expect(output).toContain('demo/inventory.db');
    // One restore drill of shop.db passed, shown by backupctl status's drills table.
    expect(output).toMatch(/demo\/shop\.db +(primary|mirror) +passed/);
  } finally {
    dir.remove();
  }
}, 120_000);
