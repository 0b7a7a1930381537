// Server snapshots of the mariadb engine against a real MariaDB server: a snapshot taken while a client
// moves money restores into a new data directory that a mariadbd starts on, with the ledger summing to
// zero; an incremental picks up a database created after the full and a change, and restores to the
// same content (judged by the restored server: CHECKSUM TABLE, SHOW CREATE, mariadb-dump). The bytes an
// incremental stores are logged beside those of mariadb-backup's own incremental for the same change.
// mariadb-backup's own incrementals (taken from the previous snapshot's toLsn) restore as a full plus each
// incremental applied in order, judged by the restored server against the source the same way.

import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../../src/backup/backup.js';
import { KeyRing, loadManifest } from '../../src/backup/chain.js';
import { restoreBackup } from '../../src/backup/restore.js';
import { mariadb } from '../../src/sources/mariadb.js';
import {
  incrementalFile,
  parseCheckpoints,
  readSnapshot,
  type SnapshotCheckpoints,
  snapshotHostProblem,
} from '../../src/sources/mariadb-backup.js';
import { MariadbClient } from '../../src/sources/mariadb-client.js';
import { SERVER_UNIT, type Source } from '../../src/sources/source.js';
import { LocalDestination } from '../../src/uploader/local.js';
import { type MariadbServer, startMariadb } from '../harness/mariadb.js';
import { tempDir } from '../harness/process.js';
import { CHANGE_SQL, createFixtureDatabase, fingerprint, openSource } from './mariadb-fixture.js';
import { asRestoreInput, type CapturedFile, capture, expectCode } from './postgres-support.js';

let db: MariadbServer;
let source: Source;
let work: { path: string; remove: () => void };
beforeAll(async () => {
  work = tempDir('mariadb-snapshot');
  db = await startMariadb();
  source = await openSource(db, { restoreDir: join(work.path, 'restores'), tempDir: join(work.path, 'spool') });
  await createFixtureDatabase(db, 'shop');
  await db.sql('CREATE DATABASE bank;');
  await db.sql(
    `CREATE TABLE accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB;
     CREATE TABLE ledger (id BIGINT AUTO_INCREMENT PRIMARY KEY, account INT NOT NULL, delta BIGINT NOT NULL) ENGINE=InnoDB;
     INSERT INTO accounts SELECT seq, 0 FROM seq_1_to_100;`,
    'bank',
  );
}, 60_000);
afterAll(async () => {
  await db?.stop();
  work?.remove();
}, 30_000);

let repos = 0;
function setup() {
  repos += 1;
  const repo = join(work.path, `repo${repos}`);
  return {
    ref: { cluster: 'test', source: source.name, database: SERVER_UNIT },
    source,
    type: 'snapshot' as const,
    level: 'full' as const,
    destinations: [new LocalDestination('disk', repo)],
    stagingDir: join(work.path, 'staging'),
    node: 'n1',
    task: 'snap',
  };
}

async function restoreAndStart(
  common: ReturnType<typeof setup>,
  point: { chainId: string; backupId: string },
  target: string,
): Promise<MariadbServer> {
  const restored = await restoreBackup({
    ref: common.ref,
    source,
    from: common.destinations[0]!,
    chainId: point.chainId,
    backupId: point.backupId,
    target,
    cacheDir: join(work.path, 'cache'),
  });
  expect(restored.location).toBe(join(work.path, 'restores', target));
  expect(restored.note).toMatch(/mariadbd --datadir=/);
  return startMariadb({ dataDir: restored.location });
}

async function ledgerSums(server: MariadbServer): Promise<string[]> {
  return (
    await server.sql(
      'SELECT (SELECT SUM(balance) FROM accounts), (SELECT SUM(delta) FROM ledger), (SELECT COUNT(*) FROM ledger)',
      'bank',
    )
  )
    .trim()
    .split('\t');
}

describe('mariadb snapshot host check', () => {
  it('refuses a snapshot of a server on another host, or whose data directory cannot be read here', () => {
    const server = { hostname: 'db1', datadir: '/var/lib/mysql/' };
    expect(snapshotHostProblem(server, { hostname: 'db1', datadirReadable: true })).toBeUndefined();
    expect(snapshotHostProblem(server, { hostname: 'node7', datadirReadable: true })).toMatch(
      /the server runs on "db1", this node is "node7"/,
    );
    expect(snapshotHostProblem(server, { hostname: 'db1', datadirReadable: false })).toMatch(
      /data directory \/var\/lib\/mysql\/ cannot be read here/,
    );
  });
});

