// The Amazon Glacier (vault API) destination. Glacier stores archives, not keys: put() returns the
// archive id as `ref`, which callers keep (manifest, unit status) to read or delete it later. There is
// no listing and no stat; reading starts an archive-retrieval job and waits for it (minutes to hours).
// Small objects go up with UploadArchive, large ones as a multipart upload with SHA-256 tree hashes.

import { pipeline, type Readable, Transform } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  DeleteArchiveCommand,
  DescribeJobCommand,
  GetJobOutputCommand,
  GlacierClient,
  InitiateJobCommand,
  InitiateMultipartUploadCommand,
  UploadArchiveCommand,
  UploadMultipartPartCommand,
} from '@aws-sdk/client-glacier';
import { parseWith, z } from '../validate.js';
import {
  AWS_SECRET_FIELDS,
  type AwsConnection,
  awsClientConfig,
  awsConnectionFields,
  awsError,
  awsSecrets,
  checkAwsCredentials,
} from './aws.js';
import { countedBody } from './body.js';
import { redactFields, wholeNumber } from './config.js';
import type {
  Destination,
  DestinationCapabilities,
  DestinationFactory,
  GetOptions,
  ObjectInfo,
  PutBody,
  PutOptions,
  PutResult,
} from './destination.js';
import { destinationError, type Where } from './failure.js';
import { checkKey, checkRange, httpRange } from './object-keys.js';
import { leafHashes, treeHashOf } from './tree-hash.js';

export interface GlacierConfig extends AwsConnection {
  vault: string;
  /** The AWS account that owns the vault; '-' (the credentials' own account) when absent. */
  accountId?: string;
  /** Multipart part size in MiB, a power of two from 1 to 4096 (default 16). Larger objects go multipart. */
  partSizeMiB?: number;
  /** Retrieval tier for get(): Expedited (minutes), Standard (hours, default), Bulk (cheapest, slowest). */
  retrievalTier?: 'Expedited' | 'Standard' | 'Bulk';
  /** How often a running retrieval job is polled, in milliseconds (default 60000). */
  pollIntervalMs?: number;
  /** Give up on a retrieval job after this many milliseconds (default 48 h) with TIMEOUT. */
  retrievalTimeoutMs?: number;
}

const glacierSchema = checkAwsCredentials(
  z.strictObject({
    vault: z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,255}$/, 'must be a Glacier vault name: 1-255 letters, digits, ".", "_", "-"'),
    accountId: z
      .string()
      .regex(/^(-|\d{12})$/, 'must be "-" or a 12-digit AWS account id')
      .optional(),
    ...awsConnectionFields,
    partSizeMiB: wholeNumber(1, 4096)
      .refine((n) => (n & (n - 1)) === 0, 'must be a power of two (1, 2, 4, ... 4096)')
      .optional(),
    retrievalTier: z.enum(['Expedited', 'Standard', 'Bulk']).optional(),
    pollIntervalMs: wholeNumber(10, 3_600_000).optional(),
    retrievalTimeoutMs: wholeNumber(1000, 30 * 24 * 3_600_000).optional(),
  }),
);

const MiB = 1 << 20;

export class GlacierDestination implements Destination {
  readonly kind = 'glacier';
  readonly capabilities: DestinationCapabilities = {
    listable: false,
    rangeReads: false,
    immediateReads: false,
    maxObjectSize: 10_000 * 4096 * MiB, // 10,000 parts of 4 GiB (40 TiB)
  };
  private readonly where: Where;
  private readonly vault: { vaultName: string; accountId: string };

  constructor(
    readonly name: string,
    private readonly config: GlacierConfig,
    private readonly client: GlacierClient,
  ) {
    this.where = { kind: this.kind, name, secrets: awsSecrets(config) };
    this.vault = { vaultName: config.vault, accountId: config.accountId ?? '-' };
  }

  private get partSize(): number {
    return (this.config.partSizeMiB ?? 16) * MiB;
  }

