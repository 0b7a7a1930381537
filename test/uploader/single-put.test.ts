// The one-request puts of S3 (PutObject) and Azure (Put Blob) for objects up to 64 MiB, every pack, against
// moto and azurite: a streamed body arrives intact; a body that fails or shrinks when it is read again (S3
// reads it once for its CRC32, then streams it) fails the put at once, with its own error and no uncaught
// exception, and leaves the old object.

import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { Readable as ReadableStream } from 'node:stream';
import { crc32 } from 'node:zlib';
import { CreateBucketCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BackupdError } from '../../src/errors.js';
import { azure, createContainerClient } from '../../src/uploader/azure.js';
import type { Destination } from '../../src/uploader/destination.js';
import { createS3Client, s3 } from '../../src/uploader/s3.js';
import { type AzuriteServer, startAzurite } from '../harness/azurite.js';
import { type MotoServer, startMoto } from '../harness/moto.js';

const MiB = 1024 * 1024;
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** A body factory over `data` in 1 MiB chunks; from the `failFrom`-th stream on, each one ends early. */
function body(data: Buffer, failFrom = Number.POSITIVE_INFINITY, how: 'error' | 'short' = 'error') {
  let opened = 0;
  return (): Readable => {
    opened += 1;
    const failing = opened >= failFrom;
    return ReadableStream.from(
      (async function* () {
        for (let at = 0; at < data.length; at += MiB) {
          if (failing && at >= data.length / 2) {
            if (how === 'short') return;
            throw new Error('the source disk went away');
          }
          yield data.subarray(at, at + MiB);
          await new Promise((r) => setImmediate(r));
        }
      })(),
    );
  };
}

async function readAll(d: Destination, key: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of await d.get(key)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function failure(promise: Promise<unknown>): Promise<BackupdError> {
  const error = await promise.then(
    () => {
      throw new Error('expected the put to fail');
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(BackupdError);
  return error as BackupdError;
}

describe('single-request puts', { timeout: 60_000 }, () => {
  let moto: MotoServer;
  let azurite: AzuriteServer;
  const targets: [string, Destination][] = [];
  const bucket = `single-${Date.now().toString(36)}`;
  const s3Config = () =>
    s3.parseConfig(
      {
        bucket,
        endpoint: moto.endpoint,
        forcePathStyle: true,
        accessKeyId: moto.accessKeyId,
        secretAccessKey: moto.secretAccessKey,
      },
      's3',
    );

  beforeAll(async () => {
    [moto, azurite] = await Promise.all([startMoto(), startAzurite()]);
    const admin = createS3Client(s3Config());
    await admin.send(new CreateBucketCommand({ Bucket: bucket }));
    admin.destroy();
    const azureConfig = azure.parseConfig({ container: 'single', connectionString: azurite.connectionString }, 'a');
    await createContainerClient(azureConfig).create();
    targets.push(['s3', await s3.open('s3', s3Config())], ['azure', await azure.open('azure', azureConfig)]);
  }, 60_000);

  afterAll(async () => {
    for (const [, d] of targets) await d.close();
    await Promise.all([moto?.stop(), azurite?.stop()]);
  });

  it('a streamed 33 MiB body arrives intact, with progress along the way', async () => {
    const data = randomBytes(33 * MiB);
    for (const [, d] of targets) {
      const seen: number[] = [];
      await d.put('pack/a.pack', body(data), data.length, { onProgress: (n) => seen.push(n) });
      expect(seen.length).toBeGreaterThan(10);
      expect(seen.at(-1)).toBe(data.length);
      expect(sha256(await readAll(d, 'pack/a.pack'))).toBe(sha256(data));
    }
  });

  // moto stores the checksum but does not check it (it takes a wrong one); AWS S3 refuses a mismatch.
  it('S3 stores the CRC32 it was sent with the object', async () => {
    const data = randomBytes(3 * MiB);
    const d = targets[0]![1];
    await d.put('pack/crc.pack', body(data), data.length);
    const client = createS3Client(s3Config());
    try {
      const head = await client.send(
        new HeadObjectCommand({ Bucket: bucket, Key: 'pack/crc.pack', ChecksumMode: 'ENABLED' }),
      );
      const expected = Buffer.alloc(4);
      expected.writeUInt32BE(crc32(data));
      expect(head.ChecksumCRC32).toBe(expected.toString('base64'));
    } finally {
      client.destroy();
    }
  });

  it('a body that fails or comes up short when read again fails the put and keeps the old object', async () => {
    const old = Buffer.from('the old version');
    const data = randomBytes(8 * MiB);
    for (const [name, d] of targets) {
      await d.put('pack/kept.pack', old, old.length);
      // S3 reads the body twice (its CRC32, then the request): the second read fails. Azure reads it once.
      const failFrom = name === 's3' ? 2 : 1;
      const started = Date.now();
      const broken = await failure(d.put('pack/kept.pack', body(data, failFrom), data.length));
      expect(broken.message).toContain('the source disk went away');
      const short = await failure(d.put('pack/kept.pack', body(data, failFrom, 'short'), data.length));
      expect(short.code).toBe('DESTINATION_FAILED');
      expect(short.message).toMatch(/expected 8388608 bytes, got 4194304/);
      // Within the request timeouts (30 s S3, 60 s Azure): the request did not wait for the missing bytes.
      expect(Date.now() - started).toBeLessThan(10_000);
      expect((await readAll(d, 'pack/kept.pack')).toString()).toBe(old.toString());
    }
  });
});
