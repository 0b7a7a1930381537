// The FTP destination against ftp-srv in this process: plain FTP, and explicit FTPS with a self-signed
// certificate made by openssl at test time.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ftp } from '../../src/uploader/ftp.js';
import { type FtpServer, startFtpServer } from '../harness/ftp.js';
import { freePort } from '../harness/process.js';
import { describeConformance } from './conformance.js';

for (const secure of [false, 'explicit'] as const) {
  const label = secure ? 'ftps' : 'ftp';
  describeConformance(label, async () => {
    const server = await startFtpServer({ tls: secure === 'explicit' });
    const base = {
      host: server.host,
      port: server.port,
      user: server.user,
      password: server.password,
      secure,
      ca: server.ca,
      maxConnections: 3,
    };
    const config = (namespace: string) => ftp.parseConfig({ ...base, root: `/t/${namespace}` }, 'ftp');
    return {
      open: (namespace) => ftp.open(`${label}-${namespace}`, config(namespace)),
      openWithBadCredentials: (namespace) =>
        ftp.open(`${label}-${namespace}`, ftp.parseConfig({ ...base, password: 'wrong-password-123' }, 'ftp')),
      openUnreachable: async (namespace) =>
        ftp.open(`${label}-${namespace}`, ftp.parseConfig({ ...base, port: await freePort() }, 'ftp')),
      openConnections: () => server.openConnections(),
      describeOpenConnections: () => server.describeOpenConnections(),
      secrets: [server.password, 'wrong-password-123'],
      redacted: ftp.redact(config('x')),
      largeSize: 21 * 1024 * 1024,
      pagingKeys: 30,
      teardown: () => server.stop(),
    };
  });
}

describe('ftps certificate checks', { timeout: 30_000 }, () => {
  let server: FtpServer;
  beforeAll(async () => {
    server = await startFtpServer({ tls: true });
  }, 60_000);
  afterAll(() => server?.stop());

  it('refuses a server certificate it was not told to trust, and says to set ca', async () => {
    const d = await ftp.open(
      'ftps-untrusted',
      ftp.parseConfig(
        { host: server.host, port: server.port, user: server.user, password: server.password, secure: 'explicit' },
        'ftp',
      ),
    );
    try {
      const error = await d.put('x.bin', Buffer.from('x'), 1).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'DESTINATION_FAILED', retryable: false });
      expect(String((error as Error).message)).toMatch(/ca/);
    } finally {
      await d.close();
    }
  });

  it('keeps to maxConnections when many requests run at once', async () => {
    let open = 0;
    let most = 0;
    const d = await ftp.open(
      'ftps-pool',
      ftp.parseConfig(
        {
          host: server.host,
          port: server.port,
          user: server.user,
          password: server.password,
          secure: 'explicit',
          ca: server.ca,
          maxConnections: 2,
          root: '/pool',
        },
        'ftp',
      ),
    );
    try {
      await Promise.all(
        Array.from({ length: 8 }, async (_, i) => {
          open += 1;
          most = Math.max(most, open);
          await d.put(`f${i}.bin`, Buffer.from(`file ${i}`), `file ${i}`.length);
          open -= 1;
        }),
      );
      const keys = [];
      for await (const info of d.list('')) keys.push(info.key);
      expect(keys.sort()).toEqual(Array.from({ length: 8 }, (_, i) => `f${i}.bin`));
    } finally {
      await d.close();
    }
    expect(most).toBe(8); // all eight were in flight; the pool queued them on two connections
  });
});
