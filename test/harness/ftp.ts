// FTP and explicit FTPS for the tests: ftp-srv in this process on 127.0.0.1, one user, a temp root
// folder, and its own passive port range. FTPS uses a self-signed certificate for 127.0.0.1 made with
// openssl at test time, returned as `ca` for the client to trust.

import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { FtpSrv } from 'ftp-srv';
import { freePort, tempDir } from './process.js';

export interface FtpServer {
  host: string;
  port: number;
  user: string;
  password: string;
  /** The folder on this machine that the FTP root maps to. */
  rootDir: string;
  /** PEM of the server's self-signed certificate (FTPS only). */
  ca?: string;
  /** Client connections the server holds open right now (to check that clients close theirs). */
  openConnections(): number;
  stop(): Promise<void>;
}

/** ftp-srv logs through bunyan by default; the tests want silence. */
const quiet = {
  child: () => quiet,
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  fatal: () => undefined,
};

let nextPassiveBase = 40_000 + (process.pid % 200) * 100;

export async function startFtpServer(options: { tls?: boolean } = {}): Promise<FtpServer> {
  const root = tempDir('ftp');
  const port = await freePort();
  const user = 'backupd';
  const password = `pw-${Math.random().toString(36).slice(2)}`;
  let tls: { key: string; cert: string } | undefined;
  if (options.tls) {
    try {
      tls = await selfSignedCertificate(root.path);
    } catch (error) {
      root.remove();
      throw error;
    }
  }
  // Each server gets its own range of 50 passive ports; ftp-srv skips ports in use inside it.
  const pasvMin = nextPassiveBase;
  nextPassiveBase = nextPassiveBase + 50 > 60_000 ? 40_000 : nextPassiveBase + 50;
  const data = join(root.path, 'data');
  const server = new FtpSrv({
    url: `ftp://127.0.0.1:${port}`,
    pasv_url: '127.0.0.1',
    pasv_min: pasvMin,
    pasv_max: pasvMin + 49,
    anonymous: false,
    tls: tls ?? false,
    log: quiet,
    greeting: 'backupd test server',
  });
  server.on('login', ({ username, password: given }, resolveLogin, rejectLogin) => {
    if (username === user && given === password) resolveLogin({ root: data });
    else rejectLogin(new Error('Invalid username or password'));
  });
  mkdirSync(data);
  await server.listen();
  return {
    host: '127.0.0.1',
    port,
    user,
    password,
    rootDir: data,
    ca: tls?.cert,
    openConnections: () => Object.keys((server as unknown as { connections: object }).connections).length,
    stop: async () => {
      await server.close();
      root.remove();
    },
  };
}

async function selfSignedCertificate(dir: string): Promise<{ key: string; cert: string }> {
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  try {
    await promisify(execFile)(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        key,
        '-out',
        cert,
        '-days',
        '1',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
      ],
      { timeout: 20_000 },
    );
  } catch (error) {
    throw new Error(
      `FTPS needs a test certificate made with openssl, which failed: ${String(error)}. Install openssl.`,
    );
  }
  return { key: readFileSync(key, 'utf8'), cert: readFileSync(cert, 'utf8') };
}
