// The postgres source's config and tool runner on their own, with fake tools (shell scripts) where a real
// server cannot show the case: every bad config field at once, secrets kept out of configs, commands and
// messages, the mapping of tool messages to typed errors, and tools that fail mid-stream, hang or are
// cancelled.

import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BackupdError, ValidationError } from '../../src/errors.js';
import { connectionEnv, parsePostgresConfig, redactPostgresConfig } from '../../src/sources/postgres-config.js';
import { PgTools, resolveBinDir, toolError } from '../../src/sources/postgres-tools.js';
import { tempDir } from '../harness/process.js';
import { expectCode } from './postgres-support.js';

let bin: { path: string; remove: () => void };
beforeAll(() => {
  bin = tempDir('pg-fake-tools');
});
afterAll(() => bin?.remove());

/** A fake tool: a shell script in the fake bin folder. */
function fakeTool(name: string, script: string): void {
  const path = join(bin.path, name);
  writeFileSync(path, `#!/bin/sh\n${script}\n`);
  chmodSync(path, 0o755);
}

/** True while `pid` runs; a zombie (exited, not yet reaped: some containers' PID 1 never reaps) has stopped. */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false; // gone between the two looks
  }
}

describe('postgres source config', () => {
  it('fills in defaults', () => {
    expect(parsePostgresConfig({}, 'c')).toEqual({
      host: 'localhost',
      port: 5432,
      user: 'postgres',
      exclude: [],
      connectTimeoutSeconds: 10,
      lockWaitTimeoutSeconds: 300,
      checkpoint: 'fast',
      maintenanceDatabase: 'postgres',
      snapshotReader: 'auto',
    });
  });

  it('reports every bad field at once, with its path', () => {
    let problems: { path: string; message: string }[] = [];
    try {
      parsePostgresConfig(
        {
          port: '5432',
          sslmode: 'sometimes',
          password: 'p',
          passwordFile: '/etc/pgpass',
          sslcert: '/c.pem',
          binDir: 'relative/bin',
          include: [],
          exclude: ['../x'],
          checkpoint: 'now',
          colour: 'blue',
        },
        'sources[0].config',
      );
    } catch (error) {
      expect(error).toBeInstanceOf(ValidationError);
      problems = (error as ValidationError).problems;
    }
    const paths = [...new Set(problems.map((p) => p.path))].sort();
    expect(paths).toEqual(
      [
        'sources[0].config',
        'sources[0].config.binDir',
        'sources[0].config.checkpoint',
        'sources[0].config.exclude[0]',
        'sources[0].config.include',
        'sources[0].config.port',
        'sources[0].config.sslmode',
      ].sort(),
    );
    expect(problems.find((p) => p.path === 'sources[0].config')?.message).toMatch(/unknown field.*colour/);
  });

  it('checks fields that go together once the fields themselves are valid', () => {
    const problems = (() => {
      try {
        parsePostgresConfig({ password: 'p', passwordFile: '/etc/pgpass', sslcert: '/c.pem' }, 'c');
      } catch (error) {
        return (error as ValidationError).problems;
      }
      return [];
    })();
    expect(problems).toEqual([
      { path: 'c.passwordFile', message: 'give password or passwordFile, not both' },
      { path: 'c.sslkey', message: 'sslcert and sslkey go together' },
    ]);
  });

  it('masks the password when printed, and passes it to the tools only in their environment', () => {
    const config = parsePostgresConfig(
      { host: 'db.internal', password: 'hunter2-secret', sslmode: 'verify-full' },
      'c',
    );
    expect(JSON.stringify(redactPostgresConfig(config))).not.toContain('hunter2-secret');
    expect(redactPostgresConfig(config).password).toBe('***');
    const previous = process.env.PGDATABASE;
    process.env.PGDATABASE = 'not-from-here';
    try {
      const env = connectionEnv(config);
      expect(env).toMatchObject({
        PGHOST: 'db.internal',
        PGPORT: '5432',
        PGUSER: 'postgres',
        PGPASSWORD: 'hunter2-secret',
        PGSSLMODE: 'verify-full',
        PGCONNECT_TIMEOUT: '10',
      });
      expect(env.PGDATABASE).toBeUndefined(); // the caller's own PG* variables do not leak in
    } finally {
      if (previous === undefined) delete process.env.PGDATABASE;
      else process.env.PGDATABASE = previous;
    }
  });

  it('finds the newest /usr/lib/postgresql/<version>/bin unless binDir is given', () => {
    expect(resolveBinDir('/opt/pg/bin')).toBe('/opt/pg/bin');
    const found = resolveBinDir(undefined);
    if (found !== undefined) expect(found).toMatch(/^\/usr\/lib\/postgresql\/\d+(\.\d+)?\/bin$/);
  });
});

