// Every restored database is checked before its time counts: SQLite's integrity check, and the same
// tables, row counts, column digests and indexes as the database it was backed up from.

import Database from 'better-sqlite3';
import { type Fingerprint, fingerprint } from './dataset.js';

export interface Verification {
  ok: boolean;
  /** The first lines of PRAGMA integrity_check ("ok" when sound). */
  integrity: string;
  /** What differs from the expected fingerprint; empty when ok. */
  problems: string[];
}

export function verifyRestored(path: string, expected: Fingerprint): Verification {
  const problems: string[] = [];
  let integrity: string;
  try {
    const db = new Database(path, { readonly: true });
    try {
      const rows = db.pragma('integrity_check') as { integrity_check: string }[];
      integrity = rows
        .slice(0, 5)
        .map((r) => r.integrity_check)
        .join('; ');
    } finally {
      db.close();
    }
  } catch (error) {
    return { ok: false, integrity: `cannot open: ${(error as Error).message}`, problems: ['cannot open'] };
  }
  if (integrity !== 'ok') problems.push(`integrity_check: ${integrity}`);

  const actual = fingerprint(path);
  for (const [table, want] of Object.entries(expected.tables)) {
    const got = actual.tables[table];
    if (!got) problems.push(`table ${table} missing`);
    else if (got.rows !== want.rows) problems.push(`table ${table}: ${got.rows} rows, expected ${want.rows}`);
    else if (got.digest !== want.digest) problems.push(`table ${table}: same row count, different content`);
  }
  for (const table of Object.keys(actual.tables)) {
    if (!(table in expected.tables)) problems.push(`unexpected table ${table}`);
  }
  const missing = expected.indexes.filter((i) => !actual.indexes.includes(i));
  if (missing.length > 0) problems.push(`indexes missing: ${missing.join(', ')}`);
  return { ok: problems.length === 0, integrity, problems };
}
