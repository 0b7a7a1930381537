// The settings every destination spec takes beside its driver's (`retry`, `limits` in its config): the
// registry validates them with the driver's fields, keeps them when redacting, and opens destinations
// wrapped by them. Retry timing runs on a virtual clock: no real waiting.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BackupdError, ValidationError } from '../../src/errors.js';
import { parseTaskSpec } from '../../src/task.js';
import type { Destination, DestinationFactory } from '../../src/uploader/destination.js';
import { DestinationError } from '../../src/uploader/failure.js';
import { LocalDestination, local } from '../../src/uploader/local.js';
import { DEFAULT_RETRY } from '../../src/uploader/policy.js';
import {
  DestinationRegistry,
  type DestinationSpec,
  destinations,
  openDestination,
} from '../../src/uploader/registry.js';
import { s3 } from '../../src/uploader/s3.js';
import { parseWith, z } from '../../src/validate.js';
import { type Behaviour, FakeDestination } from './fake-destination.js';

const transient = () => Promise.reject(new BackupdError('UNAVAILABLE', 'connection reset'));
const permanent = () => Promise.reject(new BackupdError('PERMISSION_DENIED', 'access denied'));
const ok = () => Promise.resolve();

/** A virtual clock: sleep() only moves time forward, and every delay is recorded. */
function virtualTime() {
  let now = 0;
  const sleeps: number[] = [];
  return {
    now: () => now,
    sleep: async (ms: number) => {
      sleeps.push(ms);
      now += ms;
    },
    random: () => 0.5,
    sleeps,
  };
}

/** A 'fake' kind whose destinations are FakeDestinations running `script`; its own config must be empty. */
function fakeKind(script: () => Behaviour[]) {
  const opened: FakeDestination[] = [];
  const factory: DestinationFactory<Record<string, never>> = {
    kind: 'fake',
    parseConfig: (input, path) => parseWith(z.strictObject({}), input, 'fake destination', path),
    redact: (config) => config,
    open: async (name) => {
      const d = new FakeDestination(name, script());
      opened.push(d);
      return d;
    },
  };
  return { factory: factory as DestinationFactory<unknown>, opened };
}

function problems(run: () => unknown): Record<string, string> {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    return Object.fromEntries((error as ValidationError).problems.map((p) => [p.path, p.message]));
  }
  throw new Error('expected a ValidationError');
}

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe('destination settings: validation', () => {
  it("reports bad settings together with the driver's own problems, each with its path", () => {
    const found = problems(() =>
      destinations.parse(
        {
          name: 'offsite',
          kind: 's3',
          config: {
            bucket: 'No_Such Bucket',
            retry: { maxAttempts: 0, budgetSeconds: -5, backoff: 'fast' },
            limits: { maxConcurrentRequests: 1.5, bytesPerSecond: 0 },
          },
        },
        'destinations[1]',
      ),
    );
    expect(found).toEqual({
      'destinations[1].config.bucket': expect.stringMatching(/S3 bucket name/),
      'destinations[1].config.retry': expect.stringMatching(/unknown field\(s\): backoff/),
      'destinations[1].config.retry.maxAttempts': 'must be at least 1',
      'destinations[1].config.retry.budgetSeconds': 'must be positive',
      'destinations[1].config.limits.maxConcurrentRequests': 'must be a whole number',
      'destinations[1].config.limits.bytesPerSecond': 'must be at least 1',
    });
  });

  it('a task spec names bad settings under its destination, next to its other problems', () => {
    const found = problems(() =>
      parseTaskSpec(
        {
          name: 'nightly',
          target: { databases: ['main/shop.db'] },
          type: 'backup',
          schedule: { full: 'not a cron' },
          destinations: [
            { name: 'disk', kind: 'local', config: { path: '/backups', limits: { bytesPerSecond: -1 } } },
            { name: 'cloud', kind: 's3', config: { bucket: 'acme-backups', retry: 'often' } },
          ],
        },
        destinations,
      ),
    );
    expect(Object.keys(found).sort()).toEqual(
      ['schedule.full', 'destinations[0].config.limits.bytesPerSecond', 'destinations[1].config.retry'].sort(),
    );
  });

  it('valid settings pass; redaction masks secrets and keeps the settings', () => {
    const driverFields = { bucket: 'acme-backups', accessKeyId: 'AKIAEXAMPLE', secretAccessKey: 'very-secret-key' };
    const spec: DestinationSpec = {
      name: 'offsite',
      kind: 's3',
      config: {
        ...driverFields,
        retry: { maxAttempts: 3, budgetSeconds: 60 },
        limits: { maxConcurrentRequests: 2, bytesPerSecond: 10_000_000 },
      },
    };
    // The driver sees only its own fields.
    expect(destinations.parse(spec)).toEqual(s3.parseConfig(driverFields, 'c'));
    const redacted = destinations.redact(spec);
    expect(JSON.stringify(redacted)).not.toContain('very-secret-key');
    expect(redacted.config).toMatchObject({
      secretAccessKey: '***',
      retry: { maxAttempts: 3, budgetSeconds: 60 },
      limits: { maxConcurrentRequests: 2, bytesPerSecond: 10_000_000 },
    });
    // What redact() returns is itself a valid spec.
    expect(() => destinations.parse(redacted)).not.toThrow();
  });
});

