// Which chunking for which stream kind: for the logical dump and the raw snapshot file of a sample
// database, before and after a typical change (0.1% of rows updated in place, 1% appended), how many bytes
// an incremental must store under each chunker setting, compressed as the engine would (zstd).
// Run: npm run build && node dist/bench/chunking.js   (BENCH_ROWS to size the database)

import { createHash } from 'node:crypto';
import { closeSync, copyFileSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import * as zstd from 'zstd-napi';
import { type ChunkerParams, chunkStream } from '../src/backup/chunker.js';
import { changeSampleDb, createSampleDb } from '../src/cli/sample-db.js';
import { dumpDatabase } from '../src/sources/sqlite-dump.js';

const rows = Number(process.env.BENCH_ROWS ?? 1_000_000);
const dir = join(tmpdir(), `backupd-chunking-${process.pid}`);
mkdirSync(dir, { recursive: true });

function dump(path: string): Buffer {
  const db = new Database(path, { readonly: true });
  const fd = openSync(path, 'r');
  const parts = [...dumpDatabase(db, fd)];
  db.close();
  closeSync(fd);
  return Buffer.concat(parts);
}

function snapshot(path: string): Buffer {
  const copy = join(dir, 'snap.sqlite');
  copyFileSync(path, copy);
  return readFileSync(copy);
}

async function chunks(params: ChunkerParams, data: Buffer): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  async function* one() {
    for (let i = 0; i < data.length; i += 1 << 20) yield data.subarray(i, i + (1 << 20));
  }
  for await (const group of chunkStream(params, one())) {
    for (const chunk of group) out.set(createHash('sha256').update(chunk).digest('hex'), chunk);
  }
  return out;
}

const compressed = (list: Iterable<Buffer>) => {
  let total = 0;
  for (const c of list) total += Math.min(c.length, zstd.compress(c, { compressionLevel: 1 }).length);
  return total;
};

const cdc = (avg: number): ChunkerParams => ({ kind: 'cdc', gear: 'backupd-gear-v1', min: avg / 4, avg, max: avg * 4 });
const fixed = (blockSize: number): ChunkerParams => ({ kind: 'fixed', blockSize });

async function main() {
  const path = join(dir, 'db.sqlite');
  createSampleDb(path, rows, 1);
  const dumpBefore = dump(path);
  const snapBefore = snapshot(path);
  changeSampleDb(path, 2, Math.ceil(rows / 1000), Math.ceil(rows / 100));
  const dumpAfter = dump(path);
  const snapAfter = snapshot(path);
  process.stdout.write(
    `database: ${rows} rows; dump ${(dumpBefore.length / 1e6).toFixed(1)} MB, file ${(snapBefore.length / 1e6).toFixed(1)} MB\n`,
  );
  process.stdout.write('stream    chunker        chunks  full stored   incr stored  incr/full\n');
  const cases: [string, Buffer, Buffer, string, ChunkerParams][] = [
    ...[1 << 20, 256 << 10, 64 << 10, 16 << 10].map(
      (a) =>
        ['dump', dumpBefore, dumpAfter, `cdc ${a >> 10}K`, cdc(a)] as [string, Buffer, Buffer, string, ChunkerParams],
    ),
    ...[1 << 20, 256 << 10, 64 << 10, 16 << 10].map(
      (a) =>
        ['snapshot', snapBefore, snapAfter, `cdc ${a >> 10}K`, cdc(a)] as [
          string,
          Buffer,
          Buffer,
          string,
          ChunkerParams,
        ],
    ),
    ...[256 << 10, 64 << 10, 16 << 10, 4 << 10].map(
      (b) =>
        ['snapshot', snapBefore, snapAfter, `fixed ${b >> 10}K`, fixed(b)] as [
          string,
          Buffer,
          Buffer,
          string,
          ChunkerParams,
        ],
    ),
  ];
  for (const [stream, before, after, name, params] of cases) {
    const a = await chunks(params, before);
    const b = await chunks(params, after);
    const fresh = [...b].filter(([id]) => !a.has(id)).map(([, c]) => c);
    const full = compressed(a.values());
    const incr = compressed(fresh);
    process.stdout.write(
      `${stream.padEnd(9)} ${name.padEnd(12)} ${String(a.size).padStart(8)} ${(full / 1e6).toFixed(1).padStart(10)} MB ${(incr / 1e6).toFixed(2).padStart(10)} MB ${((incr / full) * 100).toFixed(1).padStart(8)}%\n`,
    );
  }
  rmSync(dir, { recursive: true, force: true });
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exitCode = 1;
});
