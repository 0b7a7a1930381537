// An independent judge of SQLite databases for the fidelity corpus: everything here is asked of the
// `sqlite3` CLI (its own SQLite, not the better-sqlite3 build backupd uses), never of backupd's code. A
// database's verdict is its `.dump` (rowids kept), every value of every table as its storage class and
// exact bytes (REALs by their IEEE 754 bits, so -0.0 is not 0.0; TEXT by its bytes in the database's
// encoding, so lone surrogates and invalid UTF-8 show), the pragmas a restore must keep, integrity_check,
// and the answers to the case's own queries (FTS5 MATCH, R*Tree ranges).

import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Runs `sql` (statements and dot-commands) with the sqlite3 CLI on the database at `path`; its stdout. */
export function cli(path: string, sql: string, args: string[] = []): string {
  const result = spawnSync('sqlite3', ['-batch', '-bail', ...args, path], {
    input: sql,
    encoding: 'utf8',
    maxBuffer: 1 << 28,
  });
  if (result.error) {
    throw new Error(
      `the sqlite3 CLI cannot run (${result.error.message}): install it (Debian: apt-get install sqlite3)`,
    );
  }
  if (result.status !== 0)
    throw new Error(`sqlite3 ${path} failed (${result.status}): ${result.stderr}\n${sql.slice(0, 500)}`);
  return result.stdout;
}

export function cliVersion(): string {
  return execFileSync('sqlite3', ['--version'], { encoding: 'utf8' }).split(' ')[0]!;
}

/** Starts the line that names what the next lines of a CLI run's output answer. */
const MARKER = '\u0001 ';

export interface Verdict {
  dump: string;
  values: Record<string, string>;
  pragmas: Record<string, string>;
  queries: Record<string, string>;
}

/**
 * The verdict on the database at `path`, judged on a copy of its files (the database, its journal or WAL),
 * so the judge changes nothing: the CLI rolls a hot journal back, or reads a WAL, in the copy, as the
 * database's next reader would.
 */
export function judge(path: string, queries: Record<string, string> = {}): Verdict {
  const dir = mkdtempSync(join(tmpdir(), 'backupd-judge-'));
  try {
    const copy = join(dir, 'judged.db');
    for (const suffix of ['', '-journal', '-wal']) {
      if (existsSync(path + suffix)) copyFileSync(path + suffix, copy + suffix);
    }
    // One CLI run for every pragma, each answer after a line that names it.
    const names = ['integrity_check', 'user_version', 'application_id', 'encoding', 'page_size', 'auto_vacuum'];
    const answers = sections(cli(copy, names.map((n) => `SELECT '${MARKER}${n}';\nPRAGMA ${n};`).join('\n')));
    const pragmas = Object.fromEntries(Object.entries(answers).map(([name, value]) => [name, value.trim()]));
    const dump = cli(copy, '.dump --preserve-rowids');
    const results: Record<string, string> = {};
    for (const [name, sql] of Object.entries(queries)) results[name] = cli(copy, sql);
    return { dump, values: values(copy), pragmas, queries: results };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Every value of every table (virtual tables' come from their shadow tables), typed and exact, in key order. */
function values(path: string): Record<string, string> {
  const tables = JSON.parse(
    cli(
      path,
      `SELECT m.name AS tbl, l.wr AS wr, json_group_array(p.name) AS cols
         FROM sqlite_schema m JOIN pragma_table_list l ON l.name = m.name AND l.schema = 'main'
         JOIN pragma_table_xinfo(m.name) p
        WHERE m.type = 'table' AND m.rootpage > 0 GROUP BY m.name ORDER BY m.name;`,
      ['-json'],
    ) || '[]',
  ) as { tbl: string; wr: number; cols: string }[];
  // One CLI run for every table, each table's rows after a line that names it.
  const statements = tables.map(({ tbl, wr, cols }) => {
    const columns = JSON.parse(cols) as string[];
    const taken = new Set(columns.map((c) => c.toLowerCase()));
    const rowid = wr === 1 ? undefined : ['rowid', '_rowid_', 'oid'].find((n) => !taken.has(n));
    const q = (name: string) => `"${name.replace(/"/g, '""')}"`;
    const exact = (c: string) =>
      `typeof(${c}) || ':' || CASE typeof(${c}) WHEN 'real' THEN ieee754(${c}) ELSE hex(${c}) END`;
    const selected = [...(rowid ? [rowid] : []), ...columns.map(q)].map(exact);
    // NOT INDEXED: the table's own order (rowid or primary key), never a covering index's.
    return `SELECT '${MARKER}' || ${`'${tbl.replace(/'/g, "''")}'`};\nSELECT ${selected.join(', ')} FROM ${q(tbl)} NOT INDEXED;`;
  });
  return sections(cli(path, statements.join('\n')));
}

/** Output split at marker lines: what follows each, by the name on its marker line. */
function sections(output: string): Record<string, string> {
  const out: Record<string, string> = {};
  let current: string | undefined;
  for (const line of output.split('\n')) {
    if (line.startsWith(MARKER)) {
      current = line.slice(MARKER.length);
      out[current] = '';
    } else if (current !== undefined && line !== '') out[current] += `${line}\n`;
  }
  return out;
}
