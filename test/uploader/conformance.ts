// The conformance suite every destination passes against its real (local) server: an explicit list
// of cases, each on its own fresh namespace (prefix, folder or bucket) so cases never see each other.
// A destination that needs refs (Glacier) gets them passed back; cases that a destination's
// capabilities rule out check that it says so (UNSUPPORTED) instead of being left out silently.

import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BackupdError } from '../../src/errors.js';
import type { Destination } from '../../src/uploader/destination.js';

export interface ConformanceTarget {
  /** Open a destination on a fresh, empty namespace; `namespace` is unique per case. */
  open(namespace: string): Promise<Destination>;
  /**
   * Open the same kind of destination with credentials the server rejects. Absent only for a driver
   * that has no credentials at all (local); `noCredentials` then says why.
   */
  openWithBadCredentials?: (namespace: string) => Promise<Destination>;
  noCredentials?: string;
  /**
   * Open the same kind of destination pointed at a port where nothing listens. Absent only for local,
   * with `noServer` saying why.
   */
  openUnreachable?: (namespace: string) => Promise<Destination>;
  noServer?: string;
  /** Connections the server still holds from this suite's clients, when the harness can tell. */
  openConnections?: () => number;
  /** What each open connection did (its commands), to name a leaked one. */
  describeOpenConnections?: () => string[];
  /** Every secret in the configs used above: none may appear in redact() output or error messages. */
  secrets: string[];
  /** redact() applied to the config used by open(). */
  redacted: unknown;
  /** Size of the large object; the target configures a part size small enough for several parts. */
  largeSize: number;
  /** Keys to write for the paging case: more than one page of the list page size the target configures. */
  pagingKeys: number;
  /**
   * Things the local server cannot do that the real service does, each with the reason and where it is
   * covered instead. The cases that need them say so in their output rather than pass silently.
   */
  serverGaps?: { missingObjects?: string };
  /** Extra check after an interrupted put, e.g. that no multipart upload was left behind. */
  afterInterruptedPut?: (namespace: string) => Promise<void>;
  /** Stop the servers; called once after every case. */
  teardown(): Promise<void>;
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  return Buffer.concat(chunks);
}

/** A body factory that yields `data` in 64 KiB chunks, so uploads really stream. */
function chunked(data: Buffer): () => Readable {
  return () =>
    Readable.from(
      (function* () {
        for (let at = 0; at < data.length; at += 64 * 1024) yield data.subarray(at, at + 64 * 1024);
      })(),
    );
}

/** A body factory that yields `bytesBeforeFailure` bytes, then errors. */
function failingAfter(bytesBeforeFailure: number): () => Readable {
  return () =>
    Readable.from(
      (async function* () {
        let sent = 0;
        while (sent < bytesBeforeFailure) {
          const n = Math.min(64 * 1024, bytesBeforeFailure - sent);
          sent += n;
          yield randomBytes(n);
          await new Promise((r) => setImmediate(r));
        }
        throw new Error('the source disk went away');
      })(),
    );
}

