// Helpers for the backupctl tests: captured output streams and a fake API that records every call.

import type { BackupdApi, ClientOptions, StreamMethods, UnaryMethods } from '../../src/api/client.js';
import { type CliIo, run } from '../../src/cli/ctl/main.js';

export interface Captured {
  write(chunk: string): boolean;
  text: string;
  isTTY?: boolean;
  columns?: number;
}

export function sink(tty = false, columns = 100): Captured {
  const s: Captured = {
    text: '',
    write(chunk: string) {
      s.text += chunk;
      return true;
    },
  };
  if (tty) {
    s.isTTY = true;
    s.columns = columns;
  }
  return s;
}

export type UnaryHandlers = {
  [M in keyof UnaryMethods]?: (request: UnaryMethods[M][0]) => UnaryMethods[M][1] | Promise<UnaryMethods[M][1]>;
};
export type StreamHandlers = {
  [M in keyof StreamMethods]?: (
    request: StreamMethods[M][0],
  ) => AsyncIterable<StreamMethods[M][1]> | Iterable<StreamMethods[M][1]>;
};

export interface Fake {
  connect: (options: ClientOptions) => BackupdApi;
  calls: { method: string; request: unknown }[];
  options: ClientOptions[];
  closed: number;
}

export function fakeApi(unary: UnaryHandlers = {}, streams: StreamHandlers = {}): Fake {
  const fake: Fake = {
    calls: [],
    options: [],
    closed: 0,
    connect(options) {
      fake.options.push(options);
      return {
        async unary(method, request) {
          fake.calls.push({ method, request });
          const handler = unary[method] as ((r: unknown) => unknown) | undefined;
          if (!handler) throw new Error(`fake: no handler for ${method}`);
          return (await handler(request)) as never;
        },
        stream(method, request) {
          fake.calls.push({ method, request });
          const handler = streams[method] as ((r: unknown) => AsyncIterable<never> | Iterable<never>) | undefined;
          if (!handler) throw new Error(`fake: no handler for ${method}`);
          const source = handler(request);
          return (async function* () {
            yield* source;
          })();
        },
        close() {
          fake.closed++;
        },
      };
    },
  };
  return fake;
}

/** A connect() that fails the test if called: usage errors must not contact the server. */
export const noServer = (): BackupdApi => {
  throw new Error('the server was contacted');
};

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

export async function cli(argv: string[], options: Partial<CliIo> & { tty?: boolean } = {}): Promise<Result> {
  const stdout = sink(options.tty);
  const stderr = sink();
  const code = await run(argv, {
    stdout,
    stderr,
    env: options.env ?? {},
    connect: options.connect ?? noServer,
    ...(options.now ? { now: options.now } : {}),
    ...(options.progressIntervalMs === undefined ? {} : { progressIntervalMs: options.progressIntervalMs }),
  });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

/** A finished run as the agent would send it. */
export function runMessage(overrides: Partial<UnaryMethods['GetRun'][1]> = {}): UnaryMethods['GetRun'][1] {
  return {
    runId: 'r1',
    task: 'nightly',
    database: 'main/orders',
    type: 'backup',
    level: 'full',
    trigger: 'now',
    scheduledAt: '',
    queuedAt: '2026-11-22T05:00:00.000Z',
    outcome: 'succeeded',
    node: 'node1',
    startedAt: '2026-11-22T05:00:00.000Z',
    finishedAt: '2026-11-22T05:00:03.500Z',
    chainId: '20261122T050000Z-backup-node1',
    backupId: '20261122T050000Z-full',
    rawBytes: 45_600_000,
    storedBytes: 12_300_000,
    destinations: [],
    error: '',
    errorCode: '',
    progress: null,
    notes: [],
    ...overrides,
  };
}
