// The independent judge of SQLite fingerprints: the sqlite3 shell, given the recipe of docs/FORMAT.md as
// written there (not taken from the product's code).

import { execFileSync } from 'node:child_process';

/**
 * The query of docs/FORMAT.md's recipe, written here from the doc, not taken from the product: the columns are
 * every column but VIRTUAL generated ones, in declaration order, as the sqlite3 shell lists them.
 */
export function recipeQuery(path: string, table: string, rowid: string | undefined): string {
  const q = (name: string) => `"${name.replace(/"/g, '""')}"`;
  const columns = sqlite3(
    path,
    `SELECT name FROM pragma_table_xinfo('${table.replace(/'/g, "''")}') WHERE hidden IN (0, 3)`,
  )
    .split('\n')
    .map(q)
    .join(', ');
  return rowid
    ? `SELECT ${rowid}, ${columns} FROM ${q(table)} ORDER BY ${rowid}`
    : `SELECT ${columns} FROM ${q(table)} ORDER BY ${columns}`;
}

export function sqlite3(path: string, sql: string): string {
  return execFileSync('sqlite3', [path, sql], { encoding: 'utf8' }).trim();
}

export function judgeDigest(path: string, query: string): string {
  return sqlite3(path, `SELECT lower(hex(sha3_query('${query.replace(/'/g, "''")}')))`);
}
