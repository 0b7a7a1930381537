// The local folder destination against the conformance suite, on a temp folder.

import { local } from '../../src/uploader/local.js';
import { tempDir } from '../harness/process.js';
import { describeConformance } from './conformance.js';

describeConformance('local', async () => {
  const dir = tempDir('local-dest');
  const config = local.parseConfig({ path: dir.path }, 'local');
  return {
    open: (namespace) =>
      local.open(`local-${namespace}`, local.parseConfig({ path: `${dir.path}/${namespace}` }, 'local')),
    noCredentials: 'a local folder has no credentials (and tests run as root, which no file mode stops)',
    noServer: 'a local folder has no server to be down',
    secrets: [],
    redacted: local.redact(config),
    largeSize: 24 * 1024 * 1024,
    pagingKeys: 30,
    teardown: async () => dir.remove(),
  };
});
