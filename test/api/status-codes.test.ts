// BackupdError codes -> gRPC status codes and trailers, the auth rules that need no server, and the
// progress throttle of streams (with fake timers).

import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Authenticator, accessOf } from '../../src/api/auth.js';
import { ProgressThrottle } from '../../src/api/server.js';
import {
  decodeProblems,
  ERROR_CODE_KEY,
  encodeProblems,
  MAX_STATUS_MESSAGE_BYTES,
  PROBLEMS_KEY,
  statusMessage,
  toStatus,
} from '../../src/api/status-codes.js';
import { BackupdError, type ErrorCode, ValidationError } from '../../src/errors.js';
import { destinations } from '../../src/uploader/registry.js';

describe('error codes -> status codes', () => {
  const cases: [ErrorCode, boolean, grpc.status][] = [
    ['INVALID_ARGUMENT', false, grpc.status.INVALID_ARGUMENT],
    ['NOT_FOUND', false, grpc.status.NOT_FOUND],
    ['ALREADY_EXISTS', false, grpc.status.ALREADY_EXISTS],
    ['WRONG_KEY', false, grpc.status.INVALID_ARGUMENT],
    ['KEY_REQUIRED', false, grpc.status.FAILED_PRECONDITION],
    ['PACK_MISSING', false, grpc.status.DATA_LOSS],
    ['PACK_CORRUPT', false, grpc.status.DATA_LOSS],
    ['MANIFEST_CORRUPT', false, grpc.status.DATA_LOSS],
    ['UNSUPPORTED_FORMAT', false, grpc.status.FAILED_PRECONDITION],
    ['UNSUPPORTED', false, grpc.status.FAILED_PRECONDITION],
    ['SOURCE_FAILED', false, grpc.status.ABORTED],
    ['SOURCE_FAILED', true, grpc.status.UNAVAILABLE],
    ['DESTINATION_FAILED', false, grpc.status.ABORTED],
    ['DESTINATION_FAILED', true, grpc.status.UNAVAILABLE],
    ['PERMISSION_DENIED', false, grpc.status.PERMISSION_DENIED],
    ['UNAVAILABLE', true, grpc.status.UNAVAILABLE],
    ['TIMEOUT', true, grpc.status.DEADLINE_EXCEEDED],
    ['CANCELLED', false, grpc.status.CANCELLED],
  ];
  it.each(cases)('%s (retryable %s) -> %s with the message and the code in the trailers', (code, retryable, status) => {
    const mapped = toStatus(new BackupdError(code, `something about ${code}`, { retryable }));
    expect(mapped.status.code).toBe(status);
    expect(mapped.status.details).toBe(`something about ${code}`);
    expect(mapped.status.metadata.get(ERROR_CODE_KEY)).toEqual([code]);
    expect(mapped.errorId).toBeUndefined();
  });

  it('hides an INTERNAL error and anything that is not a BackupdError behind an id', () => {
    for (const error of [
      new BackupdError('INTERNAL', 'invariant x broke at /secret/path'),
      new TypeError('y is undefined'),
    ]) {
      const mapped = toStatus(error);
      expect(mapped.status.code).toBe(grpc.status.INTERNAL);
      expect(mapped.errorId).toMatch(/^[0-9a-f-]{36}$/);
      expect(mapped.status.details).toContain(mapped.errorId);
      expect(mapped.status.details).not.toMatch(/invariant|undefined/);
      expect(mapped.status.metadata.get(ERROR_CODE_KEY)).toEqual(['INTERNAL']);
    }
  });

  it('puts every problem of a ValidationError in the trailers', () => {
    const problems = [
      { path: 'name', message: 'must not be empty' },
      { path: 'destinations[0].config.bucket', message: 'must be an S3 bucket name' },
    ];
    const mapped = toStatus(new ValidationError('task', problems));
    expect(mapped.status.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(decodeProblems(mapped.status.metadata)).toEqual(problems);
  });

  it('takes the problem of an unknown destination kind, which the registry reports in its own words', () => {
    let error: unknown;
    try {
      destinations.factoryFor('tape', 'destinations[0].kind');
    } catch (thrown) {
      error = thrown;
    }
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).message).toMatch(
      /^destinations\[0\]\.kind: unknown destination kind "tape" \(known: /,
    );
    expect(decodeProblems(toStatus(error).status.metadata)).toEqual([
      { path: 'destinations[0].kind', message: 'unknown destination kind "tape"' },
    ]);
  });

  it('writes problems as ASCII-only JSON, which metadata requires, and reads them back unchanged', () => {
    const problems = [{ path: 'name', message: '"Ünïcode ✓ 💾" is not a safe name' }];
    const text = encodeProblems(problems);
    expect(text).toMatch(/^[\x20-\x7e]*$/);
    expect(JSON.parse(text)).toEqual(problems);
    const metadata = new grpc.Metadata();
    metadata.set(PROBLEMS_KEY, text);
    expect(decodeProblems(metadata)).toEqual(problems);
  });

  it('cuts a very long problem list and says how many were left out', () => {
    const problems = Array.from({ length: 500 }, (_, i) => ({
      path: `destinations[${i}].name`,
      message: 'is used twice',
    }));
    const decoded = JSON.parse(encodeProblems(problems)) as { path: string; message: string }[];
    expect(encodeProblems(problems).length).toBeLessThanOrEqual(4000);
    const last = decoded.at(-1);
    expect(last?.path).toBe('(more)');
    expect(last?.message).toBe(`${500 - (decoded.length - 1)} more problem(s); see the status message`);
  });
});

