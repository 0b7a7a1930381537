// The SQLite logical dump's row paths: rows of rowid tables are copied from the database file's pages as
// SQLite records, WITHOUT ROWID tables' value by value. Every kind of value SQLite holds must come back
// exactly, type included, through the dump and the loader; and malformed records are an error, never a guess.
// Whole databases built by an independent SQLite, through the engine: sqlite-fidelity.test.ts.

import { createHash, randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dumpDatabase } from '../../src/sources/sqlite-dump.js';
import { DumpEncoder } from '../../src/sources/sqlite-dump-encoder.js';
import {
  BTREE_TABLE,
  DUMP_MAGIC,
  REC_END,
  REC_OBJECT,
  REC_SQLITE_ROW,
  REC_TABLE,
  REC_TABLE_END,
  type SqlValue,
} from '../../src/sources/sqlite-format.js';
import { DumpLoader } from '../../src/sources/sqlite-load.js';
import { type Workspace, workspace } from '../support/workspace.js';

let ws: Workspace;
beforeAll(async () => {
  ws = await workspace();
});
afterAll(() => ws.cleanup());

const TEXTS = [
  '',
  'plain',
  'quote " and \\ backslash / slash',
  'new\nline\ttab\rcr\u0001\u001f\u007f',
  'nul\u0000inside',
  'é😀\u2028 wide',
  'x'.repeat(100),
  '{"b":"00"}',
  'null',
  '123',
  '1.5',
];
const INTEGERS = [
  0n,
  -1n,
  7n,
  2n ** 53n + 1n,
  -(2n ** 63n),
  2n ** 63n - 1n,
  999_999_999_999_999n,
  -99_999_999_999_999n,
  1_000_000_000_000_000n,
  -1_000_000_000_000_000n,
];
const REALS = [
  0.1,
  1.0,
  -2.5,
  123.45,
  1e300,
  -1.5e-300,
  5e-324,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
  2 ** 53,
  0.1 + 0.2,
  1 / 3,
  123456789012345.6,
  12345678901234.5,
  1e21,
];
const BLOBS = [Buffer.alloc(0), Buffer.from([0, 255, 10, 34, 92]), randomBytes(1000)];
const VALUES: SqlValue[] = [null, ...TEXTS, ...INTEGERS, ...REALS, ...BLOBS];

/** Every value of every row, with SQLite's type for each: what must survive the round trip. */
function contents(db: Database.Database, table: string): unknown[][] {
  const columns = (db.prepare(`PRAGMA table_info("${table}")`).all() as { name: string }[]).map((c) => `"${c.name}"`);
  const typed = columns.flatMap((c) => [c, `typeof(${c})`]);
  return db
    .prepare(`SELECT ${table === 'keyed' ? 'k' : 'rowid'}, ${typed.join(', ')} FROM "${table}" ORDER BY 1`)
    .raw(true)
    .safeIntegers(true)
    .all() as unknown[][];
}

/** The dump of the database at `source`, whole. */
function dumpOf(source: string): Buffer {
  const from = new Database(source, { readonly: true });
  const fd = openSync(source, 'r');
  try {
    return Buffer.concat([...dumpDatabase(from, fd)]);
  } finally {
    from.close();
    closeSync(fd);
  }
}

function roundTrip(source: string, target: string): void {
  const to = new Database(target);
  try {
    const loader = new DumpLoader(to);
    loader.push(dumpOf(source));
    loader.finish();
  } finally {
    to.close();
  }
}

/** Round-trip the database at `source` into a new file beside it and return what `read` finds there. */
function readRestored<T>(source: string, read: (db: Database.Database) => T): T {
  const target = source.replace(/\.db$/, '-restored.db');
  roundTrip(source, target);
  const restored = new Database(target, { readonly: true });
  try {
    return read(restored);
  } finally {
    restored.close();
  }
}

