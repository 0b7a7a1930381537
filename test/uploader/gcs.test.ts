// The GCS destination against firebase-tools' storage emulator, loaded in process by the harness.
// The emulator checks no credentials; the harness adds the 401 that GCS answers to a token it does not
// accept. A service-account key made here signs its own token (self-signed JWT), so the rejected-
// credentials case never talks to Google's token endpoint.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { gcs } from '../../src/uploader/gcs.js';
import { startGcsEmulator } from '../harness/gcs.js';
import { freePort } from '../harness/process.js';
import { describeConformance } from './conformance.js';

describeConformance('gcs', async () => {
  const emulator = await startGcsEmulator();
  const bucket = `backupd-${randomBytes(4).toString('hex')}`;
  const base = { bucket, projectId: emulator.projectId, apiEndpoint: emulator.apiEndpoint, listPageSize: 10 };
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const unknownKey = {
    type: 'service_account',
    project_id: emulator.projectId,
    private_key_id: randomBytes(20).toString('hex'),
    private_key: pem,
    client_email: `stranger@${emulator.projectId}.iam.gserviceaccount.com`,
  };
  const config = (namespace: string) => gcs.parseConfig({ ...base, prefix: `t/${namespace}` }, 'gcs');
  const badConfig = (namespace: string) =>
    gcs.parseConfig({ ...base, prefix: namespace, credentials: unknownKey }, 'gcs');
  return {
    open: (namespace) => gcs.open(`gcs-${namespace}`, config(namespace)),
    openWithBadCredentials: (namespace) => gcs.open(`gcs-${namespace}`, badConfig(namespace)),
    openUnreachable: async (namespace) =>
      gcs.open(
        `gcs-${namespace}`,
        gcs.parseConfig({ ...base, apiEndpoint: `http://127.0.0.1:${await freePort()}` }, 'gcs'),
      ),
    secrets: [unknownKey.private_key_id, ...pem.split('\n').filter((l) => l.length > 40)],
    redacted: gcs.redact(badConfig('x')),
    largeSize: 21 * 1024 * 1024,
    pagingKeys: 35,
    teardown: () => emulator.stop(),
  };
});
