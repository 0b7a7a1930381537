// The FTP / FTPS destination. Objects are files under a remote folder; folders are created as needed.
// A put uploads to a temp name in the target folder and renames it into place, so readers never see a
// partial file. basic-ftp clients do one thing at a time on one connection, so requests share a small
// pool of logged-in connections (maxConnections, default 2); a connection that failed is discarded.

import { randomBytes } from 'node:crypto';
import { posix } from 'node:path';
import { PassThrough, type Readable, Transform, type TransformCallback } from 'node:stream';
import { Client, FTPError } from 'basic-ftp';
import { parseWith, z } from '../validate.js';
import { countedBody } from './body.js';
import { REDACTED, secret, text, wholeNumber } from './config.js';
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
  destinationError,
  errorCodeOf,
  isNetworkError,
  messageOfUnknown,
  type Where,
} from './failure.js';
import { checkKey, checkRange } from './object-keys.js';
import { Semaphore } from './semaphore.js';

export interface FtpConfig {
  host: string;
  /** Default 21. */
  port: number;
  user: string;
  password: string;
  /** Absolute remote folder that holds the backups (default '/'). */
  root: string;
  /** false for plain FTP, 'explicit' for FTPS with AUTH TLS on the control port (default false). */
  secure: false | 'explicit';
  /** PEM certificate(s) to trust for FTPS, e.g. a private CA or the server's self-signed certificate. */
  ca?: string;
  /** Refuse servers whose certificate does not verify (default true). */
  rejectUnauthorized: boolean;
  /** Connections kept open at most (default 2). */
  maxConnections: number;
  /** Control and data socket timeout in milliseconds (default 30000). */
  timeoutMs: number;
}

const ftpSchema = z.strictObject({
  host: text.regex(/^[A-Za-z0-9.:[\]-]+$/, 'must be a host name or IP address'),
  port: wholeNumber(1, 65535).default(21),
  user: text,
  password: secret,
  root: z
    .string()
    .refine((s) => s.startsWith('/'), 'must be an absolute remote path starting with "/"')
    .refine((s) => !s.split('/').includes('..'), 'must not contain ".."')
    .default('/'),
  secure: z.union([z.literal(false), z.literal('explicit')]).default(false),
  ca: z.string().includes('-----BEGIN CERTIFICATE-----', { message: 'must be PEM certificate text' }).optional(),
  rejectUnauthorized: z.boolean().default(true),
  maxConnections: wholeNumber(1, 16).default(2),
  timeoutMs: wholeNumber(100, 3_600_000).default(30_000),
});

const TEMP_MARK = '.partial-';

/** Logged-in clients shared by the requests of one destination. */
class ConnectionPool {
  private readonly slots: Semaphore;
  private readonly idle: Client[] = [];
  private readonly all = new Set<Client>();
  private closed = false;

  constructor(
    private readonly connect: () => Promise<Client>,
    max: number,
  ) {
    this.slots = new Semaphore(max);
  }

  /** A connected client for the caller alone; give it back with release(). */
  async acquire(): Promise<Client> {
    await this.slots.acquire();
    try {
      if (this.closed) throw new Error('the destination is closed');
      for (let client = this.idle.pop(); client; client = this.idle.pop()) {
        if (!client.closed) return client;
        this.all.delete(client);
      }
      const client = await this.connect();
      this.all.add(client);
      return client;
    } catch (error) {
      this.slots.release();
      throw error;
    }
  }

  /** Return a client; one that failed (`healthy` false) is closed instead of reused. */
  release(client: Client, healthy: boolean): void {
    if (healthy && !client.closed && !this.closed) {
      this.idle.push(client);
    } else {
      client.close();
      this.all.delete(client);
    }
    this.slots.release();
  }

  async use<T>(work: (client: Client) => Promise<T>): Promise<T> {
    const client = await this.acquire();
    let healthy = false;
    try {
      const result = await work(client);
      healthy = true;
      return result;
    } catch (error) {
      // A server's error reply leaves the connection usable; anything else (socket, timeout) does not.
      healthy = error instanceof FTPError;
      throw error;
    } finally {
      this.release(client, healthy);
    }
  }

