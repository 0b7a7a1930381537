// How SQL names the parts of a SQLite table: a quoted identifier, and the name that reaches a table's rowid.
// Shared by the dump, the loader and the fingerprint, so all three read a table the same way.

import type Database from 'better-sqlite3';

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** The names SQLite gives a rowid table's rowid, unless a column has taken them. */
export const ROWID_NAMES = ['rowid', '_rowid_', 'oid'];

/** The first name of the rowid that no column of `columns` (generated ones too) has taken; undefined when all are. */
export function rowidName(columns: string[]): string | undefined {
  const taken = new Set(columns.map((c) => c.toLowerCase()));
  return ROWID_NAMES.find((name) => !taken.has(name));
}

/**
 * How a table keeps its rowid: 'none' (WITHOUT ROWID, or a rowid no name reaches because columns took all
 * three), 'alias' (an INTEGER PRIMARY KEY column is the rowid: `column`), or 'hidden' (the rowid is not a
 * column, and the dump must keep it apart). `name` is how SQL reaches it.
 */
export function rowidOf(
  db: Database.Database,
  table: string,
  info: { name: string; type: string; pk: number }[],
): { kind: 'none' } | { kind: 'alias'; name: string; column: string } | { kind: 'hidden'; name: string } {
  const list = db.prepare('SELECT wr FROM pragma_table_list WHERE name = ? AND schema = ?').get(table, 'main') as
    | { wr: number }
    | undefined;
  const name = rowidName(info.map((c) => c.name));
  if (!list || list.wr === 1 || !name) return { kind: 'none' };
  // Selecting the rowid reports the name of its INTEGER PRIMARY KEY alias, and "rowid" when it has none,
  // unless the alias is itself named rowid.
  const reported = db.prepare(`SELECT ${name} FROM ${quoteIdent(table)} LIMIT 0`).columns()[0]!.name;
  const keys = info.filter((c) => c.pk > 0);
  const aliasNamedRowid =
    keys.length === 1 && keys[0]!.name.toLowerCase() === 'rowid' && keys[0]!.type.toUpperCase() === 'INTEGER';
  return reported.toLowerCase() !== 'rowid' || aliasNamedRowid
    ? { kind: 'alias', name, column: reported }
    : { kind: 'hidden', name };
}
