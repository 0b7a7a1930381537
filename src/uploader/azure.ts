// The Azure Blob Storage destination. Objects are block blobs: up to 64 MiB (every pack) one streamed
// Put Blob; larger ones are uploaded as blocks that are committed only at the end (uploadStream), so a
// failed upload never shows a partial blob.
// Credentials: a connection string, an account name + key, a SAS token, or Azure AD (a service
// principal's secret, or DefaultAzureCredential: managed identity, workload identity, environment).

import type { Readable } from 'node:stream';
import { ClientSecretCredential, DefaultAzureCredential } from '@azure/identity';
import {
  BlobServiceClient,
  type ContainerClient,
  type StoragePipelineOptions,
  StorageSharedKeyCredential,
} from '@azure/storage-blob';
import { parseWith, z } from '../validate.js';
import { BodyFailure, countedBody } from './body.js';
import { alsoWhenOtherFieldsFail, httpUrl, REDACTED, secret, text, wholeNumber } from './config.js';
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
  errorNameOf,
  isNetworkError,
  messageOfUnknown,
  type Where,
} from './failure.js';
import { checkKey, checkRange, prefixSchema } from './object-keys.js';

export interface AzureAdCredentials {
  /** A service principal: all three, or none for DefaultAzureCredential (managed identity, env, CLI). */
  tenantId?: string;
  clientId?: string;
  clientSecret?: string;
}

export interface AzureConfig {
  container: string;
  /** Prepended to every blob name, stored with a trailing '/'; '' for the container root. */
  prefix: string;
  /** The blob service URL, e.g. https://myaccount.blob.core.windows.net; derived from accountName when absent. */
  accountUrl?: string;
  /** One way to authenticate: connectionString, accountName + accountKey, sasToken, or azureAd. */
  connectionString?: string;
  accountName?: string;
  accountKey?: string;
  sasToken?: string;
  azureAd?: AzureAdCredentials;
  /** Block size in MiB for blobs larger than SINGLE_PUT_MAX (1..4000, default 8). */
  blockSizeMiB?: number;
  /** Blocks uploaded at once per blob (default 4). */
  concurrency?: number;
  /** Access tier of new blobs; the account default when absent. */
  accessTier?: 'Hot' | 'Cool' | 'Cold' | 'Archive';
  /** Blobs per listing page (1..5000, default 5000). */
  listPageSize?: number;
  /** Per-try timeout in milliseconds (default 60000). */
  timeoutMs?: number;
}

const azureSchema = z
  .strictObject({
    container: z
      .string()
      .regex(
        /^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$/,
        'must be an Azure container name: 3-63 lowercase letters, digits and single "-"',
      ),
    prefix: prefixSchema.default(''),
    accountUrl: httpUrl.optional(),
    connectionString: secret.optional(),
    accountName: z
      .string()
      .regex(/^[a-z0-9]{3,24}$/, 'must be a storage account name: 3-24 lowercase letters and digits')
      .optional(),
    accountKey: secret.optional(),
    sasToken: secret.optional(),
    azureAd: z
      .strictObject({ tenantId: text.optional(), clientId: text.optional(), clientSecret: secret.optional() })
      .optional(),
    blockSizeMiB: wholeNumber(1, 4000).optional(),
    concurrency: wholeNumber(1, 64).optional(),
    accessTier: z.enum(['Hot', 'Cool', 'Cold', 'Archive']).optional(),
    listPageSize: wholeNumber(1, 5000).optional(),
    timeoutMs: wholeNumber(100, 3_600_000).optional(),
  })
  .superRefine((value, ctx) => {
    const methods = [
      value.connectionString !== undefined && 'connectionString',
      value.accountKey !== undefined && 'accountKey',
      value.sasToken !== undefined && 'sasToken',
      value.azureAd !== undefined && 'azureAd',
    ].filter((m): m is string => m !== false);
    if (methods.length === 0) {
      ctx.addIssue({
        code: 'custom',
        path: [],
        message: 'needs one of connectionString, accountName + accountKey, sasToken or azureAd',
      });
    }
    if (methods.length > 1) {
      ctx.addIssue({ code: 'custom', path: [], message: `give only one of ${methods.join(', ')}` });
    }
    if (value.accountKey !== undefined && value.accountName === undefined) {
      ctx.addIssue({ code: 'custom', path: ['accountName'], message: 'is required with accountKey' });
    }
    if (value.connectionString !== undefined && (value.accountUrl !== undefined || value.accountName !== undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['connectionString'],
        message: 'already names the account: drop accountUrl and accountName',
      });
    }
    if ((value.sasToken !== undefined || value.azureAd !== undefined) && !value.accountUrl && !value.accountName) {
      ctx.addIssue({
        code: 'custom',
        path: ['accountUrl'],
        message: 'is required (or accountName) with sasToken or azureAd',
      });
    }
    const ad = value.azureAd;
    if (ad && [ad.tenantId, ad.clientId, ad.clientSecret].some((v) => v !== undefined)) {
      for (const field of ['tenantId', 'clientId', 'clientSecret'] as const) {
        if (ad[field] === undefined) {
          ctx.addIssue({
            code: 'custom',
            path: ['azureAd', field],
            message: 'is required for a service principal (or leave azureAd empty for DefaultAzureCredential)',
          });
        }
      }
    }
  }, alsoWhenOtherFieldsFail);

