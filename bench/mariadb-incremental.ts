// What chunk dedup could store at best for a MariaDB snapshot incremental, against mariadb-backup's own
// incremental of the same change (issue 25: "incremental after 1% change stores less than the engine's own").
// Two copies of the server taken with `mariadb-backup --backup` (before and after bench/mariadb-data.ts's
// change) are cut per file into fixed blocks aligned with the files (the best case for dedup: a block of
// 16 KiB is one InnoDB page, so exactly the changed pages are new; our xbstream chunks are not aligned);
// the blocks of the second copy that the first does not hold are compressed one by one with zstd -1 (as
// the pipeline compresses each chunk) and summed. The engine's own: `mariadb-backup --incremental-basedir
// --stream | zstd -1`. Prints one line per block size.
//
//   node dist/bench/mariadb-incremental.js [--orders N (default 300,000)]

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { compress } from 'zstd-napi';
import { startMariadb } from '../test/harness/mariadb.js';
import { changeSql, dataSql, flushDirtyPages } from './mariadb-data.js';

const BLOCK_SIZES = [16 << 10, 32 << 10, 64 << 10];

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

/** Every block of every file under `dir`, `size` bytes each (a file's last block may be shorter). */
function* blocksUnder(dir: string, size: number): Generator<Buffer> {
  for (const path of filesUnder(dir)) {
    const data = readFileSync(path);
    for (let at = 0; at < data.length; at += size) yield data.subarray(at, Math.min(at + size, data.length));
  }
}

/** The blocks under `dir` not in `seen` (added to it): their raw and their zstd -1 bytes, each block alone. */
function newBlocks(dir: string, size: number, seen: Set<string>): { raw: number; zstd: number } {
  let raw = 0;
  let zstd = 0;
  for (const block of blocksUnder(dir, size)) {
    const id = createHash('sha256').update(block).digest('hex');
    if (seen.has(id)) continue;
    seen.add(id);
    raw += block.length;
    zstd += compress(block, { compressionLevel: 1 }).length;
  }
  return { raw, zstd };
}

const { values } = parseArgs({ options: { orders: { type: 'string' } } });
const orders = Number(values.orders ?? 300_000);
if (!Number.isInteger(orders) || orders < 1000) throw new Error('--orders must be an integer >= 1000');
const db = await startMariadb({ serverArgs: ['--innodb-buffer-pool-size=256M'] });
try {
  await db.sql('CREATE DATABASE bench');
  await db.sql(dataSql(orders), 'bench');
  const client = ['--no-defaults', '--protocol=socket', `--socket=${db.socket}`, '--user=root'];
  const before = join(db.dir, 'before');
  const after = join(db.dir, 'after');
  const engineIncr = join(db.dir, 'engine-incr.xbstream.zst');
  execFileSync('mariadb-backup', [...client, '--backup', `--target-dir=${before}`], { stdio: 'ignore' });
  await db.sql(changeSql(orders), 'bench');
  await flushDirtyPages(db);
  execFileSync(
    'bash',
    [
      '-c',
      'set -o pipefail; mariadb-backup $CLIENT --backup --incremental-basedir="$BASE" --stream=xbstream ' +
        '--target-dir="$TMPD" 2>/dev/null | zstd -1 -q -f -o "$OUT"',
    ],
    { env: { ...process.env, CLIENT: client.join(' '), BASE: before, TMPD: join(db.dir, 'tmp'), OUT: engineIncr } },
  );
  execFileSync('mariadb-backup', [...client, '--backup', `--target-dir=${after}`], { stdio: 'ignore' });
  const engine = statSync(engineIncr).size;
  const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
  process.stdout.write(`${orders} orders; mariadb-backup's own incremental with zstd -1: ${mb(engine)}\n`);
  for (const size of BLOCK_SIZES) {
    const seen = new Set<string>();
    const full = newBlocks(before, size, seen);
    const incr = newBlocks(after, size, seen);
    process.stdout.write(
      `blocks of ${size >> 10} KiB: full ${mb(full.zstd)}; incremental ${mb(incr.raw)} raw, ${mb(incr.zstd)} ` +
        `with zstd -1 per block = ${(incr.zstd / engine).toFixed(2)}x the engine's own\n`,
    );
  }
} finally {
  await db.stop();
}