  close(): void {
    this.closed = true;
    for (const client of this.all) client.close();
    this.all.clear();
    this.idle.length = 0;
  }
}

export class FtpDestination implements Destination {
  readonly kind = 'ftp';
  readonly capabilities: DestinationCapabilities = {
    listable: true,
    rangeReads: true, // REST offset, then the connection is cut after the range
    immediateReads: true,
    maxObjectSize: Number.MAX_SAFE_INTEGER,
  };
  private readonly where: Where;
  private readonly pool: ConnectionPool;

  constructor(
    readonly name: string,
    private readonly config: FtpConfig,
  ) {
    this.where = { kind: this.kind, name, secrets: [config.password] };
    this.pool = new ConnectionPool(() => this.connect(), config.maxConnections);
  }

  private async connect(): Promise<Client> {
    const client = new Client(this.config.timeoutMs);
    try {
      await client.access({
        host: this.config.host,
        port: this.config.port,
        user: this.config.user,
        password: this.config.password,
        secure: this.config.secure === 'explicit',
        secureOptions:
          this.config.secure === 'explicit'
            ? { ca: this.config.ca, rejectUnauthorized: this.config.rejectUnauthorized }
            : undefined,
      });
      return client;
    } catch (error) {
      client.close();
      throw error;
    }
  }

  private pathOf(key: string): string {
    return posix.join(this.config.root, checkKey(key));
  }

  /** Upload to a temp name beside the target, then rename it into place. */
  async put(key: string, body: PutBody, size: number, options: PutOptions = {}): Promise<PutResult> {
    const op = `put ${key}`;
    const target = this.pathOf(key);
    const folder = posix.dirname(target);
    const temp = posix.join(folder, `${TEMP_MARK}${randomBytes(6).toString('hex')}-${posix.basename(target)}`);
    if (options.signal?.aborted) throw destinationError(this.where, 'CANCELLED', op, 'cancelled');
    // basic-ftp reports a failing source as a closed client; keep the body's own error to report it.
    let bodyError: unknown;
    try {
      await this.pool.use(async (client) => {
        await ensureFolder(client, folder);
        const stream = countedBody(op, body, size, options);
        stream.once('error', (error) => {
          bodyError = error;
        });
        await client.uploadFrom(stream, temp);
        try {
          await client.rename(temp, target);
        } catch (error) {
          // Some servers refuse to rename over an existing file: remove it, then rename again.
          if (!(error instanceof FTPError)) throw error;
          await client.remove(target, true);
          await client.rename(temp, target);
        }
      });
      return {};
    } catch (error) {
      await this.removeTemp(temp);
      throw ftpError(this.where, op, bodyError ?? error, options.signal);
    }
  }

  /**
   * Remove a temp file left by a failed put. Best effort: if this fails too (server gone), the temp
   * name is never listed or read as an object, and the next put of the key uses a new one.
   */
  private async removeTemp(temp: string): Promise<void> {
    try {
      await this.pool.use((client) => client.remove(temp, true));
    } catch {
      // see above: a leftover temp file cannot be mistaken for an object
    }
  }

