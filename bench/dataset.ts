// The benchmark's database: a shop (customers, products, orders, order items, reviews, events) filled
// with language-like text, numbers, timestamps, NULLs and a few small BLOBs from a seeded PRNG, so every
// run backs up the same bytes. Also the change between a full and an incremental backup (`mutate`), and
// the fingerprint that proves a restored database holds exactly the data it should.

import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { Prng } from './prng.js';
import {
  ADJECTIVES,
  CATEGORIES,
  CITIES,
  COMMON_WORDS,
  CURRENCIES,
  EMAIL_DOMAINS,
  EVENT_TYPES,
  FIRST_NAMES,
  LAST_NAMES,
  MATERIALS,
  NOUNS,
  ORDER_STATUSES,
  PAGES,
  REFERRERS,
  STREET_SUFFIXES,
  STREETS,
  USER_AGENTS,
} from './words.js';

/** Bump when the generator changes, so cached databases of an older shape are not reused. */
const GENERATOR_VERSION = 1;

export const DEFAULT_SEED = 20261122;

const SCHEMA = `
CREATE TABLE customers (
  id INTEGER PRIMARY KEY,
  first_name TEXT NOT NULL,
  last_name TEXT NOT NULL,
  email TEXT NOT NULL,
  phone TEXT,
  street TEXT NOT NULL,
  city TEXT NOT NULL,
  postal_code TEXT,
  country TEXT NOT NULL,
  birth_date TEXT,
  created_at TEXT NOT NULL,
  updated_unix INTEGER NOT NULL,
  loyalty_points INTEGER NOT NULL,
  marketing_opt_in INTEGER NOT NULL,
  notes TEXT,
  avatar BLOB
);
CREATE TABLE products (
  id INTEGER PRIMARY KEY,
  sku TEXT NOT NULL,
  name TEXT NOT NULL,
  category TEXT NOT NULL,
  description TEXT NOT NULL,
  price REAL NOT NULL,
  weight_grams INTEGER,
  stock INTEGER NOT NULL,
  created_at TEXT NOT NULL
);
CREATE TABLE orders (
  id INTEGER PRIMARY KEY,
  customer_id INTEGER NOT NULL,
  status TEXT NOT NULL,
  currency TEXT NOT NULL,
  subtotal REAL NOT NULL,
  tax REAL NOT NULL,
  shipping REAL NOT NULL,
  total REAL NOT NULL,
  shipping_address TEXT NOT NULL,
  placed_at TEXT NOT NULL,
  placed_unix INTEGER NOT NULL,
  shipped_unix INTEGER,
  coupon TEXT,
  note TEXT
);
CREATE TABLE order_items (
  id INTEGER PRIMARY KEY,
  order_id INTEGER NOT NULL,
  product_id INTEGER NOT NULL,
  quantity INTEGER NOT NULL,
  unit_price REAL NOT NULL,
  discount REAL
);
CREATE TABLE reviews (
  id INTEGER PRIMARY KEY,
  product_id INTEGER NOT NULL,
  customer_id INTEGER NOT NULL,
  rating INTEGER NOT NULL,
  title TEXT,
  body TEXT NOT NULL,
  created_at TEXT NOT NULL,
  helpful_votes INTEGER NOT NULL
);
CREATE TABLE events (
  id INTEGER PRIMARY KEY,
  customer_id INTEGER,
  session_id TEXT NOT NULL,
  type TEXT NOT NULL,
  ts INTEGER NOT NULL,
  page TEXT,
  user_agent TEXT,
  ip TEXT,
  payload TEXT
);
`;

// Created after the load: building an index from sorted input is several times faster than keeping
// it up to date row by row, and gives the same pages.
const INDEXES = `
CREATE UNIQUE INDEX customers_email ON customers(email);
CREATE INDEX customers_country_city ON customers(country, city);
CREATE UNIQUE INDEX products_sku ON products(sku);
CREATE INDEX products_category ON products(category, price);
CREATE INDEX orders_customer ON orders(customer_id, placed_unix);
CREATE INDEX orders_status ON orders(status, placed_unix);
CREATE INDEX order_items_order ON order_items(order_id);
CREATE INDEX order_items_product ON order_items(product_id);
CREATE INDEX reviews_product ON reviews(product_id, rating);
CREATE INDEX events_customer_ts ON events(customer_id, ts);
CREATE INDEX events_type_ts ON events(type, ts);
`;

