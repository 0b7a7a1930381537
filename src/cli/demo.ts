#!/usr/bin/env node
// `npm start` until the agent exists: a short demo of the engine on one machine. It creates a sample
// SQLite database, backs it up (full), changes it, backs it up (incremental), takes a snapshot, verifies
// every restore point, restores each into a new database and checks the data, printing what it did.

import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listChains, restoreBackup, runBackup, verifyBackup } from '../backup/engine.js';
import { sqlite } from '../sources/sqlite.js';
import { LocalDestination } from '../uploader/local.js';
import { changeSampleDb, contentChecksum, createSampleDb } from './sample-db.js';

const say = (line = '') => process.stdout.write(`${line}\n`);
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

async function timed<T>(work: () => Promise<T> | T): Promise<[T, number]> {
  const start = performance.now();
  const result = await work();
  return [result, performance.now() - start];
}

async function main(): Promise<void> {
  const root = process.env.BACKUPD_DEMO_DIR ?? mkdtempSync(join(tmpdir(), 'backupd-demo-'));
  const dbDir = join(root, 'databases');
  mkdirSync(dbDir, { recursive: true });
  const rows = Number(process.env.BACKUPD_DEMO_ROWS ?? 200_000);
  const key = 'demo key: keep real keys in a secret store';
  const source = await sqlite.open('demo', { path: dbDir, tempDir: join(root, 'tmp') });
  const destination = new LocalDestination('local', join(root, 'backups'));
  const ref = { cluster: 'demo', source: 'demo', database: 'shop.db' };
  const dbPath = join(dbDir, 'shop.db');
  const common = {
    ref,
    source,
    destinations: [destination],
    stagingDir: join(root, 'staging'),
    key,
    node: 'demo-node',
    task: 'demo',
  };

  say(`backupd demo in ${root}`);
  say();
  const [, createMs] = await timed(() => createSampleDb(dbPath, rows, 1));
  say(
    `created shop.db: ${rows.toLocaleString('en')} orders, customers, events, a view, a trigger, 3 indexes (${secs(createMs)})`,
  );

  const points: { what: string; chainId: string; backupId: string; checksum: string }[] = [];
  const backup = async (what: string, type: 'backup' | 'snapshot', level: 'full' | 'incr') => {
    const [r, ms] = await timed(() => runBackup({ ...common, type, level }));
    points.push({ what, chainId: r.chainId, backupId: r.backupId, checksum: contentChecksum(dbPath) });
    say(
      `${what.padEnd(22)} ${r.backupId.padEnd(28)} read ${mb(r.rawBytes).padStart(9)}, stored ${mb(r.storedBytes).padStart(8)} ` +
        `(${r.newChunks}/${r.chunks} chunks new) in ${secs(ms)} = ${(r.rawBytes / 1e6 / (ms / 1000)).toFixed(0)} MB/s`,
    );
  };
  say();
  say('backups (encrypted, to the local destination):');
  await backup('full backup', 'backup', 'full');
  changeSampleDb(dbPath, 2, Math.ceil(rows / 1000), Math.ceil(rows / 100));
  say(`  ...changed shop.db: updated ${Math.ceil(rows / 1000)} scattered rows, appended ${Math.ceil(rows / 100)}`);
  await backup('incremental backup', 'backup', 'incr');
  await backup('full snapshot', 'snapshot', 'full');

  say();
  say('what the destination holds:');
  for (const chain of await listChains(destination, ref)) {
    say(
      `  chain ${chain.chainId}: ${chain.backups.length} restore point(s) [${chain.backups.join(', ')}], ${mb(chain.bytes)}`,
    );
  }

  say();
  say('verify and restore every restore point into a new database:');
  for (const [i, point] of points.entries()) {
    const [verified, verifyMs] = await timed(() =>
      verifyBackup({ ref, from: destination, chainId: point.chainId, backupId: point.backupId, key }),
    );
    const target = `restored-${i + 1}.db`;
    const [restored, restoreMs] = await timed(() =>
      restoreBackup({
        ...common,
        from: destination,
        chainId: point.chainId,
        backupId: point.backupId,
        target,
        cacheDir: join(root, 'cache'),
      }),
    );
    const same = contentChecksum(restored.location) === point.checksum;
    say(
      `  ${point.what.padEnd(20)} verified ${verified.chunks} chunks in ${secs(verifyMs)}; restored to ${target} in ${secs(restoreMs)}: ` +
        `${same ? 'data identical to the moment of the backup' : 'DATA DIFFERS'}`,
    );
    if (!same) process.exitCode = 1;
  }
  say();
  say('On a database this small, key derivation and worker start-up dominate the times; npm run bench');
  say('measures a 1 GiB database against restic (docs/BENCHMARKS.md).');
  say(`Look around: ${root} (databases/, backups/). Formats: docs/FORMAT.md.`);
}

main().catch((error: unknown) => {
  process.stderr.write(`demo failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
