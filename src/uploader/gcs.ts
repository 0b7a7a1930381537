// The Google Cloud Storage destination. Uploads are single-request (non-resumable) streams: GCS makes
// an object visible only when its upload request completes, so an aborted or failed put leaves the
// old object or nothing. (Resumable uploads would suit objects of many GiB; packs are tens of MiB.)

import { isAbsolute } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type File, Storage, type StorageOptions } from '@google-cloud/storage';
import { parseWith, z } from '../validate.js';
import { countedBody } from './body.js';
import { httpUrl, REDACTED, text, wholeNumber } from './config.js';
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
import {
  alreadyConverted,
  cancelled,
  codeForStatus,
  destinationError,
  errorCodeOf,
  isNetworkError,
  messageOfUnknown,
  type Where,
} from './failure.js';
import { checkKey, checkRange, prefixSchema } from './object-keys.js';

/** A service account key file's content (the JSON Google Cloud console downloads). */
export interface ServiceAccountKey {
  client_email: string;
  private_key: string;
  [field: string]: unknown;
}

export interface GcsConfig {
  bucket: string;
  /** Prepended to every object name, stored with a trailing '/'; '' for the bucket root. */
  prefix: string;
  projectId?: string;
  /** Service account key as JSON; or keyFilename; or neither for application default credentials. */
  credentials?: ServiceAccountKey;
  /** Absolute path of a service account key file on the node. */
  keyFilename?: string;
  /** Custom API endpoint, e.g. a private endpoint or a local emulator (no auth unless credentials are given). */
  apiEndpoint?: string;
  /** Objects per listing page (1..1000, default 1000). */
  listPageSize?: number;
  /** Per-request timeout in milliseconds (default 60000). */
  timeoutMs?: number;
}

const gcsSchema = z.strictObject({
  bucket: z
    .string()
    .regex(
      /^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/,
      'must be a GCS bucket name: lowercase letters, digits, ".", "_", "-"',
    ),
  prefix: prefixSchema.default(''),
  projectId: text.optional(),
  credentials: z
    .looseObject({
      client_email: z.string().min(1, 'must not be empty'),
      private_key: z.string().includes('PRIVATE KEY', { message: 'must be a PEM private key' }),
    })
    .optional(),
  keyFilename: z.string().refine(isAbsolute, 'must be an absolute path').optional(),
  apiEndpoint: httpUrl.optional(),
  listPageSize: wholeNumber(1, 1000).optional(),
  timeoutMs: wholeNumber(100, 3_600_000).optional(),
});

export class GcsDestination implements Destination {
  readonly kind = 'gcs';
  readonly capabilities: DestinationCapabilities = {
    listable: true,
    rangeReads: true,
    immediateReads: true,
    maxObjectSize: 5 * 1024 ** 4, // 5 TiB
  };
  private readonly where: Where;

  constructor(
    readonly name: string,
    private readonly config: GcsConfig,
    private readonly storage: Storage,
  ) {
    this.where = { kind: this.kind, name, secrets: gcsSecrets(config) };
  }

  private file(key: string): File {
    return this.storage.bucket(this.config.bucket).file(this.config.prefix + checkKey(key));
  }

  async put(key: string, body: PutBody, size: number, options: PutOptions = {}): Promise<PutResult> {
    const op = `put ${key}`;
    const file = this.file(key);
    try {
      if (options.signal?.aborted) throw destinationError(this.where, 'CANCELLED', op, 'cancelled');
      const source = countedBody(op, body, size, options);
      const sink = file.createWriteStream({
        resumable: false,
        contentType: 'application/octet-stream',
        timeout: this.config.timeoutMs ?? 60_000,
      });
      await pipeline(source, sink);
      return {};
    } catch (error) {
      throw gcsError(this.where, op, error, options.signal);
    }
  }

