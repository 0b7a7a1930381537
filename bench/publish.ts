// Publishing one backup to three destinations at once against each alone (issue 3's target: all three
// in parallel within 1.25x the slowest single one). Destinations: a local folder, S3 (moto) and Azure
// Blob (azurite), real servers on this machine, which share its 2 cores with the publisher.
// Run: npm run build && node dist/bench/publish.js   (BENCH_PUBLISH_MB, default 256; BENCH_PUBLISH_ROUNDS,
// default 3: each round times every destination alone and then all three; the report takes the medians,
// because on 2 shared cores a single run varies by +-20%).

import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { azure, createContainerClient } from '../src/uploader/azure.js';
import type { Destination } from '../src/uploader/destination.js';
import { LocalDestination } from '../src/uploader/local.js';
import { type PackToPublish, publish } from '../src/uploader/publish.js';
import { createS3Client, s3 } from '../src/uploader/s3.js';
import { startAzurite } from '../test/harness/azurite.js';
import { startMoto } from '../test/harness/moto.js';

const say = (line: string) => process.stdout.write(`${line}\n`);

async function main(): Promise<void> {
  const sizeMb = Number(process.env.BENCH_PUBLISH_MB ?? 256);
  const rounds = Number(process.env.BENCH_PUBLISH_ROUNDS ?? 3);
  const dir = join(tmpdir(), `backupd-publish-bench-${process.pid}`);
  mkdirSync(join(dir, 'packs'), { recursive: true });
  const [moto, azurite] = await Promise.all([startMoto(), startAzurite()]);
  try {
    // Packs as the engine writes them: 32 MiB, incompressible (they are compressed and encrypted already).
    const packs: Omit<PackToPublish, 'key'>[] = [];
    for (let i = 0; i < Math.ceil(sizeMb / 32); i++) {
      const path = join(dir, 'packs', `${i}.pack`);
      writeFileSync(path, randomBytes(32 << 20));
      packs.push({ size: 32 << 20, localPath: path });
    }
    const s3Base = {
      bucket: 'bench',
      endpoint: moto.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      accessKeyId: moto.accessKeyId,
      secretAccessKey: moto.secretAccessKey,
    };
    await createS3Client(s3.parseConfig(s3Base, 's3')).send(new CreateBucketCommand({ Bucket: 'bench' }));
    const azureBase = { container: 'bench', connectionString: azurite.connectionString };
    await createContainerClient(azure.parseConfig(azureBase, 'azure')).create();
    const open = async (): Promise<Destination[]> => [
      new LocalDestination('local', join(dir, 'local')),
      await s3.open('s3', s3.parseConfig(s3Base, 's3')),
      await azure.open('azure', azure.parseConfig(azureBase, 'azure')),
    ];
    let round = 0;
    /** Publish every pack to `destinations`; the time, the CPU seconds of each process, and the keys written. */
    const timed = async (destinations: Destination[]) => {
      const prefix = `round-${round++}`;
      const keys = [...packs.map((_, i) => `${prefix}/packs/${i}.pack`), `${prefix}/x.manifest`];
      const servers = { moto: cpuSeconds(moto.pid), azurite: cpuSeconds(azurite.pid) };
      const own = process.cpuUsage();
      const start = performance.now();
      await publish({
        destinations,
        packs: packs.map((p, i) => ({ ...p, key: keys[i]! })),
        manifest: { key: keys.at(-1)!, bytes: Buffer.from('manifest') },
      });
      const seconds = (performance.now() - start) / 1000;
      const used = process.cpuUsage(own);
      const cpu = {
        publisher: (used.user + used.system) / 1e6,
        moto: cpuSeconds(moto.pid) - servers.moto,
        azurite: cpuSeconds(azurite.pid) - servers.azurite,
      };
      // Remove what was written, so every round meets the servers in the same state.
      for (const d of destinations) for (const key of keys) await d.delete(key);
      return { seconds, cpu };
    };
    const destinations = await open();
    type Measured = Awaited<ReturnType<typeof timed>>;
    const runs: Record<string, Measured[]> = Object.fromEntries(
      [...destinations.map((d) => d.name), 'parallel'].map((name) => [name, []]),
    );
    const ratios: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const alone: number[] = [];
      for (const d of destinations) {
        const m = await timed([d]);
        runs[d.name]!.push(m);
        alone.push(m.seconds);
      }
      const together = await timed(destinations);
      runs.parallel!.push(together);
      ratios.push(together.seconds / Math.max(...alone));
    }
    /** The run with the median time (so its CPU figures belong to that run). */
    const median = (list: Measured[]) => [...list].sort((a, b) => a.seconds - b.seconds)[Math.floor(list.length / 2)]!;
    const mid = (list: number[]) => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)]!;
    say(
      `publishing ${packs.length} packs (${(packs.length * 32 * 1.048576).toFixed(0)} MB) from ${dir}, ` +
        `${rounds} rounds, medians`,
    );
    const cpuText = (c: Record<string, number>) =>
      `CPU s: publisher ${c.publisher!.toFixed(2)}, moto ${c.moto!.toFixed(2)}, azurite ${c.azurite!.toFixed(2)}`;
    const times = (list: Measured[]) => list.map((m) => m.seconds.toFixed(2)).join(', ');
    for (const d of destinations) {
      const m = median(runs[d.name]!);
      say(
        `  ${d.name.padEnd(8)} alone: ${m.seconds.toFixed(2)} s (${((packs.length * 33.55) / m.seconds).toFixed(0)} MB/s; ` +
          `runs ${times(runs[d.name]!)}); ${cpuText(m.cpu)}`,
      );
    }
    const parallel = median(runs.parallel!);
    say(
      `  all three in parallel: ${parallel.seconds.toFixed(2)} s (runs ${times(runs.parallel!)}); ${cpuText(parallel.cpu)}`,
    );
    const cpuTotal = Object.values(parallel.cpu).reduce((a, b) => a + b, 0);
    say(
      `  the parallel run used ${cpuTotal.toFixed(2)} CPU s on ${availableParallelism()} cores: at least ${(cpuTotal / availableParallelism()).toFixed(2)} s of wall time`,
    );
    const ratio = mid(ratios);
    say(
      `  ratio to the slowest alone, per round: ${ratios.map((x) => x.toFixed(2)).join(', ')}; median ${ratio.toFixed(2)}x ` +
        `(target <= 1.25x: ${ratio <= 1.25 ? 'PASS' : 'FAIL'})`,
    );
    for (const d of destinations) await d.close();
  } finally {
    await Promise.allSettled([moto.stop(), azurite.stop()]);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** CPU seconds (user + system) a process has used, from /proc (Linux). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  // After the command: state is field 3, so utime (14) and stime (15) are at 11 and 12 here.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exitCode = 1;
});
