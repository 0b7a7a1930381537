// The fidelity corpus: SQLite databases built by the sqlite3 CLI (an independent SQLite) from SQLite's own
// documented features, each backed up through the engine as both types (a full, then a change and an
// incremental), both restore points restored, and every restore judged by the CLI against the source as
// it was at that point (sqlite-judge.ts): `.dump`, every value's exact bytes, the pragmas a restore keeps,
// integrity_check, FTS5 and R*Tree query results. Identical, or the case says which typed error refuses it.

import { spawnSync } from 'node:child_process';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../../src/backup/backup.js';
import { restoreBackup } from '../../src/backup/restore.js';
import { type Workspace, workspace } from '../support/workspace.js';
import { FTS, FTS_QUERIES, SCHEMA_TABLES } from './sqlite-fixture.js';
import { cli, cliVersion, judge } from './sqlite-judge.js';

let ws: Workspace;
beforeAll(async () => {
  ws = await workspace();
  expect(cliVersion(), 'the sqlite3 CLI is the judge here').toMatch(/^3\./);
});
afterAll(() => ws?.cleanup());

interface Case {
  name: string;
  /** Build the database at `path` (it does not exist yet). */
  build(path: string): void;
  /** A change for the incremental (the judge checks it changed something). */
  change(path: string): void;
  /** Queries whose answers must match (FTS5, R*Tree). */
  queries?: Record<string, string>;
  /** Checks that the built database really is the case (not vacuous). */
  check?(path: string): void;
}

const sql = (text: string) => (path: string) => void cli(path, text);
/** Leaves the WAL as it is when the CLI exits: its frames are not checkpointed into the database file. */
const KEEP_WAL = '.dbconfig no_ckpt_on_close on\nPRAGMA wal_autocheckpoint = 0;\n';

const VALUES_TABLE = `
CREATE TABLE v(id INTEGER PRIMARY KEY, any_col, r REAL, i INTEGER, t TEXT, b BLOB);
INSERT INTO v(any_col) VALUES (NULL), (0), (1), (-1), (9223372036854775807), (-9223372036854775808),
  (9007199254740993), (0.0), (-0.0), (1.5), (-2.5e-308), (4.9e-324), (1.7976931348623157e308), (9e999), (-9e999),
  (0.1), (1e15), (123456789012345678), ('text'), (''), ('a' || char(0) || 'b'), (char(0)), (x''), (x'00'), (x'01'),
  (x'7b2262223a2230227d'), (CAST(x'ff80fe41' AS TEXT)), (CAST(x'c3' AS TEXT)), ('é😀 ' || char(8232) || char(65279)),
  (char(65534) || char(65535)), ('{"b":"00"}'), ('null'), ('123'), ('1.5');
INSERT INTO v(r, i, t, b) VALUES (-0.0, -0.0, -0.0, -0.0), (1e999, '12', 12, 12), (3, 3.0, 3.5, '3'), ('x', 'y', x'41', 'z');
`;

/** Values on both sides of SQLite's overflow thresholds for `usable` bytes a page, and 1 MB ones. */
function overflowRows(usable: number): string {
  const maxLocal = usable - 35;
  const minLocal = Math.floor(((usable - 12) * 32) / 255) - 23;
  const sizes = new Set<number>();
  for (const at of [minLocal, maxLocal, usable - 4, 2 * usable]) for (let d = -3; d <= 3; d++) sizes.add(at + d);
  const rows = [...sizes].map((n) => `(randomblob(${n}), printf('%.*c', ${n}, 'q'))`);
  return `CREATE TABLE big(b BLOB, t TEXT);
INSERT INTO big VALUES ${rows.join(', ')}, (randomblob(1000000), printf('%.*c', 1000000, 'z'));`;
}

