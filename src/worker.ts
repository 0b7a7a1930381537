// Starting a worker thread from a module next to the caller. From compiled JavaScript (dist/) the worker
// module is loaded as it is. Under the test runner the code runs from TypeScript sources, which a worker
// thread cannot load on Node 20 (loader hooks do not reach workers), so the worker module is bundled once
// per process with esbuild (a dev dependency) into node_modules/.cache, keeping packages external.

import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ResourceLimits, Worker } from 'node:worker_threads';

const bundled = new Map<string, string>();

/** `relative` is the worker module's path without extension, relative to `callerUrl` (import.meta.url). */
export function startWorker(
  callerUrl: string,
  relative: string,
  workerData: unknown,
  resourceLimits?: ResourceLimits,
): Worker {
  const options = { workerData, ...(resourceLimits ? { resourceLimits } : {}) };
  if (!callerUrl.endsWith('.ts')) return new Worker(new URL(`${relative}.js`, callerUrl), options);
  return new Worker(bundle(fileURLToPath(new URL(`${relative}.ts`, callerUrl))), options);
}

function bundle(entry: string): string {
  let out = bundled.get(entry);
  if (!out) {
    const root = join(dirname(fileURLToPath(import.meta.url)), '..');
    const name = createHash('sha256').update(`${entry}:${process.pid}`).digest('hex').slice(0, 16);
    out = join(root, 'node_modules', '.cache', 'backupd-workers', `${name}.mjs`);
    const esbuild = createRequire(import.meta.url)('esbuild') as typeof import('esbuild');
    esbuild.buildSync({
      entryPoints: [entry],
      bundle: true,
      platform: 'node',
      format: 'esm',
      packages: 'external',
      outfile: out,
      logLevel: 'error',
    });
    bundled.set(entry, out);
  }
  return out;
}
