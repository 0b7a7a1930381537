// The layers of src/ (docs/ARCHITECTURE.md, "Map of src/"): a file imports only from its own layer and the
// layers below it, and no files import each other in a circle. Read from the source's own import lines.

import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = join(import.meta.dirname, '..', 'src');

/** Top to bottom. `task` is src/task*.ts; `ground` is src/'s other files; `generated` is generated code. */
const LAYERS = [
  'cli',
  'api',
  'agent',
  'scheduler',
  'cluster',
  'task',
  'backup',
  'sources',
  'uploader',
  'ground',
  'generated',
] as const;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'generated' ? [] : sourceFiles(path);
    return entry.name.endsWith('.ts') ? [relative(SRC, path)] : [];
  });
}

function layerOf(file: string): (typeof LAYERS)[number] {
  const [top, ...rest] = file.split('/');
  if (rest.length === 0) return top!.startsWith('task') ? 'task' : 'ground';
  const layer = LAYERS.find((name) => name === top);
  if (!layer) throw new Error(`${file} is in a folder no layer names: add it to LAYERS and to docs/ARCHITECTURE.md`);
  return layer;
}

/** The src/ files `file` imports (relative imports only; `.js` in the import is the `.ts` source). */
function importsOf(file: string): string[] {
  const text = readFileSync(join(SRC, file), 'utf8');
  return [...text.matchAll(/^(?:import|export)\b[^;]*?\bfrom '(\.[^']+)'/gms)].map((match) =>
    normalize(join(dirname(file), match[1]!)).replace(/\.js$/, '.ts'),
  );
}

const files = sourceFiles(SRC);
const graph = new Map(files.map((file) => [file, importsOf(file)]));

describe('the layers of src/', () => {
  it('has files to check', () => {
    expect(files.length).toBeGreaterThan(100);
    expect(graph.get('agent/agent.ts')).toContain('agent/run-book.ts');
  });

  it('imports only from the same layer or one below', () => {
    const upward = files.flatMap((file) =>
      graph
        .get(file)!
        .filter((target) => LAYERS.indexOf(layerOf(target)) < LAYERS.indexOf(layerOf(file)))
        .map((target) => `${file} -> ${target}`),
    );
    expect(upward).toEqual([]);
  });

  it('has no import circle', () => {
    const circles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const visit = (file: string, path: string[]): void => {
      if (state.get(file) === 'done' || !graph.has(file)) return;
      if (state.get(file) === 'open') {
        circles.push([...path.slice(path.indexOf(file)), file].join(' -> '));
        return;
      }
      state.set(file, 'open');
      for (const target of graph.get(file)!) visit(target, [...path, file]);
      state.set(file, 'done');
    };
    for (const file of files) visit(file, []);
    expect(circles).toEqual([]);
  });
});
