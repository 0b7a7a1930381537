// Google Cloud Storage for the tests: firebase-tools' storage emulator, loaded in this process without
// its Java rules runtime (createApp + listen, never start()). firebase-tools is pinned exactly in
// package.json because this reaches into its internals. Buckets appear on first use.
//
// The emulator's GCS API checks no credentials. To test credential rejection the harness puts in
// front of it the check real GCS does: a request whose bearer token is not accepted gets 401.
// Requests without an Authorization header (what @google-cloud/storage sends to a custom endpoint
// when it has no credentials) pass, as before.

import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import { tempDir } from './process.js';

export interface GcsEmulator {
  apiEndpoint: string;
  projectId: string;
  /** A bearer token the gate accepts (any other one is rejected with 401). */
  goodToken: string;
  stop(): Promise<void>;
}

interface EmulatorModules {
  StorageEmulator: new (args: Record<string, unknown>) => { stop(): Promise<void> };
  createApp: (projectId: string, emulator: unknown) => Promise<(req: unknown, res: unknown) => void>;
  EmulatorRegistry: { set?: (name: string, emulator: unknown) => void };
}

function loadEmulator(): EmulatorModules {
  const require = createRequire(resolve('package.json'));
  try {
    const { StorageEmulator } = require('firebase-tools/lib/emulator/storage');
    const { createApp } = require('firebase-tools/lib/emulator/storage/server');
    const { EmulatorRegistry } = require('firebase-tools/lib/emulator/registry');
    return { StorageEmulator, createApp, EmulatorRegistry };
  } catch (error) {
    throw new Error(
      `the GCS emulator (firebase-tools' storage emulator) cannot be loaded: ${String(error)}. ` +
        'It needs the devDependency firebase-tools@15.34.2: run npm install in the project folder.',
    );
  }
}

export async function startGcsEmulator(): Promise<GcsEmulator> {
  const { StorageEmulator, createApp, EmulatorRegistry } = loadEmulator();
  const projectId = 'demo-backupd';
  const dir = tempDir('gcs');
  // The emulator keeps blobs under os.tmpdir(), read when it is constructed: give it its own.
  const savedTmp = process.env.TMPDIR;
  process.env.TMPDIR = dir.path;
  let emulator: InstanceType<EmulatorModules['StorageEmulator']>;
  try {
    emulator = new StorageEmulator({ projectId, host: '127.0.0.1', port: 0, auto_download: false });
  } finally {
    if (savedTmp === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = savedTmp;
  }
  EmulatorRegistry.set?.('storage', emulator);
  const app = await createApp(projectId, emulator);
  const goodToken = 'harness-accepted-token';
  const server: Server = createServer((req, res) => {
    const auth = req.headers.authorization;
    if (auth !== undefined && auth !== `Bearer ${goodToken}` && auth !== 'Bearer owner') {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({ error: { code: 401, message: 'Invalid Credentials', errors: [{ reason: 'authError' }] } }),
      );
      return;
    }
    app(req, res);
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => ok());
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return {
    apiEndpoint: `http://127.0.0.1:${port}`,
    projectId,
    goodToken,
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((ok) => server.close(() => ok()));
      dir.remove();
    },
  };
}
