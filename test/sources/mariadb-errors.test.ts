// The mariadb source's config and failures against a real MariaDB server started for this file: every
// bad config field at once, passwords from the config, a file or an environment variable (never in a
// message), access denied as PERMISSION_DENIED, an unreachable server as UNAVAILABLE, a missing client
// tool as NOT_FOUND, a restore the user may not do leaving nothing, the Unix socket, TLS (a second server
// that requires it), and the accounts a backup keeps when the operator asks for grants.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../../src/backup/backup.js';
import { restoreBackup } from '../../src/backup/restore.js';
import { ValidationError } from '../../src/errors.js';
import { mariadb } from '../../src/sources/mariadb.js';
import type { Source } from '../../src/sources/source.js';
import { LocalDestination } from '../../src/uploader/local.js';
import { selfSignedCertificate } from '../harness/certificate.js';
import { type MariadbServer, startMariadb } from '../harness/mariadb.js';
import { freePort, tempDir } from '../harness/process.js';
import { databaseExists, leftovers, openSource } from './mariadb-fixture.js';
import { asRestoreInput, capture, expectCode } from './postgres-support.js';

const PASSWORD = 'pw-Secr3t-never-shown';

let db: MariadbServer;
let work: { path: string; remove: () => void };
beforeAll(async () => {
  work = tempDir('mariadb-errors');
  db = await startMariadb();
  await db.sql(`CREATE DATABASE shop; CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(20));
    INSERT INTO shop.items VALUES (1, 'one'), (2, 'two');
    CREATE USER 'reader'@'%' IDENTIFIED BY '${PASSWORD}'; GRANT SELECT, SHOW VIEW, TRIGGER, EVENT ON shop.* TO 'reader'@'%';
    CREATE PROCEDURE shop.restock(IN n INT) UPDATE shop.items SET id = id WHERE id = n;`);
}, 60_000);
afterAll(async () => {
  await db?.stop();
  work?.remove();
}, 30_000);

function open(config: Record<string, unknown>): Promise<Source> {
  return mariadb.open('maria', mariadb.parseConfig(config, 'source.config'));
}

describe('mariadb source config', () => {
  it('reports every bad field at once and masks the password', () => {
    let error: unknown;
    try {
      mariadb.parseConfig(
        {
          socket: 'relative.sock',
          host: 'db1',
          port: 70000,
          password: 'x',
          passwordFile: '/etc/pw',
          tls: { cert: '/c.pem' },
          include: [],
          exclude: ['../x'],
          grants: 'yes',
          colour: 'blue',
        },
        'sources[0].config',
      );
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ValidationError);
    const paths = (error as ValidationError).problems.map((p) => p.path).sort();
    expect(paths).toEqual(
      expect.arrayContaining([
        'sources[0].config',
        'sources[0].config.socket',
        'sources[0].config.port',
        'sources[0].config.include',
        'sources[0].config.exclude[0]',
        'sources[0].config.grants',
      ]),
    );
    // The cross-field rules are told too, once the fields themselves are valid.
    const crossed = (() => {
      try {
        mariadb.parseConfig(
          { socket: '/run/s.sock', host: 'db1', password: 'x', passwordEnv: 'PW', tls: { cert: '/c.pem' } },
          'c',
        );
      } catch (e) {
        return (e as ValidationError).problems.map((p) => `${p.path}: ${p.message}`);
      }
      return [];
    })();
    expect(crossed).toEqual(
      expect.arrayContaining([
        'c.host: give socket or host, not both',
        'c.passwordEnv: give one of password, passwordFile, passwordEnv',
        'c.tls.key: cert and key go together',
      ]),
    );
    const config = mariadb.parseConfig({ password: PASSWORD }, 'c');
    expect(JSON.stringify(mariadb.redact(config))).not.toContain(PASSWORD);
    expect(config).toMatchObject({ host: 'localhost', port: 3306, user: 'root', grants: false });
  });
});

