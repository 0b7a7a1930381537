// `backupctl ... | head`: the reader closes the pipe before backupctl has written everything. The compiled
// backupctl, in its own process, with its stdout pipe closed by the reader before it writes: it must exit
// quietly (0, nothing on stderr), not die of an unhandled EPIPE.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { expect, it } from 'vitest';
import { BACKUPCTL } from '../harness/agent.js';

it('exits 0 and quietly when the reader of its output has gone (EPIPE)', async () => {
  if (!existsSync(BACKUPCTL)) throw new Error(`the compiled backupctl is missing (${BACKUPCTL}): run "npm run build"`);
  const child = spawn(process.execPath, [BACKUPCTL, '--help'], { stdio: ['ignore', 'pipe', 'pipe'] });
  // The reader is gone before backupctl has started (node takes far longer to start than this takes).
  child.stdout.destroy();
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  expect(stderr).toBe('');
  expect(code).toBe(0);
});
