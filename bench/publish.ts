// Publishing one backup to three destinations at once against each alone (issue 3's target: all three
// in parallel within 1.25x the slowest single one). Destinations: a local folder, S3 (moto) and Azure
// Blob (azurite), real servers on this machine, which share its 2 cores with the publisher.
// Run: npm run build && node dist/bench/publish.js   (BENCH_PUBLISH_MB, default 256)

import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
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
    const timed = async (destinations: Destination[]): Promise<number> => {
      const prefix = `round-${round++}`;
      const start = performance.now();
      await publish({
        destinations,
        packs: packs.map((p, i) => ({ ...p, key: `${prefix}/packs/${i}.pack` })),
        manifest: { key: `${prefix}/x.manifest`, bytes: Buffer.from('manifest') },
      });
      return (performance.now() - start) / 1000;
    };
    const destinations = await open();
    const single: Record<string, number> = {};
    for (const d of destinations) single[d.name] = await timed([d]);
    const together = await timed(destinations);
    const slowest = Math.max(...Object.values(single));
    say(`publishing ${packs.length} packs (${(packs.length * 32 * 1.048576).toFixed(0)} MB) from ${dir}`);
    for (const [name, seconds] of Object.entries(single)) {
      say(`  ${name.padEnd(8)} alone: ${seconds.toFixed(2)} s (${((packs.length * 33.55) / seconds).toFixed(0)} MB/s)`);
    }
    say(`  all three in parallel: ${together.toFixed(2)} s`);
    say(
      `  ratio to the slowest alone: ${(together / slowest).toFixed(2)}x (target <= 1.25x: ${together / slowest <= 1.25 ? 'PASS' : 'FAIL'})`,
    );
    for (const d of destinations) await d.close();
  } finally {
    await Promise.allSettled([moto.stop(), azurite.stop()]);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exitCode = 1;
});