describe('mariadb source failures', { timeout: 60_000 }, () => {
  it('takes the password from the config, a file or a variable; a wrong one is PERMISSION_DENIED, never shown', async () => {
    const file = join(work.path, 'password');
    writeFileSync(file, `${PASSWORD}\n`, { mode: 0o600 });
    process.env.BACKUPD_TEST_MARIADB_PW = PASSWORD;
    try {
      for (const how of [{ password: PASSWORD }, { passwordFile: file }, { passwordEnv: 'BACKUPD_TEST_MARIADB_PW' }]) {
        const source = await open(db.sourceConfig({ user: 'reader', ...how }));
        expect((await source.listDatabases()).map((d) => d.name)).toEqual(['shop']);
      }
      const wrong = await expectCode(
        (await open(db.sourceConfig({ user: 'reader', password: 'not-it' }))).listDatabases(),
        'PERMISSION_DENIED',
      );
      expect(wrong.message).toMatch(/Access denied for user 'reader'/);
      expect(wrong.message).not.toContain('not-it');
      delete process.env.BACKUPD_TEST_MARIADB_PW;
      const unset = await expectCode(
        (await open(db.sourceConfig({ user: 'reader', passwordEnv: 'BACKUPD_TEST_MARIADB_PW' }))).listDatabases(),
        'PERMISSION_DENIED',
      );
      expect(unset.message).toMatch(/BACKUPD_TEST_MARIADB_PW is not set/);
    } finally {
      delete process.env.BACKUPD_TEST_MARIADB_PW;
    }
  });

  it('refuses a backup that would silently lose the routines (no SELECT on mysql.proc)', async () => {
    await db.sql("REVOKE SELECT ON mysql.proc FROM 'reader'@'%';").catch(() => undefined);
    const reader = await open(db.sourceConfig({ user: 'reader', password: PASSWORD }));
    const error = await expectCode(reader.read('shop', 'backup'), 'PERMISSION_DENIED');
    expect(error.message).toMatch(/GRANT SELECT ON mysql\.proc/);
  });

  it('reads through the Unix socket, and a reader may back up but not restore (nothing left)', async () => {
    await db.sql("GRANT SELECT ON mysql.proc TO 'reader'@'%';");
    const viaSocket = await open({ socket: db.socket, user: 'reader', password: PASSWORD });
    const repo = join(work.path, 'repo-reader');
    const ref = { cluster: 'test', source: 'maria', database: 'shop' };
    const full = await runBackup({
      ref,
      source: viaSocket,
      type: 'backup',
      level: 'full',
      destinations: [new LocalDestination('disk', repo)],
      stagingDir: join(work.path, 'staging'),
      node: 'n1',
      task: 't',
    });
    const restore = (source: Source, target: string) =>
      restoreBackup({
        ref,
        source,
        from: new LocalDestination('disk', repo),
        chainId: full.chainId,
        backupId: full.backupId,
        target,
        cacheDir: join(work.path, 'cache'),
      });
    const denied = await expectCode(restore(viaSocket, 'shop_copy'), 'PERMISSION_DENIED');
    expect(denied.message).toMatch(/Access denied/);
    expect(await databaseExists(db, 'shop_copy')).toBe(false);
    expect(await leftovers(db)).toEqual([]);
    // The same backup restores as root, and the copy holds the rows.
    const location = (await restore(await openSource(db), 'shop_copy')).location;
    expect(location).toBe(`mariadb://root@127.0.0.1:${db.port}/shop_copy`);
    expect(await db.sql('SELECT id, name FROM items ORDER BY id', 'shop_copy')).toBe('1\tone\n2\ttwo\n');
    // The reader's backup kept the procedure (it may read mysql.proc).
    expect(
      await db.sql("SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = 'shop_copy'"),
    ).toBe('restock\n');
  });

  it('maps an unreachable server to UNAVAILABLE and a missing client tool to NOT_FOUND', async () => {
    const closed = await open({ host: '127.0.0.1', port: await freePort(), connectTimeoutSeconds: 2 });
    const unreachable = await expectCode(closed.listDatabases(), 'UNAVAILABLE');
    expect(unreachable.message).toMatch(/Can't connect/);
    expect(unreachable.retryable).toBe(true);
    const noTools = await open(db.sourceConfig({ binDir: join(work.path, 'no-such-bin') }));
    const missing = await expectCode(noTools.listDatabases(), 'NOT_FOUND');
    expect(missing.message).toMatch(/MariaDB client tool mariadb not found/);
  });

  it('keeps the accounts the database needs when asked, and creates the missing ones locked on restore', async () => {
    await db.sql(`CREATE DATABASE app; CREATE USER 'app'@'10.%' IDENTIFIED BY '${PASSWORD}';
      GRANT SELECT, INSERT, CREATE TEMPORARY TABLES ON app.* TO 'app'@'10.%';
      CREATE USER 'auditor'@'%'; GRANT SELECT ON app.* TO 'auditor'@'%' WITH GRANT OPTION;`);
    await db.sql(
      `CREATE TABLE orders (id INT PRIMARY KEY, total DECIMAL(10,2)); INSERT INTO orders VALUES (1, 9.5);
       GRANT UPDATE (total) ON app.orders TO 'auditor'@'%';
       GRANT DELETE ON app.orders TO 'app'@'10.%';
       CREATE DEFINER = 'app'@'10.%' SQL SECURITY DEFINER VIEW big AS SELECT * FROM orders WHERE total > 5;`,
      'app',
    );
    const source = await openSource(db, { grants: true });
    const repo = join(work.path, 'repo-grants');
    const ref = { cluster: 'test', source: 'maria', database: 'app' };
    const full = await runBackup({
      ref,
      source,
      type: 'backup',
      level: 'full',
      destinations: [new LocalDestination('disk', repo)],
      stagingDir: join(work.path, 'staging'),
      node: 'n1',
      task: 't',
    });
    await db.sql("DROP USER 'app'@'10.%';");
    const restored = await restoreBackup({
      ref,
      source,
      from: new LocalDestination('disk', repo),
      chainId: full.chainId,
      backupId: full.backupId,
      target: 'app_copy',
      cacheDir: join(work.path, 'cache'),
    });
    expect(restored.note).toMatch(/Created account\(s\) 'app'@'10\.%'.*locked and without a password/);
    const grants = async (account: string) =>
      (await db.sql(`SHOW GRANTS FOR ${account}`)).split('\n').filter((l) => l.includes('app_copy'));
    expect(await grants("'app'@'10.%'")).toEqual([
      'GRANT SELECT, INSERT, CREATE TEMPORARY TABLES ON `app_copy`.* TO `app`@`10.%`',
      'GRANT DELETE ON `app_copy`.`orders` TO `app`@`10.%`',
    ]);
    expect(await grants("'auditor'@'%'")).toEqual(['GRANT SELECT ON `app_copy`.* TO `auditor`@`%` WITH GRANT OPTION']);
    const created = (
      await db.sql(
        "SELECT JSON_VALUE(Priv, '$.account_locked'), JSON_VALUE(Priv, '$.authentication_string') FROM mysql.global_priv WHERE User = 'app'",
      )
    ).replace(/\n$/, '');
    // Locked, and no password (an empty authentication string): nobody logs in as it until told to.
    expect(created).toBe('1\t');
    // The view runs as its definer on the copy.
    expect(await db.sql('SELECT id FROM big', 'app_copy')).toBe('1\n');

    // A restore that fails after it created accounts takes them back with the database.
    await db.sql("DROP USER 'app'@'10.%';");
    const files = await capture(source, 'app', 'backup');
    await expectCode(
      source.restore(asRestoreInput(files, 'dump.sql'), { target: 'app_cut', type: 'backup' }),
      'SOURCE_FAILED',
    );
    expect(await databaseExists(db, 'app_cut')).toBe(false);
    expect((await db.sql("SELECT COUNT(*) FROM mysql.user WHERE User = 'app'")).trim()).toBe('0');
    expect(await leftovers(db)).toEqual([]);
  });

  it('connects with TLS to a server that requires it, checking its certificate', async () => {
    const certs = selfSignedCertificate(work.path);
    const secure = await startMariadb({
      serverArgs: [`--ssl-cert=${certs.cert}`, `--ssl-key=${certs.key}`, '--require-secure-transport=ON'],
    });
    try {
      // The server only takes encrypted connections: that the source connects at all means TLS.
      const tls = await open(secure.sourceConfig({ tls: { ca: certs.cert } }));
      expect(await tls.listDatabases()).toEqual([]);
      // The certificate is checked: another CA's is refused.
      const otherDir = join(work.path, 'other-ca');
      mkdirSync(otherDir);
      const other = selfSignedCertificate(otherDir);
      const untrusted = await open(secure.sourceConfig({ tls: { ca: other.cert } }));
      const refused = await expectCode(untrusted.listDatabases(), 'SOURCE_FAILED');
      expect(refused.message).toMatch(/certificate|SSL|TLS/i);
      const unverified = await open(secure.sourceConfig({ tls: { verifyServerCert: false } }));
      expect(await unverified.listDatabases()).toEqual([]);
    } finally {
      await secure.stop();
    }
  });
});
