// Bulk rows for tests that must catch a backup while it runs (cancel tests): ~2 MB of incompressible text
// per 5,000 rows, made by SQLite itself in about a second for 600,000 rows, where the sample database's
// generator would take most of a minute. Backups read ~250 MB of these in a few seconds.

import Database from 'better-sqlite3';

export function addBulkRows(path: string, rows = 600_000): void {
  const db = new Database(path);
  try {
    db.exec(`CREATE TABLE bulk (id INTEGER PRIMARY KEY, payload TEXT);
      WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${Math.floor(rows)})
      INSERT INTO bulk SELECT i, hex(randomblob(200)) FROM n`);
  } finally {
    db.close();
  }
}