describe('postgres tool errors, mapped', () => {
  const cases: [string, string][] = [
    [
      'PERMISSION_DENIED',
      'psql: error: connection to server at "db" (10.0.0.5), port 5432 failed: FATAL:  password authentication failed for user "app"',
    ],
    ['PERMISSION_DENIED', 'pg_dump: error: query failed: ERROR:  permission denied for table secrets'],
    [
      'PERMISSION_DENIED',
      'psql: error: connection to server at "db", port 5432 failed: FATAL:  role "ghost" does not exist',
    ],
    [
      'NOT_FOUND',
      'pg_dump: error: connection to server at "db", port 5432 failed: FATAL:  database "gone" does not exist',
    ],
    [
      'UNAVAILABLE',
      'psql: error: connection to server at "127.0.0.1", port 1 failed: Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?',
    ],
    ['UNAVAILABLE', 'psql: error: connection to server at "10.9.9.9", port 5432 failed: timeout expired'],
    [
      'UNAVAILABLE',
      'pg_basebackup: error: connection to server at "db" failed: FATAL:  the database system is starting up',
    ],
    [
      'SOURCE_FAILED',
      'pg_dump: error: aborting because of server version mismatch\npg_dump: detail: server version: 17.2; pg_dump version: 15.18',
    ],
    ['SOURCE_FAILED', 'psql:<stdin>:12: ERROR:  syntax error at or near "TABEL"'],
  ];
  it.each(cases)('%s for: %s', (code, stderr) => {
    const error = toolError('pg_dump', 'doing it', stderr, 1, null);
    expect(error.code).toBe(code);
    // The tool's own words, on one line.
    expect(error.message).toContain(stderr.split('\n')[0]!.trim());
    expect(error.message).not.toContain('\n');
  });

  it('says to use newer client tools on a version mismatch', () => {
    const error = toolError(
      'pg_dump',
      'pg_dump of database app',
      'pg_dump: error: aborting because of server version mismatch',
      1,
      null,
    );
    expect(error.message).toMatch(/client tools at least as new as the server \(binDir\)/);
  });
});

describe('postgres tool runner', () => {
  let tools: PgTools;
  beforeAll(() => {
    tools = new PgTools(bin.path, { ...process.env });
  });

  it('fails a stream whose tool exits non-zero after writing, instead of ending it cleanly', async () => {
    fakeTool(
      'pg_dump',
      "printf 'CREATE TABLE t ();\\nCOPY t FROM stdin;\\n'; echo 'pg_dump: error: Dumping the contents of table \"t\" failed: server closed the connection unexpectedly' >&2; exit 1",
    );
    const { stream } = tools.stream('pg_dump', [], { what: 'pg_dump of database app' });
    const received: Buffer[] = [];
    const error = await expectCode(
      (async () => {
        for await (const part of stream) received.push(part as Buffer);
      })(),
      'UNAVAILABLE',
    );
    expect(Buffer.concat(received).toString()).toContain('COPY t FROM stdin');
    expect(error.message).toMatch(/^pg_dump of database app: pg_dump: error: Dumping the contents of table "t" failed/);
  });

  it('stops a hanging tool and everything it started when the run is cancelled', async () => {
    const pids = join(bin.path, 'pids');
    // A tool that forks a helper (as pg_basebackup forks its WAL streamer) and then hangs.
    fakeTool('pg_basebackup', `sleep 600 & echo "$$ $!" > ${pids}; wait`);
    const controller = new AbortController();
    const running = tools.run('pg_basebackup', [], { what: 'pg_basebackup of the server', signal: controller.signal });
    for (let i = 0; i < 100; i++) {
      try {
        if (readFileSync(pids, 'utf8').trim().includes(' ')) break;
      } catch {
        // not written yet
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    const [tool, helper] = readFileSync(pids, 'utf8').trim().split(' ').map(Number);
    const started = Date.now();
    controller.abort();
    await expectCode(running, 'CANCELLED');
    expect(Date.now() - started).toBeLessThan(3000);
    for (let i = 0; i < 50 && (isRunning(tool!) || isRunning(helper!)); i++)
      await new Promise((r) => setTimeout(r, 20));
    expect(isRunning(tool!)).toBe(false);
    expect(isRunning(helper!)).toBe(false);
  });

  it('gives up on a tool past its timeout with TIMEOUT', async () => {
    fakeTool('psql', 'sleep 600');
    const started = Date.now();
    const error = await expectCode(
      tools.run('psql', [], { what: 'listing PostgreSQL databases', timeoutMs: 300 }),
      'TIMEOUT',
    );
    expect(error.retryable).toBe(true);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('reports the input stream failure, not the tool, when the restore input breaks', async () => {
    fakeTool('psql', 'cat > /dev/null');
    const input = Readable.from(
      (async function* () {
        yield Buffer.from('SELECT 1;\n');
        throw new BackupdError('PACK_CORRUPT', 'chunk at byte 42 of pack abc is corrupt');
      })(),
    );
    await expectCode(tools.run('psql', [], { what: 'loading the dump', input }), 'PACK_CORRUPT');
  });

  it('reports the tool failure when the tool stops reading and fails while input still flows', async () => {
    fakeTool(
      'psql',
      'head -c 1000 > /dev/null; echo \'psql:<stdin>:3: ERROR:  relation "t" already exists\' >&2; exit 3',
    );
    const input = Readable.from(
      (async function* () {
        for (let i = 0; i < 400; i++) yield Buffer.alloc(64 << 10, 0x41);
      })(),
    );
    const error = await expectCode(tools.run('psql', [], { what: 'loading the dump', input }), 'SOURCE_FAILED');
    expect(error.message).toBe('loading the dump: psql:<stdin>:3: ERROR:  relation "t" already exists');
  });

  it('fails when the input ends early without an error, even if the tool is content with what it got', async () => {
    fakeTool('psql', 'cat > /dev/null');
    const input = new Readable({ read() {} });
    input.push(Buffer.from('SELECT 1;\n'));
    setTimeout(() => input.destroy(), 50); // closed without an error and without its end
    const error = await expectCode(tools.run('psql', [], { what: 'loading the dump', input }), 'SOURCE_FAILED');
    expect(error.message).toMatch(/^loading the dump: reading the backup failed: Premature close/);
  });

  it('names a tool that is not there', async () => {
    const error = await expectCode(tools.run('pg_verifybackup', [], { what: 'checking' }), 'NOT_FOUND');
    expect(error.message).toContain(`${join(bin.path, 'pg_verifybackup')} does not exist (check binDir`);
  });
});
