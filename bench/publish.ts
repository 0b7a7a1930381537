// Publishing one backup to three destinations at once against each alone (issue 3's target: all three
// in parallel within 1.25x the slowest single one). Destinations: a local folder, S3 (moto) and Azure
// Blob (azurite), real servers on this machine, which share its 2 cores with the publisher.
// Run: npm run build && node dist/bench/publish.js   (BENCH_PUBLISH_MB, default 256)

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
    /** CPU seconds (user + system) each process used during the last timed publish. */
    const cpu: Record<string, number>[] = [];
    const timed = async (destinations: Destination[]): Promise<number> => {
      const prefix = `round-${round++}`;
      const servers = { moto: cpuSeconds(moto.pid), azurite: cpuSeconds(azurite.pid) };
      const own = process.cpuUsage();
      const start = performance.now();
      await publish({
        destinations,
        packs: packs.map((p, i) => ({ ...p, key: `${prefix}/packs/${i}.pack` })),
        manifest: { key: `${prefix}/x.manifest`, bytes: Buffer.from('manifest') },
      });
      const seconds = (performance.now() - start) / 1000;
      const used = process.cpuUsage(own);
      cpu.push({
        publisher: (used.user + used.system) / 1e6,
        moto: cpuSeconds(moto.pid) - servers.moto,
        azurite: cpuSeconds(azurite.pid) - servers.azurite,
      });
      return seconds;
    };
    const destinations = await open();
    const single: Record<string, number> = {};
    const cpuOf: Record<string, Record<string, number>> = {};
    for (const d of destinations) {
      single[d.name] = await timed([d]);
      cpuOf[d.name] = cpu.at(-1)!;
    }
    const together = await timed(destinations);
    cpuOf.parallel = cpu.at(-1)!;
    const slowest = Math.max(...Object.values(single));
    say(`publishing ${packs.length} packs (${(packs.length * 32 * 1.048576).toFixed(0)} MB) from ${dir}`);
    const cpuText = (c: Record<string, number>) =>
      `CPU s: publisher ${c.publisher!.toFixed(2)}, moto ${c.moto!.toFixed(2)}, azurite ${c.azurite!.toFixed(2)}`;
    for (const [name, seconds] of Object.entries(single)) {
      say(
        `  ${name.padEnd(8)} alone: ${seconds.toFixed(2)} s (${((packs.length * 33.55) / seconds).toFixed(0)} MB/s); ${cpuText(cpuOf[name]!)}`,
      );
    }
    say(`  all three in parallel: ${together.toFixed(2)} s; ${cpuText(cpuOf.parallel!)}`);
    const cpuTotal = Object.values(cpuOf.parallel!).reduce((a, b) => a + b, 0);
    say(
      `  the parallel run used ${cpuTotal.toFixed(2)} CPU s on ${availableParallelism()} cores: at least ${(cpuTotal / availableParallelism()).toFixed(2)} s of wall time`,
    );
    say(
      `  ratio to the slowest alone: ${(together / slowest).toFixed(2)}x (target <= 1.25x: ${together / slowest <= 1.25 ? 'PASS' : 'FAIL'})`,
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
