// How fast chunk ids are computed (docs/FORMAT.md, "Chunks and ids"): keyed BLAKE3, what chains use,
// against HMAC-SHA256, the alternative it was chosen over, on the chunks the engine cuts from a logical dump of a
// sample database (16 KiB CDC, as SQLite dumps are cut, and 64 KiB, as pg dumps and snapshots are). One
// thread, as in a blob worker; the two alternate in rounds and the median round counts.
// Run: npm run build && node dist/bench/chunk-ids.js   (BENCH_ROWS sizes the database, BENCH_ROUNDS the rounds)

import { createHmac, randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import Database from 'better-sqlite3';
import { type ChunkNamer, chunkNamer } from '../src/backup/chunk-id.js';
import { cdcChunker, chunkStream } from '../src/backup/chunker.js';
import { createSampleDb } from '../src/cli/sample-db.js';
import { dumpDatabase } from '../src/sources/sqlite-dump.js';

const rows = Number(process.env.BENCH_ROWS ?? 500_000);
const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
const log = (line: string) => process.stdout.write(`${line}\n`);
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function cut(data: Buffer, avg: number): Promise<Buffer[]> {
  const chunks: Buffer[] = [];
  for await (const group of chunkStream(cdcChunker(avg), Readable.from([data]))) chunks.push(...group);
  return chunks;
}

type Algorithm = 'blake3' | 'sha256';
const namers: Record<Algorithm, (key: Buffer) => ChunkNamer> = {
  blake3: (key) => chunkNamer(key),
  sha256: (key) => (chunk) => createHmac('sha256', key).update(chunk).digest(),
};

/** Seconds to name every chunk once. */
function timeIds(algorithm: Algorithm, key: Buffer, chunks: Buffer[]): number {
  const name = namers[algorithm](key);
  const start = performance.now();
  for (const chunk of chunks) name(chunk);
  return (performance.now() - start) / 1000;
}

async function main() {
  const dir = join(tmpdir(), `backupd-chunk-ids-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  try {
    const path = join(dir, 'sample.db');
    createSampleDb(path, rows, 1);
    // The dump reads the file's pages, as it reads the private copy the SQLite source makes: no WAL.
    const setup = new Database(path);
    setup.pragma('journal_mode = DELETE');
    setup.close();
    const db = new Database(path, { readonly: true });
    const fd = openSync(path, 'r');
    const dump = Buffer.concat([...dumpDatabase(db, fd)]);
    db.close();
    closeSync(fd);
    const key = randomBytes(32);
    log(`chunk ids over a ${(dump.length / 1e6).toFixed(1)} MB logical dump (${rows} rows), ${rounds} rounds`);
    log('chunks   algorithm            MB/s (median)  rounds, s');
    for (const avg of [16 << 10, 64 << 10]) {
      const chunks = await cut(dump, avg);
      const times: Record<Algorithm, number[]> = { blake3: [], sha256: [] };
      timeIds('blake3', key, chunks.slice(0, 100)); // warm up both
      timeIds('sha256', key, chunks.slice(0, 100));
      for (let round = 0; round < rounds; round++) {
        const order: Algorithm[] = round % 2 ? ['sha256', 'blake3'] : ['blake3', 'sha256'];
        for (const algorithm of order) times[algorithm].push(timeIds(algorithm, key, chunks));
      }
      const rate = (algorithm: Algorithm) => dump.length / 1e6 / median(times[algorithm]);
      for (const [algorithm, label] of [
        ['blake3', 'keyed BLAKE3'],
        ['sha256', 'HMAC-SHA256'],
      ] as const) {
        log(
          `${`${avg >> 10} KiB`.padEnd(8)} ${label.padEnd(20)} ${rate(algorithm).toFixed(0).padStart(13)}  ${times[algorithm].map((s) => s.toFixed(3)).join(', ')}`,
        );
      }
      log(`${' '.repeat(8)} BLAKE3 / HMAC-SHA256: ${(rate('blake3') / rate('sha256')).toFixed(2)}x`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