describe('sqlite logical dump, values', () => {
  let dir: string;
  beforeAll(() => {
    dir = join(ws.dir, 'values');
    mkdirSync(dir, { recursive: true });
  });

  it('brings back every kind of value exactly, in rowid tables with sparse rowids and late BLOBs', () => {
    const source = join(dir, 'values.db');
    const db = new Database(source);
    db.exec('CREATE TABLE hidden (a, b, c TEXT)'); // the rowid is not a column
    db.exec('CREATE TABLE alias (id INTEGER PRIMARY KEY, a, b REAL)');
    db.exec('CREATE TABLE keyed (k TEXT PRIMARY KEY, a) WITHOUT ROWID');
    // Every affinity, each column given every kind of value (SQLite converts some as they are stored).
    db.exec('CREATE TABLE typed (i INTEGER, n NUMERIC, r REAL, t TEXT, x, d DECIMAL(10,2), v VARCHAR(5))');
    const typed = db.prepare('INSERT INTO typed VALUES (?, ?, ?, ?, ?, ?, ?)');
    const hidden = db.prepare('INSERT INTO hidden (rowid, a, b, c) VALUES (?, ?, ?, ?)');
    const alias = db.prepare('INSERT INTO alias (id, a, b) VALUES (?, ?, ?)');
    const keyed = db.prepare('INSERT INTO keyed (k, a) VALUES (?, ?)');
    db.transaction(() => {
      // Enough plain rows first that the BLOBs turn up in a later batch, then rowids at the far ends.
      for (let i = 1; i <= 3000; i++) {
        hidden.run(BigInt(i), `row ${i}`, i, null);
        alias.run(BigInt(i), i * 0.5, i);
      }
      // Rowids at both far ends of the 64-bit range and sparse in the middle.
      const rowidOf = (i: number) =>
        i % 3 === 0
          ? -(2n ** 63n) + BigInt(i)
          : i % 3 === 1
            ? 2n ** 63n - 1n - BigInt(i)
            : 10n ** 12n + BigInt(i) * 7919n;
      VALUES.forEach((value, i) => {
        const rowid = rowidOf(i);
        hidden.run(rowid, value, VALUES[(i + 1) % VALUES.length], TEXTS[i % TEXTS.length]);
        alias.run(rowid, value, REALS[i % REALS.length]);
        keyed.run(`key ${i}`, value);
        typed.run(value, value, value, value, value, value, value);
      });
    })();
    const tables = ['hidden', 'alias', 'keyed', 'typed'];
    const expected = tables.map((t) => contents(db, t));
    db.close();

    const target = join(dir, 'values-restored.db');
    roundTrip(source, target);
    const restored = new Database(target, { readonly: true });
    const actual = tables.map((t) => contents(restored, t));
    restored.close();
    expect(actual).toEqual(expected);
    expect(expected[0]!.length).toBe(3000 + VALUES.length);
  });

  it('keeps BLOBs that are valid JSONB as BLOBs, in plain and STRICT tables', () => {
    // json_array() reads such a BLOB as JSON: x'00' is JSONB null, x'01' true, x'02' false, x'1331' the
    // number 1, x'0c' {}, x'0b' [], x'1a61' "a". No other BLOB is there to give the column away. Each must
    // come back as the same BLOB, of type blob.
    const jsonb = [[0x00], [0x01], [0x02], [0x13, 0x31], [0x0c], [0x0b], [0x1a, 0x61]].map((b) => Buffer.from(b));
    const source = join(dir, 'jsonb.db');
    const db = new Database(source);
    db.exec('CREATE TABLE plain (a, b TEXT, c INTEGER)');
    db.exec('CREATE TABLE strict (id INTEGER PRIMARY KEY, n INT, a ANY, b BLOB, t TEXT) STRICT');
    const plain = db.prepare('INSERT INTO plain VALUES (?, ?, ?)');
    const strict = db.prepare('INSERT INTO strict (n, a, b, t) VALUES (?, ?, ?, ?)');
    for (const [i, blob] of jsonb.entries()) {
      plain.run(blob, blob, i);
      strict.run(i, blob, blob, `t${i}`);
    }
    const expected = ['plain', 'strict'].map((t) => contents(db, t));
    db.close();

    expect(readRestored(source, (d) => ['plain', 'strict'].map((t) => contents(d, t)))).toEqual(expected);
    expect(expected[0]![0]).toEqual([1n, jsonb[0], 'blob', jsonb[0], 'blob', 0n, 'integer']);
  });

  it('keeps the rowid of tables whose columns take its names, and rows of tables that take them all', () => {
    const source = join(dir, 'shadowed.db');
    const db = new Database(source);
    db.exec('CREATE TABLE one (rowid TEXT, a)'); // the rowid is _rowid_ here
    db.exec('CREATE TABLE two (ROWID TEXT, _rowid_ TEXT, a)'); // and oid here
    db.exec('CREATE TABLE gen (a INT, rowid INT GENERATED ALWAYS AS (a * 2))'); // a generated column takes it too
    db.exec('CREATE TABLE aliased (id INTEGER PRIMARY KEY, rowid TEXT)');
    db.exec('CREATE TABLE named (rowid INTEGER PRIMARY KEY, a)'); // the alias is named rowid
    db.exec('CREATE TABLE every (rowid TEXT, oid TEXT, _rowid_ TEXT, a)'); // no name reaches the rowid
    db.exec(`
      INSERT INTO one VALUES ('x', 1), ('x', 2);
      INSERT INTO two VALUES ('x', 'y', 1), ('x', 'y', 2);
      INSERT INTO gen (a) VALUES (1), (2);
      INSERT INTO aliased VALUES (7, 'x'), (9, 'y');
      INSERT INTO named VALUES (70, 'x'), (90, 'y');
      INSERT INTO every VALUES ('x', 'y', 'z', 1), ('x', 'y', 'z', 2);
    `);
    // Sparse rowids where a name reaches them.
    db.exec(
      'UPDATE one SET _rowid_ = _rowid_ * 1000; UPDATE two SET oid = oid + 50; UPDATE gen SET _rowid_ = -5 WHERE a = 1',
    );
    const rows = (d: Database.Database) => ({
      one: d.prepare('SELECT _rowid_, * FROM one ORDER BY 1').raw(true).all(),
      two: d.prepare('SELECT oid, * FROM two ORDER BY 1').raw(true).all(),
      gen: d.prepare('SELECT _rowid_, * FROM gen ORDER BY 1').raw(true).all(),
      aliased: d.prepare('SELECT * FROM aliased').raw(true).all(),
      named: d.prepare('SELECT _rowid_, * FROM named').raw(true).all(),
      every: d.prepare('SELECT * FROM every ORDER BY a').raw(true).all(),
    });
    const expected = rows(db);
    db.close();

    expect(readRestored(source, rows)).toEqual(expected);
    expect(expected.one).toEqual([
      [1000, 'x', 1],
      [2000, 'x', 2],
    ]);
    expect(expected.gen[0]).toEqual([-5, 1, 2]);
  });

  it('keeps every value of a table wider than 1,000 columns', () => {
    const source = join(dir, 'wide.db');
    const db = new Database(source);
    const columns = Array.from({ length: 1200 }, (_, i) => `c${i}`);
    db.exec(`CREATE TABLE wide (${columns.join(', ')})`);
    const insert = db.prepare(
      `INSERT INTO wide (rowid, ${columns.join(', ')}) VALUES (?, ${columns.map(() => '?').join(', ')})`,
    );
    for (const rowid of [3n, 10n ** 15n])
      insert.run(rowid, ...columns.map((_, i) => VALUES[(i + Number(rowid % 7n)) % VALUES.length]));
    // Values, and each column's types (a result row holds at most 2,000 columns).
    const wide = (d: Database.Database) => [
      d.prepare('SELECT rowid, * FROM wide ORDER BY rowid').raw(true).safeIntegers(true).all(),
      columns.map((c) =>
        d.prepare(`SELECT group_concat(typeof(${c})) FROM (SELECT ${c} FROM wide ORDER BY rowid)`).pluck().get(),
      ),
    ];
    const expected = wide(db);
    db.close();

    expect(readRestored(source, wide)).toEqual(expected);
  });

  it("keeps the planner's statistics (ANALYZE) as they were, not as a new ANALYZE would make them", () => {
    const source = join(dir, 'stats.db');
    const db = new Database(source);
    db.exec('CREATE TABLE t (a, b); CREATE INDEX t_a ON t (a); CREATE INDEX t_ab ON t (a, b)');
    const insert = db.prepare('INSERT INTO t VALUES (?, ?)');
    db.transaction(() => {
      for (let i = 0; i < 500; i++) insert.run(i % 7, i);
    })();
    db.exec('ANALYZE');
    db.exec("UPDATE sqlite_stat1 SET stat = '1000 10' WHERE idx = 't_a'"); // what it was, not what it would be
    const stats = (d: Database.Database) =>
      ['sqlite_stat1', 'sqlite_stat4'].map((t) => d.prepare(`SELECT * FROM ${t} ORDER BY 1, 2, 3`).raw(true).all());
    const expected = stats(db);
    db.close();

    expect(readRestored(source, stats)).toEqual(expected);
    expect(expected[0]).toContainEqual(['t', 't_a', '1000 10']);
    expect(expected[1]!.length).toBeGreaterThan(0);
  });

  it('keeps the bytes of TEXT that is not valid UTF-8 (legacy data in another encoding), in every kind of table', () => {
    const source = join(dir, 'latin1.db');
    const db = new Database(source);
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b)');
    db.exec('CREATE TABLE k (id INTEGER PRIMARY KEY, a TEXT, b) WITHOUT ROWID'); // rows value by value
    const insert = db.prepare('INSERT INTO t VALUES (?, CAST(? AS TEXT), ?)');
    const keyed = db.prepare('INSERT INTO k VALUES (?, CAST(? AS TEXT), ?)');
    const bytes = [
      '636166e9', // 'café' in Latin-1
      '61ff62',
      'c3', // a lone lead byte
      '0a22e95c', // a newline and a quote (escaped in JSON) around a Latin-1 byte, and a backslash
      'c3a9', // valid UTF-8 among the others
    ];
    db.transaction(() => {
      for (const [i, hex] of bytes.entries()) {
        insert.run(i + 1, Buffer.from(hex, 'hex'), `ok ${i}`);
        keyed.run(i + 1, Buffer.from(hex, 'hex'), i % 2 ? Buffer.from(hex, 'hex') : `ok ${i}`); // a BLOB too
      }
      for (let i = 100; i < 400; i++) insert.run(i, Buffer.from(`plain ${i}`), i); // rows after, in the same record
    })();
    const rows = (d: Database.Database) =>
      ['t', 'k'].map((t) =>
        d.prepare(`SELECT id, hex(a), typeof(a), hex(b), typeof(b) FROM ${t} ORDER BY id`).raw(true).all(),
      );
    const expected = rows(db);
    db.close();

    expect(readRestored(source, rows)).toEqual(expected);
    expect(expected[0]![0]).toEqual([1, '636166E9', 'text', '6F6B2030', 'text']);
    expect(expected[1]![1]).toEqual([2, '61FF62', 'text', '61FF62', 'blob']);
  });

  it('round-trips a UTF-16 database, its TEXT kept as its UTF-16 bytes', () => {
    const source = join(dir, 'utf16.db');
    const db = new Database(source);
    db.pragma("encoding = 'UTF-16le'");
    db.exec('CREATE TABLE t (a, b)');
    const insert = db.prepare('INSERT INTO t (a, b) VALUES (?, ?)');
    db.transaction(() => {
      for (const [i, value] of VALUES.entries()) insert.run(value, TEXTS[i % TEXTS.length]);
    })();
    const expected = contents(db, 't');
    db.close();

    const [encoding, actual] = readRestored(source, (d) => [d.pragma('encoding', { simple: true }), contents(d, 't')]);
    expect(encoding).toBe('UTF-16le');
    expect(actual).toEqual(expected);
  });
});