const CASES: Case[] = [
  {
    name: 'values',
    build: sql(`${VALUES_TABLE}${overflowRows(4096)}`),
    change: sql("UPDATE v SET any_col = -0.0 WHERE id = 1; INSERT INTO v(t) VALUES ('after');"),
  },
  {
    name: 'schema',
    build: sql(SCHEMA_TABLES),
    change: sql(`UPDATE kinds SET qty = qty + 1 WHERE code = 'a'; INSERT INTO negatives VALUES (-5, 'later');
      INSERT INTO auto(v) VALUES ('four'); ANALYZE;`),
  },
  {
    name: 'fts-rtree',
    build: sql(FTS),
    change: sql(`INSERT INTO notes VALUES ('Later', 'backups restored later');
      INSERT INTO articles(title, body) VALUES ('four', 'a quick note'); DELETE FROM articles WHERE id = 2;
      INSERT INTO places VALUES (1000, 5.5, 5.7, 0, 1, 'new');`),
    queries: FTS_QUERIES,
  },
  {
    name: 'alter-table',
    build: sql(`CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT, gone TEXT, c);
      INSERT INTO t VALUES (1, 'x', 'g', 1.5), (2, 'y', 'h', NULL);
      ALTER TABLE t ADD COLUMN d TEXT DEFAULT 'dflt';
      ALTER TABLE t ADD COLUMN e INTEGER DEFAULT -42 NOT NULL;
      ALTER TABLE t ADD COLUMN f REAL DEFAULT (-0.0);
      ALTER TABLE t ADD COLUMN g BLOB DEFAULT x'0102';
      ALTER TABLE t ADD COLUMN h TEXT DEFAULT "legacy";
      ALTER TABLE t ADD COLUMN v GENERATED ALWAYS AS (b || d) VIRTUAL;
      INSERT INTO t(a, b, c) VALUES (3, 'z', 2);
      ALTER TABLE t RENAME COLUMN b TO bee;
      ALTER TABLE t DROP COLUMN gone;
      ALTER TABLE t RENAME TO renamed;
      CREATE TABLE old_rows(x); INSERT INTO old_rows VALUES (1), (2);
      ALTER TABLE old_rows ADD COLUMN y DEFAULT 5;`),
    change: sql("INSERT INTO renamed(a, bee) VALUES (4, 'w'); UPDATE old_rows SET y = 6 WHERE x = 2;"),
    check: (path) => {
      // Not vacuous: rows written before the ADD COLUMNs are still short records in the file.
      expect(cli(path, 'SELECT count(*) FROM renamed WHERE d IS NOT NULL;').trim()).toBe('3');
    },
  },
  {
    name: 'foreign-keys',
    // Every order: a child created before its parent, a parent rebuilt after its child (SQLite's documented
    // way to change a table), rows pointing at rows with higher ids, self references, and orphans.
    build: sql(`PRAGMA foreign_keys = OFF;
      CREATE TABLE child(id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL REFERENCES parent(id));
      CREATE TABLE parent(id INTEGER PRIMARY KEY, name TEXT);
      INSERT INTO child VALUES (1, 2), (2, 1), (3, 999);
      INSERT INTO parent VALUES (1, 'p1'), (2, 'p2');
      CREATE TABLE node(id INTEGER PRIMARY KEY, next INTEGER REFERENCES node(id) ON DELETE CASCADE);
      INSERT INTO node VALUES (1, 3), (2, NULL), (3, 2), (4, 77);
      CREATE TABLE owner(id INTEGER PRIMARY KEY, name TEXT);
      CREATE TABLE pet(id INTEGER PRIMARY KEY, owner_id INTEGER REFERENCES owner(id) ON DELETE CASCADE);
      INSERT INTO owner VALUES (1, 'a'), (2, 'b');
      INSERT INTO pet VALUES (1, 1), (2, 2), (3, 5);
      BEGIN;
      CREATE TABLE new_owner(id INTEGER PRIMARY KEY, name TEXT NOT NULL DEFAULT '', email TEXT);
      INSERT INTO new_owner(id, name) SELECT id, name FROM owner;
      DROP TABLE owner;
      ALTER TABLE new_owner RENAME TO owner;
      COMMIT;
      CREATE TABLE composite_parent(a, b, PRIMARY KEY (a, b)) WITHOUT ROWID;
      CREATE TABLE composite_child(x, y, FOREIGN KEY (x, y) REFERENCES composite_parent(a, b) DEFERRABLE INITIALLY DEFERRED);
      INSERT INTO composite_child VALUES (1, 2), (9, 9);
      INSERT INTO composite_parent VALUES (1, 2);`),
    change: sql('PRAGMA foreign_keys = OFF; INSERT INTO pet VALUES (4, 42); DELETE FROM parent WHERE id = 1;'),
    check: (path) => {
      expect(cli(path, 'PRAGMA foreign_key_check;').trim().split('\n').length).toBeGreaterThanOrEqual(4);
    },
  },
  {
    name: 'orm-migrated',
    // What Django's and Rails' migrations leave: bookkeeping tables, tables rebuilt under a new name and
    // renamed back, indexes made again, foreign keys to tables rebuilt later.
    build: sql(`PRAGMA foreign_keys = OFF;
      CREATE TABLE "django_migrations" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "app" varchar(255) NOT NULL,
        "name" varchar(255) NOT NULL, "applied" datetime NOT NULL);
      CREATE TABLE "shop_customer" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "name" varchar(100) NOT NULL);
      CREATE TABLE "shop_order" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "total" decimal NOT NULL,
        "customer_id" bigint NOT NULL REFERENCES "shop_customer" ("id") DEFERRABLE INITIALLY DEFERRED);
      CREATE INDEX "shop_order_customer_id_idx" ON "shop_order" ("customer_id");
      INSERT INTO shop_customer(name) VALUES ('Ada'), ('Linus');
      INSERT INTO shop_order(total, customer_id) VALUES (10.5, 2), (3, 1), (7.25, 3);
      INSERT INTO django_migrations(app, name, applied) VALUES ('shop', '0001_initial', '2026-01-01 10:00:00.123456');
      CREATE TABLE "new__shop_customer" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "name" varchar(100) NOT NULL,
        "email" varchar(254) NULL UNIQUE, "active" bool NOT NULL DEFAULT 1 CHECK ("active" IN (0, 1)));
      INSERT INTO "new__shop_customer" ("id", "name", "active") SELECT "id", "name", 1 FROM "shop_customer";
      DROP TABLE "shop_customer";
      ALTER TABLE "new__shop_customer" RENAME TO "shop_customer";
      INSERT INTO django_migrations(app, name, applied) VALUES ('shop', '0002_email', '2026-02-01 10:00:00');
      CREATE TABLE "schema_migrations" ("version" varchar NOT NULL PRIMARY KEY);
      CREATE TABLE "ar_internal_metadata" ("key" varchar NOT NULL PRIMARY KEY, "value" varchar,
        "created_at" datetime(6) NOT NULL, "updated_at" datetime(6) NOT NULL);
      INSERT INTO schema_migrations VALUES ('20260101000000'), ('20260201000000');
      INSERT INTO ar_internal_metadata VALUES ('environment', 'production', '2026-01-01', '2026-01-01');
      PRAGMA user_version = 42; PRAGMA application_id = 1234567;`),
    change: sql(
      "INSERT INTO shop_order(total, customer_id) VALUES (1, 1); UPDATE shop_customer SET email = 'a@x' WHERE id = 1;",
    ),
  },
  {
    name: 'legacy-dqs',
    // Double-quoted string literals, which SQLite accepts in legacy schemas (the CLI accepts them; the
    // better-sqlite3 build backupd loads with does not).
    build: sql(`CREATE TABLE items(id INTEGER PRIMARY KEY, kind TEXT CHECK (kind != "bad") DEFAULT "plain",
        tag TEXT GENERATED ALWAYS AS (kind || "-tag") STORED, flag TEXT AS (iif(kind = "x", "yes", "no")));
      CREATE INDEX items_good ON items(kind) WHERE kind != "skip";
      CREATE VIEW items_view AS SELECT id, "literal" AS l FROM items WHERE kind != "none";
      CREATE TRIGGER items_t AFTER INSERT ON items WHEN new.kind = "x" BEGIN UPDATE items SET kind = "y" WHERE id = new.id; END;
      INSERT INTO items(kind) VALUES ('x'), ('plain'), ('skip');`),
    change: sql("INSERT INTO items(kind) VALUES ('x');"),
    queries: {
      view: 'SELECT * FROM items_view ORDER BY id;',
      partial: "SELECT id FROM items WHERE kind != 'skip' ORDER BY kind, id;",
    },
  },
  {
    name: 'page-512',
    build: sql(`PRAGMA page_size = 512; ${VALUES_TABLE} ${overflowRows(512)}`),
    change: sql("INSERT INTO v(t) VALUES ('later');"),
  },
  {
    name: 'page-65536',
    build: sql(`PRAGMA page_size = 65536; ${overflowRows(65536)} CREATE INDEX big_t ON big(t);`),
    change: sql("INSERT INTO big VALUES (x'01', 'later');"),
  },
  {
    name: 'auto-vacuum-full',
    build: sql(
      `PRAGMA auto_vacuum = FULL; ${SCHEMA_TABLES} ${overflowRows(4096)} DELETE FROM big WHERE rowid % 2 = 0;`,
    ),
    change: sql("INSERT INTO big VALUES (randomblob(10000), 'later');"),
  },
  {
    name: 'auto-vacuum-incremental',
    build: sql(`PRAGMA auto_vacuum = INCREMENTAL; ${overflowRows(4096)} DELETE FROM big WHERE rowid % 3 = 0;
      PRAGMA incremental_vacuum(2);`),
    change: sql("INSERT INTO big VALUES (randomblob(10000), 'later');"),
  },
  {
    name: 'reserved-bytes',
    build: sql(`.filectrl reserve_bytes 32\n${VALUES_TABLE}`),
    change: sql("INSERT INTO v(t) VALUES ('later');"),
    check: (path) => {
      const header = spawnSync('od', ['-An', '-tu1', '-j20', '-N1', path], { encoding: 'utf8' }).stdout.trim();
      expect(header).toBe('32');
    },
  },
  {
    name: 'freelist',
    build: sql(`${overflowRows(4096)} CREATE TABLE keep(x); INSERT INTO keep VALUES (1);
      DELETE FROM big WHERE rowid > 3;`),
    change: sql('INSERT INTO keep VALUES (2);'),
    check: (path) => expect(Number(cli(path, 'PRAGMA freelist_count;'))).toBeGreaterThan(10),
  },
  ...(['UTF-16le', 'UTF-16be'] as const).map(
    (encoding): Case => ({
      name: encoding.toLowerCase(),
      build: (path) => {
        // Lone surrogates, U+FFFE, U+FFFF and NUL, written as the database's own UTF-16 bytes.
        const units = (le: string) => (encoding === 'UTF-16le' ? le : le.replace(/(..)(..)/g, '$2$1'));
        cli(
          path,
          `PRAGMA encoding = '${encoding}'; ${VALUES_TABLE}
          CREATE TABLE u(id INTEGER PRIMARY KEY, t TEXT, x);
          INSERT INTO u(t, x) VALUES (CAST(x'${units('61003dd86200')}' AS TEXT), -0.0), (CAST(x'${units('6100003d6200')}' AS TEXT), 1),
            (CAST(x'${units('feffffff00006100')}' AS TEXT), 2), (CAST(x'${units('00dc')}' AS TEXT), 3), ('plain é😀', -0.0);
          CREATE TABLE u_wr(k TEXT PRIMARY KEY, v) WITHOUT ROWID;
          INSERT INTO u_wr VALUES (CAST(x'${units('3dd8')}' AS TEXT), -0.0), ('b', CAST(x'${units('ffff')}' AS TEXT));
          CREATE TABLE u_gen(a TEXT, g TEXT AS (a || '!') STORED, r);
          INSERT INTO u_gen(a, r) VALUES (CAST(x'${units('3dd8')}' AS TEXT), -0.0);`,
        );
      },
      change: sql("INSERT INTO u(t) VALUES ('later');"),
    }),
  ),
  {
    name: 'wal-unchecked',
    build: sql(`${KEEP_WAL}PRAGMA journal_mode = WAL; ${SCHEMA_TABLES} ${VALUES_TABLE}`),
    change: sql(`${KEEP_WAL}INSERT INTO v(any_col) VALUES (-0.0); UPDATE kinds SET qty = 8 WHERE code = 'a';`),
    check: (path) => {
      // Not vacuous: the rows are in WAL frames the database file does not hold yet.
      expect(statSync(`${path}-wal`).size).toBeGreaterThan(10_000);
    },
  },
  {
    name: 'hot-journal',
    build: (path) => {
      cli(
        path,
        `${SCHEMA_TABLES} CREATE TABLE filler(x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) INSERT INTO filler SELECT randomblob(500) FROM n;`,
      );
      // A writer that stops mid-transaction after writing changed pages into the database file (its cache is
      // tiny), leaving a hot journal: Python's sqlite3, a third SQLite.
      const crash = spawnSync(
        'python3',
        [
          '-c',
          `
import sqlite3, os
c = sqlite3.connect(${JSON.stringify(path)}, isolation_level=None)
c.execute('PRAGMA cache_size = 1')
c.execute('BEGIN')
c.execute('UPDATE filler SET x = zeroblob(600)')
c.execute("UPDATE kinds SET qty = qty + 100")
os._exit(0)
`,
        ],
        { encoding: 'utf8' },
      );
      if (crash.error || crash.status !== 0)
        throw new Error(`python3 could not make a hot journal: ${crash.error?.message ?? crash.stderr}`);
    },
    change: sql("UPDATE kinds SET qty = 50 WHERE code = 'a';"),
    check: (path) => expect(statSync(`${path}-journal`).size).toBeGreaterThan(512),
  },
  {
    name: 'zero-byte',
    build: (path) => writeFileSync(path, ''),
    change: sql('CREATE TABLE t(x); INSERT INTO t VALUES (1);'),
  },
  {
    name: 'wide-1500',
    build: (path) => {
      const columns = Array.from({ length: 1500 }, (_, i) => `c${i}${i % 3 === 0 ? ' INTEGER' : ''}`);
      const values = Array.from({ length: 1500 }, (_, i) =>
        i % 5 === 0 ? `'t${i}'` : i % 7 === 0 ? '-0.0' : String(i),
      );
      cli(
        path,
        `CREATE TABLE wide(${columns.join(', ')}); INSERT INTO wide VALUES (${values.join(', ')});
        INSERT INTO wide(c0, c1499) VALUES (1, 2);`,
      );
    },
    change: sql('INSERT INTO wide(c10) VALUES (10);'),
  },
];