const MiB = 1 << 20;
/**
 * Blobs up to this size go up in one Put Blob, streamed from the body: a pack (32 MiB, a little more at
 * most) fits. uploadStream copies the stream into pooled block buffers first, about four times the CPU
 * of a streamed Put Blob in bench/publish.ts. Azure takes up to 5000 MiB in one Put Blob.
 */
export const SINGLE_PUT_MAX = 64 * MiB;

export class AzureDestination implements Destination {
  readonly kind = 'azure';
  readonly capabilities: DestinationCapabilities = {
    listable: true,
    rangeReads: true,
    immediateReads: true,
    maxObjectSize: 50_000 * 4000 * MiB, // 50,000 blocks of 4000 MiB
  };
  private readonly where: Where;

  constructor(
    readonly name: string,
    private readonly config: AzureConfig,
    private readonly container: ContainerClient,
  ) {
    this.where = { kind: this.kind, name, secrets: azureSecrets(config) };
  }

  private blob(key: string) {
    return this.container.getBlockBlobClient(this.config.prefix + checkKey(key));
  }

  /**
   * One Put Blob up to SINGLE_PUT_MAX, else blocks committed at the end. A Put Blob whose body fails
   * midway ends before Azure has the announced length, so nothing is stored.
   */
  async put(key: string, body: PutBody, size: number, options: PutOptions = {}): Promise<PutResult> {
    const op = `put ${key}`;
    const blob = this.blob(key);
    const blockSize = (this.config.blockSizeMiB ?? 8) * MiB;
    const common = { abortSignal: options.signal, tier: this.config.accessTier };
    let stream: Readable | undefined;
    const failure = new BodyFailure(options.signal);
    try {
      if (options.signal?.aborted) throw destinationError(this.where, 'CANCELLED', op, 'cancelled');
      if (size <= SINGLE_PUT_MAX) {
        // A factory, so the SDK's own retry of the request reads a fresh stream.
        const fresh = () => {
          stream?.destroy();
          stream = failure.watch(countedBody(op, body, size, options));
          return stream;
        };
        await blob.upload(fresh, size, { ...common, abortSignal: failure.signal });
      } else {
        stream = countedBody(op, body, size, options);
        await blob.uploadStream(stream, blockSize, this.config.concurrency ?? 4, common);
      }
      return {};
    } catch (error) {
      stream?.destroy();
      throw azureError(this.where, op, failure.error ?? error, options.signal);
    }
  }