describe('mariadb snapshot checkpoints', () => {
  it("reads mariadb-backup's checkpoints and refuses what is not an LSN, typed", () => {
    const text = 'backup_type = incremental\nfrom_lsn = 48231\nto_lsn = 1995437\nlast_lsn = 1995461\n';
    expect(parseCheckpoints(text)).toEqual({ backupType: 'incremental', fromLsn: '48231', toLsn: '1995437' });
    expect(() => parseCheckpoints('backup_type = full-prepared\nfrom_lsn = 0\nto_lsn = 12\n')).toThrow(
      expect.objectContaining({ code: 'SOURCE_FAILED' }),
    );
    expect(() => parseCheckpoints('backup_type = incremental\nfrom_lsn = 1\n')).toThrow(
      expect.objectContaining({ code: 'SOURCE_FAILED' }),
    );
    const client = new MariadbClient(mariadb.parseConfig(db.sourceConfig(), 'source.config'));
    for (const incrementalLsn of ['', '12; rm -rf /', '-1', '1e9', '123456789012345678901']) {
      expect(() => readSnapshot({ client, serverVersion: '10.11', tempDir: work.path, incrementalLsn })).toThrow(
        expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
      );
    }
  });
});

describe('mariadb snapshots', { timeout: 120_000 }, () => {
  it('are server-wide: a snapshot taken while a client writes restores into a data directory mariadbd starts on', async () => {
    const transfers = Array.from({ length: 2000 }, (_, i) => {
      const amount = 1 + (i % 97);
      const from = 1 + ((i * 37) % 100);
      const to = 1 + ((i * 53 + 11) % 100);
      return `START TRANSACTION; UPDATE accounts SET balance = balance - ${amount} WHERE id = ${from};
INSERT INTO ledger (account, delta) VALUES (${from}, -${amount});
UPDATE accounts SET balance = balance + ${amount} WHERE id = ${to};
INSERT INTO ledger (account, delta) VALUES (${to}, ${amount}); COMMIT;`;
    });
    let writing = true;
    let rounds = 0;
    const writer = (async () => {
      for (let i = 0; writing; i = (i + 20) % transfers.length) {
        await db.sql(transfers.slice(i, i + 20).join('\n'), 'bank');
        rounds += 1;
      }
    })();
    const common = setup();
    let full: Awaited<ReturnType<typeof runBackup>>;
    try {
      while (rounds === 0) await new Promise((r) => setTimeout(r, 50));
      const before = rounds;
      full = await runBackup(common);
      expect(rounds, 'the writer committed while the snapshot ran').toBeGreaterThan(before);
    } finally {
      writing = false;
      await writer;
    }
    const copy = await restoreAndStart(common, full, 'under-writes');
    try {
      const [balances, ledger, entries] = await ledgerSums(copy);
      expect(balances).toBe('0');
      expect(ledger).toBe('0');
      expect(Number(entries)).toBeGreaterThan(0);
      expect(Number(entries) % 2).toBe(0);
    } finally {
      await copy.stop();
    }
    // The same target again is refused, and a snapshot of one database is not a thing.
    await expectCode(
      restoreBackup({
        ref: common.ref,
        source,
        from: common.destinations[0]!,
        chainId: full.chainId,
        backupId: full.backupId,
        target: 'under-writes',
        cacheDir: join(work.path, 'cache'),
      }),
      'ALREADY_EXISTS',
    );
    const oneDatabase = await expectCode(source.read('shop', 'snapshot'), 'UNSUPPORTED');
    expect(oneDatabase.message).toMatch(/server-wide/);
  });

  it('fails a restore of a truncated snapshot and leaves no data directory behind', async () => {
    const files = await capture(source, SERVER_UNIT, 'snapshot');
    expect(files.map((f) => f.name)).toEqual(['snapshot.json', 'backup.xbstream']);
    const error = await expectCode(
      source.restore(asRestoreInput(files, 'backup.xbstream'), { target: 'truncated', type: 'snapshot' }),
      'SOURCE_FAILED',
    );
    expect(error.message).toMatch(/backup\.xbstream ended after|mbstream/);
    expect(readdirSync(join(work.path, 'restores')).filter((n) => n.includes('truncated'))).toEqual([]);
  });

  it('stores a change and a database created later as an incremental that restores to the same content', async () => {
    const common = setup();
    const full = await runBackup(common);
    // mariadb-backup's own incremental of the same change, for the figures: its base is taken now.
    const base = join(work.path, 'engine-base');
    const engine = (args: string[]) =>
      execFileSync(
        'mariadb-backup',
        ['--no-defaults', '--user=root', `--socket=${db.socket}`, '--protocol=socket', '--backup', ...args],
        { maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'ignore'] },
      );
    engine([`--target-dir=${base}`]);

    await db.sql(CHANGE_SQL, 'shop');
    await db.sql('CREATE DATABASE later; CREATE TABLE later.notes (id INT PRIMARY KEY, body TEXT);');
    await db.sql("INSERT INTO notes VALUES (1, 'created after the full');", 'later');
    const incr = await runBackup({ ...common, level: 'incr' });
    expect(incr.chainId).toBe(full.chainId);
    expect(incr.storedBytes).toBeLessThan(full.storedBytes);

    const engineIncr = engine([
      `--incremental-basedir=${base}`,
      '--stream=xbstream',
      `--target-dir=${join(work.path, 'engine-incr')}`,
    ]);
    const zstd = spawnSync('zstd', ['-1', '-c'], { input: engineIncr, maxBuffer: 1 << 30 });
    console.log(
      `mariadb snapshot: full stored ${full.storedBytes} B; after the change our incremental stored ${incr.storedBytes} B; ` +
        `mariadb-backup's own incremental: ${engineIncr.length} B raw` +
        (zstd.status === 0 ? `, ${zstd.stdout.length} B with zstd -1` : ' (no zstd here to compress it)'),
    );

    const copy = await restoreAndStart(common, incr, 'after-change');
    try {
      expect(await fingerprint(copy, 'shop')).toEqual(await fingerprint(db, 'shop'));
      expect(await copy.sql('SELECT body FROM notes', 'later')).toBe('created after the full\n');
      expect((await ledgerSums(copy)).slice(0, 2)).toEqual(['0', '0']);
    } finally {
      await copy.stop();
    }
  });

  it("restores a full with mariadb-backup's own incrementals applied in order, into a data directory mariadbd starts on", async () => {
    const client = new MariadbClient(mariadb.parseConfig(db.sourceConfig(), 'source.config'));
    const serverVersion = (await db.sql('SELECT VERSION()')).trim();
    const take = async (
      incrementalLsn?: string,
    ): Promise<{ files: CapturedFile[]; checkpoints: SnapshotCheckpoints }> => {
      const reading = readSnapshot({ client, serverVersion, tempDir: join(work.path, 'spool'), incrementalLsn });
      try {
        const files: CapturedFile[] = [];
        for await (const file of reading.files) {
          const parts: Buffer[] = [];
          for await (const part of file.stream) parts.push(part as Buffer);
          files.push({ name: file.name, data: Buffer.concat(parts) });
        }
        return { files, checkpoints: await reading.checkpoints() };
      } finally {
        await reading.close();
      }
    };
    const xbstream = (taken: { files: CapturedFile[] }) => taken.files.find((f) => f.name === 'backup.xbstream')!.data;

    await db.sql('CREATE DATABASE engine_incr;');
    await db.sql(
      `CREATE TABLE items (id INT PRIMARY KEY, body VARCHAR(200) NOT NULL) ENGINE=InnoDB;
       INSERT INTO items SELECT seq, REPEAT(CHAR(65 + seq % 26), 1 + seq % 150) FROM seq_1_to_20000;`,
      'engine_incr',
    );
    const full = await take();
    expect(full.checkpoints.backupType).toBe('full-backuped');
    await db.sql(
      `UPDATE items SET body = CONCAT('changed once ', id) WHERE id % 100 = 7;
       INSERT INTO items SELECT 20000 + seq, 'added by the first change' FROM seq_1_to_500;
       CREATE TABLE notes (id INT PRIMARY KEY, body TEXT) ENGINE=InnoDB;
       INSERT INTO notes VALUES (1, 'made between the full and the first incremental');`,
      'engine_incr',
    );
    const first = await take(full.checkpoints.toLsn);
    expect(first.checkpoints).toMatchObject({ backupType: 'incremental', fromLsn: full.checkpoints.toLsn });
    await db.sql(
      `UPDATE items SET body = CONCAT('changed twice ', id) WHERE id % 100 = 7 AND id < 10000;
       DELETE FROM items WHERE id % 1000 = 3;
       INSERT INTO notes VALUES (2, 'made between the two incrementals');`,
      'engine_incr',
    );
    await db.sql(
      'UPDATE accounts SET balance = balance + 7 WHERE id = 1; UPDATE accounts SET balance = balance - 7 WHERE id = 2;',
      'bank',
    );
    const second = await take(first.checkpoints.toLsn);
    expect(second.checkpoints).toMatchObject({ backupType: 'incremental', fromLsn: first.checkpoints.toLsn });
    console.log(
      `mariadb-backup's own incrementals: full xbstream ${xbstream(full).length} B, ` +
        `incrementals ${xbstream(first).length} B and ${xbstream(second).length} B`,
    );
    expect(xbstream(first).length).toBeLessThan(xbstream(full).length);
    // A chain whose previous snapshot copied past this server's log (the server was re-created under the
    // same source): the incremental fails, typed, rather than restoring as neither server.
    await expect(take(`${BigInt(second.checkpoints.toLsn) + 10n ** 12n}`)).rejects.toMatchObject({
      code: 'SOURCE_FAILED',
      message: expect.stringContaining('take a full snapshot'),
    });

    const chain = (order: [number, number]): CapturedFile[] => [
      ...full.files,
      { name: incrementalFile(1), data: xbstream([first, second][order[0]]!) },
      { name: incrementalFile(2), data: xbstream([first, second][order[1]]!) },
    ];
    // Named out of order: refused before anything is prepared, nothing left behind.
    const misnamed = [...full.files, { name: incrementalFile(2), data: xbstream(second) }];
    const refused = await expectCode(
      source.restore(asRestoreInput(misnamed), { target: 'engine-misnamed', type: 'snapshot' }),
      'SOURCE_FAILED',
    );
    expect(refused.message).toMatch(/expected incremental-1\.xbstream/);
    // Applied in the wrong order: mariadb-backup refuses (its LSNs do not follow), nothing left behind.
    await expectCode(
      source.restore(asRestoreInput(chain([1, 0])), { target: 'engine-swapped', type: 'snapshot' }),
      'SOURCE_FAILED',
    );
    expect(readdirSync(join(work.path, 'restores')).filter((n) => n.includes('engine-'))).toEqual([]);

    const restored = await source.restore(asRestoreInput(chain([0, 1])), { target: 'engine-chain', type: 'snapshot' });
    expect(readdirSync(join(work.path, 'restores')).filter((n) => n.includes('engine-'))).toEqual(['engine-chain']);
    const copy = await startMariadb({ dataDir: restored.location });
    try {
      for (const name of ['engine_incr', 'bank']) {
        expect(await fingerprint(copy, name), name).toEqual(await fingerprint(db, name));
      }
      expect(await copy.sql('SELECT body FROM notes ORDER BY id', 'engine_incr')).toBe(
        'made between the full and the first incremental\nmade between the two incrementals\n',
      );
    } finally {
      await copy.stop();
    }
  });

  it("takes a snapshot task's incrementals as mariadb-backup's own, and restores the newest of a chain", async () => {
    const common = setup();
    await db.sql('CREATE DATABASE chain_db;');
    await db.sql(
      `CREATE TABLE items (id INT PRIMARY KEY, body VARCHAR(200) NOT NULL) ENGINE=InnoDB;
       INSERT INTO items SELECT seq, REPEAT(CHAR(65 + seq % 26), 1 + seq % 150) FROM seq_1_to_20000;`,
      'chain_db',
    );
    const full = await runBackup(common);
    await db.sql("UPDATE items SET body = CONCAT('first ', id) WHERE id % 100 = 11;", 'chain_db');
    const first = await runBackup({ ...common, level: 'incr' });
    await db.sql(
      "UPDATE items SET body = CONCAT('second ', id) WHERE id % 100 = 12; DELETE FROM items WHERE id % 1000 = 5;",
      'chain_db',
    );
    await db.sql(
      'CREATE TABLE later (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO later VALUES (1), (2);',
      'chain_db',
    );
    const second = await runBackup({ ...common, level: 'incr' });
    expect([first.chainId, second.chainId]).toEqual([full.chainId, full.chainId]);
    console.log(
      `mariadb snapshot chain: full stored ${full.storedBytes} B, incrementals ${first.storedBytes} B and ${second.storedBytes} B`,
    );
    expect(second.storedBytes).toBeLessThan(full.storedBytes);
    // The newest restore point holds the full's xbstream and both of mariadb-backup's own incrementals.
    const { manifest } = await loadManifest(
      common.destinations[0]!,
      common.ref,
      second.chainId,
      second.backupId,
      new KeyRing(undefined),
    );
    expect(manifest.files.map((f) => f.name)).toEqual([
      'snapshot.json',
      'backup.xbstream',
      'incremental-1.xbstream',
      'incremental-2.xbstream',
    ]);
    expect(JSON.parse(manifest.engineState ?? '{}')).toEqual({ toLsn: expect.stringMatching(/^\d+$/) });
    const copy = await restoreAndStart(common, second, 'chain-newest');
    try {
      expect(await fingerprint(copy, 'chain_db')).toEqual(await fingerprint(db, 'chain_db'));
      expect(await fingerprint(copy, 'bank')).toEqual(await fingerprint(db, 'bank'));
    } finally {
      await copy.stop();
    }
  });
});
