// The S3 destination (AWS S3 and S3-compatible stores through a custom endpoint and path-style
// addressing). Objects up to 64 MiB (every pack) go up in one streamed PutObject; larger ones as
// multipart uploads through @aws-sdk/lib-storage, which aborts the upload on failure, so an object only
// ever appears complete.

import type { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  S3Client,
  StorageClass,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
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
import { BodyFailure, countedBody, crc32OfBody } from './body.js';
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
import { checkKey, checkRange, httpRange, prefixSchema } from './object-keys.js';

export interface S3Config extends AwsConnection {
  bucket: string;
  /** Prepended to every key, stored with a trailing '/'; '' for the bucket root. */
  prefix: string;
  /** Use https://host/bucket/key instead of https://bucket.host/key (most S3-compatible stores). */
  forcePathStyle?: boolean;
  /** Storage class of new objects, e.g. STANDARD_IA; the bucket's default when absent. */
  storageClass?: StorageClass;
  /** Multipart part size in MiB (5..5120, default 16), for objects larger than SINGLE_PUT_MAX. */
  partSizeMiB?: number;
  /** Parts uploaded at once per object (default 4); memory use is about partSizeMiB x queueSize. */
  queueSize?: number;
  /** Keys per ListObjectsV2 page (1..1000, default 1000). */
  listPageSize?: number;
}

const s3Schema = checkAwsCredentials(
  z.strictObject({
    bucket: z
      .string()
      .regex(
        /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/,
        'must be an S3 bucket name: 3-63 lowercase letters, digits, "." and "-"',
      ),
    prefix: prefixSchema.default(''),
    ...awsConnectionFields,
    forcePathStyle: z.boolean().optional(),
    storageClass: z.enum(Object.values(StorageClass) as [StorageClass, ...StorageClass[]]).optional(),
    partSizeMiB: wholeNumber(5, 5120).optional(),
    queueSize: wholeNumber(1, 64).optional(),
    listPageSize: wholeNumber(1, 1000).optional(),
  }),
);

const MiB = 1 << 20;
/**
 * Objects up to this size go up in one PutObject, streamed. A pack (32 MiB, a little more at most) fits:
 * lib-storage would read it into part buffers (copies and garbage collection) that the SDK then hashes
 * for SigV4, about three times the CPU of a streamed PutObject in bench/publish.ts.
 */
export const SINGLE_PUT_MAX = 64 * MiB;

export class S3Destination implements Destination {
  readonly kind = 's3';
  readonly capabilities: DestinationCapabilities = {
    listable: true,
    rangeReads: true,
    immediateReads: true,
    maxObjectSize: 5 * 1024 ** 4, // 5 TiB, S3's object limit
  };
  private readonly where: Where;

  constructor(
    readonly name: string,
    private readonly config: S3Config,
    private readonly client: S3Client,
  ) {
    this.where = { kind: this.kind, name, secrets: awsSecrets(config) };
  }

  private objectName(key: string): string {
    return this.config.prefix + checkKey(key);
  }

  /** Resolves when the whole object is stored; a failed or aborted upload leaves no object and no parts behind. */
  async put(key: string, body: PutBody, size: number, options: PutOptions = {}): Promise<PutResult> {
    const op = `put ${key}`;
    const Key = this.objectName(key);
    if (options.signal?.aborted) throw destinationError(this.where, 'CANCELLED', op, 'cancelled');
    if (size <= SINGLE_PUT_MAX) return this.putSingle(op, Key, body, size, options);
    const stream = countedBody(op, body, size, options);
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.config.bucket, Key, Body: stream, StorageClass: this.config.storageClass },
      partSize: (this.config.partSizeMiB ?? 16) * MiB,
      queueSize: this.config.queueSize ?? 4,
      leavePartsOnError: false,
    });
    const onAbort = () => void upload.abort().catch(() => undefined); // the upload's own rejection reports it
    options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await upload.done();
      return {};
    } catch (error) {
      stream.destroy();
      throw awsError(this.where, op, error, options.signal);
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * One PutObject with a streamed body, which SigV4 signs as UNSIGNED-PAYLOAD (no SHA-256 of the body).
   * The body's CRC32 goes in a header instead, computed natively before the request: S3 checks it,
   * stores nothing on a mismatch and keeps it with the object. So the body stays protected over plain
   * http as the SDK's own default (a CRC32 trailer in aws-chunked encoding) would protect it, but with a
   * fixed Content-Length that every S3-compatible store takes. A body that fails midway ends the request
   * before S3 has the announced length: nothing is stored.
   */
  private async putSingle(
    op: string,
    Key: string,
    body: PutBody,
    size: number,
    options: PutOptions,
  ): Promise<PutResult> {
    let stream: Readable | undefined;
    const failure = new BodyFailure(options.signal);
    try {
      const crc = Buffer.alloc(4);
      crc.writeUInt32BE(await crc32OfBody(op, body, size, options.signal));
      stream = failure.watch(countedBody(op, body, size, options));
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.config.bucket,
          Key,
          Body: stream,
          ContentLength: size,
          ChecksumAlgorithm: 'CRC32',
          ChecksumCRC32: crc.toString('base64'),
          StorageClass: this.config.storageClass,
        }),
        { abortSignal: failure.signal },
      );
      return {};
    } catch (error) {
      stream?.destroy();
      throw awsError(this.where, op, failure.error ?? error, options.signal);
    }
  }

  /** The object or a range of it; NOT_FOUND when the key is absent. */
  async get(key: string, options: GetOptions = {}): Promise<Readable> {
    const op = `get ${key}`;
    checkRange(options.range);
    try {
      const answer = await this.client.send(
        new GetObjectCommand({
          Bucket: this.config.bucket,
          Key: this.objectName(key),
          Range: options.range ? httpRange(options.range) : undefined,
        }),
        { abortSignal: options.signal },
      );
      return answer.Body as Readable;
    } catch (error) {
      throw awsError(this.where, op, error, options.signal);
    }
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    try {
      const head = await this.client.send(
        new HeadObjectCommand({ Bucket: this.config.bucket, Key: this.objectName(key) }),
      );
      return { key, size: head.ContentLength ?? 0, modifiedAt: head.LastModified ?? new Date(0) };
    } catch (error) {
      const converted = awsError(this.where, `stat ${key}`, error);
      if (converted.code === 'NOT_FOUND') return undefined;
      throw converted;
    }
  }

  /** Pages through ListObjectsV2; keys are returned without the configured prefix. */
  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const op = `list ${prefix || '(all)'}`;
    let token: string | undefined;
    do {
      let page: ListObjectsV2CommandOutput;
      try {
        page = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.config.bucket,
            Prefix: this.config.prefix + prefix,
            ContinuationToken: token,
            MaxKeys: this.config.listPageSize ?? 1000,
          }),
        );
      } catch (error) {
        throw awsError(this.where, op, error);
      }
      for (const item of page.Contents ?? []) {
        if (item.Key === undefined) continue;
        yield {
          key: item.Key.slice(this.config.prefix.length),
          size: item.Size ?? 0,
          modifiedAt: item.LastModified ?? new Date(0),
        };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  /** S3 answers a delete of a missing key with success, which is what the interface asks. */
  async delete(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.config.bucket, Key: this.objectName(key) }));
    } catch (error) {
      throw awsError(this.where, `delete ${key}`, error);
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}

const silentLogger = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

export function createS3Client(config: S3Config): S3Client {
  return new S3Client({
    ...awsClientConfig(config),
    forcePathStyle: config.forcePathStyle,
    // No SDK-computed checksums: a single PutObject carries the CRC32 put() computed itself, and a
    // multipart part is a Buffer whose SHA-256 the SigV4 signature covers, which S3 checks; a second
    // checksum per part would only cost CPU on the cores the servers also need. Downloads are not checked
    // here because every pack is AES-GCM authenticated and checked by restore and verify.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    // The SDK cannot retry a request whose body is a stream and then warns through its logger, which
    // defaults to the console; the retry wrapper (retry.ts) retries the whole put and reports it instead.
    logger: silentLogger,
  });
}

export const s3 = {
  kind: 's3',
  parseConfig: (input: unknown, path: string): S3Config => parseWith(s3Schema, input, 's3 destination', path),
  redact: (config: S3Config): S3Config => redactFields(config, AWS_SECRET_FIELDS),
  open: async (name: string, config: S3Config): Promise<Destination> =>
    new S3Destination(name, config, createS3Client(config)),
} satisfies DestinationFactory<S3Config>;
