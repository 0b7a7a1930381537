// The body of a put(): a Buffer or a factory of fresh streams, turned into one stream that counts its
// bytes (for progress) and fails when it does not hold exactly the announced size, so a truncated
// source never becomes a complete-looking object.

import { Readable, Transform, type TransformCallback } from 'node:stream';
import { crc32 } from 'node:zlib';
import { BackupdError } from '../errors.js';
import type { BodyUse, PutBody } from './destination.js';

const SLICE = 1 << 20;

/** A fresh stream of `body`; a Buffer is cut into 1 MiB slices so progress moves while it is sent. */
export function openBody(body: PutBody, use: BodyUse = 'send'): Readable {
  if (!Buffer.isBuffer(body)) return body(use);
  const slices: Buffer[] = [];
  for (let at = 0; at < body.length; at += SLICE) slices.push(body.subarray(at, at + SLICE));
  return Readable.from(slices, { objectMode: false });
}

/**
 * A pass-through that reports bytes done and errors (DESTINATION_FAILED) as soon as more than `size`
 * bytes arrive, or at the end when fewer did: the upload then fails instead of committing.
 */
export function countingStream(what: string, size: number, onProgress?: (bytesDone: number) => void): Transform {
  let done = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      done += chunk.length;
      if (done > size) {
        callback(sizeMismatch(what, size));
        return;
      }
      onProgress?.(done);
      callback(null, chunk);
    },
    flush(callback: TransformCallback) {
      callback(done === size ? null : sizeMismatch(what, size, done));
    },
  });
}

/**
 * The body as a counted stream: source errors, size mismatches and the caller's abort signal all
 * surface as stream errors, so any SDK reading it stops and fails instead of committing.
 */
export function countedBody(
  what: string,
  body: PutBody,
  size: number,
  options: { onProgress?: (bytesDone: number) => void; signal?: AbortSignal } = {},
): Readable {
  const source = openBody(body);
  const counter = countingStream(what, size, options.onProgress);
  source.on('error', (error) => counter.destroy(error));
  const signal = options.signal;
  const onAbort = () => counter.destroy(signal?.reason ?? new DOMException('aborted', 'AbortError'));
  signal?.addEventListener('abort', onAbort, { once: true });
  counter.on('close', () => {
    signal?.removeEventListener('abort', onAbort);
    // The consumer gave up (abort, failed request): stop reading the source too.
    if (!source.destroyed && !counter.writableFinished) source.destroy();
  });
  if (signal?.aborted) onAbort();
  return source.pipe(counter);
}

/**
 * The CRC32 of the body, for a checksum header sent before the body itself. A factory body is read once
 * here from a fresh stream and streamed again for the request (a second read of a staged pack comes from
 * the page cache; holding all of it in memory instead cost more in garbage collection than the read).
 * Throws DESTINATION_FAILED when the body holds more or fewer bytes than announced, before any request
 * starts, and the signal's reason when it aborts.
 */
export async function crc32OfBody(what: string, body: PutBody, size: number, signal?: AbortSignal): Promise<number> {
  signal?.throwIfAborted();
  if (Buffer.isBuffer(body)) {
    if (body.length !== size) throw sizeMismatch(what, size, body.length);
    return crc32(body);
  }
  let crc = 0;
  let done = 0;
  const source = body('inspect');
  const onAbort = () => source.destroy(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for await (const chunk of source as AsyncIterable<Buffer>) {
      done += chunk.length;
      if (done > size) throw sizeMismatch(what, size);
      crc = crc32(chunk, crc);
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
    source.destroy();
  }
  if (done !== size) throw sizeMismatch(what, size, done);
  return crc;
}

function sizeMismatch(what: string, size: number, got?: number): BackupdError {
  return new BackupdError('DESTINATION_FAILED', `${what}: expected ${size} bytes, got ${got ?? 'more'}`);
}

/**
 * The AWS and Azure SDKs pipe a stream body into the request without listening for its errors: a failing
 * or short body would be an uncaught exception and leave the request waiting for bytes that never come.
 * A stream passed to watch() aborts `signal` (which also follows the caller's) when it errors, and
 * `error` is then that error, for the put to report instead of the SDK's abort.
 */
export class BodyFailure {
  private readonly failed = new AbortController();
  readonly signal: AbortSignal;

  constructor(callerSignal?: AbortSignal) {
    this.signal = callerSignal ? AbortSignal.any([callerSignal, this.failed.signal]) : this.failed.signal;
  }

  watch<S extends Readable>(stream: S): S {
    stream.on('error', (error) => {
      if (!this.failed.signal.aborted) this.failed.abort(error);
    });
    return stream;
  }

  get error(): unknown {
    return this.failed.signal.aborted ? this.failed.signal.reason : undefined;
  }
}

/** An empty stream, for zero-length ranges or objects. */
export function emptyStream(): Readable {
  return Readable.from([]);
}