/** Tables that grow with the dataset and take the appends and updates of `mutate`. */
export const BIG_TABLES = ['customers', 'orders', 'order_items', 'reviews', 'events'] as const;

/** Share of the final file the table pages take; the indexes built after the load take the rest. */
const DATA_SHARE = 0.81;

const START_UNIX = Date.UTC(2022, 0, 1) / 1000;
const SPAN_SECONDS = 2.5 * 365 * 86400;

export interface DatasetInfo {
  path: string;
  bytes: number;
  /** Generation time, or undefined when the cached file was reused. */
  generatedMs?: number;
  rows: Record<string, number>;
}

/**
 * The path of the dataset of `sizeMb` and `seed` in `cacheDir`, generated first if it is not cached.
 * A partial file from an interrupted run is never reused: the file is renamed into place only complete.
 */
export function ensureDataset(cacheDir: string, sizeMb: number, seed = DEFAULT_SEED): DatasetInfo {
  mkdirSync(cacheDir, { recursive: true });
  const path = join(cacheDir, `dataset-v${GENERATOR_VERSION}-${sizeMb}mb-seed${seed}.db`);
  if (existsSync(path)) return { path, bytes: statSync(path).size, rows: rowCounts(path) };
  const temp = `${path}.partial`;
  for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(`${temp}${suffix}`, { force: true });
  const started = performance.now();
  generateDataset(temp, sizeMb, seed);
  const generatedMs = performance.now() - started;
  renameSync(temp, path);
  return { path, bytes: statSync(path).size, generatedMs, rows: rowCounts(path) };
}

/** Write a new dataset of about `sizeMb` MiB to `path` (which must not exist). */
export function generateDataset(path: string, sizeMb: number, seed: number): void {
  const db = new Database(path);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = OFF');
    db.pragma('locking_mode = EXCLUSIVE');
    db.pragma('cache_size = -131072'); // 128 MiB: index builds sort in memory instead of temp files
    db.exec(SCHEMA);
    const gen = new Generator(db, new Prng(seed));
    const target = sizeMb * 1024 * 1024;
    const dataTarget = target * DATA_SHARE;
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    const pageCount = db.prepare<[], number>('PRAGMA page_count').pluck();
    gen.products(Math.max(200, Math.min(20000, Math.round(sizeMb * 20))), START_UNIX - 180 * 86400);

    let bytes = 0;
    while (bytes < dataTarget) {
      const progress = bytes / dataTarget;
      db.transaction(() => gen.round(200, START_UNIX + progress * SPAN_SECONDS))();
      bytes = pageCount.get()! * pageSize;
    }
    db.exec(INDEXES);
    // Leave one self-contained file (no -wal/-shm beside it), which is what gets cached and copied.
    db.pragma('journal_mode = DELETE');
  } finally {
    db.close();
  }
}

export interface MutationInfo {
  appended: Record<string, number>;
  updated: Record<string, number>;
  durationMs: number;
}

/**
 * The change between a full backup and its incremental: append 1% more rows to every big table (new
 * customers, their orders and items, reviews, events, all later in time) and update 0.1% of the existing
 * rows, chosen at random across each table so the changed pages are scattered.
 */
