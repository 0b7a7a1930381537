// A call forwarded to another node answers exactly as that node did: every error code, the retryable flag
// and the list of bad fields survive the round trip (the real API server in this process, with a stand-in
// agent that fails as told, reached through Peers as the agent reaches other nodes). And the health a
// cluster status shows for another member is what that member answers, not an assumption.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Peers } from '../../src/api/peers.js';
import { problemsOf } from '../../src/api/status-codes.js';
import { BackupdError, type ErrorCode, ValidationError } from '../../src/errors.js';
import { freePort } from '../harness/process.js';
import { fakeOperations } from './support/fake-operations.js';
import { startTestServer, type TestServer } from './support/harness.js';

const TOKEN = 'peer-token-0123456789abcdef';

/** Every code, written out: a new one must be added here and to the forwarding. */
const CODES: ErrorCode[] = [
  'INVALID_ARGUMENT',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'WRONG_KEY',
  'KEY_REQUIRED',
  'PACK_MISSING',
  'PACK_CORRUPT',
  'MANIFEST_CORRUPT',
  'UNSUPPORTED_FORMAT',
  'UNSUPPORTED',
  'SOURCE_FAILED',
  'DESTINATION_FAILED',
  'PERMISSION_DENIED',
  'NO_SPACE',
  'UNAVAILABLE',
  'TIMEOUT',
  'CANCELLED',
];

describe('forwarded calls', () => {
  let server: TestServer;
  let peers: Peers;
  /** What the stand-in agent throws from GetRun next. */
  let next: unknown;

  beforeAll(async () => {
    server = await startTestServer(
      fakeOperations({
        async getRun() {
          throw next;
        },
      }),
      { auth: { token: TOKEN } },
    );
    peers = new Peers({ addressOf: (node) => (node === 'n2' ? server.api.address : undefined), token: TOKEN });
  });
  afterAll(async () => {
    peers?.close();
    await server?.close();
  });

  async function forwarded(error: unknown): Promise<BackupdError> {
    next = error;
    try {
      await peers.call('n2', 'get run', (api) => api.unary('GetRun', { runId: 'r1' }));
    } catch (caught) {
      if (caught instanceof BackupdError) return caught;
      throw caught;
    }
    throw new Error('the forwarded call succeeded');
  }

  for (const code of CODES) {
    for (const retryable of [false, true]) {
      it(`${code}, retryable ${retryable}: the same code and flag come back, naming the node`, async () => {
        const original = new BackupdError(code, `it failed with ${code}`, { retryable });
        const answer = await forwarded(original);
        expect({ code: answer.code, retryable: answer.retryable }).toEqual({ code, retryable });
        expect(answer.message).toBe(`it failed with ${code} (answered by node n2)`);
      });
    }
  }

  it('a validation error keeps every bad field', async () => {
    const original = new ValidationError('task', [
      { path: 'schedule.full', message: 'not a cron expression' },
      { path: 'destinations[1].bucket', message: 'must not be empty' },
    ]);
    const answer = await forwarded(original);
    expect(answer.code).toBe('INVALID_ARGUMENT');
    expect(answer.retryable).toBe(false);
    expect(problemsOf(answer)).toEqual(original.problems);
  });

  it("INTERNAL stays INTERNAL (the other node's log has the detail)", async () => {
    const answer = await forwarded(new Error('an invariant broke'));
    expect(answer.code).toBe('INTERNAL');
    expect(answer.message).toMatch(/errorId/);
  });

  it("a peer refusing this node's token is PERMISSION_DENIED, not retryable", async () => {
    const wrong = new Peers({ addressOf: () => server.api.address, token: 'not-the-token-0123456789' });
    try {
      await expect(wrong.call('n2', 'get run', (api) => api.unary('GetRun', { runId: 'r1' }))).rejects.toMatchObject({
        code: 'PERMISSION_DENIED',
        retryable: false,
      });
    } finally {
      wrong.close();
    }
  });
});

describe("another member's health", () => {
  it('serving while its server runs, not-serving while it stops, unreachable when nothing answers', async () => {
    const server = await startTestServer(fakeOperations(), { auth: { token: TOKEN } });
    const deadPort = await freePort();
    const peers = new Peers({
      addressOf: (node) => ({ up: server.api.address, dead: `127.0.0.1:${deadPort}` })[node],
      token: TOKEN,
      healthTimeoutMs: 1_000,
    });
    try {
      expect(await peers.health('up')).toBe('serving');
      server.api.health.setStatus('', 'NOT_SERVING');
      expect(await peers.health('up')).toBe('not-serving');
      expect(await peers.health('dead')).toMatch(/^unreachable: /);
      expect(await peers.health('gone')).toBe('unreachable: not a live member');
    } finally {
      peers.close();
      await server.close();
    }
  });
});
