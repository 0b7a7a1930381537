// TLS and mutual TLS with a throwaway self-signed certificate made by openssl in a temp dir. The agent behind
// the API is a fake (support/fake-operations): only the transport settings are under test here.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startApiServer } from '../../src/api/server.js';
import type { ClusterStatus__Output } from '../../src/generated/backupd/v1/ClusterStatus.js';
import { selfSignedCertificate } from '../harness/certificate.js';
import { fakeOperations } from './support/fake-operations.js';
import { call, failure, startTestServer, type TestServer } from './support/harness.js';

let dir: string;
let cert: Buffer;
let key: Buffer;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'backupd-tls-'));
  const files = selfSignedCertificate(dir);
  cert = readFileSync(files.cert);
  key = readFileSync(files.key);
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

/** A client by name, as operators connect: the certificate names localhost (a TLS server name is never an IP). */
function tlsClientOf(s: TestServer, credentials: grpc.ChannelCredentials) {
  return s.client({ credentials, address: `localhost:${s.api.port}` });
}

const deadline = () => ({ deadline: Date.now() + 5000 });

describe('TLS', () => {
  it('serves TLS clients that trust the certificate and refuses plaintext ones', async () => {
    server = await startTestServer(fakeOperations(), { tls: { cert: cert.toString(), key: key.toString() } });
    const tlsClient = tlsClientOf(server, grpc.credentials.createSsl(cert));
    const answer = await call<ClusterStatus__Output>((cb) =>
      tlsClient.getClusterStatus({}, new grpc.Metadata(), deadline(), cb),
    );
    expect(answer.node).toBe('node1');

    const plain = server.client();
    const refused = await failure((cb) => plain.getClusterStatus({}, new grpc.Metadata(), deadline(), cb));
    expect(refused.code).toBe(grpc.status.UNAVAILABLE);
  });

  it('with requireClientCert, serves only clients that present a certificate the CA signed', async () => {
    server = await startTestServer(fakeOperations(), { tls: { cert, key, ca: cert, requireClientCert: true } });
    const mutual = tlsClientOf(server, grpc.credentials.createSsl(cert, key, cert));
    expect(
      (await call<ClusterStatus__Output>((cb) => mutual.getClusterStatus({}, new grpc.Metadata(), deadline(), cb)))
        .node,
    ).toBe('node1');

    const anonymous = tlsClientOf(server, grpc.credentials.createSsl(cert));
    const refused = await failure((cb) => anonymous.getClusterStatus({}, new grpc.Metadata(), deadline(), cb));
    expect(refused.code).toBe(grpc.status.UNAVAILABLE);
  });

  it('refuses requireClientCert without a CA to check client certificates against', async () => {
    await expect(
      startApiServer({
        operations: fakeOperations(),
        listen: '127.0.0.1:0',
        tls: { cert, key, requireClientCert: true },
        auth: {},
        logger: pino({ level: 'silent' }),
      }),
    ).rejects.toThrow(/requireClientCert needs tls.ca/);
  });
});
