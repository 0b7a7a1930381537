// The Glacier destination: the conformance suite against moto (vaults, UploadArchive, retrieval jobs
// that finish after about 2 s at the Expedited tier, DeleteArchive), and multipart upload against a
// MOCKED client, because moto has no Glacier multipart upload. Tree hashes are checked against values
// computed with botocore's calculate_tree_hash.

import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateVaultCommand,
  DeleteArchiveCommand,
  DescribeJobCommand,
  GetJobOutputCommand,
  type GlacierClient,
  InitiateJobCommand,
  InitiateMultipartUploadCommand,
  UploadMultipartPartCommand,
} from '@aws-sdk/client-glacier';
import { describe, expect, it } from 'vitest';
import { createGlacierClient, GlacierDestination, glacier } from '../../src/uploader/glacier.js';
import { treeHash } from '../../src/uploader/tree-hash.js';
import { startMoto } from '../harness/moto.js';
import { freePort } from '../harness/process.js';
import { describeConformance } from './conformance.js';

describeConformance(
  'glacier',
  async () => {
    const [moto, checking] = await Promise.all([startMoto(), startMoto({ auth: true })]);
    const base = {
      vault: `backupd-${randomBytes(4).toString('hex')}`,
      endpoint: moto.endpoint,
      accessKeyId: moto.accessKeyId,
      secretAccessKey: moto.secretAccessKey,
      retrievalTier: 'Expedited',
      pollIntervalMs: 250,
      partSizeMiB: 8,
    };
    const config = glacier.parseConfig(base, 'glacier');
    const admin = createGlacierClient(config);
    await admin.send(new CreateVaultCommand({ vaultName: config.vault, accountId: '-' }));
    admin.destroy();
    const badSecret = 'wrong-secret-key-0123456789';
    return {
      // Archives are not keyed: one vault serves every case (refs keep them apart).
      open: (namespace) => glacier.open(`glacier-${namespace}`, config),
      openWithBadCredentials: (namespace) =>
        glacier.open(
          `glacier-${namespace}`,
          glacier.parseConfig(
            { ...base, endpoint: checking.endpoint, accessKeyId: checking.accessKeyId, secretAccessKey: badSecret },
            'glacier',
          ),
        ),
      openUnreachable: async (namespace) =>
        glacier.open(
          `glacier-${namespace}`,
          glacier.parseConfig({ ...base, endpoint: `http://127.0.0.1:${await freePort()}` }, 'glacier'),
        ),
      secrets: [moto.secretAccessKey, checking.secretAccessKey, badSecret],
      redacted: glacier.redact(config),
      // moto cannot do multipart: keep the real-server object below one part (8 MiB); see the mock below.
      largeSize: 6 * 1024 * 1024,
      pagingKeys: 0,
      serverGaps: {
        missingObjects:
          'moto answers 500 (a KeyError) for a deleted or unknown archive id; the 404 that Glacier sends is checked with a mocked client below',
      },
      teardown: () => Promise.all([moto.stop(), checking.stop()]).then(() => undefined),
    };
  },
  { timeoutMs: 60_000 },
);

/** Deterministic data, the same the reference tree hashes were computed from. */
function pattern(n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i++) out[i] = (i * 7 + 3) % 251;
  return out;
}

