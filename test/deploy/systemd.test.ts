// deploy/systemd/backupd.service, checked by systemd's own tools: `systemd-analyze verify` accepts it
// (syntax, directives, the executable) and `systemd-analyze security --offline` rates its hardening.

import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../harness/containers.js';

const UNIT = join(ROOT, 'deploy/systemd/backupd.service');

function analyze(args: string[]) {
  const result = spawnSync('systemd-analyze', args, { encoding: 'utf8' });
  if (result.error) {
    throw new Error(
      `systemd-analyze cannot run (${result.error.message}); install it with: apt-get install -y systemd`,
    );
  }
  return { code: result.status, out: `${result.stdout}${result.stderr}` };
}

describe('the systemd unit', () => {
  it('passes systemd-analyze verify without a warning', () => {
    const verify = analyze(['verify', UNIT]);
    expect(verify.out.trim()).toBe('');
    expect(verify.code).toBe(0);
  });

  it('is hardened: exposure below 2 by systemd-analyze security, with the settings the issue names', () => {
    const security = analyze(['security', '--offline=true', '--no-pager', UNIT]);
    expect(security.code, security.out).toBe(0);
    const level = /Overall exposure level for backupd\.service: ([\d.]+)/.exec(security.out);
    expect(level, security.out).not.toBeNull();
    expect(Number(level![1])).toBeLessThan(2);
    for (const setting of ['NoNewPrivileges=', 'ProtectSystem=', 'User=/DynamicUser=']) {
      const line = security.out.split('\n').find((l) => l.includes(setting));
      expect(line, setting).toMatch(/^✓/);
    }
    const unit = readFileSync(UNIT, 'utf8');
    expect(unit).toMatch(/^StateDirectory=backupd$/m);
    expect(unit).toMatch(/^ProtectSystem=strict$/m);
  });
});
