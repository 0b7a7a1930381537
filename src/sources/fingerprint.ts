// Fingerprints: what a database held when its backup was taken, recorded in the manifest, computed so that a
// restored database yields the same values from its own rows (not from the backup's bytes). Verify by
// restoring compares the two (src/backup/verify-restore.ts). Each engine's recipe is in docs/FORMAT.md.

/** One table's rows: how many, and a digest of their content by the engine's recipe. */
export interface TableFingerprint {
  name: string;
  rows: number;
  digest: string;
}

export interface Fingerprint {
  /** The recipe, e.g. 'sqlite-sha3-query' (docs/FORMAT.md); a restored database is fingerprinted the same way. */
  recipe: string;
  /** Every table with rows of its own, in name order. */
  tables: TableFingerprint[];
  /** Schema objects by kind (table, index, view, trigger, ...). */
  objects: Record<string, number>;
  /** Rows the engine's foreign key check reports (SQLite), which a restore must give back no more and no less of. */
  foreignKeyViolations?: number;
}

/** One way a restored database differs from its fingerprint at backup time. */
export interface FingerprintDifference {
  /** The table, or '' for a difference of the whole database (schema objects, foreign keys). */
  table: string;
  /** 'missing' (in the backup, not restored), 'extra', 'rows', 'digest', 'objects', 'foreign-keys'. */
  kind: 'missing' | 'extra' | 'rows' | 'digest' | 'objects' | 'foreign-keys';
  expected: string;
  found: string;
}

/** Every difference between the fingerprint at backup time and the restored database's, table by table. */
export function compareFingerprints(expected: Fingerprint, found: Fingerprint): FingerprintDifference[] {
  const differences: FingerprintDifference[] = [];
  const restored = new Map(found.tables.map((t) => [t.name, t]));
  for (const table of expected.tables) {
    const got = restored.get(table.name);
    restored.delete(table.name);
    if (!got) {
      differences.push({ table: table.name, kind: 'missing', expected: `${table.rows} rows`, found: 'no table' });
    } else if (got.rows !== table.rows) {
      differences.push({ table: table.name, kind: 'rows', expected: String(table.rows), found: String(got.rows) });
    } else if (got.digest !== table.digest) {
      differences.push({ table: table.name, kind: 'digest', expected: table.digest, found: got.digest });
    }
  }
  for (const extra of restored.values()) {
    differences.push({ table: extra.name, kind: 'extra', expected: 'no table', found: `${extra.rows} rows` });
  }
  const kinds = [...new Set([...Object.keys(expected.objects), ...Object.keys(found.objects)])].sort();
  for (const kind of kinds) {
    const [want, got] = [expected.objects[kind] ?? 0, found.objects[kind] ?? 0];
    if (want !== got)
      differences.push({ table: '', kind: 'objects', expected: `${want} ${kind}`, found: `${got} ${kind}` });
  }
  if (
    expected.foreignKeyViolations !== undefined &&
    found.foreignKeyViolations !== undefined &&
    expected.foreignKeyViolations !== found.foreignKeyViolations
  ) {
    differences.push({
      table: '',
      kind: 'foreign-keys',
      expected: `${expected.foreignKeyViolations} violations`,
      found: `${found.foreignKeyViolations} violations`,
    });
  }
  return differences;
}
