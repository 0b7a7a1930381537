// SQLite fixtures built by the sqlite3 CLI (sqlite-judge.ts): a schema that uses every kind of table,
// rowid, constraint, index, view, trigger and statistics, and full-text search and R*Tree tables, with
// queries whose answers a restore must keep. Shared by the fidelity corpus and the conformance suite.

export const SCHEMA_TABLES = `
PRAGMA foreign_keys = OFF;
CREATE TABLE kinds(
  id INTEGER PRIMARY KEY,
  code TEXT NOT NULL UNIQUE COLLATE NOCASE,
  qty INTEGER DEFAULT 7 CHECK (qty >= 0),
  price REAL DEFAULT (1.0 * 2),
  made TEXT DEFAULT CURRENT_TIMESTAMP,
  parent INTEGER REFERENCES kinds(id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
  UNIQUE (qty, price),
  CHECK (length(code) < 100)
);
CREATE TABLE strict_t(id INTEGER PRIMARY KEY, n INT, r REAL, t TEXT, b BLOB, a ANY) STRICT;
CREATE TABLE gen(a INTEGER, b TEXT, twice INTEGER GENERATED ALWAYS AS (a * 2) VIRTUAL,
  label TEXT AS (upper(b) || a) STORED, c REAL);
CREATE TABLE wr(k1 TEXT, k2 INTEGER, v BLOB, PRIMARY KEY (k2 DESC, k1)) WITHOUT ROWID;
CREATE TABLE hidden_rowid(a, b);
CREATE TABLE named_rowid(rowid TEXT, x);
CREATE TABLE all_names(rowid, _rowid_, oid);
CREATE TABLE negatives(id INTEGER PRIMARY KEY, v);
CREATE TABLE auto(id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);
CREATE TABLE ipk_desc(id INTEGER PRIMARY KEY DESC, v);
CREATE INDEX kinds_partial ON kinds(price) WHERE qty > 3;
CREATE INDEX kinds_expr ON kinds(lower(code), qty * 2);
CREATE UNIQUE INDEX gen_label ON gen(label);
CREATE VIEW cheap AS SELECT code, price FROM kinds WHERE price < 10;
CREATE TRIGGER kinds_log AFTER UPDATE ON kinds BEGIN INSERT INTO auto(v) VALUES ('updated ' || new.code); END;
INSERT INTO kinds(code, qty, price, made, parent) VALUES ('a', 1, 1.5, '2026-01-01', NULL), ('B', 5, 2.5, '2026-01-02', 1),
  ('c', 9, NULL, NULL, 7);
INSERT INTO strict_t VALUES (1, 2, 3.5, 'x', x'01', 4.5), (2, NULL, -0.0, '', x'', 'any'), (3, -9223372036854775808, 1e308, 'y', x'ff', x'00');
INSERT INTO gen(a, b, c) VALUES (1, 'x', 0.5), (2, 'y', -0.0), (NULL, NULL, NULL);
INSERT INTO wr VALUES ('a', 1, x'00'), ('b', 1, NULL), ('a', -5, 'text');
INSERT INTO hidden_rowid(rowid, a, b) VALUES (5, 1, 2), (-7, 3, 4), (9223372036854775807, 5, 6);
INSERT INTO named_rowid(_rowid_, rowid, x) VALUES (10, 'r1', 1), (-20, 'r2', 2);
INSERT INTO all_names VALUES (1, 2, 3), (4, 5, 6);
INSERT INTO negatives VALUES (-9223372036854775808, 'min'), (-1, 'neg'), (0, 'zero'), (9223372036854775807, 'max');
INSERT INTO auto(v) VALUES ('one'), ('two'), ('three');
DELETE FROM auto WHERE v = 'three';
INSERT INTO ipk_desc VALUES (3, 'a'), (1, 'b');
ANALYZE;
`;

export const FTS = `
CREATE VIRTUAL TABLE notes USING fts5(title, body, tokenize = 'porter unicode61');
INSERT INTO notes VALUES ('Backups', 'restore exactly what was backed up'), ('SQLite', 'full-text search in the database'),
  ('Other', 'nothing about databases or backups');
CREATE TABLE articles(id INTEGER PRIMARY KEY, title TEXT, body TEXT);
CREATE VIRTUAL TABLE articles_fts USING fts5(title, body, content = 'articles', content_rowid = 'id');
CREATE TRIGGER articles_ai AFTER INSERT ON articles BEGIN
  INSERT INTO articles_fts(rowid, title, body) VALUES (new.id, new.title, new.body); END;
CREATE TRIGGER articles_ad AFTER DELETE ON articles BEGIN
  INSERT INTO articles_fts(articles_fts, rowid, title, body) VALUES ('delete', old.id, old.title, old.body); END;
INSERT INTO articles(title, body) VALUES ('one', 'the quick brown fox'), ('two', 'jumps over the lazy dog'),
  ('three', 'quick quick quick');
CREATE VIRTUAL TABLE bare USING fts5(body, content = '');
INSERT INTO bare(rowid, body) VALUES (7, 'contentless full text'), (9, 'only the index is kept');
CREATE VIRTUAL TABLE old_docs USING fts4(title, body);
INSERT INTO old_docs VALUES ('fts4', 'an older full-text module'), ('again', 'full text twice');
CREATE VIRTUAL TABLE places USING rtree(id, min_x, max_x, min_y, max_y, +name);
INSERT INTO places VALUES (1, 0, 10, 0, 10, 'square'), (2, 5, 6, 5, 6, 'dot'), (3, -100, -50, 20, 30, 'far');
WITH RECURSIVE n(i) AS (SELECT 10 UNION ALL SELECT i + 1 FROM n WHERE i < 400)
  INSERT INTO places SELECT i, i, i + 2.5, -i, -i + 1, 'p' || i FROM n;
`;

export const FTS_QUERIES = {
  own: "SELECT rowid, title, highlight(notes, 1, '[', ']') FROM notes WHERE notes MATCH 'backup*' ORDER BY rank;",
  external: "SELECT rowid, title FROM articles_fts WHERE articles_fts MATCH 'quick' ORDER BY rank;",
  checks: `INSERT INTO notes(notes) VALUES ('integrity-check');
INSERT INTO articles_fts(articles_fts, rank) VALUES ('integrity-check', 0);
SELECT rtreecheck('places');`,
  contentless: "SELECT rowid FROM bare WHERE bare MATCH 'index OR text' ORDER BY rowid;",
  fts4: "SELECT rowid, title, snippet(old_docs) FROM old_docs WHERE old_docs MATCH 'full' ORDER BY rowid;",
  range: 'SELECT id, name FROM places WHERE min_x <= 7 AND max_x >= 5 AND min_y <= 6 ORDER BY id;',
  count: 'SELECT count(*) FROM places WHERE max_x > 100;',
};
