// The SQLite fingerprint a backup records, checked by an independent judge: the sqlite3 shell's own
// sha3_query() and count(*), run on the source database with the recipe as docs/FORMAT.md spells it.

import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../../src/backup/backup.js';
import { KeyRing, loadManifest } from '../../src/backup/chain.js';
import { type Workspace, workspace } from '../support/workspace.js';
import { judgeDigest, recipeQuery, sqlite3 } from './fingerprint-judge.js';

describe('SQLite fingerprint', () => {
  let ws: Workspace;
  beforeAll(async () => {
    ws = await workspace({ fingerprints: true });
  });
  afterAll(() => ws.cleanup());

  it('records per table the row count and the digest sqlite3 computes from the documented recipe', async () => {
    const path = join(ws.dbDir, 'fp.db');
    const db = new Database(path);
    db.exec(`
      PRAGMA foreign_keys = OFF;
      CREATE TABLE parent(id INTEGER PRIMARY KEY, name TEXT);
      CREATE TABLE "odd ""name"""(a, b REAL, c BLOB, d TEXT GENERATED ALWAYS AS (upper(a)) VIRTUAL);
      CREATE TABLE kv(k TEXT PRIMARY KEY, v) WITHOUT ROWID;
      CREATE TABLE child(id INTEGER PRIMARY KEY AUTOINCREMENT, parent INTEGER REFERENCES parent(id), note);
      CREATE INDEX child_parent ON child(parent);
      CREATE VIEW names AS SELECT name FROM parent;
      CREATE TABLE empty(x);
      CREATE TABLE kinds(id INTEGER PRIMARY KEY, r REAL, n NUMERIC, i INT, big BLOB, s TEXT,
        g INT GENERATED ALWAYS AS (i * 2) STORED);
    `);
    // Every serial type: small and 8-byte integers, 0 and 1, negatives, integral REALs (stored as integers),
    // NaN-free floats, TEXT and a BLOB large enough for overflow pages; then a column added later, whose
    // older rows hold fewer values.
    const kinds = db.prepare('INSERT INTO kinds(id, r, n, i, big, s) VALUES (?, ?, ?, ?, ?, ?)');
    kinds.run(-5, 3, '1.0', 0, Buffer.alloc(20_000, 7), 'short');
    kinds.run(9_007_199_254_740_993n, 2.5, 1e300, 1, null, '');
    kinds.run(7, -1, -129, -9_223_372_036_854_775_808n, Buffer.alloc(0), null);
    kinds.run(8, 2 ** 40, 65_536, 2 ** 47, Buffer.from('x'), 'é'.repeat(3000));
    db.exec(
      "CREATE TABLE grown(a); INSERT INTO grown VALUES (1); ALTER TABLE grown ADD COLUMN later TEXT DEFAULT 'dflt'",
    );
    db.exec("INSERT INTO grown VALUES (2, 'given')");
    const insertParent = db.prepare('INSERT INTO parent(name) VALUES (?)');
    for (let i = 0; i < 500; i++) insertParent.run(`p${i} é`);
    db.prepare(`INSERT INTO "odd ""name""" (a, b, c) VALUES (?, ?, ?)`).run('x', 1.5, Buffer.from([0, 1, 255]));
    db.prepare(`INSERT INTO "odd ""name""" (a, b, c) VALUES (?, ?, ?)`).run(null, -2.25e300, null);
    db.exec(`INSERT INTO "odd ""name""" (a) VALUES (CAST(x'ff00fe' AS TEXT))`); // TEXT that is not UTF-8
    db.exec("INSERT INTO kv VALUES ('b', 2), ('a', 9223372036854775807), ('c', -1)");
    db.exec('INSERT INTO child(parent, note) VALUES (1, 1), (2, 2.5), (999, NULL)'); // 999: one violation
    db.close();

    const result = await runBackup({
      ref: ws.ref('fp.db'),
      source: ws.source,
      type: 'backup',
      level: 'full',
      destinations: [ws.destination],
      stagingDir: ws.stagingDir,
      node: 'n1',
      task: 't1',
    });
    const { manifest } = await loadManifest(
      ws.destination,
      ws.ref('fp.db'),
      result.chainId,
      result.backupId,
      new KeyRing(undefined),
    );
    const fingerprint = manifest.fingerprint;
    expect(fingerprint?.recipe).toBe('sqlite-sha3-query');
    const expected = [
      { name: 'child', query: recipeQuery(path, 'child', 'rowid') },
      { name: 'empty', query: recipeQuery(path, 'empty', 'rowid') },
      { name: 'grown', query: recipeQuery(path, 'grown', 'rowid') },
      { name: 'kinds', query: recipeQuery(path, 'kinds', 'rowid') },
      { name: 'kv', query: recipeQuery(path, 'kv', undefined) },
      { name: 'odd "name"', query: recipeQuery(path, 'odd "name"', 'rowid') },
      { name: 'parent', query: recipeQuery(path, 'parent', 'rowid') },
      { name: 'sqlite_sequence', query: recipeQuery(path, 'sqlite_sequence', 'rowid') },
    ];
    expect(fingerprint?.tables.map((t) => t.name)).toEqual(expected.map((t) => t.name));
    for (const { name, query } of expected) {
      const table = fingerprint!.tables.find((t) => t.name === name)!;
      const count = Number(sqlite3(path, `SELECT count(*) FROM "${name.replace(/"/g, '""')}"`));
      expect({ name, rows: table.rows, digest: table.digest }).toEqual({
        name,
        rows: count,
        digest: judgeDigest(path, query),
      });
    }
    expect(fingerprint!.tables.find((t) => t.name === 'parent')!.rows).toBe(500);
    const objects = Object.fromEntries(
      sqlite3(path, 'SELECT type, count(*) FROM sqlite_schema GROUP BY type')
        .split('\n')
        .map((line) => line.split('|'))
        .map(([type, n]) => [type, Number(n)]),
    );
    expect(objects).toEqual({ table: 8, index: 1, view: 1 });
    expect(fingerprint!.objects).toEqual(objects);
    expect(Number(sqlite3(path, 'SELECT count(*) FROM pragma_foreign_key_check'))).toBe(1);
    expect(fingerprint!.foreignKeyViolations).toBe(1);
  });

  it('with `fingerprints: true` fingerprints both backup types as sqlite3 computes it, by default none', async () => {
    const plain = await workspace();
    try {
      for (const mode of ['delete', 'wal']) {
        for (const [place, label] of [
          [plain, 'default'],
          [ws, 'true'],
        ] as const) {
          const name = `${label}-${mode}.db`;
          const path = join(place.dbDir, name);
          const db = new Database(path);
          db.pragma(`journal_mode = ${mode}`);
          db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, r REAL)');
          const insert = db.prepare('INSERT INTO t(v, r) VALUES (?, ?)');
          for (let i = 0; i < 300; i++) insert.run(`row ${i} ${'x'.repeat(i % 90)}`, i / 4);
          db.close();
          const judged = [{ name: 't', rows: 300, digest: judgeDigest(path, recipeQuery(path, 't', 'rowid')) }];
          for (const type of ['backup', 'snapshot'] as const) {
            const result = await runBackup({
              ref: place.ref(name),
              source: place.source,
              type,
              level: 'full',
              destinations: [place.destination],
              stagingDir: place.stagingDir,
              node: 'n1',
              task: 't1',
            });
            const { manifest } = await loadManifest(
              place.destination,
              place.ref(name),
              result.chainId,
              result.backupId,
              new KeyRing(undefined),
            );
            const expected = label === 'default' ? undefined : judged;
            expect({ mode, label, type, tables: manifest.fingerprint?.tables }).toEqual({
              mode,
              label,
              type,
              tables: expected,
            });
          }
        }
      }
    } finally {
      plain.cleanup();
    }
  });

  it('hashes the text of a UTF-16 database as the sqlite3 shell does: converted to UTF-8', async () => {
    const path = join(ws.dbDir, 'utf16.db');
    const db = new Database(path);
    db.pragma("encoding = 'UTF-16be'");
    db.exec("CREATE TABLE t(a TEXT, b); INSERT INTO t VALUES ('é ü 中', 1), ('', x'00'), (NULL, 2.5)");
    db.close();
    const result = await runBackup({
      ref: ws.ref('utf16.db'),
      source: ws.source,
      type: 'backup',
      level: 'full',
      destinations: [ws.destination],
      stagingDir: ws.stagingDir,
      node: 'n1',
      task: 't1',
    });
    const { manifest } = await loadManifest(
      ws.destination,
      ws.ref('utf16.db'),
      result.chainId,
      result.backupId,
      new KeyRing(undefined),
    );
    expect(manifest.fingerprint!.tables).toEqual([
      { name: 't', rows: 3, digest: judgeDigest(path, recipeQuery(path, 't', 'rowid')) },
    ]);
  });
});
