// The independent judge of SQLite fingerprints: the sqlite3 shell, given the recipe of docs/FORMAT.md as
// written there (not taken from the product's code).

import { execFileSync } from 'node:child_process';

/** The query of docs/FORMAT.md's recipe, written here from the doc, not taken from the product. */
export function recipeQuery(table: string, rowid: string | undefined, columns: string[]): string {
  const q = (name: string) => `"${name.replace(/"/g, '""')}"`;
  return rowid
    ? `SELECT ${rowid}, * FROM ${q(table)} ORDER BY ${rowid}`
    : `SELECT * FROM ${q(table)} ORDER BY ${columns.map(q).join(', ')}`;
}

export function sqlite3(path: string, sql: string): string {
  return execFileSync('sqlite3', [path, sql], { encoding: 'utf8' }).trim();
}

export function judgeDigest(path: string, query: string): string {
  return sqlite3(path, `SELECT lower(hex(sha3_query('${query.replace(/'/g, "''")}')))`);
}