describe('destination settings: what open() returns', () => {
  const spec = (config: object = {}): DestinationSpec => ({ name: 'flaky', kind: 'fake', config });

  it('retries transient errors with growing backoff by default, and tells onRetry', async () => {
    const time = virtualTime();
    const { factory, opened } = fakeKind(() => [transient, transient, ok]);
    const registry = new DestinationRegistry([factory], { retry: time });
    const heard: string[] = [];
    const d = await registry.open(spec(), 'destinations[0]', {
      onRetry: ({ op, attempt, error }) => heard.push(`${op} #${attempt}: ${error.code}`),
    });
    await d.put('a.pack', Buffer.from('data'), 4);
    expect(opened[0]!.calls).toEqual(['put a.pack', 'put a.pack', 'put a.pack']);
    // Full jitter at 0.5 of 1 s, then of 2 s (DEFAULT_RETRY's base).
    expect(time.sleeps).toEqual([500, 1000]);
    expect(heard).toEqual(['put a.pack #1: UNAVAILABLE', 'put a.pack #2: UNAVAILABLE']);
  });

  it('throws a permanent error at once, unchanged', async () => {
    const time = virtualTime();
    const { factory, opened } = fakeKind(() => [permanent, ok]);
    const d = await new DestinationRegistry([factory], { retry: time }).open(spec());
    await expect(d.delete('k')).rejects.toMatchObject({ code: 'PERMISSION_DENIED', message: 'access denied' });
    expect(opened[0]!.calls).toEqual(['delete k']);
    expect(time.sleeps).toEqual([]);
  });

  it('gives up after DEFAULT_RETRY.attempts, inside its budget, naming the destination', async () => {
    const time = virtualTime();
    const { factory, opened } = fakeKind(() => Array.from({ length: 20 }, () => transient));
    const d = await new DestinationRegistry([factory], { retry: time }).open(spec());
    const error = (await d.stat('k').catch((e: unknown) => e)) as BackupdError;
    expect(error).toBeInstanceOf(DestinationError);
    expect(error).toMatchObject({
      code: 'DESTINATION_FAILED',
      destination: 'flaky',
      attempts: DEFAULT_RETRY.attempts,
      lastCode: 'UNAVAILABLE',
    });
    expect(opened[0]!.calls).toHaveLength(DEFAULT_RETRY.attempts);
    expect(time.now()).toBeLessThan(DEFAULT_RETRY.budgetMs);
    // About a minute and a quarter of backoff at the middle of the jitter: a real outage, not a blip.
    expect(time.now()).toBeGreaterThan(60_000);
  });

  it("follows the spec's retry settings: maxAttempts 1 turns retrying off, budgetSeconds bounds it", async () => {
    const time = virtualTime();
    const { factory, opened } = fakeKind(() => Array.from({ length: 20 }, () => transient));
    const registry = new DestinationRegistry([factory], { retry: time });

    const once = await registry.open(spec({ retry: { maxAttempts: 1 } }));
    await expect(once.stat('k')).rejects.toMatchObject({ code: 'UNAVAILABLE', message: 'connection reset' });
    expect(opened[0]!.calls).toHaveLength(1);

    const short = await registry.open(spec({ retry: { budgetSeconds: 5 } }));
    await expect(short.stat('k')).rejects.toMatchObject({
      code: 'DESTINATION_FAILED',
      message: expect.stringMatching(/budget 5000 ms/),
    });
    // 0.5 s, 1 s, 2 s of backoff; the next one (4 s) would pass the 5 s budget.
    expect(opened[1]!.calls).toHaveLength(4);
    expect(time.sleeps).toEqual([500, 1000, 2000]);
  });

  it('stops retrying calls that take no signal (stat, delete) once the signal given to open() aborts', async () => {
    const run = new AbortController();
    const { factory, opened } = fakeKind(() => Array.from({ length: 20 }, () => transient));
    const registry = new DestinationRegistry([factory], {
      retry: {
        // The run is cancelled while the first backoff is under way.
        sleep: (_ms, signal) =>
          new Promise((_resolve, reject) => {
            signal?.addEventListener('abort', () => reject(signal.reason));
            run.abort();
          }),
      },
    });
    const d = await registry.open(spec(), 'destinations[0]', { signal: run.signal });
    await expect(d.stat('k')).rejects.toMatchObject({ code: 'CANCELLED' });
    await expect(d.delete('k')).rejects.toMatchObject({ code: 'UNAVAILABLE' }); // tried once, not retried
    expect(opened[0]!.calls).toEqual(['stat k', 'delete k']);
  });

  it('limits requests in flight only when the spec sets limits', async () => {
    let inFlight = 0;
    let most = 0;
    const gate = async () => {
      inFlight += 1;
      most = Math.max(most, inFlight);
      await new Promise((r) => setTimeout(r, 5));
      inFlight -= 1;
    };
    const { factory } = fakeKind(() => Array.from({ length: 6 }, () => gate));
    const registry = new DestinationRegistry([factory]);
    const putSix = (d: Destination) =>
      Promise.all(Array.from({ length: 6 }, (_, i) => d.put(`k${i}`, Buffer.from('x'), 1)));

    await putSix(await registry.open(spec()));
    expect(most).toBe(6);

    most = 0;
    await putSix(await registry.open(spec({ limits: { maxConcurrentRequests: 2 } })));
    expect(most).toBe(2);
  });

  it('keeps the local destination hard-linking staged files and being read in place', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'backupd-policy-'));
    dirs.push(dir);
    const staged = join(dir, 'staged.pack');
    writeFileSync(staged, 'packbytes!');
    const registry = new DestinationRegistry([local]);
    for (const config of [{}, { limits: { maxConcurrentRequests: 1, bytesPerSecond: 1_000_000 } }]) {
      const root = join(dir, `repo-${Object.keys(config).length}`);
      const d = await registry.open({ name: 'disk', kind: 'local', config: { path: root, ...config } });
      expect(d).not.toBeInstanceOf(LocalDestination); // wrapped
      expect(d.localPath?.('a/b.pack')).toBe(join(root, 'a/b.pack'));
      await d.putFile!('a/b.pack', staged, 10);
      expect(await d.stat('a/b.pack')).toMatchObject({ size: 10 });
      await d.close();
    }
  });

  it('openDestination() gives the bare driver, for callers that wrap it themselves', async () => {
    const d = await openDestination({
      name: 'disk',
      kind: 'local',
      config: { path: '/tmp', retry: { maxAttempts: 2 } },
    });
    expect(d).toBeInstanceOf(LocalDestination);
    await d.close();
  });
});
