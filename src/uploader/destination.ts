// The destination interface: a flat key/value object store that backups are published to.
// Keys are '/'-separated relative paths built by src/layout.ts; a destination never sees a path
// that escapes its root (layout validates every segment). Every driver fits DestinationFactory.

import type { Readable } from 'node:stream';

/** What a destination can do, as data: callers branch on these, never on the driver's class. */
export interface DestinationCapabilities {
  /** list() works. Glacier cannot list: its archive ids are kept in manifests and status instead. */
  listable: boolean;
  /** get() with a byte range is cheap (one request, no retrieval job). */
  rangeReads: boolean;
  /** get() returns data at once. Glacier needs a retrieval job that takes minutes to hours. */
  immediateReads: boolean;
  /** Largest single object this destination accepts, in bytes. */
  maxObjectSize: number;
}

export interface PutOptions {
  signal?: AbortSignal;
  /** Called with the bytes of this object sent so far. */
  onProgress?: (bytesDone: number) => void;
}

export interface PutResult {
  /** The destination's own reference when the key alone cannot find the object (Glacier archive id). */
  ref?: string;
}

export interface GetOptions {
  signal?: AbortSignal;
  /** Byte range to read; the whole object when absent. */
  range?: { offset: number; length: number };
  /** The ref that put() returned, for destinations that need it (Glacier). */
  ref?: string;
}

export interface ObjectInfo {
  key: string;
  size: number;
  modifiedAt: Date;
}

/**
 * Why a put opens a factory body: 'send' for the bytes that go to the destination (the default),
 * 'inspect' for a read of this machine's copy before the request (the CRC32 of an S3 checksum header).
 * A destination's bandwidth limit (limit.ts) throttles 'send' only.
 */
export type BodyUse = 'send' | 'inspect';

/** What put() stores: a Buffer, or a factory of fresh streams of the same bytes (read once per use). */
export type PutBody = Buffer | ((use?: BodyUse) => Readable);

export interface Destination {
  /** The operator's name for this destination (unique within a task). */
  readonly name: string;
  /** The driver name, e.g. 'local', 's3'. */
  readonly kind: string;
  readonly capabilities: DestinationCapabilities;

  /**
   * Store `body` (exactly `size` bytes) under `key`, replacing any object there. The object becomes
   * visible only complete: a failed or aborted put leaves either the old object or nothing.
   * Throws BackupdError: PERMISSION_DENIED for rejected credentials, UNAVAILABLE/TIMEOUT (retryable)
   * for transient failures, CANCELLED when the signal aborts, DESTINATION_FAILED otherwise.
   */
  put(key: string, body: PutBody, size: number, options?: PutOptions): Promise<PutResult>;

  /**
   * Read the object (or a range of it) as a stream. Throws BackupdError NOT_FOUND when the key does not
   * exist, and the same codes as put() for other failures (errors while streaming are emitted on the stream).
   */
  get(key: string, options?: GetOptions): Promise<Readable>;

  /** Size and time of the object, or undefined when it does not exist. Never throws NOT_FOUND. */
  stat(key: string, options?: { ref?: string }): Promise<ObjectInfo | undefined>;

  /**
   * Every object whose key starts with `prefix`, in no particular order. Throws UNSUPPORTED when the
   * destination is not listable.
   */
  list(prefix: string): AsyncIterable<ObjectInfo>;

  /** Remove the object; succeeds when it is already absent. */
  delete(key: string, options?: { ref?: string }): Promise<void>;

  /**
   * Store the local file at `path` under `key`, when the destination can do better than reading it (the
   * local destination hard-links it when both are on one filesystem). Same guarantees as put().
   */
  putFile?(key: string, path: string, size: number): Promise<PutResult>;

  /**
   * The path of the object's file when it is a file on this machine (the local destination), so restore and
   * verify read it in place; undefined for remote destinations.
   */
  localPath?(key: string): string | undefined;

  /**
   * Remove the temp files of puts that never finished under `prefix` (a killed agent leaves them; list()
   * never shows them), when last modified before `before`, and return their names. Only drivers that
   * write temp names have it. Throws like delete().
   */
  removeStaleTemps?(prefix: string, before: Date): Promise<string[]>;

  /** Release connections and timers. The destination is unusable afterwards. */
  close(): Promise<void>;
}

/** A driver: validates its config (every bad field at once, via ValidationError) and opens a destination. */
export interface DestinationFactory<Config> {
  readonly kind: string;
  /** Check an untrusted config object; returns it typed or throws ValidationError naming every bad field. */
  parseConfig(input: unknown, path: string): Config;
  /** The config with every secret replaced by '***', for logs and API answers. */
  redact(config: Config): Config;
  open(name: string, config: Config): Promise<Destination>;
}
