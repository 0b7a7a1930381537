// The sqlite engine against the shared source conformance suite (conformance.ts), as every engine runs it.
// Its databases are built, changed and fingerprinted with the sqlite3 CLI (an independent SQLite:
// sqlite-judge.ts), never with backupd's own code.

import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sqlite } from '../../src/sources/sqlite.js';
import { describeSourceConformance } from './conformance.js';
import { FTS, FTS_QUERIES, SCHEMA_TABLES } from './sqlite-fixture.js';
import { cli, cliVersion, judge } from './sqlite-judge.js';

/** Rows enough that a change touches only some of the dump's chunks. */
const FILLER = `CREATE TABLE history(id INTEGER PRIMARY KEY, at INTEGER, what TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
  INSERT INTO history SELECT i, 1700000000 + i * 60, 'event number ' || i || ' of the fixture' FROM n;`;

const CHANGE = `UPDATE kinds SET qty = qty + 1 WHERE code = 'a'; INSERT INTO negatives VALUES (-5, 'later');
INSERT INTO auto(v) VALUES ('four'); DELETE FROM history WHERE id = 2500;
INSERT INTO notes VALUES ('Later', 'backups restored later'); INSERT INTO places VALUES (1000, 5.5, 5.7, 0, 1, 'new');`;

describeSourceConformance('sqlite', async () => {
  cliVersion(); // fails naming the sqlite3 CLI when it is missing
  const dir = mkdtempSync(join(tmpdir(), 'backupd-sqlite-conformance-'));
  const temp = join(dir, 'tmp');
  const source = await sqlite.open('files', { path: dir, tempDir: temp });
  const file = (name: string) => join(dir, /\.(db|sqlite)$/.test(name) ? name : `${name}.db`);
  return {
    source,
    databaseName: (base) => `${base}.db`,
    createDatabase: async (name) => void cli(file(name), `${SCHEMA_TABLES}\n${FTS}\n${FILLER}`),
    changeDatabase: async (name) => void cli(file(name), CHANGE),
    fingerprint: async (name) => {
      const verdict = judge(file(name), FTS_QUERIES);
      return {
        dump: verdict.dump,
        ...Object.fromEntries(Object.entries(verdict.values).map(([table, rows]) => [`table ${table}`, rows])),
        ...Object.fromEntries(Object.entries(verdict.pragmas).map(([pragma, value]) => [`pragma ${pragma}`, value])),
        ...Object.fromEntries(Object.entries(verdict.queries).map(([query, rows]) => [`query ${query}`, rows])),
      };
    },
    exists: async (name) => existsSync(file(name)),
    // Restores in progress and the copies logical backups are dumped from.
    leftovers: async () => [
      ...readdirSync(dir).filter((f) => f.startsWith('.restoring-')),
      ...(existsSync(temp) ? readdirSync(temp) : []),
    ],
    teardown: async () => {
      await source.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});
