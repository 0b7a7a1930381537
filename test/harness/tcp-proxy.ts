// A TCP proxy in the test process, to cut one client off from a server while others still reach it (a
// network partition of one node): `cut()` drops every connection and refuses new ones, `heal()` lets them in.

import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { freePort } from './process.js';

export interface TcpProxy {
  port: number;
  /** Drop every connection and refuse new ones until heal(). */
  cut(): void;
  heal(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  const port = await freePort();
  const sockets = new Set<Socket>();
  let open = true;
  const server: Server = createServer((client) => {
    if (!open) {
      client.destroy();
      return;
    }
    const upstream = createConnection({ host: '127.0.0.1', port: targetPort });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      // A reset while cut is what the test asked for; either side closing closes the other.
      s.on('error', () => undefined);
    }
    client.pipe(upstream).pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    port,
    cut: () => {
      open = false;
      for (const s of sockets) s.destroy();
    },
    heal: () => {
      open = true;
    },
    close: async () => {
      open = false;
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