  /** SIZE first, so a missing file is NOT_FOUND at the call; then RETR from the range's offset. */
  async get(key: string, options: GetOptions = {}): Promise<Readable> {
    const op = `get ${key}`;
    checkRange(options.range);
    const path = this.pathOf(key);
    let client: Client;
    try {
      client = await this.pool.acquire();
    } catch (error) {
      throw ftpError(this.where, op, error, options.signal);
    }
    try {
      await client.size(path);
    } catch (error) {
      this.pool.release(client, error instanceof FTPError);
      throw ftpError(this.where, op, error, options.signal, 'NOT_FOUND');
    }
    const out = new PassThrough({ highWaterMark: 1 << 20 });
    const range = options.range;
    const cutAfterRange = range ? takeBytes(range.length, out) : undefined;
    const sink = cutAfterRange ?? out;
    const signal = options.signal;
    const onAbort = () => out.destroy(destinationError(this.where, 'CANCELLED', op, 'cancelled'));
    signal?.addEventListener('abort', onAbort, { once: true });
    client.downloadTo(sink, path, range?.offset ?? 0).then(
      () => {
        signal?.removeEventListener('abort', onAbort);
        this.pool.release(client, true);
        if (!out.writableEnded) out.end();
      },
      (error: unknown) => {
        signal?.removeEventListener('abort', onAbort);
        this.pool.release(client, false);
        // Cutting the transfer after a range is how a range read ends, not a failure.
        if (error !== RANGE_DONE && !out.destroyed) out.destroy(ftpError(this.where, op, error, signal));
      },
    );
    return out;
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    const op = `stat ${key}`;
    const path = this.pathOf(key);
    try {
      return await this.pool.use(async (client) => {
        let size: number;
        try {
          size = await client.size(path);
        } catch (error) {
          if (error instanceof FTPError && error.code === 550) return undefined;
          throw error;
        }
        let modifiedAt: Date;
        try {
          modifiedAt = await client.lastMod(path);
        } catch (error) {
          if (!(error instanceof FTPError)) throw error;
          // No MDTM on this server: the directory listing has the time too.
          const entry = (await client.list(posix.dirname(path))).find((e) => e.name === posix.basename(path));
          modifiedAt = entry?.modifiedAt ?? new Date(0);
        }
        return { key, size, modifiedAt };
      });
    } catch (error) {
      throw ftpError(this.where, op, error);
    }
  }

  /** Walks the folders under the prefix's folder, one LIST each; no connection is held while yielding. */
  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    for await (const file of this.files(prefix)) {
      if (!file.temp) yield { key: file.key, size: file.size, modifiedAt: file.modifiedAt ?? new Date(0) };
    }
  }

  async removeStaleTemps(prefix: string, before: Date): Promise<string[]> {
    const removed: string[] = [];
    for await (const file of this.files(prefix)) {
      if (!file.temp) continue;
      const op = `remove temp file ${file.key}`;
      const path = posix.join(this.config.root, file.key);
      try {
        const stale = await this.pool.use(async (client) => {
          // A LIST line's time is often missing or coarse (Unix format): ask MDTM. A file that cannot be
          // dated may be an upload in progress, so it stays.
          const modifiedAt = file.modifiedAt ?? (await client.lastMod(path).catch(() => undefined));
          if (!modifiedAt || !(modifiedAt < before)) return false;
          await client.remove(path, true);
          return true;
        });
        if (stale) removed.push(file.key);
      } catch (error) {
        throw ftpError(this.where, op, error);
      }
    }
    return removed;
  }

  /** Every file under the prefix, objects and temp files of unfinished puts (`temp`) alike; times as LIST gave them. */
  private async *files(prefix: string): AsyncIterable<{ key: string; size: number; modifiedAt?: Date; temp: boolean }> {
    const op = `list ${prefix || '(all)'}`;
    const slash = prefix.lastIndexOf('/');
    const start = slash < 0 ? '' : prefix.slice(0, slash);
    const folders = [start];
    while (folders.length > 0) {
      const folder = folders.shift() as string;
      const remote = folder === '' ? this.config.root : posix.join(this.config.root, folder);
      let entries: Awaited<ReturnType<Client['list']>>;
      try {
        entries = await this.pool.use(async (client) => {
          try {
            return await client.list(remote);
          } catch (error) {
            // Servers answer LIST of a missing folder with 450, 451 or 550: if it cannot be entered
            // either, it is not there, and nothing is under it.
            if (!(error instanceof FTPError)) throw error;
            const exists = await client.cd(remote).then(
              () => true,
              () => false,
            );
            if (exists) throw error;
            return [];
          }
        });
      } catch (error) {
        throw ftpError(this.where, op, error);
      }
      for (const entry of entries) {
        if (entry.name === '.' || entry.name === '..') continue;
        const key = folder === '' ? entry.name : `${folder}/${entry.name}`;
        if (entry.isDirectory) {
          if (`${key}/`.startsWith(prefix) || prefix.startsWith(`${key}/`)) folders.push(key);
        } else if (entry.isFile && key.startsWith(prefix)) {
          const temp = entry.name.startsWith(TEMP_MARK);
          yield { key, size: entry.size, modifiedAt: entry.modifiedAt, temp };
        }
      }
    }
  }

  /** DELE; a 550 for a file that is not there counts as deleted. */
  async delete(key: string): Promise<void> {
    const op = `delete ${key}`;
    const path = this.pathOf(key);
    try {
      await this.pool.use(async (client) => {
        try {
          await client.remove(path);
        } catch (error) {
          if (!(error instanceof FTPError && error.code === 550)) throw error;
          const stillThere = await client.size(path).then(
            () => true,
            () => false,
          );
          if (stillThere) throw error;
        }
      });
    } catch (error) {
      throw ftpError(this.where, op, error);
    }
  }

  async close(): Promise<void> {
    this.pool.close();
  }
}

