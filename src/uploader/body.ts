// The body of a put(): a Buffer or a factory of fresh streams, turned into one stream that counts its
// bytes (for progress) and fails when it does not hold exactly the announced size, so a truncated
// source never becomes a complete-looking object.

import { Readable, Transform, type TransformCallback } from 'node:stream';
import { BackupdError } from '../errors.js';

const SLICE = 1 << 20;

/** A fresh stream of `body`; a Buffer is cut into 1 MiB slices so progress moves while it is sent. */
export function openBody(body: Buffer | (() => Readable)): Readable {
  if (!Buffer.isBuffer(body)) return body();
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
        callback(new BackupdError('DESTINATION_FAILED', `${what}: expected ${size} bytes, got more`));
        return;
      }
      onProgress?.(done);
      callback(null, chunk);
    },
    flush(callback: TransformCallback) {
      if (done !== size)
        callback(new BackupdError('DESTINATION_FAILED', `${what}: expected ${size} bytes, got ${done}`));
      else callback();
    },
  });
}

/**
 * The body as a counted stream: source errors, size mismatches and the caller's abort signal all
 * surface as stream errors, so any SDK reading it stops and fails instead of committing.
 */
export function countedBody(
  what: string,
  body: Buffer | (() => Readable),
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

/** An empty stream, for zero-length ranges or objects. */
export function emptyStream(): Readable {
  return Readable.from([]);
}