describe('sqlite logical dump, rows copied from the pages', () => {
  let dir: string;
  beforeAll(() => {
    dir = join(ws.dir, 'records');
    mkdirSync(dir, { recursive: true });
  });

  /**
   * Every row of every table of the database at `path`, rowid first, with each value's type; values longer
   * than 64 bytes as their SHA-256 (comparing megabytes element by element takes seconds).
   */
  const everything = (path: string): unknown[] => {
    const db = new Database(path, { readonly: true });
    const digest = (v: unknown) =>
      (Buffer.isBuffer(v) || typeof v === 'string') && v.length > 64
        ? `${typeof v} ${createHash('sha256').update(v).digest('hex')}`
        : v;
    try {
      const tables = db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name").pluck().all();
      return tables.map((t) => contents(db, t as string).map((row) => row.map(digest)));
    } finally {
      db.close();
    }
  };

  /** A database in `dir` with one table `t` of one row, its root page's number, and where that page starts. */
  const oneRowTable = (name: string): { source: string; root: number; rootAt: number } => {
    const source = join(dir, name);
    const db = new Database(source);
    db.exec("CREATE TABLE t (a); INSERT INTO t VALUES ('x')");
    const root = db.prepare("SELECT rootpage FROM sqlite_schema WHERE name = 't'").pluck().get() as number;
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    db.close();
    return { source, root, rootAt: (root - 1) * pageSize };
  };

  it('stores a row as its rowid and the record SQLite wrote, byte for byte', () => {
    const source = join(dir, 'bytes.db');
    const db = new Database(source);
    db.exec("CREATE TABLE t (a, b); INSERT INTO t (rowid, a, b) VALUES (5, 7, 'x')");
    db.close();
    // 'S', payload length 5, rowid 5, then the record: header of 3 bytes (its size, serial types 1 for a
    // one-byte INTEGER and 15 for one byte of TEXT), then 7 and 'x'.
    const row = Buffer.from([REC_SQLITE_ROW, 5, 5, 3, 1, 15, 7, 0x78]);
    expect(dumpOf(source).indexOf(row)).toBeGreaterThan(0);
  });

  it.each([512, 4096, 65536])('follows overflow pages and deep b-trees with %i-byte pages', (pageSize) => {
    const source = join(dir, `overflow-${pageSize}.db`);
    const db = new Database(source);
    db.pragma(`page_size = ${pageSize}`);
    db.exec('CREATE TABLE big (id INTEGER PRIMARY KEY, t TEXT, b BLOB, n)');
    const insert = db.prepare('INSERT INTO big (t, b, n) VALUES (?, ?, ?)');
    db.transaction(() => {
      // Sizes around each page size's local payload limits, and values many pages long.
      for (const size of [
        0, 1, 100, 400, 477, 478, 479, 1000, 4061, 4062, 4063, 5000, 65501, 70000, 300_000, 3_000_000,
      ]) {
        insert.run('é'.repeat(size >> 1), randomBytes(size), size);
      }
      for (let i = 0; i < 20_000; i++) insert.run(`row ${i}`, null, i); // interior pages, several levels at 512 bytes
    })();
    db.close();
    const expected = everything(source);
    const target = join(dir, `overflow-${pageSize}-restored.db`);
    roundTrip(source, target);
    expect(everything(target)).toEqual(expected);
  });

  it('gives rows written before ALTER TABLE ADD COLUMN the defaults SQLite reads for them', () => {
    const source = join(dir, 'added.db');
    const db = new Database(source);
    db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, a); INSERT INTO t (a) VALUES ('old 1'), ('old 2')");
    db.exec('CREATE TABLE h (a); INSERT INTO h VALUES (1), (2)'); // a table whose rowid is not a column
    db.exec(`
      ALTER TABLE t ADD COLUMN n INTEGER DEFAULT -7;
      ALTER TABLE t ADD COLUMN s TEXT DEFAULT 'dflt';
      ALTER TABLE t ADD COLUMN b BLOB DEFAULT x'00ff';
      ALTER TABLE t ADD COLUMN r REAL DEFAULT 2;
      ALTER TABLE t ADD COLUMN z;
      ALTER TABLE h ADD COLUMN n NOT NULL DEFAULT 1.5;
      INSERT INTO t (a, n, s, b, r, z) VALUES ('new', 1, 'given', x'01', 3.5, 'zz');
      INSERT INTO h VALUES (3, 4);
    `);
    const expected = everything(source);
    db.close();
    expect(expected[1]).toContainEqual([
      1n,
      1n,
      'integer',
      'old 1',
      'text',
      -7n,
      'integer',
      'dflt',
      'text',
      Buffer.from([0, 255]),
      'blob',
      2,
      'real',
      null,
      'null',
    ]);
    const target = join(dir, 'added-restored.db');
    roundTrip(source, target);
    expect(everything(target)).toEqual(expected);
  });

  it('keeps -0.0 as it is', () => {
    const source = join(dir, 'zero.db');
    const db = new Database(source);
    db.exec('CREATE TABLE t (a, b)');
    db.prepare('INSERT INTO t VALUES (?, ?)').run(-0, 0);
    db.close();
    const signs = (d: Database.Database) =>
      (d.prepare('SELECT a, b FROM t').raw(true).get() as number[]).map((v) => Object.is(v, -0));
    expect(readRestored(source, signs)).toEqual([true, false]);
  });

  it("refuses to read a WAL database's pages, which may be older than its WAL (the dump reads copies)", () => {
    const source = join(dir, 'wal.db');
    const db = new Database(source);
    db.pragma('journal_mode = WAL');
    db.exec("CREATE TABLE t (a, b); INSERT INTO t (rowid, a, b) VALUES (5, 7, 'x')");
    db.close();
    expect(() => dumpOf(source)).toThrow(
      expect.objectContaining({ code: 'INTERNAL', message: expect.stringMatching(/WAL mode/) }),
    );
  });

  it('fails on a corrupt row at backup time with SOURCE_FAILED, naming the table', () => {
    const { source, rootAt } = oneRowTable('corrupt-row.db');
    const fd = openSync(source, 'r+');
    const pointer = Buffer.alloc(2);
    readSync(fd, pointer, 0, 2, rootAt + 8); // the leaf's only cell: length, rowid, then the record
    // The record's header is [2, 15] (its size, one byte of TEXT): make the serial type a reserved one.
    writeSync(fd, Buffer.from([10]), 0, 1, rootAt + pointer.readUInt16BE(0) + 3);
    closeSync(fd);
    expect(() => dumpOf(source)).toThrow(
      expect.objectContaining({
        code: 'SOURCE_FAILED',
        message: expect.stringMatching(
          /a row of table "t" \(cell 0 of page \d+\) is corrupt: serial type 10 is reserved/,
        ),
      }),
    );
  });

  it('refuses a table page that is not one, naming the page, with SOURCE_FAILED', () => {
    const { source, root, rootAt } = oneRowTable('broken.db');
    const fd = openSync(source, 'r+');
    writeSync(fd, Buffer.from([0x0a]), 0, 1, rootAt); // an index leaf page's type
    closeSync(fd);
    expect(() => dumpOf(source)).toThrow(
      expect.objectContaining({
        code: 'SOURCE_FAILED',
        message: expect.stringMatching(`page ${root} in table "t" is not a table page`),
      }),
    );
  });

  it('refuses a cell that claims more bytes than the file holds, with SOURCE_FAILED', () => {
    const { source, rootAt } = oneRowTable('long.db');
    const fd = openSync(source, 'r+');
    const pointer = Buffer.alloc(2);
    readSync(fd, pointer, 0, 2, rootAt + 8); // where the leaf's first (only) cell is
    writeSync(fd, Buffer.from([0xff, 0xff, 0x7f]), 0, 3, rootAt + pointer.readUInt16BE(0)); // a length of 2 MiB
    closeSync(fd);
    expect(() => dumpOf(source)).toThrow(
      expect.objectContaining({ code: 'SOURCE_FAILED', message: expect.stringMatching('more than the file holds') }),
    );
  });

  it.each([
    ['a reserved serial type', [2, 10], /serial type 10 is reserved/],
    ['a value past the record', [2, 4, 1], /runs past the record/],
    ['bytes after the last value', [2, 1, 7, 7], /1 bytes after its last value/],
    ['a header longer than the record', [9, 1], /header runs past/],
  ])('refuses a record with %s with SOURCE_FAILED', (_name, record, message) => {
    const enc = new DumpEncoder();
    enc.raw(DUMP_MAGIC);
    enc.byte(REC_OBJECT);
    for (const field of ['table', 't', 't']) enc.text(field);
    enc.byte(BTREE_TABLE);
    enc.byte(1);
    enc.text('CREATE TABLE t (a)');
    enc.byte(REC_TABLE);
    enc.text('t');
    enc.byte(1);
    enc.u32(1);
    enc.text('a');
    enc.raw(Buffer.from([REC_SQLITE_ROW, record.length, 1, ...record]));
    enc.byte(REC_TABLE_END);
    enc.u32(1);
    enc.byte(REC_END);
    enc.u32(1);
    const db = new Database(':memory:');
    try {
      expect(() => new DumpLoader(db).push(enc.take())).toThrow(
        expect.objectContaining({ code: 'SOURCE_FAILED', message: expect.stringMatching(message) }),
      );
    } finally {
      db.close();
    }
  });
});

describe('sqlite logical dump, versions', () => {
  it('refuses a dump from a newer backupd with UNSUPPORTED_FORMAT, and one that is no dump or an older one with SOURCE_FAILED', () => {
    const db = new Database(':memory:');
    try {
      expect(() => new DumpLoader(db).push(Buffer.from('BKDSQL5\nM...'))).toThrow(
        expect.objectContaining({
          code: 'UNSUPPORTED_FORMAT',
          message: expect.stringMatching(/version 5, written by a newer backupd/),
        }),
      );
      for (const other of ['SQLite format 3\0', 'BKDSQL3\nM...']) {
        expect(() => new DumpLoader(db).push(Buffer.from(other))).toThrow(
          expect.objectContaining({
            code: 'SOURCE_FAILED',
            message: expect.stringMatching(/does not start with BKDSQL4/),
          }),
        );
      }
    } finally {
      db.close();
    }
  });
});