  async get(key: string, options: GetOptions = {}): Promise<Readable> {
    checkRange(options.range);
    try {
      const answer = await this.blob(key).download(options.range?.offset ?? 0, options.range?.length, {
        abortSignal: options.signal,
      });
      if (!answer.readableStreamBody) throw new Error('the download has no body');
      return answer.readableStreamBody as Readable;
    } catch (error) {
      throw azureError(this.where, `get ${key}`, error, options.signal);
    }
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    try {
      const props = await this.blob(key).getProperties();
      return { key, size: props.contentLength ?? 0, modifiedAt: props.lastModified ?? new Date(0) };
    } catch (error) {
      const converted = azureError(this.where, `stat ${key}`, error);
      if (converted.code === 'NOT_FOUND') return undefined;
      throw converted;
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const pages = this.container
      .listBlobsFlat({ prefix: this.config.prefix + prefix })
      .byPage({ maxPageSize: this.config.listPageSize ?? 5000 });
    for (;;) {
      let page: Awaited<ReturnType<typeof pages.next>>;
      try {
        page = await pages.next();
      } catch (error) {
        throw azureError(this.where, `list ${prefix || '(all)'}`, error);
      }
      if (page.done) return;
      for (const item of page.value.segment.blobItems) {
        yield {
          key: item.name.slice(this.config.prefix.length),
          size: item.properties.contentLength ?? 0,
          modifiedAt: item.properties.lastModified,
        };
      }
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await this.blob(key).deleteIfExists();
    } catch (error) {
      throw azureError(this.where, `delete ${key}`, error);
    }
  }

  /** The SDK holds no connections of its own beyond Node's shared agent. */
  async close(): Promise<void> {}
}

function azureSecrets(config: AzureConfig): string[] {
  const out = [config.accountKey, config.sasToken, config.azureAd?.clientSecret];
  if (config.connectionString) {
    out.push(config.connectionString);
    for (const part of config.connectionString.split(';')) {
      const [name, ...rest] = part.split('=');
      if (name === 'AccountKey' || name === 'SharedAccessSignature') out.push(rest.join('='));
    }
  }
  return out.filter((s): s is string => s !== undefined && s !== '');
}

const DENIED = new Set([
  'AuthenticationFailed',
  'AuthorizationFailure',
  'AuthorizationPermissionMismatch',
  'InsufficientAccountPermissions',
  'AccountIsDisabled',
  'CredentialUnavailableError',
  'AuthenticationRequiredError',
  'AuthenticationError',
]);

/** Convert what @azure/storage-blob or @azure/identity threw. */
export function azureError(where: Where, op: string, error: unknown, signal?: AbortSignal) {
  const known = alreadyConverted(where, op, error) ?? cancelled(where, op, error, signal);
  if (known) return known;
  const code = errorCodeOf(error) ?? '';
  const name = errorNameOf(error) ?? '';
  const status = (error as { statusCode?: unknown } | null)?.statusCode;
  // RestError messages can be long XML bodies: keep the first line.
  const detail = `${messageOfUnknown(error).split('\n')[0]}${code ? ` (${code})` : ''}`;
  if (DENIED.has(code) || DENIED.has(name))
    return destinationError(where, 'PERMISSION_DENIED', op, detail, { cause: error });
  if (code === 'ContainerNotFound') {
    return destinationError(where, 'DESTINATION_FAILED', op, `the container does not exist: ${detail}`, {
      cause: error,
    });
  }
  if (code === 'BlobNotFound') return destinationError(where, 'NOT_FOUND', op, 'no such object', { cause: error });
  if (code === 'BlobArchived') {
    return destinationError(where, 'UNSUPPORTED', op, `the blob is in the Archive tier; rehydrate it first (${code})`, {
      cause: error,
    });
  }
  if (code === 'REQUEST_SEND_ERROR' || isNetworkError(error)) {
    return destinationError(where, 'UNAVAILABLE', op, detail, { cause: error });
  }
  if (typeof status === 'number') return destinationError(where, codeForStatus(status), op, detail, { cause: error });
  return destinationError(where, 'DESTINATION_FAILED', op, detail, { cause: error });
}

export function createContainerClient(config: AzureConfig): ContainerClient {
  const pipeline: StoragePipelineOptions = {
    // The SDK's default (4 tries from 4 s apart up to 120 s) would hide an unreachable server behind
    // minutes of waiting; a few quick tries here, and the uploader's retry wrapper owns the long budget.
    retryOptions: {
      maxTries: 3,
      retryDelayInMs: 500,
      maxRetryDelayInMs: 4000,
      tryTimeoutInMs: config.timeoutMs ?? 60_000,
    },
  };
  const url = config.accountUrl ?? `https://${config.accountName}.blob.core.windows.net`;
  let service: BlobServiceClient;
  if (config.connectionString) {
    service = BlobServiceClient.fromConnectionString(config.connectionString, pipeline);
  } else if (config.accountKey && config.accountName) {
    service = new BlobServiceClient(
      url,
      new StorageSharedKeyCredential(config.accountName, config.accountKey),
      pipeline,
    );
  } else if (config.sasToken) {
    service = new BlobServiceClient(`${url}?${config.sasToken.replace(/^\?/, '')}`, undefined, pipeline);
  } else {
    const ad = config.azureAd ?? {};
    const credential =
      ad.tenantId && ad.clientId && ad.clientSecret
        ? new ClientSecretCredential(ad.tenantId, ad.clientId, ad.clientSecret)
        : new DefaultAzureCredential();
    service = new BlobServiceClient(url, credential, pipeline);
  }
  return service.getContainerClient(config.container);
}

export const azure = {
  kind: 'azure',
  parseConfig: (input: unknown, path: string): AzureConfig => parseWith(azureSchema, input, 'azure destination', path),
  redact: (config: AzureConfig): AzureConfig => {
    const copy = { ...config };
    if (copy.connectionString !== undefined) copy.connectionString = REDACTED;
    if (copy.accountKey !== undefined) copy.accountKey = REDACTED;
    if (copy.sasToken !== undefined) copy.sasToken = REDACTED;
    if (copy.azureAd?.clientSecret !== undefined) copy.azureAd = { ...copy.azureAd, clientSecret: REDACTED };
    return copy;
  },
  open: async (name: string, config: AzureConfig): Promise<Destination> =>
    new AzureDestination(name, config, createContainerClient(config)),
} satisfies DestinationFactory<AzureConfig>;
