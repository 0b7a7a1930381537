// Publishing one backup to three destinations at once against each alone (issue 3's target: all three
// in parallel within 1.25x the slowest single one). Destinations: a local folder, S3 (moto) and Azure
// Blob (azurite), real servers on this machine, which share its cores with the publisher.
// Two scenarios, each timing every destination alone and then all three, BENCH_PUBLISH_ROUNDS rounds
// (default 3; the report takes medians, because on 2 shared cores a single run varies by +-20%):
// - unthrottled: the emulators as fast as they go. On 2 cores they and the publisher compete for CPU,
//   so the parallel run is bounded by the CPU all three processes need, not by the publisher.
// - link-limited: every destination behind the product's own bandwidth limit (withLimit's
//   bytesPerSecond, what operators set), BENCH_PUBLISH_LINK_MBPS MB/s each (default 40; 0 skips it), as
//   remote destinations behind their own network links are. This one measures the publisher's parallelism.
//   S3 alone takes about twice its link's time: withLimit throttles the S3 driver's CRC32 read of the
//   body as well as the send (docs/BENCHMARKS.md).
// Run: npm run build && node dist/bench/publish.js   (BENCH_PUBLISH_MB, default 256, per publish;
// BENCH_PUBLISH_LINK_MB, default the same, for the link-limited scenario).

import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { azure, createContainerClient } from '../src/uploader/azure.js';
import type { Destination } from '../src/uploader/destination.js';
import { withLimit } from '../src/uploader/limit.js';
import { LocalDestination } from '../src/uploader/local.js';
import { type PackToPublish, publish } from '../src/uploader/publish.js';
import { createS3Client, s3 } from '../src/uploader/s3.js';
import { startAzurite } from '../test/harness/azurite.js';
import { startMoto } from '../test/harness/moto.js';

const say = (line: string) => process.stdout.write(`${line}\n`);
const PACK = 32 << 20;

interface Measured {
  seconds: number;
  cpu: { publisher: number; moto: number; azurite: number };
}

interface Scenario {
  title: string;
  /** Why the scenario is there and what bounds it, printed above its figures. */
  about: string;
  packs: Omit<PackToPublish, 'key'>[];
  /** Each timed run gets freshly wrapped destinations (a link limit starts with its one second of burst). */
  wrap: (d: Destination) => Destination;
  /** Bytes per second of each destination's link, when limited. */
  linkRate?: number;
}

async function main(): Promise<void> {
  const sizeMb = Number(process.env.BENCH_PUBLISH_MB ?? 256);
  const linkMbps = Number(process.env.BENCH_PUBLISH_LINK_MBPS ?? 40);
  const linkMb = Number(process.env.BENCH_PUBLISH_LINK_MB ?? sizeMb);
  const rounds = Number(process.env.BENCH_PUBLISH_ROUNDS ?? 3);
  const dir = join(tmpdir(), `backupd-publish-bench-${process.pid}`);
  mkdirSync(join(dir, 'packs'), { recursive: true });
  const [moto, azurite] = await Promise.all([startMoto(), startAzurite()]);
  try {
    // Packs as the engine writes them: 32 MiB, incompressible (they are compressed and encrypted already).
    const packs: Omit<PackToPublish, 'key'>[] = [];
    for (let i = 0; i < Math.ceil(Math.max(sizeMb, linkMb) / 32); i++) {
      const path = join(dir, 'packs', `${i}.pack`);
      writeFileSync(path, randomBytes(PACK));
      packs.push({ size: PACK, localPath: path });
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
    const destinations: Destination[] = [
      new LocalDestination('local', join(dir, 'local')),
      await s3.open('s3', s3.parseConfig(s3Base, 's3')),
      await azure.open('azure', azure.parseConfig(azureBase, 'azure')),
    ];
    const servers = { moto: moto.pid, azurite: azurite.pid };
    const scenarios: Scenario[] = [
      {
        title: 'unthrottled: local emulators as fast as they go',
        about: 'bounded by the CPU the emulators and the publisher need on the same cores, not by the publisher',
        packs: packs.slice(0, Math.ceil(sizeMb / 32)),
        wrap: (d) => d,
      },
    ];
    if (linkMbps > 0) {
      const linkRate = linkMbps * 1e6;
      scenarios.push({
        title: `link-limited: every destination behind withLimit({ bytesPerSecond: ${linkRate} })`,
        about:
          `each remote destination alone is bound by its ${linkMbps} MB/s link, not by an emulator's CPU, as ` +
          "remote destinations are: this is the scenario that measures the publisher's parallelism (issue 3's " +
          'intent). The local folder adopts staged packs by hard link, which withLimit does not throttle',
        packs: packs.slice(0, Math.ceil(linkMb / 32)),
        wrap: (d) => withLimit(d, { bytesPerSecond: linkRate }),
        linkRate,
      });
    }
    for (const scenario of scenarios) report(scenario, await measure(scenario, destinations, servers, rounds), dir);
    for (const d of destinations) await d.close();
  } finally {
    await Promise.allSettled([moto.stop(), azurite.stop()]);
    rmSync(dir, { recursive: true, force: true });
  }
}

let runs = 0;

/** Every round: each destination alone, then all three; the runs by destination name and 'parallel'. */
async function measure(
  scenario: Scenario,
  destinations: Destination[],
  servers: { moto: number; azurite: number },
  rounds: number,
): Promise<{ runs: Record<string, Measured[]>; ratios: number[] }> {
  /** Publish every pack to `targets`, then remove what was written so every run meets the servers alike. */
  const timed = async (targets: Destination[]): Promise<Measured> => {
    const prefix = `run-${runs++}`;
    const keys = [...scenario.packs.map((_, i) => `${prefix}/packs/${i}.pack`), `${prefix}/x.manifest`];
    const before = { moto: cpuSeconds(servers.moto), azurite: cpuSeconds(servers.azurite) };
    const own = process.cpuUsage();
    const start = performance.now();
    await publish({
      destinations: targets.map(scenario.wrap),
      packs: scenario.packs.map((p, i) => ({ ...p, key: keys[i]! })),
      manifest: { key: keys.at(-1)!, bytes: Buffer.from('manifest') },
    });
    const seconds = (performance.now() - start) / 1000;
    const used = process.cpuUsage(own);
    const cpu = {
      publisher: (used.user + used.system) / 1e6,
      moto: cpuSeconds(servers.moto) - before.moto,
      azurite: cpuSeconds(servers.azurite) - before.azurite,
    };
    for (const d of targets) for (const key of keys) await d.delete(key);
    return { seconds, cpu };
  };
  const byName: Record<string, Measured[]> = Object.fromEntries(
    [...destinations.map((d) => d.name), 'parallel'].map((name) => [name, []]),
  );
  const ratios: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const alone: number[] = [];
    for (const d of destinations) {
      const m = await timed([d]);
      byName[d.name]!.push(m);
      alone.push(m.seconds);
    }
    const together = await timed(destinations);
    byName.parallel!.push(together);
    ratios.push(together.seconds / Math.max(...alone));
  }
  return { runs: byName, ratios };
}