describe('auth rules', () => {
  it('lets the read-only token call only methods that change nothing', () => {
    const reads = ['GetTask', 'ListTasks', 'GetTaskStatus', 'GetRun', 'ListRuns', 'WatchRun', 'ListDatabases'];
    for (const m of [...reads, 'ListBackups', 'Verify', 'GetClusterStatus']) expect(accessOf(m)).toBe('read');
    for (const m of [
      'CreateTask',
      'UpdateTask',
      'DeleteTask',
      'BackupNow',
      'OneTimeBackup',
      'CancelRun',
      'DelayUnit',
      'Restore',
    ]) {
      expect(accessOf(m)).toBe('write');
    }
    // A future RPC is a write unless named as a read.
    expect(accessOf('Getaway')).toBe('write');
  });

  it('refuses configurations that can only be mistakes', () => {
    expect(() => new Authenticator({ readOnlyToken: 'r' })).toThrow(/readOnlyToken needs token/);
    expect(() => new Authenticator({ token: 't', readOnlyToken: 't' })).toThrow(/must differ/);
    expect(new Authenticator({ token: '' }).enabled).toBe(false);
  });

  it('reads the header case-insensitively and refuses what is not a bearer token', () => {
    const authenticator = new Authenticator({ token: 's3cret' });
    const md = (value: string) => {
      const metadata = new grpc.Metadata();
      metadata.set('authorization', value);
      return metadata;
    };
    expect(authenticator.check(md('bearer s3cret'), 'CreateTask')).toBeUndefined();
    expect(authenticator.check(md('Basic czNjcmV0'), 'CreateTask')).toMatchObject({
      code: grpc.status.UNAUTHENTICATED,
      details: expect.stringContaining('Bearer <token>'),
    });
    expect(authenticator.check(md('Bearer s3cret2'), 'GetTask')?.code).toBe(grpc.status.UNAUTHENTICATED);
  });
});

describe('progress throttle', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('sends the first message at once, then at most one per interval, always the newest', () => {
    vi.useFakeTimers();
    const sent: number[] = [];
    const throttle = new ProgressThrottle<number>(
      (n) => sent.push(n),
      100,
      () => Date.now(),
    );
    throttle.push(1);
    expect(sent).toEqual([1]);
    for (let i = 2; i <= 50; i++) {
      throttle.push(i);
      vi.advanceTimersByTime(5);
    }
    // 49 pushes over 245 ms: one send per 100 ms, each the newest at that moment.
    expect(sent).toEqual([1, 21, 41]);
    vi.advanceTimersByTime(100);
    expect(sent.at(-1)).toBe(50);
    const before = sent.length;
    throttle.push(51);
    throttle.stop();
    vi.advanceTimersByTime(1000);
    throttle.push(52);
    // 51 was held (inside the interval) when the stream ended: stop drops it, and nothing goes out after;
    // the caller sends the final message itself.
    expect(sent.slice(before)).toEqual([]);
  });
});

describe('status messages grpc-js can always send', () => {
  const sendable = (text: string) => encodeURI(text); // what grpc-js does; throws on a lone surrogate

  it('replace half characters and keep whole ones', () => {
    expect(statusMessage('a\uD800b\uDC00c\u{1F600}')).toBe('a\uFFFDb\uFFFDc\u{1F600}');
    expect(() => sendable(statusMessage('\uD83D'))).not.toThrow();
  });

  it('cut a long message by its encoded size, never inside a character, and say so', () => {
    for (const unit of ['y', '\u00e9', '\u{1F600}', 'x\uD800']) {
      const message = statusMessage(unit.repeat(1 << 18));
      expect(Buffer.byteLength(sendable(message))).toBeLessThanOrEqual(MAX_STATUS_MESSAGE_BYTES);
      expect(message).toMatch(/\.\.\. \(\d+ more characters cut\)$/);
    }
    expect(statusMessage('short')).toBe('short');
  });

  it('clip every problem of the trailer and keep it well-formed', () => {
    const encoded = encodeProblems([{ path: `a.${'k'.repeat(5000)}`, message: 'unknown field(s): \uD800' }]);
    const [problem] = JSON.parse(encoded) as { path: string; message: string }[];
    expect(problem?.path.length).toBeLessThan(300);
    expect(problem?.message).toBe('unknown field(s): \uFFFD');
  });
});
