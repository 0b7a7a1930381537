// azurite (npm devDependency azurite@3.35, the last release for Node 20) for the Azure Blob tests:
// the blob service only, in memory, on 127.0.0.1. It checks shared-key signatures like Azure does.

import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { answersHttp, freePort, startProcess, tempDir } from './process.js';

/** Azurite's well-known development account (public, documented by Microsoft). */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface AzuriteServer {
  accountUrl: string;
  accountName: string;
  accountKey: string;
  connectionString: string;
  /** The server's process id (benchmarks read its CPU time). */
  pid: number;
  stop(): Promise<void>;
}

export async function startAzurite(): Promise<AzuriteServer> {
  const bin = resolve('node_modules/.bin/azurite-blob');
  const install = 'It needs the devDependency azurite@3.35.0: run npm install in the project folder.';
  if (!existsSync(bin)) throw new Error(`azurite-blob is missing at ${bin}. ${install}`);
  const port = await freePort();
  const dir = tempDir('azurite');
  const accountUrl = `http://127.0.0.1:${port}/${AZURITE_ACCOUNT}`;
  let server: Awaited<ReturnType<typeof startProcess>>;
  try {
    server = await startProcess({
      what: 'azurite (azurite-blob)',
      install,
      command: process.execPath,
      args: [
        bin,
        '--blobHost',
        '127.0.0.1',
        '--blobPort',
        String(port),
        '--inMemoryPersistence',
        '--silent',
        '--skipApiVersionCheck',
        '--disableTelemetry',
      ],
      cwd: dir.path,
      port,
      ready: () => answersHttp(`http://127.0.0.1:${port}/`),
    });
  } catch (error) {
    dir.remove();
    throw error;
  }
  return {
    accountUrl,
    accountName: AZURITE_ACCOUNT,
    accountKey: AZURITE_KEY,
    pid: server.pid,
    connectionString: `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};BlobEndpoint=${accountUrl};`,
    stop: async () => {
      await server.stop();
      dir.remove();
    },
  };
}