describe('glacier tree hash', () => {
  it('matches botocore for sizes around the 1 MiB chunk boundary', () => {
    const M = 1 << 20;
    const expected: [number, string][] = [
      [0, 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'],
      [1, '084fed08b978af4d7d196a7446a86b58009e636b611db16211b65a9aadff29c5'],
      [M, '1ac437f476c488acba4000af7ae89ef53f7ffbeef2e937850985f5ceb8b5ae6f'],
      [M + 1, 'e7408dee4d5a8cbdd0e8d58bee8ed7030fd0ef32716ace3a88556b816fcde32e'],
      [3 * M + 5, 'eca2d1c47dd0530fe9b40c744640afa287fffb6d492422a738dd2f58d14ff96e'],
      [5 * M, '25cbfd0b6adcaeb034ddf2b9f63f377a7f67b403fae212cade0c422140cf288b'],
    ];
    for (const [size, hash] of expected) expect(treeHash(pattern(size)), `size ${size}`).toBe(hash);
  });
});

/** A stand-in for GlacierClient that records multipart commands (moto has no multipart upload). */
function mockClient(options: { failPart?: number } = {}) {
  const sent: { name: string; input: Record<string, unknown>; body?: Buffer }[] = [];
  const client = {
    async send(command: { input: Record<string, unknown> }) {
      const body = command.input.body;
      sent.push({
        name: command.constructor.name,
        input: command.input,
        body: Buffer.isBuffer(body) ? body : undefined,
      });
      if (command instanceof InitiateMultipartUploadCommand) return { uploadId: 'upload-1' };
      if (command instanceof UploadMultipartPartCommand) {
        const parts = sent.filter((s) => s.name === 'UploadMultipartPartCommand').length;
        if (parts === options.failPart) {
          throw Object.assign(new Error('We encountered an internal error'), {
            name: 'ServiceUnavailableException',
            $metadata: { httpStatusCode: 503 },
          });
        }
        return { checksum: command.input.checksum };
      }
      if (command instanceof CompleteMultipartUploadCommand) return { archiveId: 'archive-1' };
      if (command instanceof AbortMultipartUploadCommand) return {};
      throw new Error(`unexpected command ${command.constructor.name}`);
    },
    destroy() {},
  };
  return { client: client as unknown as GlacierClient, sent };
}

describe('glacier multipart upload (mocked client: moto has no Glacier multipart)', () => {
  const config = glacier.parseConfig(
    { vault: 'v', accessKeyId: 'AKID', secretAccessKey: 'secret', partSizeMiB: 1 },
    'g',
  );
  const data = pattern(3 * (1 << 20) + 12345);
  const body = () =>
    Readable.from([data.subarray(0, 700_000), data.subarray(700_000, 2_500_000), data.subarray(2_500_000)]);

  it('sends power-of-two parts with their tree hashes and completes with the archive tree hash', async () => {
    const { client, sent } = mockClient();
    const d = new GlacierDestination('vault-mock', config, client);
    const progress: number[] = [];
    const result = await d.put('chain/packs/p.pack', body, data.length, { onProgress: (n) => progress.push(n) });
    expect(result.ref).toBe('archive-1');
    expect(progress.at(-1)).toBe(data.length);
    const names = sent.map((s) => s.name);
    expect(names).toEqual([
      'InitiateMultipartUploadCommand',
      'UploadMultipartPartCommand',
      'UploadMultipartPartCommand',
      'UploadMultipartPartCommand',
      'UploadMultipartPartCommand',
      'CompleteMultipartUploadCommand',
    ]);
    expect(sent[0]?.input.partSize).toBe(String(1 << 20));
    expect(sent[0]?.input.archiveDescription).toBe('chain/packs/p.pack');
    const parts = sent.filter((s) => s.name === 'UploadMultipartPartCommand');
    let offset = 0;
    for (const part of parts) {
      const bytes = part.body as Buffer;
      expect(part.input.range).toBe(`bytes ${offset}-${offset + bytes.length - 1}/*`);
      expect(part.input.checksum).toBe(treeHash(bytes));
      expect(bytes.equals(data.subarray(offset, offset + bytes.length))).toBe(true);
      offset += bytes.length;
    }
    expect(offset).toBe(data.length);
    const complete = sent.at(-1)?.input;
    expect(complete?.archiveSize).toBe(String(data.length));
    expect(complete?.checksum).toBe(treeHash(data));
    expect(
      createHash('sha256')
        .update(Buffer.concat(parts.map((p) => p.body as Buffer)))
        .digest('hex'),
    ).toBe(createHash('sha256').update(data).digest('hex'));
  });

  it('aborts the multipart upload when a part fails, and says the failure is retryable', async () => {
    const { client, sent } = mockClient({ failPart: 2 });
    const d = new GlacierDestination('vault-mock', config, client);
    const error = await d.put('x', body, data.length).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'UNAVAILABLE', retryable: true });
    expect(String((error as Error).message)).toContain('glacier destination "vault-mock"');
    expect(sent.at(-1)?.name).toBe('AbortMultipartUploadCommand');
    expect(sent.some((s) => s.name === 'CompleteMultipartUploadCommand')).toBe(false);
  });

  it('aborts the multipart upload when the body is shorter than announced', async () => {
    const { client, sent } = mockClient();
    const d = new GlacierDestination('vault-mock', config, client);
    const error = await d.put('x', body, data.length + 10).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'DESTINATION_FAILED' });
    expect(sent.at(-1)?.name).toBe('AbortMultipartUploadCommand');
    expect(sent.some((s) => s.name === 'CompleteMultipartUploadCommand')).toBe(false);
  });
});

/** Glacier's answer for an unknown archive id (what moto cannot send: it answers 500). */
const notFound = () =>
  Object.assign(new Error('Archive not found for ID: nope'), {
    name: 'ResourceNotFoundException',
    $metadata: { httpStatusCode: 404 },
  });

