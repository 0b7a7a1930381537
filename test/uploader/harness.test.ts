// The harness itself: a server that cannot start fails the test with a message naming what is missing.

import { describe, expect, it } from 'vitest';
import { answersHttp, freePort, startProcess } from '../harness/process.js';

describe('test harness', () => {
  it('names the missing program and how to get it when a server cannot be started', async () => {
    const port = await freePort();
    const failure = startProcess({
      what: 'exampled (no-such-server-binary)',
      install: 'Install it with apt-get install exampled.',
      command: 'no-such-server-binary',
      args: ['--port', String(port)],
      port,
      ready: () => answersHttp(`http://127.0.0.1:${port}/`),
      timeoutMs: 5000,
    });
    await expect(failure).rejects.toThrow(
      /exampled \(no-such-server-binary\) could not be run: .*ENOENT.*apt-get install exampled/s,
    );
  });

  it('reports a server that exits before answering, with its output', async () => {
    const port = await freePort();
    const failure = startProcess({
      what: 'python3 -m no_such_module',
      install: 'pip install no_such_module.',
      command: 'python3',
      args: ['-m', 'no_such_module'],
      port,
      ready: () => answersHttp(`http://127.0.0.1:${port}/`),
      timeoutMs: 10_000,
    });
    await expect(failure).rejects.toThrow(
      /exited \(code 1.*pip install no_such_module.*No module named no_such_module/s,
    );
  });
});