/**
 * Create `folder` and its parents. Two connections creating the same folder race (one MKD fails
 * because the other's succeeded), so a failed attempt is retried: by then the folder usually exists.
 */
async function ensureFolder(client: Client, folder: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await client.ensureDir(folder);
      return;
    } catch (error) {
      if (!(error instanceof FTPError) || attempt >= 3) throw error;
    }
  }
}

const RANGE_DONE = new Error('range complete');

/** A writable for downloadTo that passes `length` bytes to `out`, ends it, then stops the transfer. */
function takeBytes(length: number, out: PassThrough): Transform {
  let left = length;
  const cut = new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      if (left <= 0) return callback();
      const part = chunk.subarray(0, left);
      left -= part.length;
      if (!out.write(part)) out.once('drain', () => finish());
      else finish();
      function finish() {
        if (left > 0) return callback();
        out.end();
        callback();
        cut.destroy(RANGE_DONE);
      }
    },
    flush(callback: TransformCallback) {
      out.end();
      callback();
    },
  });
  out.once('close', () => {
    if (!cut.destroyed) cut.destroy(RANGE_DONE);
  });
  return cut;
}

const TLS_CODES = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|ERR_SSL|DEPTH_ZERO/;

/** Convert what basic-ftp threw; `missing` is the code for a 550 (NOT_FOUND where a file was read). */
export function ftpError(
  where: Where,
  op: string,
  error: unknown,
  signal?: AbortSignal,
  missing: 'NOT_FOUND' | 'DESTINATION_FAILED' = 'DESTINATION_FAILED',
) {
  const known = alreadyConverted(where, op, error) ?? cancelled(where, op, error, signal);
  if (known) return known;
  const message = messageOfUnknown(error);
  if (error instanceof FTPError) {
    const reply = error.code;
    if (reply === 530 || reply === 532)
      return destinationError(where, 'PERMISSION_DENIED', op, message, { cause: error });
    if (reply === 550 && missing === 'NOT_FOUND') {
      return destinationError(where, 'NOT_FOUND', op, 'no such object', { cause: error });
    }
    if (reply === 421 || reply === 425 || reply === 426 || reply === 450 || reply === 451) {
      return destinationError(where, 'UNAVAILABLE', op, message, { cause: error });
    }
    return destinationError(where, 'DESTINATION_FAILED', op, `${message} (reply ${reply})`, { cause: error });
  }
  const code = errorCodeOf(error) ?? '';
  if (TLS_CODES.test(code)) {
    return destinationError(where, 'DESTINATION_FAILED', op, `TLS: ${message} (set ca to trust this server)`, {
      cause: error,
    });
  }
  if (/timeout/i.test(message)) return destinationError(where, 'TIMEOUT', op, message, { cause: error });
  if (isNetworkError(error) || /closed|ECONNRESET|socket/i.test(message)) {
    return destinationError(where, 'UNAVAILABLE', op, message, { cause: error });
  }
  return destinationError(where, 'DESTINATION_FAILED', op, message, { cause: error });
}

export const ftp = {
  kind: 'ftp',
  parseConfig: (input: unknown, path: string): FtpConfig => parseWith(ftpSchema, input, 'ftp destination', path),
  redact: (config: FtpConfig): FtpConfig => ({ ...config, password: REDACTED }),
  open: async (name: string, config: FtpConfig): Promise<Destination> => new FtpDestination(name, config),
} satisfies DestinationFactory<FtpConfig>;