export function mutate(path: string, seed = DEFAULT_SEED + 1): MutationInfo {
  const started = performance.now();
  const db = new Database(path);
  try {
    const prng = new Prng(seed);
    const gen = new Generator(db, prng);
    const before = countRows(db);
    const maxTs = db.prepare<[], number>('SELECT max(ts) FROM events').pluck().get() ?? START_UNIX;
    const updated: Record<string, number> = {};
    db.transaction(() => {
      // New customers drive every other table (orders, items, reviews, events grow with them), in
      // rounds of at most 200 as in the load.
      let remaining = Math.max(1, Math.round((before.customers ?? 0) / 100));
      for (let at = maxTs + 60; remaining > 0; at += 600) {
        const n = Math.min(200, remaining);
        gen.round(n, at);
        remaining -= n;
      }
      for (const table of BIG_TABLES) {
        const n = Math.max(1, Math.round((before[table] ?? 0) / 1000));
        updated[table] = gen.update(table, n, before[table] ?? 0, maxTs + 86400);
      }
    })();
    const after = countRows(db);
    const appended: Record<string, number> = {};
    for (const table of BIG_TABLES) appended[table] = (after[table] ?? 0) - (before[table] ?? 0);
    return { appended, updated, durationMs: performance.now() - started };
  } finally {
    db.close();
  }
}

/** Rows per table. */
export function rowCounts(path: string): Record<string, number> {
  const db = new Database(path, { readonly: true });
  try {
    return countRows(db);
  } finally {
    db.close();
  }
}

function countRows(db: Database.Database): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const table of userTables(db)) {
    counts[table] = db.prepare<[], number>(`SELECT count(*) FROM "${table}"`).pluck().get() ?? 0;
  }
  return counts;
}