function report(scenario: Scenario, measured: { runs: Record<string, Measured[]>; ratios: number[] }, dir: string) {
  const { runs: byName, ratios } = measured;
  const bytes = scenario.packs.length * PACK;
  /** The run with the median time (so its CPU figures belong to that run). */
  const median = (list: Measured[]) => [...list].sort((a, b) => a.seconds - b.seconds)[Math.floor(list.length / 2)]!;
  const mid = (list: number[]) => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)]!;
  const cpuText = (c: Measured['cpu']) =>
    `CPU s: publisher ${c.publisher.toFixed(2)}, moto ${c.moto.toFixed(2)}, azurite ${c.azurite.toFixed(2)}`;
  const times = (list: Measured[]) => list.map((m) => m.seconds.toFixed(2)).join(', ');
  say('');
  say(`scenario ${scenario.title}`);
  say(`  (${scenario.about})`);
  say(
    `  publishing ${scenario.packs.length} packs (${(bytes / 1e6).toFixed(0)} MB) from ${dir}, ` +
      `${byName.parallel!.length} rounds, medians`,
  );
  // A link that was idle starts with one second of burst (the token bucket's), then sends at its rate.
  const linkSeconds = scenario.linkRate ? Math.max(0, bytes - scenario.linkRate) / scenario.linkRate : undefined;
  if (linkSeconds !== undefined) {
    say(
      `  one link sends it in ${linkSeconds.toFixed(2)} s (one second of burst, then ${scenario.linkRate! / 1e6} MB/s)`,
    );
  }
  const names = Object.keys(byName).filter((name) => name !== 'parallel');
  for (const name of names) {
    const m = median(byName[name]!);
    const ofLink = linkSeconds ? `, ${(m.seconds / linkSeconds).toFixed(2)}x the link's time` : '';
    say(
      `  ${name.padEnd(8)} alone: ${m.seconds.toFixed(2)} s (${(bytes / 1e6 / m.seconds).toFixed(0)} MB/s${ofLink}; ` +
        `runs ${times(byName[name]!)}); ${cpuText(m.cpu)}`,
    );
  }
  const parallel = median(byName.parallel!);
  say(
    `  all three in parallel: ${parallel.seconds.toFixed(2)} s (runs ${times(byName.parallel!)}); ${cpuText(parallel.cpu)}`,
  );
  const cpuTotal = Object.values(parallel.cpu).reduce((a, b) => a + b, 0);
  const floor = cpuTotal / availableParallelism();
  const slowest = Math.max(...names.map((name) => median(byName[name]!).seconds));
  say(
    `  the parallel run used ${cpuTotal.toFixed(2)} CPU s on ${availableParallelism()} cores: at least ${floor.toFixed(2)} s ` +
      `of wall time, ${(floor / slowest).toFixed(2)}x the slowest median alone, before any scheduling loss`,
  );
  const ratio = mid(ratios);
  say(
    `  ratio to the slowest alone, per round: ${ratios.map((x) => x.toFixed(2)).join(', ')}; median ${ratio.toFixed(2)}x ` +
      `(target <= 1.25x: ${ratio <= 1.25 ? 'PASS' : 'FAIL'})`,
  );
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
