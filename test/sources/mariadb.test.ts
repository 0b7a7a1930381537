// The mariadb engine against a real MariaDB server started for this file: the source conformance suite,
// database listing (system schemas out, databases created later in), the corpus of real-world features
// restored on the same and on another server and judged by the servers (CHECKSUM TABLE, SHOW CREATE,
// mariadb-dump), and a backup under a concurrent writer whose ledger always sums to zero.

import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../../src/backup/backup.js';
import { restoreBackup } from '../../src/backup/restore.js';
import type { Source } from '../../src/sources/source.js';
import { LocalDestination } from '../../src/uploader/local.js';
import { type MariadbServer, startMariadb } from '../harness/mariadb.js';
import { tempDir } from '../harness/process.js';
import { describeSourceConformance } from './conformance.js';
import {
  CHANGE_SQL,
  createFixtureDatabase,
  databaseExists,
  dumpOf,
  fingerprint,
  leftovers,
  openSource,
} from './mariadb-fixture.js';

// One server for the whole file, started by the first block that needs it.
let started: Promise<MariadbServer> | undefined;
function server(): Promise<MariadbServer> {
  started ??= startMariadb();
  return started;
}
afterAll(async () => {
  await (await started?.catch(() => undefined))?.stop();
}, 30_000);

describeSourceConformance('mariadb', async () => {
  const db = await server();
  const source = await openSource(db);
  return {
    source,
    createDatabase: (name) => createFixtureDatabase(db, name),
    changeDatabase: async (name) => {
      await db.sql(CHANGE_SQL, name);
    },
    fingerprint: (name) => fingerprint(db, name),
    exists: (name) => databaseExists(db, name),
    leftovers: () => leftovers(db),
    teardown: () => source.close(),
  };
});