describe.each(['backup', 'snapshot'] as const)('SQLite fidelity corpus, type %s', (type) => {
  it.each(CASES)('$name restores exactly, full and incremental', async (c) => {
    const name = `${c.name}-${type}.db`;
    const path = join(ws.dbDir, name);
    c.build(path);
    c.check?.(path);
    const before = judge(path, c.queries);
    const common = {
      ref: ws.ref(name),
      source: ws.source,
      type,
      destinations: [ws.destination],
      stagingDir: ws.stagingDir,
      node: 'n1',
      task: 'fidelity',
    };
    const full = await runBackup({ ...common, level: 'full' });
    if (c.name === 'hot-journal')
      expect(existsSync(`${path}-journal`) && statSync(`${path}-journal`).size > 0).toBe(false);
    c.change(path);
    const after = judge(path, c.queries);
    expect(after, 'the change changed something').not.toEqual(before);
    const incr = await runBackup({ ...common, level: 'incr' });
    expect(incr.level).toBe('incr');
    for (const [point, expected] of [
      [full, before],
      [incr, after],
    ] as const) {
      const restored = await restoreBackup({
        ...common,
        from: ws.destination,
        ...point,
        target: `${c.name}-${type}-${point.level}`,
        cacheDir: ws.cacheDir,
      });
      const verdict = judge(restored.location, c.queries);
      expect(verdict.pragmas.integrity_check).toBe('ok');
      expect(verdict.pragmas, `${point.level}: pragmas`).toEqual(expected.pragmas);
      expect(verdict.queries, `${point.level}: queries`).toEqual(expected.queries);
      expect(verdict.values, `${point.level}: values`).toEqual(expected.values);
      expect(verdict.dump, `${point.level}: .dump`).toBe(expected.dump);
    }
  });
});