/** A body factory that yields chunks slowly, forever, until destroyed. */
function endless(): () => Readable {
  return () =>
    Readable.from(
      (async function* () {
        for (;;) {
          yield randomBytes(64 * 1024);
          await new Promise((r) => setTimeout(r, 5));
        }
      })(),
    );
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<BackupdError> {
  try {
    await promise;
  } catch (error) {
    expect(error, `expected a BackupdError ${code}, got ${String(error)}`).toBeInstanceOf(BackupdError);
    expect((error as BackupdError).code, (error as Error).message).toBe(code);
    return error as BackupdError;
  }
  throw new Error(`expected ${code}, but the call succeeded`);
}

export function describeConformance(
  label: string,
  setup: () => Promise<ConformanceTarget>,
  options: { timeoutMs?: number } = {},
): void {
  describe(`${label} destination conformance`, { timeout: options.timeoutMs ?? 60_000 }, () => {
    let target: ConformanceTarget | undefined;
    let counter = 0;
    const messages: string[] = [];

    beforeAll(async () => {
      target = await setup();
    }, 120_000);

    afterAll(async () => {
      await target?.teardown();
    }, 30_000);

    /** Run `body` on a fresh destination and namespace; always close the destination. */
    async function withDestination<T>(body: (d: Destination, namespace: string) => Promise<T>): Promise<T> {
      if (!target) throw new Error(`${label}: the server did not start (see the beforeAll error)`);
      counter += 1;
      const namespace = `c${counter}-${randomBytes(4).toString('hex')}`;
      const d = await target.open(namespace);
      try {
        return await body(d, namespace);
      } catch (error) {
        if (error instanceof Error) messages.push(error.message);
        throw error;
      } finally {
        await d.close();
      }
    }

    /** Errors the suite provokes on purpose, kept to check them for secrets at the end. */
    async function code(promise: Promise<unknown>, expected: string): Promise<BackupdError> {
      const error = await expectCode(promise, expected);
      messages.push(error.message);
      return error;
    }

    const getAll = async (d: Destination, key: string, ref?: string) => readAll(await d.get(key, { ref }));

    it('put then get returns the same bytes, for Buffer and stream bodies, with progress', async () => {
      await withDestination(async (d) => {
        const small = randomBytes(1);
        const medium = randomBytes(300 * 1024 + 7);
        const progress: number[] = [];
        const a = await d.put('rt/small.bin', small, small.length);
        const b = await d.put('rt/deeper/medium.bin', chunked(medium), medium.length, {
          onProgress: (n) => progress.push(n),
        });
        const [smallBack, mediumBack] = await Promise.all([
          getAll(d, 'rt/small.bin', a.ref),
          getAll(d, 'rt/deeper/medium.bin', b.ref),
        ]);
        expect(smallBack.equals(small)).toBe(true);
        expect(sha256(mediumBack)).toBe(sha256(medium));
        expect(progress.at(-1)).toBe(medium.length);
        expect(progress).toEqual([...progress].sort((x, y) => x - y));
      });
    });

    it('put over an existing key replaces the object', async () => {
      await withDestination(async (d) => {
        const first = await d.put('ow/x.bin', Buffer.from('first version'), 13);
        const second = await d.put('ow/x.bin', Buffer.from('second'), 6);
        expect((await getAll(d, 'ow/x.bin', second.ref)).toString()).toBe('second');
        if (d.capabilities.listable) {
          const listed = [];
          for await (const info of d.list('ow/')) listed.push(info);
          expect(listed.map((i) => [i.key, i.size])).toEqual([['ow/x.bin', 6]]);
        } else {
          // Without an index (Glacier) every put is a new archive: the old one stays until deleted.
          expect(second.ref).toBeDefined();
          expect(second.ref).not.toBe(first.ref);
          await d.delete('ow/x.bin', { ref: first.ref });
        }
      });
    });

    it('get with a byte range returns exactly those bytes', async () => {
      await withDestination(async (d) => {
        const data = randomBytes(200_000);
        const { ref } = await d.put('range/r.bin', data, data.length);
        const read = async (offset: number, length: number) =>
          readAll(await d.get('range/r.bin', { ref, range: { offset, length } }));
        const [head, middle, tail] = await Promise.all([read(0, 10), read(123_457, 5000), read(data.length - 1, 1)]);
        expect(head.toString('hex')).toBe(data.subarray(0, 10).toString('hex'));
        expect(sha256(middle)).toBe(sha256(data.subarray(123_457, 128_457)));
        expect(tail.toString('hex')).toBe(data.subarray(data.length - 1).toString('hex'));
        expect(d.capabilities.rangeReads || !d.capabilities.immediateReads).toBe(true);
      });
    });

    it('stat reports size and time of a present object and undefined for an absent one', async () => {
      await withDestination(async (d) => {
        const before = Date.now();
        const { ref } = await d.put('st/here.bin', Buffer.from('12345'), 5);
        expect(await d.stat('st/absent.bin')).toBeUndefined();
        if (d.capabilities.listable) {
          const info = await d.stat('st/here.bin');
          expect(info?.key).toBe('st/here.bin');
          expect(info?.size).toBe(5);
          // Server clocks round to seconds; allow a little skew on this machine.
          expect(info?.modifiedAt.getTime()).toBeGreaterThan(before - 5000);
          expect(info?.modifiedAt.getTime()).toBeLessThan(Date.now() + 5000);
        } else {
          // No index to ask (Glacier): without a ref nothing is known, with one the driver says it cannot.
          expect(await d.stat('st/here.bin')).toBeUndefined();
          await code(d.stat('st/here.bin', { ref }), 'UNSUPPORTED');
        }
      });
    });

    it('list returns every object under a prefix, relative to the destination, and nothing else', async () => {
      await withDestination(async (d) => {
        const put = (key: string, n: number) => d.put(key, randomBytes(n), n);
        await Promise.all([put('ls/a/1.bin', 1), put('ls/a/2.bin', 2), put('ls/a/sub/3.bin', 3), put('ls/b/4.bin', 4)]);
        await put('ls/ab.bin', 5);
        if (!d.capabilities.listable) {
          const listing = async () => {
            for await (const _ of d.list('ls/')) break;
          };
          await code(listing(), 'UNSUPPORTED');
          return;
        }
        const keys = async (prefix: string) => {
          const out: [string, number][] = [];
          for await (const info of d.list(prefix)) out.push([info.key, info.size]);
          return out.sort((x, y) => x[0].localeCompare(y[0]));
        };
        expect(await keys('ls/a/')).toEqual([
          ['ls/a/1.bin', 1],
          ['ls/a/2.bin', 2],
          ['ls/a/sub/3.bin', 3],
        ]);
        expect((await keys('ls/a')).map((k) => k[0])).toEqual([
          'ls/a/1.bin',
          'ls/a/2.bin',
          'ls/a/sub/3.bin',
          'ls/ab.bin',
        ]);
        expect(await keys('ls/')).toHaveLength(5);
        expect(await keys('nothing-here/')).toEqual([]);
      });
    });

    it('list pages through more keys than one page holds', async () => {
      await withDestination(async (d) => {
        const n = target?.pagingKeys ?? 0;
        if (!d.capabilities.listable) return; // the list case above checked UNSUPPORTED
        const body = Buffer.from('p');
        const keys = Array.from({ length: n }, (_, i) => `pg/${String(i).padStart(5, '0')}.bin`);
        for (let i = 0; i < keys.length; i += 100) {
          await Promise.all(keys.slice(i, i + 100).map((key) => d.put(key, body, 1)));
        }
        const seen = new Set<string>();
        for await (const info of d.list('pg/')) seen.add(info.key);
        expect(seen.size).toBe(n);
      });
    });

    it('delete removes the object and succeeds when it is already gone', async (context) => {
      await withDestination(async (d) => {
        const { ref } = await d.put('del/x.bin', Buffer.from('bye'), 3);
        await d.delete('del/x.bin', { ref });
        if (d.capabilities.listable) expect(await d.stat('del/x.bin')).toBeUndefined();
        const gap = target?.serverGaps?.missingObjects;
        if (gap) {
          context.annotate(`${label}: delete and get of a missing object not checked here: ${gap}`);
          return;
        }
        await d.delete('del/x.bin', { ref });
        await d.delete('del/never-was.bin');
        await code(d.get('del/x.bin', { ref }), 'NOT_FOUND');
      });
    });

    it('get of a missing object throws NOT_FOUND at the call', async (context) => {
      const gap = target?.serverGaps?.missingObjects;
      if (gap) {
        context.annotate(`${label}: not checked against this server: ${gap}`);
        expect(gap).toMatch(/\w/);
        return;
      }
      await withDestination(async (d) => {
        await code(
          d.get('missing/nope.bin', { ref: d.capabilities.listable ? undefined : 'no-such-archive-id' }),
          'NOT_FOUND',
        );
        if (d.capabilities.rangeReads) {
          await code(d.get('missing/nope.bin', { range: { offset: 0, length: 1 } }), 'NOT_FOUND');
        }
      });
    });

    it('a large object goes up in parts and comes back intact', async () => {
      await withDestination(async (d) => {
        const size = target?.largeSize ?? 0;
        const data = randomBytes(size);
        let last = 0;
        let calls = 0;
        const { ref } = await d.put('big/large.bin', chunked(data), size, {
          onProgress: (n) => {
            expect(n).toBeGreaterThanOrEqual(last);
            last = n;
            calls += 1;
          },
        });
        expect(last).toBe(size);
        expect(calls).toBeGreaterThan(1);
        if (d.capabilities.listable) expect((await d.stat('big/large.bin'))?.size).toBe(size);
        expect(sha256(await getAll(d, 'big/large.bin', ref))).toBe(sha256(data));
      });
    });

    it('a put whose body fails midway leaves the old object or nothing', async () => {
      await withDestination(async (d, namespace) => {
        const old = Buffer.from('the old version');
        const kept = await d.put('int/kept.bin', old, old.length);
        const size = 8 * 1024 * 1024;
        await expect(d.put('int/kept.bin', failingAfter(3 * 1024 * 1024), size)).rejects.toThrow();
        await expect(d.put('int/new.bin', failingAfter(3 * 1024 * 1024), size)).rejects.toThrow();
        // A body shorter than announced must not commit either.
        const short = await code(d.put('int/short.bin', Buffer.from('abc'), 10), 'DESTINATION_FAILED');
        expect(short.message).toMatch(/expected 10 bytes/);
        if (d.capabilities.listable) {
          expect((await getAll(d, 'int/kept.bin')).toString()).toBe(old.toString());
          expect(await d.stat('int/new.bin')).toBeUndefined();
          expect(await d.stat('int/short.bin')).toBeUndefined();
          const listed = [];
          for await (const info of d.list('int/')) listed.push(info.key);
          expect(listed).toEqual(['int/kept.bin']);
        } else {
          expect((await getAll(d, 'int/kept.bin', kept.ref)).toString()).toBe(old.toString());
        }
        await target?.afterInterruptedPut?.(namespace);
      });
    });

    it('a put cancelled through its signal throws CANCELLED and leaves nothing', async () => {
      await withDestination(async (d, namespace) => {
        const controller = new AbortController();
        let started = false;
        const put = d.put('cancel/x.bin', endless(), 1 << 30, {
          signal: controller.signal,
          onProgress: (n) => {
            if (!started && n > 2 * 1024 * 1024) {
              started = true;
              controller.abort();
            }
          },
        });
        await code(put, 'CANCELLED');
        if (d.capabilities.listable) {
          expect(await d.stat('cancel/x.bin')).toBeUndefined();
          const listed = [];
          for await (const info of d.list('cancel/')) listed.push(info.key);
          expect(listed).toEqual([]);
        }
        await target?.afterInterruptedPut?.(namespace);
      });
    });

    it('rejected credentials give PERMISSION_DENIED without the secret in the message', async (context) => {
      if (!target?.openWithBadCredentials) {
        context.annotate(`${label}: ${target?.noCredentials ?? 'no credentials'}`);
        expect(target?.noCredentials).toBeTruthy();
        return;
      }
      counter += 1;
      const d = await target.openWithBadCredentials(`bad${counter}`);
      try {
        const error = await code(d.put('cred/x.bin', Buffer.from('x'), 1), 'PERMISSION_DENIED');
        expect(error.retryable).toBe(false);
        expect(error.message).toContain(d.name);
        if (d.capabilities.immediateReads) await code(d.get('cred/x.bin'), 'PERMISSION_DENIED');
      } finally {
        await d.close();
      }
    });

    it('an unreachable server gives a retryable UNAVAILABLE (or TIMEOUT) naming the destination', async (context) => {
      if (!target?.openUnreachable) {
        context.annotate(`${label}: ${target?.noServer ?? 'no server'}`);
        expect(target?.noServer).toBeTruthy();
        return;
      }
      counter += 1;
      const d = await target.openUnreachable(`down${counter}`);
      try {
        const error = await d.put('down/x.bin', Buffer.from('x'), 1).then(
          () => {
            throw new Error('expected the put to fail');
          },
          (e: unknown) => e as BackupdError,
        );
        expect(error).toBeInstanceOf(BackupdError);
        expect(['UNAVAILABLE', 'TIMEOUT'], error.message).toContain(error.code);
        expect(error.retryable).toBe(true);
        expect(error.message).toContain(`"${d.name}"`);
        messages.push(error.message);
      } finally {
        await d.close();
      }
    });

    it('keys that would leave the destination are refused', async () => {
      await withDestination(async (d) => {
        for (const key of ['../escape.bin', 'a/../../b', '/abs.bin', 'a//b', '']) {
          await code(d.put(key, Buffer.from('x'), 1), 'INVALID_ARGUMENT');
        }
      });
    });

    it('closed destinations leave no connection open at the server', async (context) => {
      if (!target?.openConnections) {
        context.annotate(`${label}: the server cannot tell its open connections`);
        // Only the connection-oriented servers (FTP) can and must tell them.
        expect(label).not.toMatch(/ftp/i);
        return;
      }
      // The harness counts what the client holds open (TCP state at the server's port), so a closed
      // client shows at once; a few seconds cover a FIN still on its way on a loaded machine. A leaked
      // connection stays ESTABLISHED and fails this, named by the commands it sent.
      for (let i = 0; i < 250 && target.openConnections() > 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(target.describeOpenConnections?.() ?? [], 'connections still open at the server').toEqual([]);
      expect(target.openConnections()).toBe(0);
    });

    it('secrets appear neither in redact() output nor in any error message', () => {
      if (!target) throw new Error(`${label}: the server did not start`);
      const redacted = JSON.stringify(target.redacted);
      expect(messages.length).toBeGreaterThan(3);
      for (const secret of target.secrets) {
        expect(redacted).not.toContain(secret);
        for (const message of messages) expect(message).not.toContain(secret);
      }
    });
  });
}
