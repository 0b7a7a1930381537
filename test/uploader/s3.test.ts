// The S3 destination against moto (python3 -m moto.server). moto's signature check miscomputes some
// requests (a ListObjectsV2 prefix with '/'), so the cases run on a moto without credential checks and
// the rejected-credentials case on a second moto that checks them.

import { CreateBucketCommand, ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { expect } from 'vitest';
import { createS3Client, SINGLE_PUT_MAX, s3 } from '../../src/uploader/s3.js';
import { startMoto } from '../harness/moto.js';
import { freePort } from '../harness/process.js';
import { describeConformance } from './conformance.js';

describeConformance('s3', async () => {
  const [moto, checking] = await Promise.all([startMoto(), startMoto({ auth: true })]);
  const bucket = `backupd-${Date.now().toString(36)}`;
  const base = {
    bucket,
    endpoint: moto.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    accessKeyId: moto.accessKeyId,
    secretAccessKey: moto.secretAccessKey,
    partSizeMiB: 5,
  };
  const admin = createS3Client(s3.parseConfig(base, 's3'));
  await admin.send(new CreateBucketCommand({ Bucket: bucket }));
  const badSecret = 'wrong-secret-key-0123456789';
  const config = (namespace: string) => s3.parseConfig({ ...base, prefix: `t/${namespace}` }, 's3');
  return {
    open: (namespace) => s3.open(`s3-${namespace}`, config(namespace)),
    openWithBadCredentials: (namespace) =>
      s3.open(
        `s3-${namespace}`,
        s3.parseConfig(
          { ...base, endpoint: checking.endpoint, accessKeyId: checking.accessKeyId, secretAccessKey: badSecret },
          's3',
        ),
      ),
    openUnreachable: async (namespace) =>
      s3.open(`s3-${namespace}`, s3.parseConfig({ ...base, endpoint: `http://127.0.0.1:${await freePort()}` }, 's3')),
    secrets: [moto.secretAccessKey, checking.secretAccessKey, badSecret],
    redacted: s3.redact(config('x')),
    // Above the single-PutObject limit, so it goes up as a multipart upload of 5 MiB parts.
    largeSize: SINGLE_PUT_MAX + 1024 * 1024,
    pagingKeys: 1001,
    afterInterruptedPut: async (namespace) => {
      // A multipart upload (the cancelled 1 GiB put) must have been aborted: no parts left behind to pay for.
      const uploads = await admin.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: `t/${namespace}/` }));
      expect(uploads.Uploads ?? []).toEqual([]);
    },
    teardown: async () => {
      admin.destroy();
      await Promise.all([moto.stop(), checking.stop()]);
    },
  };
});