describe('mariadb source', { timeout: 120_000 }, () => {
  let db: MariadbServer;
  let source: Source;
  let work: { path: string; remove: () => void };
  let repos = 0;
  beforeAll(async () => {
    work = tempDir('mariadb-source');
    db = await server();
    source = await openSource(db);
  }, 60_000);
  afterAll(() => work?.remove());

  function common(database: string, from: Source = source) {
    repos += 1;
    return {
      ref: { cluster: 'test', source: from.name, database },
      source: from,
      type: 'backup' as const,
      level: 'full' as const,
      destinations: [new LocalDestination('disk', join(work.path, `repo${repos}`))],
      stagingDir: join(work.path, 'staging'),
      node: 'n1',
      task: 'mariadb',
    };
  }

  it('lists every database but the system schemas, narrowed by include and exclude; one created later appears', async () => {
    await db.sql('CREATE DATABASE list_a; CREATE DATABASE list_b; CREATE DATABASE `Not Safe`;');
    const names = (await source.listDatabases()).map((d) => d.name);
    expect(names).toEqual(expect.arrayContaining(['list_a', 'list_b']));
    for (const absent of ['mysql', 'information_schema', 'performance_schema', 'sys', 'Not Safe']) {
      expect(names).not.toContain(absent);
    }
    expect(await source.listLeftOut!()).toEqual([expect.objectContaining({ name: 'Not Safe' })]);
    // A database created after the first listing is in the next one (server-wide tasks follow the list).
    await db.sql('CREATE DATABASE list_later;');
    expect((await source.listDatabases()).map((d) => d.name)).toContain('list_later');

    const narrowed = await openSource(db, { include: ['list_a', 'list_b', 'list_later'], exclude: ['list_b'] });
    expect((await narrowed.listDatabases()).map((d) => d.name)).toEqual(['list_a', 'list_later']);
  });

  it('restores the corpus (latin1, a name that needs quoting, every feature) on the same and on another server', async () => {
    // Names with '-' and '.' must be quoted in every statement that names them.
    await createFixtureDatabase(db, 'corpus-utf8.v1');
    await createFixtureDatabase(db, 'corpus-latin1', 'latin1');
    await db.sql(
      "CREATE TABLE western (id INT PRIMARY KEY, name VARCHAR(40)) CHARACTER SET latin1; INSERT INTO western VALUES (1, 'café crème'), (2, 'Øresund ß');",
      'corpus-latin1',
    );
    const other = await startMariadb();
    try {
      const otherSource = await openSource(other);
      for (const database of ['corpus-utf8.v1', 'corpus-latin1']) {
        const setup = common(database);
        const before = await fingerprint(db, database);
        expect(Object.keys(before).filter((k) => k.startsWith('table ')).length).toBeGreaterThan(45);
        const full = await runBackup(setup);
        for (const [into, target] of [
          [source, `${database}-same`],
          [otherSource, database],
        ] as const) {
          const restored = await restoreBackup({
            ref: setup.ref,
            source: into,
            from: setup.destinations[0]!,
            chainId: full.chainId,
            backupId: full.backupId,
            target,
            cacheDir: join(work.path, 'cache'),
          });
          expect(restored.location).toContain(target);
          const judge = into === source ? db : other;
          expect(await fingerprint(judge, target)).toEqual(before);
        }
        // The independent judge, whole: the restore on the other server dumps to the very same bytes.
        expect(await dumpOf(other, database)).toBe(await dumpOf(db, database));
      }
      expect(await other.sql('SELECT name FROM western ORDER BY id', 'corpus-latin1')).toBe('café crème\nØresund ß\n');
      expect(
        await other.sql(
          "SELECT DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'corpus-latin1'",
        ),
      ).toBe('latin1\n');
      // The restored objects work: the procedure, function, trigger and generated columns run on the copy.
      await other.sql(
        'CALL transfer(1, 2, 10.5); INSERT INTO ledger (account_id, amount) VALUES (3, 1);',
        'corpus-utf8.v1',
      );
      expect(
        await other.sql(
          'SELECT balance_of(2), (SELECT COUNT(*) FROM audit), (SELECT total FROM generated WHERE id = 6)',
          'corpus-utf8.v1',
        ),
      ).toBe(`${(2 * 12.5 + 10.5).toFixed(4)}\t1\t45.00\n`);
    } finally {
      await other.stop();
    }
  });

  it('takes a consistent backup while a client moves money: the restored ledger sums to zero', async () => {
    await db.sql('CREATE DATABASE bank;');
    await db.sql(
      `CREATE TABLE bank.accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB;
      CREATE TABLE bank.ledger (id BIGINT AUTO_INCREMENT PRIMARY KEY, account INT NOT NULL, delta BIGINT NOT NULL) ENGINE=InnoDB;
      INSERT INTO bank.accounts SELECT seq, 0 FROM seq_1_to_100;`,
      'bank',
    );
    // The writer: each transaction moves an amount between two accounts and logs both legs; at every
    // commit the balances and the ledger each sum to zero.
    const transfers = Array.from({ length: 2000 }, (_, i) => {
      const from = 1 + ((i * 37) % 100);
      const to = 1 + ((i * 53 + 11) % 100);
      const amount = 1 + (i % 97);
      return `START TRANSACTION;
UPDATE accounts SET balance = balance - ${amount} WHERE id = ${from};
INSERT INTO ledger (account, delta) VALUES (${from}, -${amount});
UPDATE accounts SET balance = balance + ${amount} WHERE id = ${to};
INSERT INTO ledger (account, delta) VALUES (${to}, ${amount});
COMMIT;`;
    });
    let writing = true;
    let rounds = 0;
    // Rounds of 20 transfers (a client run each), so that many commit while one backup runs.
    const writer = (async () => {
      for (let i = 0; writing; i = (i + 20) % transfers.length) {
        await db.sql(transfers.slice(i, i + 20).join('\n'), 'bank');
        rounds += 1;
      }
    })();
    try {
      // Wait until the writer has committed work, so the backups really run while it writes.
      while (rounds === 0) await new Promise((r) => setTimeout(r, 50));
      const setup = common('bank');
      const before = rounds;
      const full = await runBackup(setup);
      const incr = await runBackup({ ...setup, level: 'incr' });
      // Not vacuous: the writer committed while the backups ran.
      expect(rounds).toBeGreaterThan(before);
      writing = false;
      await writer;
      for (const [point, target] of [
        [full, 'bank_full'],
        [incr, 'bank_incr'],
      ] as const) {
        await restoreBackup({
          ref: setup.ref,
          source,
          from: setup.destinations[0]!,
          chainId: point.chainId,
          backupId: point.backupId,
          target,
          cacheDir: join(work.path, 'cache'),
        });
        const [balances, ledger, accounts, entries] = (
          await db.sql(
            'SELECT (SELECT SUM(balance) FROM accounts), (SELECT SUM(delta) FROM ledger), (SELECT COUNT(*) FROM accounts), (SELECT COUNT(*) FROM ledger)',
            target,
          )
        )
          .trim()
          .split('\t');
        expect(balances, target).toBe('0');
        expect(ledger, target).toBe('0');
        expect(accounts).toBe('100');
        // Not vacuous: the copy holds transfers, and only whole ones (two legs each).
        expect(Number(entries)).toBeGreaterThan(0);
        expect(Number(entries) % 2).toBe(0);
      }
    } finally {
      writing = false;
      await writer.catch(() => undefined);
    }
  });
});
