// The gear-hash scan's bytes (src/generated/gear-wasm.ts) come from its source, src/backup/gear.wat:
// assembled here with wabt, independently of the generator script, they must match byte for byte.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import wabtInit from 'wabt';
import { GEAR_WASM } from '../../src/generated/gear-wasm.js';

describe('gear-hash WebAssembly module', () => {
  it('is gear.wat assembled', async () => {
    const wabt = await wabtInit();
    const source = readFileSync(new URL('../../src/backup/gear.wat', import.meta.url), 'utf8');
    const parsed = wabt.parseWat('gear.wat', source, { threads: true });
    try {
      const assembled = Buffer.from(parsed.toBinary({ log: false, write_debug_names: false }).buffer);
      expect(assembled.length).toBeGreaterThan(8);
      expect(Buffer.from(GEAR_WASM).toString('hex')).toBe(assembled.toString('hex'));
    } finally {
      parsed.destroy();
    }
  });
});
