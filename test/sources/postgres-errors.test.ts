// The PostgreSQL tools' failures against a real server (its own, for this file), as typed errors with the
// tool's message, never a hang: a wrong password, a stopped server, a server that accepts connections
// but never answers, missing client tools, and a run cancelled while pg_dump streams.

import { writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgres } from '../../src/sources/postgres.js';
import { SERVER_UNIT } from '../../src/sources/source.js';
import { type PostgresServer, startPostgres } from '../harness/postgres.js';
import { freePort } from '../harness/process.js';
import { expectCode, openSource } from './postgres-support.js';

const SECURED_ROLE = 'secured';
const SECURED_PASSWORD = 'correct-horse-battery-staple';

describe('postgres tool errors', () => {
  let pg: PostgresServer;
  beforeAll(async () => {
    // Password (SCRAM) authentication for one role; trust for the others.
    pg = await startPostgres({ hbaFirst: [`host all ${SECURED_ROLE} 127.0.0.1/32 scram-sha-256`] });
    await pg.psql(`CREATE ROLE ${SECURED_ROLE} LOGIN SUPERUSER PASSWORD '${SECURED_PASSWORD}'`);
  }, 60_000);
  afterAll(async () => {
    await pg?.stop();
  }, 30_000);

  it('rejects a wrong password as PERMISSION_DENIED with the server message, and never shows the password', async () => {
    const wrong = await openSource(pg, { user: SECURED_ROLE, password: 'wrong-password-123' });
    const started = performance.now();
    const error = await expectCode(wrong.listDatabases(), 'PERMISSION_DENIED');
    expect(error.message).toMatch(/password authentication failed for user "secured"/);
    expect(error.message).not.toContain('wrong-password-123');
    await expectCode(wrong.read('postgres', 'backup'), 'PERMISSION_DENIED');
    await expectCode(wrong.read(SERVER_UNIT, 'snapshot'), 'PERMISSION_DENIED');
    expect(performance.now() - started).toBeLessThan(5000);

    const right = await openSource(pg, { user: SECURED_ROLE, password: SECURED_PASSWORD });
    expect((await right.listDatabases()).map((d) => d.name)).toContain('postgres');
    const config = postgres.parseConfig(pg.sourceConfig({ user: SECURED_ROLE, password: SECURED_PASSWORD }), 'c');
    expect(JSON.stringify(postgres.redact(config))).not.toContain(SECURED_PASSWORD);

    const passfile = join(pg.dir, 'pgpass');
    writeFileSync(passfile, `127.0.0.1:${pg.port}:*:${SECURED_ROLE}:${SECURED_PASSWORD}\n`, { mode: 0o600 });
    const viaFile = await openSource(pg, { user: SECURED_ROLE, passwordFile: passfile });
    expect((await viaFile.listDatabases()).map((d) => d.name)).toContain('postgres');
  });

  it('reports a stopped server as UNAVAILABLE (retryable) at once', async () => {
    const down = await openSource(pg, { port: await freePort() });
    const started = performance.now();
    const error = await expectCode(down.listDatabases(), 'UNAVAILABLE');
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(/Connection refused/);
    await expectCode(down.read('postgres', 'backup'), 'UNAVAILABLE');
    await expectCode(down.read(SERVER_UNIT, 'snapshot'), 'UNAVAILABLE');
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it('gives up on a server that accepts connections but never answers, after connectTimeoutSeconds', async () => {
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => sockets.add(socket));
    const port = await freePort();
    await new Promise<void>((resolve) => silent.listen(port, '127.0.0.1', resolve));
    try {
      const stuck = await openSource(pg, { port, connectTimeoutSeconds: 1 });
      const started = performance.now();
      const error = await expectCode(stuck.listDatabases(), 'UNAVAILABLE');
      expect(error.message).toMatch(/timeout expired/);
      expect(performance.now() - started).toBeLessThan(5000);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('names the missing tool and binDir when the client tools are not there', async () => {
    const missing = await openSource(pg, { binDir: '/nonexistent/postgresql/bin' });
    const error = await expectCode(missing.listDatabases(), 'NOT_FOUND');
    expect(error.message).toMatch(/psql not found: \/nonexistent\/postgresql\/bin\/psql does not exist \(check binDir/);
    await expectCode(missing.read('postgres', 'backup'), 'NOT_FOUND');
  });

  it('stops pg_dump when the run is cancelled, leaving no session behind', async () => {
    await pg.psql('CREATE DATABASE cancel_me');
    await pg.tool('pgbench', ['-i', '-q', '-s', '3', 'cancel_me']);
    const source = await openSource(pg);
    const controller = new AbortController();
    const reading = await source.read('cancel_me', 'backup', controller.signal);
    const seen: string[] = [];
    const consumed = (async () => {
      for await (const file of reading.files) {
        seen.push(file.name);
        for await (const _ of file.stream) {
          if (file.name === 'dump.sql') controller.abort();
        }
      }
    })();
    await expectCode(consumed, 'CANCELLED');
    await reading.close();
    expect(seen).toEqual(['globals.json', 'dump.sql']);
    // pg_dump's session ends once the tool is gone.
    const deadline = performance.now() + 5000;
    let sessions = '1';
    while (performance.now() < deadline) {
      sessions = (await pg.psql("SELECT count(*) FROM pg_stat_activity WHERE datname = 'cancel_me'")).trim();
      if (sessions === '0') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(sessions).toBe('0');
  });
});
