// The Azure Blob destination against azurite (blob service, in memory), which checks shared-key
// signatures like Azure does.

import { randomBytes } from 'node:crypto';
import {
  AccountSASPermissions,
  AccountSASResourceTypes,
  AccountSASServices,
  generateAccountSASQueryParameters,
  StorageSharedKeyCredential,
} from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { azure, createContainerClient, SINGLE_PUT_MAX } from '../../src/uploader/azure.js';
import { type AzuriteServer, startAzurite } from '../harness/azurite.js';
import { freePort } from '../harness/process.js';
import { describeConformance } from './conformance.js';

const WRONG_KEY = Buffer.from('not the account key, but valid base64 of 64 bytes..............').toString('base64');

describeConformance('azure', async () => {
  const server = await startAzurite();
  const container = `backupd-${randomBytes(4).toString('hex')}`;
  const base = { container, connectionString: server.connectionString, blockSizeMiB: 4, listPageSize: 10 };
  await createContainerClient(azure.parseConfig(base, 'azure')).create();
  const config = (namespace: string) => azure.parseConfig({ ...base, prefix: `t/${namespace}` }, 'azure');
  return {
    open: (namespace) => azure.open(`azure-${namespace}`, config(namespace)),
    openWithBadCredentials: (namespace) =>
      azure.open(
        `azure-${namespace}`,
        azure.parseConfig(
          {
            container,
            prefix: namespace,
            accountUrl: server.accountUrl,
            accountName: server.accountName,
            accountKey: WRONG_KEY,
          },
          'azure',
        ),
      ),
    openUnreachable: async (namespace) =>
      azure.open(
        `azure-${namespace}`,
        azure.parseConfig(
          {
            container,
            accountUrl: `http://127.0.0.1:${await freePort()}/${server.accountName}`,
            accountName: server.accountName,
            accountKey: server.accountKey,
          },
          'azure',
        ),
      ),
    secrets: [server.accountKey, WRONG_KEY],
    redacted: azure.redact(config('x')),
    // Above the single-Put-Blob limit, so it goes up in 4 MiB blocks.
    largeSize: SINGLE_PUT_MAX + 1024 * 1024,
    pagingKeys: 35,
    teardown: () => server.stop(),
  };
});

describe('azure destination credentials', { timeout: 30_000 }, () => {
  let server: AzuriteServer;
  const container = 'backupd-auth';

  beforeAll(async () => {
    server = await startAzurite();
    await createContainerClient(
      azure.parseConfig({ container, connectionString: server.connectionString }, 'a'),
    ).create();
  }, 60_000);
  afterAll(() => server?.stop());

  it('works with an account name and key, and with a SAS token', async () => {
    const sas = generateAccountSASQueryParameters(
      {
        expiresOn: new Date(Date.now() + 3600_000),
        permissions: AccountSASPermissions.parse('rwdlc'),
        resourceTypes: AccountSASResourceTypes.parse('sco').toString(),
        services: AccountSASServices.parse('b').toString(),
      },
      new StorageSharedKeyCredential(server.accountName, server.accountKey),
    ).toString();
    const configs = [
      { container, accountUrl: server.accountUrl, accountName: server.accountName, accountKey: server.accountKey },
      { container, accountUrl: server.accountUrl, sasToken: sas },
    ];
    for (const [i, input] of configs.entries()) {
      const config = azure.parseConfig({ ...input, prefix: `cred${i}` }, 'azure');
      expect(JSON.stringify(azure.redact(config))).not.toContain(input.accountKey ?? input.sasToken);
      const d = await azure.open(`azure-cred${i}`, config);
      try {
        await d.put('x.bin', Buffer.from('hello'), 5);
        expect((await d.stat('x.bin'))?.size).toBe(5);
        await d.delete('x.bin');
      } finally {
        await d.close();
      }
    }
  });
});
