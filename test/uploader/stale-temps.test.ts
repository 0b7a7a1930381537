// A put killed with its process leaves the temp file it was writing (`.partial-*`): no listing shows it, no
// retry reuses it. Retention's orphan cleanup removes such files at every destination kind that writes temp
// names (local, FTP) once they are older than the grace period, and leaves younger ones (an upload may be in
// progress) and real objects alone. The upload is really killed: a child process runs the compiled driver
// and gets SIGKILL mid-put; FTP runs against a real server (ftp-srv).

import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyRetention } from '../../src/backup/retention.js';
import type { DatabaseRef } from '../../src/layout.js';
import type { Destination } from '../../src/uploader/destination.js';
import { type DestinationSpec, destinations } from '../../src/uploader/registry.js';
import { type FtpServer, startFtpServer } from '../harness/ftp.js';
import { tempDir } from '../harness/process.js';

const ROOT = join(import.meta.dirname, '..', '..');
const REGISTRY = join(ROOT, 'dist', 'src', 'uploader', 'registry.js');
const REF: DatabaseRef = { cluster: 'test', source: 'local', database: 'shop.db' };
const CHAIN = '20260301T000000Z-backup-n1';
const PACK = `test/local/shop.db/${CHAIN}/packs/0123abcd.pack`;
const HOUR = 3_600_000;

/** Start a put of `PACK` in a child process, wait until its temp file is at `folder`, then SIGKILL it. */
async function killedPut(spec: DestinationSpec, folder: string): Promise<string> {
  if (!existsSync(REGISTRY)) throw new Error(`the compiled drivers are missing (${REGISTRY}): run "npm run build"`);
  const script = `
    import { Readable } from 'node:stream';
    import { destinations } from ${JSON.stringify(REGISTRY)};
    const destination = await destinations.openDriver(JSON.parse(process.argv[1]), 'spec');
    let sent = false;
    // 64 KiB of the 1 MiB promised, then nothing more: the put hangs mid-upload until it is killed.
    const body = () => new Readable({ read() { if (!sent) { sent = true; this.push(Buffer.alloc(65536, 7)); } } });
    await destination.put(${JSON.stringify(PACK)}, body, 1 << 20);
  `;
  const child: ChildProcess = spawn(process.execPath, ['--input-type=module', '-e', script, JSON.stringify(spec)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const collect = (d: Buffer) => {
    output += d.toString();
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const temp = readdirSync(folder, { recursive: true })
        .map(String)
        .find((name) => name.includes('.partial-'));
      if (temp) return join(folder, temp);
      if (child.exitCode !== null) throw new Error(`the uploading process ended before it wrote: ${output}`);
      if (Date.now() > deadline) throw new Error(`no temp file under ${folder} within 20 s: ${output}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    child.kill('SIGKILL');
    await exited;
  }
}

function filesUnder(folder: string): string[] {
  return readdirSync(folder, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
}

describe('stale temp files of killed uploads', () => {
  let ftpServer: FtpServer;
  const dir = tempDir('stale-temps');

  beforeAll(async () => {
    ftpServer = await startFtpServer();
  });
  afterAll(async () => {
    await ftpServer?.stop();
    dir.remove();
  });

  const kinds: { kind: string; spec: () => DestinationSpec; folder: () => string }[] = [
    {
      kind: 'local',
      spec: () => ({ name: 'disk', kind: 'local', config: { path: join(dir.path, 'local') } }),
      folder: () => join(dir.path, 'local'),
    },
    {
      kind: 'ftp',
      spec: () => ({
        name: 'ftp',
        kind: 'ftp',
        config: {
          host: '127.0.0.1',
          port: ftpServer.port,
          user: ftpServer.user,
          password: ftpServer.password,
          root: '/',
        },
      }),
      folder: () => ftpServer.rootDir,
    },
  ];

  for (const { kind, spec, folder } of kinds) {
    it(`${kind}: retention removes the temp file once past the grace period, and only then`, async () => {
      mkdirSync(folder(), { recursive: true });
      const temp = await killedPut(spec(), folder());
      const destination: Destination = await destinations.open(spec(), 'spec');
      try {
        // A real object beside it stays whatever its age.
        const kept = `test/local/shop.db/${CHAIN}/keep.manifest`;
        await destination.put(kept, Buffer.from('manifest'), 8);

        // Within the grace period: may be an upload in progress, so it stays.
        const young = await applyRetention(destination, REF, { orphanGraceHours: 24 }, new Date(Date.now() + HOUR));
        expect(young.deletedTemps).toEqual([]);
        expect(existsSync(temp)).toBe(true);

        const old = await applyRetention(destination, REF, { orphanGraceHours: 24 }, new Date(Date.now() + 25 * HOUR));
        expect(old.deletedTemps).toHaveLength(1);
        expect(existsSync(temp)).toBe(false);
        expect(filesUnder(folder()).some((f) => f.includes('.partial-'))).toBe(false);
        expect(await destination.stat(kept)).toMatchObject({ size: 8 });
      } finally {
        await destination.close();
      }
    }, 60_000);
  }
});
