// A real S3 server (moto) that stops in the middle of a backup's upload: the run fails naming that
// destination, no manifest is published anywhere, and the staged run stays for the retry, which succeeds
// against a new server.

import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../../src/backup/backup.js';
import { publishStaged, StagedPublishError } from '../../src/backup/staged.js';
import { createSampleDb } from '../../src/cli/sample-db.js';
import { type BackupdError, findError } from '../../src/errors.js';
import { LocalDestination } from '../../src/uploader/local.js';
import { withRetry } from '../../src/uploader/retry.js';
import { createS3Client, s3 } from '../../src/uploader/s3.js';
import { type MotoServer, startMoto } from '../harness/moto.js';
import { type Workspace, workspace } from '../support/workspace.js';

let ws: Workspace;
const servers: MotoServer[] = [];

async function s3On(moto: MotoServer) {
  const config = s3.parseConfig(
    {
      bucket: 'backups',
      endpoint: moto.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      accessKeyId: moto.accessKeyId,
      secretAccessKey: moto.secretAccessKey,
      partSizeMiB: 5,
    },
    's3',
  );
  const admin = createS3Client(config);
  await admin.send(new CreateBucketCommand({ Bucket: 'backups' }));
  admin.destroy();
  return withRetry(await s3.open('offsite', config), { attempts: 2, sleep: async () => {} });
}

const manifests = (root: string) =>
  existsSync(root) ? readdirSync(root, { recursive: true }).filter((f) => String(f).endsWith('.manifest')) : [];

beforeAll(async () => {
  ws = await workspace();
  // Random BLOBs do not compress: a few packs' worth, so the server can stop between them.
  createSampleDb(join(ws.dbDir, 'shop.db'), 400_000, 11);
}, 120_000);

afterAll(async () => {
  await Promise.allSettled(servers.map((s) => s.stop()));
  ws?.cleanup();
});

describe('a destination server that stops mid-upload', () => {
  it('fails the run by name, publishes nothing, and the retry of the same run succeeds', async () => {
    const first = await startMoto();
    servers.push(first);
    const offsite = await s3On(first);
    const onsite = new LocalDestination('onsite', join(ws.dir, 'onsite'));
    let stopping: Promise<void> | undefined;
    const failure = await runBackup({
      ref: ws.ref('shop.db'),
      source: ws.source,
      type: 'snapshot',
      level: 'full',
      destinations: [onsite, offsite],
      stagingDir: ws.stagingDir,
      node: 'n1',
      task: 't',
      onProgress: (p) => {
        // Once some bytes are out, the S3 server goes away.
        if (p.phase === 'publishing' && p.bytesDone > 0 && !stopping) stopping = first.stop();
      },
    }).catch((error: BackupdError) => error);
    await stopping;
    expect(failure).toMatchObject({
      code: 'DESTINATION_FAILED',
      message: expect.stringMatching(/destination offsite failed/),
    });
    expect(manifests(onsite.root)).toEqual([]);

    // The same run, retried against a server that is back (a new, empty one).
    const second = await startMoto();
    servers.push(second);
    const staged = findError(failure, StagedPublishError)?.folder;
    expect(staged).toBeDefined();
    const { outcomes } = await publishStaged(staged!, [onsite, await s3On(second)]);
    expect(outcomes.map((o) => o.ok)).toEqual([true, true]);
    expect(outcomes[0]!.reusedPacks).toBeGreaterThan(0); // the folder kept what it had received
    expect(manifests(onsite.root)).toHaveLength(1);
  });
});