/** A stand-in for GlacierClient's retrieval and delete calls. */
function retrievalClient(behaviour: {
  archives: Record<string, Buffer>;
  jobStatus?: () => { Completed: boolean; StatusCode: string; StatusMessage?: string };
}) {
  const sent: string[] = [];
  const jobs = new Map<string, string>();
  const client = {
    async send(command: { input: Record<string, unknown> }) {
      sent.push(command.constructor.name);
      if (command instanceof InitiateJobCommand) {
        const id = String((command.input.jobParameters as { ArchiveId?: string }).ArchiveId);
        if (!(id in behaviour.archives)) throw notFound();
        jobs.set(`job-${jobs.size}`, id);
        return { jobId: `job-${jobs.size - 1}` };
      }
      if (command instanceof DescribeJobCommand) {
        return behaviour.jobStatus?.() ?? { Completed: true, StatusCode: 'Succeeded' };
      }
      if (command instanceof GetJobOutputCommand) {
        const data = behaviour.archives[jobs.get(String(command.input.jobId)) ?? ''] as Buffer;
        return { status: 200, body: Readable.from([data]) };
      }
      if (command instanceof DeleteArchiveCommand) {
        const id = String(command.input.archiveId);
        if (!(id in behaviour.archives)) throw notFound();
        delete behaviour.archives[id];
        return {};
      }
      throw new Error(`unexpected command ${command.constructor.name}`);
    },
    destroy() {},
  };
  return { client: client as unknown as GlacierClient, sent };
}

describe('glacier retrieval and delete (mocked client where moto cannot answer like Glacier)', () => {
  const config = glacier.parseConfig(
    { vault: 'v', accessKeyId: 'AKID', secretAccessKey: 'secret', pollIntervalMs: 10, retrievalTimeoutMs: 1000 },
    'g',
  );
  const read = async (stream: Readable) => {
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString();
  };

  it('an unknown archive id is NOT_FOUND for get, and deleting it succeeds', async () => {
    const { client } = retrievalClient({ archives: { a1: Buffer.from('hello') } });
    const d = new GlacierDestination('vault-mock', config, client);
    await expect(d.get('k', { ref: 'nope' })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await d.delete('k', { ref: 'a1' });
    await d.delete('k', { ref: 'a1' });
    await expect(d.get('k', { ref: 'a1' })).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('waits for the job, then reads; a range the server ignored is cut on this side', async () => {
    let polls = 0;
    const { client, sent } = retrievalClient({
      archives: { a1: Buffer.from('0123456789') },
      jobStatus: () =>
        ++polls < 3 ? { Completed: false, StatusCode: 'InProgress' } : { Completed: true, StatusCode: 'Succeeded' },
    });
    const d = new GlacierDestination('vault-mock', config, client);
    expect(await read(await d.get('k', { ref: 'a1', range: { offset: 3, length: 4 } }))).toBe('3456');
    expect(sent.filter((n) => n === 'DescribeJobCommand')).toHaveLength(3);
  });

  it('a failed job is DESTINATION_FAILED, a job past the deadline TIMEOUT, an abort while waiting CANCELLED', async () => {
    const failed = retrievalClient({
      archives: { a1: Buffer.from('x') },
      jobStatus: () => ({ Completed: true, StatusCode: 'Failed', StatusMessage: 'archive corrupted' }),
    });
    await expect(new GlacierDestination('vm', config, failed.client).get('k', { ref: 'a1' })).rejects.toMatchObject({
      code: 'DESTINATION_FAILED',
    });
    const slow = retrievalClient({
      archives: { a1: Buffer.from('x') },
      jobStatus: () => ({ Completed: false, StatusCode: 'InProgress' }),
    });
    const quick = glacier.parseConfig({ vault: 'v', pollIntervalMs: 10, retrievalTimeoutMs: 1000 }, 'g');
    await expect(new GlacierDestination('vm', quick, slow.client).get('k', { ref: 'a1' })).rejects.toMatchObject({
      code: 'TIMEOUT',
    });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    await expect(
      new GlacierDestination('vm', quick, slow.client).get('k', { ref: 'a1', signal: controller.signal }),
    ).rejects.toMatchObject({ code: 'CANCELLED' });
  });

  it('refuses get and delete without a ref, and list and stat-with-ref as UNSUPPORTED', async () => {
    const { client } = retrievalClient({ archives: {} });
    const d = new GlacierDestination('vm', config, client);
    await expect(d.get('k')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(d.delete('k')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(await d.stat('k')).toBeUndefined();
    await expect(d.stat('k', { ref: 'a1' })).rejects.toMatchObject({ code: 'UNSUPPORTED' });
  });
});