  /** Reads metadata first so a missing object is NOT_FOUND at the call, and pins that generation. */
  async get(key: string, options: GetOptions = {}): Promise<Readable> {
    checkRange(options.range);
    const op = `get ${key}`;
    try {
      const [metadata] = await this.file(key).getMetadata();
      const pinned = this.storage
        .bucket(this.config.bucket)
        .file(this.config.prefix + key, { generation: metadata.generation });
      const range = options.range;
      const stream = pinned.createReadStream(
        range ? { start: range.offset, end: range.offset + range.length - 1, validation: false } : {},
      );
      if (options.signal) {
        const signal = options.signal;
        const onAbort = () => stream.destroy(signal.reason ?? new DOMException('aborted', 'AbortError'));
        if (signal.aborted) onAbort();
        else signal.addEventListener('abort', onAbort, { once: true });
        stream.once('close', () => signal.removeEventListener('abort', onAbort));
      }
      return stream;
    } catch (error) {
      throw gcsError(this.where, op, error, options.signal);
    }
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    try {
      const [metadata] = await this.file(key).getMetadata();
      return { key, size: Number(metadata.size ?? 0), modifiedAt: new Date(metadata.updated ?? 0) };
    } catch (error) {
      const converted = gcsError(this.where, `stat ${key}`, error);
      if (converted.code === 'NOT_FOUND') return undefined;
      throw converted;
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const bucket = this.storage.bucket(this.config.bucket);
    let pageToken: string | undefined;
    do {
      let files: File[];
      let next: { pageToken?: string } | null | undefined;
      try {
        [files, next] = await bucket.getFiles({
          prefix: this.config.prefix + prefix,
          autoPaginate: false,
          maxResults: this.config.listPageSize ?? 1000,
          pageToken,
        });
      } catch (error) {
        throw gcsError(this.where, `list ${prefix || '(all)'}`, error);
      }
      for (const file of files) {
        yield {
          key: file.name.slice(this.config.prefix.length),
          size: Number(file.metadata.size ?? 0),
          modifiedAt: new Date(file.metadata.updated ?? 0),
        };
      }
      pageToken = next?.pageToken;
    } while (pageToken);
  }

  async delete(key: string): Promise<void> {
    try {
      await this.file(key).delete({ ignoreNotFound: true });
    } catch (error) {
      throw gcsError(this.where, `delete ${key}`, error);
    }
  }

  async close(): Promise<void> {}
}

function gcsSecrets(config: GcsConfig): string[] {
  const key = config.credentials;
  if (!key) return [];
  const id = typeof key.private_key_id === 'string' ? [key.private_key_id] : [];
  // The PEM body lines are what could leak; mask each long line on its own as well.
  const lines = key.private_key.split('\n').filter((l) => l.length >= 16 && !l.startsWith('-----'));
  return [key.private_key, ...lines, ...id];
}

/** Convert what @google-cloud/storage or google-auth-library threw. */
export function gcsError(where: Where, op: string, error: unknown, signal?: AbortSignal) {
  const known = alreadyConverted(where, op, error) ?? cancelled(where, op, error, signal);
  if (known) return known;
  const status = (error as { code?: unknown } | null)?.code;
  const message = messageOfUnknown(error);
  if (typeof status === 'number') {
    const code = codeForStatus(status);
    if (code === 'NOT_FOUND' && /bucket/i.test(message)) {
      return destinationError(where, 'DESTINATION_FAILED', op, `the bucket does not exist: ${message}`, {
        cause: error,
      });
    }
    const detail = code === 'NOT_FOUND' ? 'no such object' : message;
    return destinationError(where, code, op, detail, { cause: error });
  }
  if (/default credentials|invalid_grant|unauthorized_client|private key/i.test(message)) {
    return destinationError(where, 'PERMISSION_DENIED', op, message, { cause: error });
  }
  if (isNetworkError(error) || errorCodeOf(error) === 'ECONNRESET') {
    return destinationError(where, 'UNAVAILABLE', op, message, { cause: error });
  }
  return destinationError(where, 'DESTINATION_FAILED', op, message, { cause: error });
}

export function createStorage(config: GcsConfig): Storage {
  const hasKey = config.credentials !== undefined || config.keyFilename !== undefined;
  const options: StorageOptions = {
    projectId: config.projectId,
    apiEndpoint: config.apiEndpoint,
    credentials: config.credentials,
    keyFilename: config.keyFilename,
    // A custom endpoint gets credentials only when some are configured (an emulator needs none).
    useAuthWithCustomEndpoint: hasKey,
    retryOptions: { autoRetry: true, maxRetries: 2, maxRetryDelay: 5 },
  };
  const storage = new Storage(options);
  // Service accounts sign their own short-lived tokens (self-signed JWT, what Google's own client
  // libraries do): no round trip to the OAuth token endpoint. Settable only on the auth object.
  if (hasKey) storage.authClient.useJWTAccessWithScope = true;
  return storage;
}

export const gcs = {
  kind: 'gcs',
  parseConfig: (input: unknown, path: string): GcsConfig => parseWith(gcsSchema, input, 'gcs destination', path),
  redact: (config: GcsConfig): GcsConfig => {
    if (!config.credentials) return config;
    const credentials: ServiceAccountKey = { ...config.credentials, private_key: REDACTED };
    if (credentials.private_key_id !== undefined) credentials.private_key_id = REDACTED;
    return { ...config, credentials };
  },
  open: async (name: string, config: GcsConfig): Promise<Destination> =>
    new GcsDestination(name, config, createStorage(config)),
} satisfies DestinationFactory<GcsConfig>;