  /**
   * Upload a new archive and return its id as `ref`; the key becomes the archive description (for a
   * vault inventory). Every put makes a new archive: "replacing" is deleting the old ref afterwards.
   */
  async put(key: string, body: PutBody, size: number, options: PutOptions = {}): Promise<PutResult> {
    const op = `put ${key}`;
    checkKey(key);
    if (size > this.capabilities.maxObjectSize) {
      throw destinationError(this.where, 'UNSUPPORTED', op, `${size} bytes is more than Glacier's archive limit`);
    }
    if (options.signal?.aborted) throw destinationError(this.where, 'CANCELLED', op, 'cancelled');
    const stream = countedBody(op, body, size, options);
    let uploadId: string | undefined;
    try {
      const parts = readParts(stream, this.partSize);
      const first = await parts.next();
      const firstPart = first.done ? Buffer.alloc(0) : first.value;
      if (size <= this.partSize) {
        // The counted stream ends (or fails on a size mismatch) right after its only part.
        const rest = await parts.next();
        if (!rest.done) throw destinationError(this.where, 'DESTINATION_FAILED', op, `more than ${size} bytes`);
        const answer = await this.client.send(
          new UploadArchiveCommand({
            ...this.vault,
            archiveDescription: describe(key),
            checksum: treeHashOf(leafHashes(firstPart)).toString('hex'),
            body: firstPart,
          }),
          { abortSignal: options.signal },
        );
        return { ref: required(answer.archiveId, 'archive id') };
      }
      const started = await this.client.send(
        new InitiateMultipartUploadCommand({
          ...this.vault,
          archiveDescription: describe(key),
          partSize: String(this.partSize),
        }),
        { abortSignal: options.signal },
      );
      uploadId = required(started.uploadId, 'upload id');
      const leaves: Buffer[] = [];
      let offset = 0;
      for (let part: Buffer | undefined = firstPart; part !== undefined; ) {
        const partLeaves = leafHashes(part);
        leaves.push(...partLeaves);
        await this.client.send(
          new UploadMultipartPartCommand({
            ...this.vault,
            uploadId,
            range: `bytes ${offset}-${offset + part.length - 1}/*`,
            checksum: treeHashOf(partLeaves).toString('hex'),
            body: part,
          }),
          { abortSignal: options.signal },
        );
        offset += part.length;
        const next = await parts.next();
        part = next.done ? undefined : next.value;
      }
      const done = await this.client.send(
        new CompleteMultipartUploadCommand({
          ...this.vault,
          uploadId,
          archiveSize: String(offset),
          checksum: treeHashOf(leaves).toString('hex'),
        }),
        { abortSignal: options.signal },
      );
      uploadId = undefined;
      return { ref: required(done.archiveId, 'archive id') };
    } catch (error) {
      stream.destroy();
      if (uploadId !== undefined) await this.abortUpload(uploadId);
      throw awsError(this.where, op, error, options.signal);
    }
  }

  /** Best effort: an upload left open expires on its own after 24 hours. */
  private async abortUpload(uploadId: string): Promise<void> {
    await this.client.send(new AbortMultipartUploadCommand({ ...this.vault, uploadId })).catch(() => undefined);
  }

  /**
   * Start an archive-retrieval job for `ref`, poll it every pollIntervalMs, then stream its output (or
   * the requested range of it). NOT_FOUND when the archive does not exist; TIMEOUT after
   * retrievalTimeoutMs; CANCELLED when the signal aborts while waiting.
   */
  async get(key: string, options: GetOptions = {}): Promise<Readable> {
    const op = `get ${key}`;
    checkRange(options.range);
    if (!options.ref) {
      throw destinationError(
        this.where,
        'INVALID_ARGUMENT',
        op,
        'glacier needs the archive id (ref) that put() returned',
      );
    }
    try {
      const job = await this.client.send(
        new InitiateJobCommand({
          ...this.vault,
          jobParameters: {
            Type: 'archive-retrieval',
            ArchiveId: options.ref,
            Tier: this.config.retrievalTier ?? 'Standard',
            Description: describe(key),
          },
        }),
        { abortSignal: options.signal },
      );
      const jobId = required(job.jobId, 'job id');
      await this.waitForJob(op, jobId, options.signal);
      const range = options.range;
      const output = await this.client.send(
        new GetJobOutputCommand({ ...this.vault, jobId, range: range ? httpRange(range) : undefined }),
        { abortSignal: options.signal },
      );
      const body = output.body as Readable;
      // A server that ignores the range (answers 200 with the whole archive) gets it cut here.
      if (range && output.status !== 206 && !output.contentRange) return sliceStream(body, range.offset, range.length);
      return body;
    } catch (error) {
      throw awsError(this.where, op, error, options.signal);
    }
  }

