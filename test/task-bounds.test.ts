// The bounds every destination config is held to, however the task reaches parseTaskSpec (gRPC, a file, the
// store): nesting and size are refused as field problems before a driver or JSON.stringify walks them.

import { describe, expect, it } from 'vitest';
import { ValidationError } from '../src/errors.js';
import { parseTaskSpec } from '../src/task.js';
import { destinations } from '../src/uploader/registry.js';
import { configBoundsProblem, MAX_CONFIG_DEPTH } from '../src/validate.js';

function task(config: unknown, kind = 'gcs'): unknown {
  return {
    name: 'nightly',
    target: { databases: ['main/app'] },
    type: 'backup',
    schedule: { full: '0 3 * * *' },
    destinations: [{ name: 'cloud', kind, config }],
  };
}

function problems(input: unknown): { path: string; message: string }[] {
  try {
    parseTaskSpec(input, destinations);
  } catch (error) {
    if (error instanceof ValidationError) return error.problems;
    throw error;
  }
  throw new Error('the spec was accepted; a ValidationError was expected');
}

describe('destination config bounds', () => {
  it('GCS credentials nested 10,000 deep are a problem of that field, not a stack overflow', () => {
    let credentials: unknown = 'leaf';
    for (let i = 0; i < 10_000; i++) credentials = { a: credentials };
    expect(problems(task({ bucket: 'b', credentials }))).toEqual([
      { path: 'destinations[0].config.credentials', message: `is nested deeper than ${MAX_CONFIG_DEPTH} levels` },
    ]);
  });

  it('a config larger than 64 KiB is one problem, whatever its shape', () => {
    const wide = Object.fromEntries(Array.from({ length: 20_000 }, (_, i) => [`k${i}`, i]));
    expect(problems(task({ path: '/b', ...wide }, 'local'))).toEqual([
      { path: 'destinations[0].config', message: 'is larger than 64 KiB' },
    ]);
  });

  it('a config that refers to itself ends the walk as too large', () => {
    const loop: Record<string, unknown> = { bucket: 'b' };
    loop.self = [loop, loop];
    expect(configBoundsProblem(loop, 'c')?.path).toMatch(/^c/);
  });

  it('nesting up to the bound is left to the driver', () => {
    let nested: unknown = 1;
    for (let i = 0; i < MAX_CONFIG_DEPTH - 1; i++) nested = [nested];
    expect(configBoundsProblem({ x: nested }, 'c')).toBeUndefined();
  });
});
