// A sample SQLite database for the demo and the tests: several tables, indexes, BLOBs, NULLs, unicode text,
// an AUTOINCREMENT table, a view and a trigger; plus a content checksum to compare databases by.

import { createHash } from 'node:crypto';
import Database from 'better-sqlite3';

/** Deterministic PRNG (mulberry32) so a test's data is the same on every run. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = ['alpha', 'Ärger', 'naïve', '東京', 'café', 'order', 'shipped', 'paid', 'zürich', '🙂', 'delta', 'kilo'];

export function createSampleDb(path: string, rows: number, seed = 1): void {
  const db = new Database(path);
  const rnd = prng(seed);
  const word = () => WORDS[Math.floor(rnd() * WORDS.length)]!;
  db.pragma('journal_mode = WAL');
  db.exec(`
    CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT, balance REAL, created_at TEXT);
    CREATE TABLE orders (id INTEGER PRIMARY KEY AUTOINCREMENT, customer_id INTEGER REFERENCES customers(id),
      total NUMERIC, note TEXT, payload BLOB, placed_at INTEGER);
    CREATE TABLE events (kind TEXT, body TEXT, at INTEGER);
    CREATE TABLE tags (name TEXT PRIMARY KEY, weight REAL) WITHOUT ROWID;
    CREATE TABLE audit (id INTEGER PRIMARY KEY, customer_id INTEGER, change TEXT);
    CREATE INDEX orders_by_customer ON orders(customer_id, placed_at);
    CREATE INDEX events_by_kind ON events(kind);
    CREATE UNIQUE INDEX customers_email ON customers(email);
    CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 500;
    CREATE TRIGGER customers_audit AFTER UPDATE ON customers BEGIN
      INSERT INTO audit (customer_id, change) VALUES (new.id, 'balance ' || old.balance || ' -> ' || new.balance);
    END;
  `);
  const customers = Math.max(1, Math.floor(rows / 10));
  const insertCustomer = db.prepare('INSERT INTO customers (name, email, balance, created_at) VALUES (?, ?, ?, ?)');
  const insertOrder = db.prepare(
    'INSERT INTO orders (customer_id, total, note, payload, placed_at) VALUES (?, ?, ?, ?, ?)',
  );
  const insertEvent = db.prepare('INSERT INTO events (kind, body, at) VALUES (?, ?, ?)');
  const insertTag = db.prepare('INSERT INTO tags (name, weight) VALUES (?, ?)');
  db.transaction(() => {
    for (let i = 0; i < customers; i++) {
      insertCustomer.run(
        `${word()} ${word()} ${i}`,
        rnd() < 0.1 ? null : `user${i}@example.com`,
        rnd() * 1000,
        new Date(1.7e12 + i * 1000).toISOString(),
      );
    }
    for (let i = 0; i < rows; i++) {
      const payload =
        rnd() < 0.3
          ? Buffer.from(Array.from({ length: 16 + Math.floor(rnd() * 48) }, () => Math.floor(rnd() * 256)))
          : null;
      insertOrder.run(
        1 + Math.floor(rnd() * customers),
        Math.round(rnd() * 100000) / 100,
        rnd() < 0.2 ? null : `${word()} ${word()} ${word()}`,
        payload,
        1.7e9 + i,
      );
      if (i % 2 === 0) insertEvent.run(word(), JSON.stringify({ n: i, w: word(), ok: rnd() < 0.5 }), 1.7e9 + i);
    }
    for (let i = 0; i < 200; i++) insertTag.run(`tag-${i}-${word()}`, rnd());
    // Integers beyond 2^53 must survive exactly.
    insertEvent.run('big', null, 9007199254740993n);
  })();
  db.close();
}

/** Scattered updates and appended rows: what happens between a full and an incremental. */
export function changeSampleDb(path: string, seed: number, updates: number, appends: number): void {
  const db = new Database(path);
  const rnd = prng(seed);
  const maxOrder = Number((db.prepare('SELECT max(id) AS m FROM orders').get() as { m: number }).m);
  const update = db.prepare('UPDATE orders SET note = ?, total = ? WHERE id = ?');
  const append = db.prepare(
    'INSERT INTO orders (customer_id, total, note, payload, placed_at) VALUES (?, ?, ?, NULL, ?)',
  );
  db.transaction(() => {
    for (let i = 0; i < updates; i++)
      update.run(`changed ${seed}-${i}`, rnd() * 1000, 1 + Math.floor(rnd() * maxOrder));
    for (let i = 0; i < appends; i++) append.run(1, rnd() * 1000, `appended ${seed}-${i}`, 2e9 + i);
    db.prepare('UPDATE customers SET balance = balance + 1 WHERE id = 1').run();
  })();
  db.close();
}

/** sha256 over every table's rows (in primary key / rowid order, with types) plus the schema. */
export function contentChecksum(path: string): string {
  const db = new Database(path, { readonly: true });
  try {
    const hash = createHash('sha256');
    const objects = db
      .prepare("SELECT type, name, sql FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name")
      .all() as {
      type: string;
      name: string;
      sql: string | null;
    }[];
    for (const o of objects) {
      hash.update(`${o.type}|${o.name}|${o.sql}\n`);
      if (o.type !== 'table') continue;
      const rows = db
        .prepare(`SELECT * FROM "${o.name}" ORDER BY 1`)
        .raw(true)
        .safeIntegers(true)
        .iterate() as IterableIterator<unknown[]>;
      for (const row of rows) {
        for (const v of row)
          hash.update(v === null ? 'N' : Buffer.isBuffer(v) ? `B${v.toString('hex')}` : `${typeof v}:${String(v)}`);
        hash.update('\n');
      }
    }
    return hash.digest('hex');
  } finally {
    db.close();
  }
}
