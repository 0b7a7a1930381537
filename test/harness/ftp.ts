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
  /**
   * Control connections the client still holds open: server-side sockets on the control port in TCP state
   * ESTABLISHED. A client that closed its end leaves the server's socket in CLOSE_WAIT or gone, whether or
   * not ftp-srv has noticed yet (it does not while it keeps the socket paused, as it does during RETR).
   */
  openConnections(): number;
  /** The commands each open connection sent, passwords masked: what a test names when one stays open. */
  describeOpenConnections(): string[];
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
  // What each connection sent, so a connection left open can be named by its commands.
  const sent = new Map<string, string[]>();
  // 'connect' is emitted by ftp-srv but missing from its typings.
  const events = server as unknown as {
    on(event: 'connect', listener: (data: { connection: unknown; id: string }) => void): void;
  };
  events.on('connect', ({ connection, id }) => {
    const commands: string[] = [];
    sent.set(id, commands);
    // Read at the command layer, which sees the commands after AUTH TLS too.
    const layer = (connection as unknown as { commands: { handle(message: string): unknown } }).commands;
    const handle = layer.handle.bind(layer);
    layer.handle = (message: string) => {
      commands.push(message.startsWith('PASS') ? 'PASS ***' : message.slice(0, 80));
      return handle(message);
    };
  });
  server.on('disconnect', ({ id }) => sent.delete(id));
  mkdirSync(data);
  await server.listen();
  const connections = () =>
    (server as unknown as { connections: Record<string, { commandSocket?: import('node:net').Socket }> }).connections;
  return {
    host: '127.0.0.1',
    port,
    user,
    password,
    rootDir: data,
    ca: tls?.cert,
    openConnections: () => establishedPeers(port).size,
    describeOpenConnections: () => {
      const peers = establishedPeers(port);
      return Object.entries(connections())
        .filter(([, c]) => c.commandSocket?.remotePort !== undefined && peers.has(c.commandSocket.remotePort))
        .map(
          ([id, c]) => `port ${c.commandSocket?.remotePort}: ${(sent.get(id) ?? []).join(' | ') || '(no commands)'}`,
        );
    },
    stop: async () => {
      await server.close();
      root.remove();
    },
  };
}

const ESTABLISHED = '01';

/** Remote ports of the ESTABLISHED TCP connections whose local port is `port`, from /proc/net/tcp{,6} (Linux). */
function establishedPeers(port: number): Set<number> {
  const peers = new Set<number>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue; // no IPv6 table on this machine
    }
    for (const line of text.split('\n').slice(1)) {
      const [, local, remote, state] = line.trim().split(/\s+/);
      if (!local || !remote || state !== ESTABLISHED) continue;
      if (Number.parseInt(local.split(':')[1] ?? '', 16) === port) {
        peers.add(Number.parseInt(remote.split(':')[1] ?? '', 16));
      }
    }
  }
  return peers;
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
