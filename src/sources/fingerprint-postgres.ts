// The fingerprint of a PostgreSQL database (recipe 'postgres-md5-sum', docs/FORMAT.md): per table, the row
// count and the sum of the first 8 bytes of md5(row as text) over its rows (order does not matter), plus
// schema objects by kind, computed by the server through psql. A backup computes it in the transaction whose
// snapshot pg_dump reads (pg_export_snapshot, `pg_dump --snapshot`); verify computes it on the scratch
// database it restored. A third party runs the same SQL with psql.

import { BackupdError } from '../errors.js';
import type { Fingerprint, TableFingerprint } from './fingerprint.js';

export const POSTGRES_RECIPE = 'postgres-md5-sum';

/** How rows are written as text, the same in every session that fingerprints (docs/FORMAT.md). */
export const FINGERPRINT_SETTINGS =
  "SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; SET TimeZone = 'UTC'; " +
  "SET extra_float_digits = 1; SET bytea_output = 'hex'; SET lc_monetary = 'C';";

const USER_SCHEMA = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'";
const NOT_EXTENSION = (classid: string, objid: string) =>
  `NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '${classid}'::regclass AND d.objid = ${objid} AND d.deptype = 'e')`;

/**
 * psql input (run with -X -q -A -t) printing one JSON line per table, then one line {"objects": {...}}, then
 * END_MARK. \gexec runs one generated query per table.
 */
export const FINGERPRINT_SQL = `
SELECT format('SELECT json_build_object(''table'', %L, ''rows'', count(*), ''digest'', coalesce(sum((''x'' || substr(md5(t::text), 1, 16))::bit(64)::bigint::numeric), 0)::text) FROM ONLY %s AS t', format('%I.%I', n.nspname, c.relname), format('%I.%I', n.nspname, c.relname))
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind = 'r' AND c.relpersistence <> 't' AND ${USER_SCHEMA} AND ${NOT_EXTENSION('pg_class', 'c.oid')}
  ORDER BY n.nspname, c.relname \\gexec
SELECT json_build_object('objects', coalesce((SELECT json_object_agg(kind, n) FROM (
  SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' WHEN 'i' THEN 'index'
      WHEN 'I' THEN 'partitioned index' WHEN 'S' THEN 'sequence' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
      WHEN 'c' THEN 'composite type' WHEN 'f' THEN 'foreign table' ELSE c.relkind::text END AS kind, count(*) AS n
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relpersistence <> 't' AND ${USER_SCHEMA} AND ${NOT_EXTENSION('pg_class', 'c.oid')} GROUP BY 1
  UNION ALL SELECT 'function', count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE ${USER_SCHEMA} AND ${NOT_EXTENSION('pg_proc', 'p.oid')} HAVING count(*) > 0
  UNION ALL SELECT 'trigger', count(*) FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT g.tgisinternal AND ${USER_SCHEMA} HAVING count(*) > 0
  UNION ALL SELECT 'constraint', count(*) FROM pg_constraint o JOIN pg_namespace n ON n.oid = o.connamespace
    WHERE ${USER_SCHEMA} HAVING count(*) > 0
) k), '{}'));
\\echo ${'__backupd_fingerprint_end__'}
`;

export const END_MARK = '__backupd_fingerprint_end__';

/** Reads psql's output lines of FINGERPRINT_SQL into a fingerprint; `done` once END_MARK came. */
export class FingerprintLines {
  private readonly tables: TableFingerprint[] = [];
  private objects: Record<string, number> | undefined;
  done = false;

  /** Take one line; throws SOURCE_FAILED on one that is not the recipe's. */
  line(text: string): void {
    if (text === END_MARK) {
      this.done = true;
      return;
    }
    if (text.trim() === '') return;
    let value: { table?: string; rows?: number; digest?: string; objects?: Record<string, number> };
    try {
      value = JSON.parse(text) as typeof value;
    } catch {
      throw new BackupdError(
        'SOURCE_FAILED',
        `fingerprint: psql answered a line that is not JSON: ${text.slice(0, 200)}`,
      );
    }
    if (value.objects) this.objects = value.objects;
    else if (typeof value.table === 'string' && typeof value.rows === 'number' && typeof value.digest === 'string') {
      this.tables.push({ name: value.table, rows: value.rows, digest: value.digest });
    } else throw new BackupdError('SOURCE_FAILED', `fingerprint: unexpected line ${text.slice(0, 200)}`);
  }

  result(): Fingerprint {
    if (!this.done || !this.objects) throw new BackupdError('SOURCE_FAILED', 'fingerprint: psql ended early');
    return { recipe: POSTGRES_RECIPE, tables: this.tables, objects: this.objects };
  }
}

/** The fingerprint from the whole output of a psql that ran FINGERPRINT_SQL. */
export function parseFingerprint(output: string): Fingerprint {
  const lines = new FingerprintLines();
  for (const line of output.split('\n')) if (!lines.done) lines.line(line);
  return lines.result();
}