  private async waitForJob(op: string, jobId: string, signal?: AbortSignal): Promise<void> {
    const deadline = Date.now() + (this.config.retrievalTimeoutMs ?? 48 * 3_600_000);
    for (;;) {
      const job = await this.client.send(new DescribeJobCommand({ ...this.vault, jobId }), { abortSignal: signal });
      if (job.Completed) {
        if (job.StatusCode === 'Succeeded') return;
        throw destinationError(
          this.where,
          'DESTINATION_FAILED',
          op,
          `retrieval job ${jobId} ${job.StatusCode}: ${job.StatusMessage ?? ''}`,
        );
      }
      if (Date.now() >= deadline) {
        throw destinationError(this.where, 'TIMEOUT', op, `retrieval job ${jobId} still running at the deadline`);
      }
      await sleep(this.config.pollIntervalMs ?? 60_000, undefined, { signal });
    }
  }

  /** Glacier can tell nothing about an archive without an inventory job: undefined without a ref. */
  async stat(key: string, options: { ref?: string } = {}): Promise<ObjectInfo | undefined> {
    if (options.ref === undefined) return undefined;
    throw destinationError(
      this.where,
      'UNSUPPORTED',
      `stat ${key}`,
      'glacier cannot look up an archive (only a vault inventory job, hours long, can): keep size and time with the archive id',
    );
  }

  // biome-ignore lint/correctness/useYield: throwing before the first item is the whole behaviour
  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    throw destinationError(
      this.where,
      'UNSUPPORTED',
      `list ${prefix || '(all)'}`,
      'glacier vaults cannot be listed: archive ids are kept in manifests and unit status',
    );
  }

  /** DeleteArchive; an archive that is already gone counts as deleted. */
  async delete(key: string, options: { ref?: string } = {}): Promise<void> {
    const op = `delete ${key}`;
    if (!options.ref) {
      throw destinationError(
        this.where,
        'INVALID_ARGUMENT',
        op,
        'glacier needs the archive id (ref) that put() returned',
      );
    }
    try {
      await this.client.send(new DeleteArchiveCommand({ ...this.vault, archiveId: options.ref }));
    } catch (error) {
      const converted = awsError(this.where, op, error);
      if (converted.code !== 'NOT_FOUND') throw converted;
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}

/** The stream cut into buffers of exactly `partSize` bytes (the last one shorter). */
async function* readParts(stream: Readable, partSize: number): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for await (const chunk of stream) {
    let data = chunk as Buffer;
    while (pendingBytes + data.length >= partSize) {
      const take = partSize - pendingBytes;
      pending.push(data.subarray(0, take));
      yield Buffer.concat(pending);
      data = data.subarray(take);
      pending = [];
      pendingBytes = 0;
    }
    if (data.length > 0) {
      pending.push(data);
      pendingBytes += data.length;
    }
  }
  if (pendingBytes > 0) yield Buffer.concat(pending);
}

/** The bytes [offset, offset + length) of `source`; the rest is discarded. */
function sliceStream(source: Readable, offset: number, length: number): Readable {
  let skipped = 0;
  let sent = 0;
  const out = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      let data = chunk;
      if (skipped < offset) {
        const skip = Math.min(offset - skipped, data.length);
        skipped += skip;
        data = data.subarray(skip);
      }
      const take = Math.min(length - sent, data.length);
      sent += take;
      callback(null, take > 0 ? data.subarray(0, take) : undefined);
    },
  });
  return pipeline(source, out, () => undefined); // errors reach the caller through `out`
}

/** Archive descriptions are printable ASCII, at most 1024 characters. */
function describe(key: string): string {
  return key.replace(/[^\x20-\x7e]/g, '?').slice(0, 1024);
}

function required(value: string | undefined, what: string): string {
  if (!value) throw new Error(`glacier answered without a ${what}`);
  return value;
}

export function createGlacierClient(config: GlacierConfig): GlacierClient {
  return new GlacierClient(awsClientConfig(config));
}

export const glacier = {
  kind: 'glacier',
  parseConfig: (input: unknown, path: string): GlacierConfig =>
    parseWith(glacierSchema, input, 'glacier destination', path),
  redact: (config: GlacierConfig): GlacierConfig => redactFields(config, AWS_SECRET_FIELDS),
  open: async (name: string, config: GlacierConfig): Promise<Destination> =>
    new GlacierDestination(name, config, createGlacierClient(config)),
} satisfies DestinationFactory<GlacierConfig>;