function userTables(db: Database.Database): string[] {
  return db
    .prepare<[], string>(
      "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .pluck()
    .all();
}

/** What a database holds, cheap enough to compute on 1 GiB: per table its row count and column digests. */
export interface Fingerprint {
  tables: Record<string, { rows: number; digest: string }>;
  indexes: string[];
}

/**
 * Per table: the row count, and for every column the sum of its values' quoted lengths (text, blobs,
 * NULLs) and the sum of its numbers, computed by SQLite in one scan. A lost, truncated, reordered-into-other-columns or
 * rounded value changes it; it is not a cryptographic hash, it is a guard against a fast wrong answer.
 */
export function fingerprint(path: string): Fingerprint {
  const db = new Database(path, { readonly: true });
  try {
    const tables: Fingerprint['tables'] = {};
    for (const table of userTables(db)) {
      const columns = db
        .prepare<[], string>(`SELECT name FROM pragma_table_info('${table}') ORDER BY cid`)
        .pluck()
        .all();
      const parts = columns.flatMap((c) => [
        `total(length(quote("${c}")))`,
        `total(CASE typeof("${c}") WHEN 'integer' THEN "${c}" WHEN 'real' THEN "${c}" END)`,
      ]);
      const row = db
        .prepare<[], unknown[]>(`SELECT count(*), total(id), ${parts.join(', ')} FROM "${table}"`)
        .raw()
        .get();
      const values = row ?? [];
      tables[table] = { rows: Number(values[0]), digest: values.slice(1).join(':') };
    }
    const indexes = db
      .prepare<[], string>(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%' ORDER BY name",
      )
      .pluck()
      .all();
    return { tables, indexes };
  } finally {
    db.close();
  }
}

/** Fills the tables with generated rows; one instance per connection. */
class Generator {
  private readonly insertCustomer: Database.Statement;
  private readonly insertProduct: Database.Statement;
  private readonly insertOrder: Database.Statement;
  private readonly insertItem: Database.Statement;
  private readonly insertReview: Database.Statement;
  private readonly insertEvent: Database.Statement;
  private nextId: Record<string, number> = {};
  private productPrices: number[] = [];

  constructor(
    private readonly db: Database.Database,
    private readonly prng: Prng,
  ) {
    const insert = (table: string, columns: number): Database.Statement =>
      db.prepare(`INSERT INTO ${table} VALUES (${new Array(columns).fill('?').join(', ')})`);
    this.insertCustomer = insert('customers', 16);
    this.insertProduct = insert('products', 9);
    this.insertOrder = insert('orders', 14);
    this.insertItem = insert('order_items', 6);
    this.insertReview = insert('reviews', 8);
    this.insertEvent = insert('events', 9);
    for (const table of ['customers', 'products', 'orders', 'order_items', 'reviews', 'events']) {
      this.nextId[table] = (db.prepare<[], number>(`SELECT max(id) FROM ${table}`).pluck().get() ?? 0) + 1;
    }
    this.productPrices = db.prepare<[], number>('SELECT price FROM products ORDER BY id').pluck().all();
  }

  private id(table: string): number {
    const id = this.nextId[table]!;
    this.nextId[table] = id + 1;
    return id;
  }

  products(n: number, at: number): void {
    const p = this.prng;
    for (let i = 0; i < n; i++) {
      const id = this.id('products');
      const price = Math.round((2 + p.float() * p.float() * 400) * 100) / 100;
      const name = `${capitalize(p.pick(ADJECTIVES))} ${p.pick(MATERIALS)} ${p.pick(NOUNS)}`;
      this.insertProduct.run(
        id,
        `SKU-${p.pick(CATEGORIES).slice(0, 3).toUpperCase()}-${String(id).padStart(6, '0')}`,
        name,
        p.pick(CATEGORIES),
        this.prose(p.int(30, 90)),
        price,
        p.chance(0.1) ? null : p.int(20, 25000),
        p.int(0, 5000),
        iso(at + p.int(0, 86400 * 30)),
      );
      this.productPrices.push(price);
    }
  }

  /** One slice of shop life at time `at`: new customers, and orders, reviews and events of all customers. */
  round(newCustomers: number, at: number): void {
    for (let i = 0; i < newCustomers; i++) this.customer(at);
    const customers = this.nextId.customers! - 1;
    // Recent customers are the busiest: pick among the newest half more often.
    const someone = (): number => customers - this.prng.skewed(customers);
    for (let i = 0; i < newCustomers * 3; i++) this.order(someone(), at + this.prng.int(0, 3600));
    for (let i = 0; i < newCustomers / 2; i++) this.review(someone(), at + this.prng.int(0, 3600));
    for (let i = 0; i < newCustomers * 12; i++) {
      this.event(this.prng.chance(0.15) ? null : someone(), at + this.prng.int(0, 3600));
    }
  }

  private customer(at: number): void {
    const p = this.prng;
    const id = this.id('customers');
    const first = p.pick(FIRST_NAMES);
    const last = p.pick(LAST_NAMES);
    const [city, country] = p.pick(CITIES);
    const created = at - p.int(0, 3600);
    this.insertCustomer.run(
      id,
      first,
      last,
      `${ascii(first)}.${ascii(last)}${id}@${p.pick(EMAIL_DOMAINS)}`.toLowerCase(),
      p.chance(0.2) ? null : `+${p.int(1, 99)} ${p.int(100, 999)} ${p.int(100, 999)} ${p.int(1000, 9999)}`,
      `${p.int(1, 9999)} ${p.pick(STREETS)} ${p.pick(STREET_SUFFIXES)}${p.chance(0.2) ? `, Apt ${p.int(1, 400)}` : ''}`,
      city,
      p.chance(0.05) ? null : String(p.int(1000, 99999)),
      country,
      p.chance(0.4) ? null : iso(created - p.int(18 * 365, 80 * 365) * 86400).slice(0, 10),
      iso(created),
      created + p.int(0, 86400 * 90),
      p.int(0, 20) * 50,
      p.chance(0.35) ? 1 : 0,
      p.chance(0.9) ? null : this.prose(p.int(5, 25)),
      p.chance(0.03) ? this.avatar() : null,
    );
  }

  private order(customer: number, at: number): void {
    const p = this.prng;
    const id = this.id('orders');
    let subtotal = 0;
    const items = 1 + p.skewed(8);
    for (let i = 0; i < items; i++) {
      const product = 1 + p.skewed(this.productPrices.length);
      const price = this.productPrices[product - 1]!;
      const quantity = 1 + p.skewed(5);
      const discount = p.chance(0.8) ? null : Math.round(price * quantity * p.int(5, 30)) / 100;
      this.insertItem.run(this.id('order_items'), id, product, quantity, price, discount);
      subtotal += price * quantity - (discount ?? 0);
    }
    subtotal = Math.round(subtotal * 100) / 100;
    const tax = Math.round(subtotal * 0.08 * 100) / 100;
    const shipping = subtotal > 50 ? 0 : 4.99;
    const status = p.pick(ORDER_STATUSES);
    const [city, country] = p.pick(CITIES);
    this.insertOrder.run(
      id,
      customer,
      status,
      p.pick(CURRENCIES),
      subtotal,
      tax,
      shipping,
      Math.round((subtotal + tax + shipping) * 100) / 100,
      `${p.int(1, 9999)} ${p.pick(STREETS)} ${p.pick(STREET_SUFFIXES)}, ${city}, ${country}`,
      iso(at),
      at,
      status === 'shipped' || status === 'delivered' ? at + p.int(3600, 86400 * 4) : null,
      p.chance(0.1) ? `SAVE${p.int(5, 30)}-${p.hex(4).toUpperCase()}` : null,
      p.chance(0.05) ? this.prose(p.int(4, 16)) : null,
    );
  }

  private review(customer: number, at: number): void {
    const p = this.prng;
    this.insertReview.run(
      this.id('reviews'),
      1 + p.skewed(this.productPrices.length),
      customer,
      Math.max(1, 5 - p.skewed(5)),
      p.chance(0.3) ? null : capitalize(this.prose(p.int(2, 6)).replace(/\.$/, '')),
      this.prose(p.int(10, 80)),
      iso(at),
      p.skewed(40),
    );
  }

  private event(customer: number | null, at: number): void {
    const p = this.prng;
    const type = p.pick(EVENT_TYPES);
    this.insertEvent.run(
      this.id('events'),
      customer,
      p.hex(16),
      type,
      at,
      p.chance(0.1) ? null : p.pick(PAGES),
      p.chance(0.05) ? null : p.pick(USER_AGENTS),
      `${p.int(1, 223)}.${p.int(0, 255)}.${p.int(0, 255)}.${p.int(1, 254)}`,
      this.payload(type),
    );
  }

  /** A JSON payload shaped by the event type, as an analytics pipeline would store it. */
  private payload(type: string): string | null {
    const p = this.prng;
    const products = this.productPrices.length;
    switch (type) {
      case 'page_view':
        return `{"referrer":"${p.pick(REFERRERS)}","duration_ms":${p.int(200, 120000)},"scroll":${(p.float()).toFixed(2)},"viewport":{"w":${p.pick([375, 390, 414, 768, 1280, 1440, 1920])},"h":${p.pick([667, 844, 896, 1024, 800, 900, 1080])}}}`;
      case 'search':
        return `{"query":"${p.pick(ADJECTIVES)} ${p.pick(NOUNS)}","results":${p.int(0, 400)},"page":${1 + p.skewed(5)},"filters":{"category":"${p.pick(CATEGORIES)}","max_price":${p.int(10, 500)}}}`;
      case 'add_to_cart':
      case 'remove_from_cart':
      case 'wishlist_add': {
        const product = 1 + p.skewed(products);
        return `{"product_id":${product},"quantity":${1 + p.skewed(4)},"price":${this.productPrices[product - 1]},"source":"${p.pick(PAGES)}"}`;
      }
      case 'checkout_started':
      case 'checkout_completed':
        return `{"order_id":${p.int(1, this.nextId.orders!)},"items":${1 + p.skewed(8)},"total":${(p.float() * 500).toFixed(2)},"payment":"${p.pick(['card', 'paypal', 'apple_pay', 'google_pay', 'invoice'])}"}`;
      case 'support_ticket':
      case 'review_posted':
        return `{"channel":"${p.pick(['email', 'chat', 'phone', 'web'])}","message":"${this.prose(p.int(8, 40))}"}`;
      case 'email_opened':
      case 'email_clicked':
        return `{"campaign":"${p.pick(['spring-sale', 'summer-sale', 'black-friday', 'newsletter', 'win-back', 'welcome'])}-${p.int(2022, 2024)}","link":${p.int(0, 12)}}`;
      default:
        return p.chance(0.5)
          ? null
          : `{"method":"${p.pick(['password', 'google', 'apple', 'magic_link'])}","mfa":${p.chance(0.3)}}`;
    }
  }

  private prose(words: number): string {
    const p = this.prng;
    let s = capitalize(p.pick(COMMON_WORDS));
    for (let i = 1; i < words; i++) {
      const r = p.float();
      s += ' ';
      s += r < 0.7 ? p.pick(COMMON_WORDS) : r < 0.8 ? p.pick(ADJECTIVES) : r < 0.9 ? p.pick(NOUNS) : p.pick(MATERIALS);
      if (i % 12 === 11 && i < words - 1) s += '.';
    }
    return `${s}.`;
  }

  /** A small PNG-like thumbnail: a fixed header and a short, deterministic body. */
  private avatar(): Buffer {
    const p = this.prng;
    const body = Buffer.alloc(64 + 4 * p.int(0, 112));
    for (let i = 0; i < body.length; i += 4) body.writeUInt32LE(p.u32(), i);
    return Buffer.concat([PNG_HEADER, body]);
  }

  /** Update `n` distinct existing rows of `table` chosen uniformly among ids 1..`rows`; returns how many. */
  update(table: (typeof BIG_TABLES)[number], n: number, rows: number, at: number): number {
    const p = this.prng;
    const ids = new Set<number>();
    while (ids.size < Math.min(n, rows)) ids.add(p.int(1, rows));
    const statement = {
      customers: this.db.prepare(
        'UPDATE customers SET street = ?, phone = ?, updated_unix = ?, loyalty_points = loyalty_points + 50 WHERE id = ?',
      ),
      orders: this.db.prepare(
        'UPDATE orders SET status = ?, shipped_unix = coalesce(shipped_unix, ?), note = ? WHERE id = ?',
      ),
      order_items: this.db.prepare('UPDATE order_items SET quantity = quantity + 1, discount = ? WHERE id = ?'),
      reviews: this.db.prepare('UPDATE reviews SET helpful_votes = helpful_votes + ?, body = body || ? WHERE id = ?'),
      events: this.db.prepare(
        `UPDATE events SET payload = json_set(coalesce(payload, '{}'), '$.processed_at', ?) WHERE id = ?`,
      ),
    }[table];
    for (const id of ids) {
      switch (table) {
        case 'customers':
          statement.run(
            `${p.int(1, 9999)} ${p.pick(STREETS)} ${p.pick(STREET_SUFFIXES)}`,
            `+1 555 ${p.int(100, 999)} ${p.int(1000, 9999)}`,
            at,
            id,
          );
          break;
        case 'orders':
          statement.run(p.pick(['delivered', 'refunded', 'cancelled']), at, `Updated by support: ${this.prose(6)}`, id);
          break;
        case 'order_items':
          statement.run(p.chance(0.5) ? null : p.int(1, 20), id);
          break;
        case 'reviews':
          statement.run(p.int(1, 5), ` Edit: ${this.prose(p.int(5, 15))}`, id);
          break;
        case 'events':
          statement.run(iso(at + p.int(0, 3600)), id);
          break;
      }
    }
    return ids.size;
  }
}

const PNG_HEADER = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex');

function iso(unixSeconds: number): string {
  return new Date(Math.round(unixSeconds) * 1000).toISOString();
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** Email-safe form of a name: accents dropped, other non-ASCII letters replaced. */
function ascii(s: string): string {
  return s
    .normalize('NFD')
    .replace(/[\u0300-\u036f]/g, '')
    .replace(/[^A-Za-z]/g, 'x');
}

// `node dist/bench/dataset.js [sizeMb] [seed]` generates (or finds) a dataset on its own and prints where;
// it uses the same cache folder as the benchmark (BENCH_DIR, else .bench/ at the project root).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const sizeMb = Number(process.argv[2] ?? process.env.BENCH_SIZE_MB ?? 1024);
  const seed = Number(process.argv[3] ?? process.env.BENCH_SEED ?? DEFAULT_SEED);
  const benchDir = process.env.BENCH_DIR ?? join(dirname(fileURLToPath(import.meta.url)), '..', '..', '.bench');
  const info = ensureDataset(benchDir, sizeMb, seed);
  process.stdout.write(`${JSON.stringify(info, null, 2)}\n`);
}
