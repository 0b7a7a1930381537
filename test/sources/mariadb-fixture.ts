// Fixtures for the mariadb source's tests: a database of real-world features (every common column type
// incl. JSON, spatial, UUID/INET6, BLOBs with NUL bytes, utf8mb4 emoji, zero dates, generated columns,
// foreign keys, a partitioned table, a MyISAM table, a sequence, a view, a procedure, a function, a
// trigger, an event, AUTO_INCREMENT counters, many small tables), a change to it, and fingerprints made
// by the server itself: CHECKSUM TABLE per table, the server's SHOW CREATE of every object, and a
// mariadb-dump of the database (never the product's own report).

import { mariadb } from '../../src/sources/mariadb.js';
import type { Source } from '../../src/sources/source.js';
import type { MariadbServer } from '../harness/mariadb.js';

/** A mariadb source on `db` (root over TCP, no password), plus `extra` config. */
export async function openSource(db: MariadbServer, extra: Record<string, unknown> = {}): Promise<Source> {
  return mariadb.open('maria', mariadb.parseConfig(db.sourceConfig(extra), 'source.config'));
}

/** Small tables beside the main ones: a database with many tables. */
const MANY_TABLES = 40;

export function fixtureSql(): string {
  const many = Array.from({ length: MANY_TABLES }, (_, i) => {
    const t = `many_${String(i + 1).padStart(2, '0')}`;
    return `CREATE TABLE ${t} (id INT PRIMARY KEY, v VARCHAR(40));
INSERT INTO ${t} SELECT seq, CONCAT('${t}-', seq) FROM seq_1_to_${(i % 5) + 1};`;
  }).join('\n');
  return `
SET NAMES utf8mb4;
CREATE TABLE accounts (
  id INT AUTO_INCREMENT PRIMARY KEY,
  owner VARCHAR(100) NOT NULL,
  balance DECIMAL(20,4) NOT NULL DEFAULT 0,
  created DATETIME(6) NOT NULL,
  KEY owner_idx (owner)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE ledger (
  id BIGINT AUTO_INCREMENT PRIMARY KEY,
  account_id INT NOT NULL,
  amount DECIMAL(20,4) NOT NULL,
  note TEXT,
  CONSTRAINT ledger_account FOREIGN KEY (account_id) REFERENCES accounts (id) ON DELETE CASCADE
) ENGINE=InnoDB;
CREATE TABLE audit (
  id INT AUTO_INCREMENT PRIMARY KEY,
  account_id INT,
  delta DECIMAL(20,4),
  at DATETIME NOT NULL
) ENGINE=InnoDB;
CREATE TABLE types (
  id INT PRIMARY KEY, tiny TINYINT, small SMALLINT UNSIGNED, med MEDIUMINT, big BIGINT UNSIGNED,
  f FLOAT, d DOUBLE, wide DECIMAL(65,30), bits BIT(13), dt DATE, tm TIME(3), ts TIMESTAMP NULL, yr YEAR,
  ch CHAR(10), vc VARCHAR(300), bin BINARY(8), vb VARBINARY(64), bl BLOB, lb LONGBLOB, txt MEDIUMTEXT,
  en ENUM('a','b','c'), st SET('x','y','z'), js JSON, g GEOMETRY, pt POINT, uu UUID, ip INET6
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE generated (
  id INT PRIMARY KEY,
  price DECIMAL(10,2) NOT NULL,
  qty INT NOT NULL,
  total DECIMAL(12,2) AS (price * qty) STORED,
  label VARCHAR(50) AS (CONCAT('item-', id)) VIRTUAL,
  KEY label_idx (label)
) ENGINE=InnoDB;
CREATE TABLE parted (
  id INT NOT NULL, region INT NOT NULL, v VARCHAR(20), PRIMARY KEY (id, region)
) ENGINE=InnoDB PARTITION BY RANGE (region) (
  PARTITION p0 VALUES LESS THAN (10), PARTITION p1 VALUES LESS THAN (100), PARTITION pmax VALUES LESS THAN MAXVALUE
);
CREATE TABLE myisam_log (id INT AUTO_INCREMENT PRIMARY KEY, msg VARCHAR(100)) ENGINE=MyISAM;
SET SESSION sql_mode = '';
CREATE TABLE zero_dates (id INT PRIMARY KEY, d DATE NOT NULL DEFAULT '0000-00-00', dt DATETIME NOT NULL DEFAULT '0000-00-00 00:00:00');
INSERT INTO zero_dates VALUES (1, '0000-00-00', '0000-00-00 00:00:00'), (2, '2024-02-29', '2024-02-29 23:59:59'), (3, '2024-00-00', '2024-01-00 00:00:00');
SET SESSION sql_mode = DEFAULT;
CREATE SEQUENCE invoice_seq START WITH 1000 INCREMENT BY 5;

INSERT INTO accounts (owner, balance, created)
  SELECT CONCAT('owner ', seq, IF(seq % 3 = 0, ' 😀🚀', ' naïve 日本')), seq * 12.5, '2024-01-01 10:00:00.123456' + INTERVAL seq HOUR
  FROM seq_1_to_300;
INSERT INTO ledger (account_id, amount, note) SELECT 1 + seq % 300, (seq % 17) - 8.25, REPEAT('n', seq % 50) FROM seq_1_to_2000;
INSERT INTO types VALUES
  (1, -128, 65535, -8388608, 18446744073709551615, 1.5, 2.718281828459045, 12345678901234567890.123456789012345678901234567890,
   b'1010101010101', '1999-12-31', '-838:59:59.000', '2038-01-19 03:14:07', 2155, 'fixed', '😀 emoji, naïve café, 日本語, \\\\ back\\\\slash, ''quote''',
   X'0001020300FF0000', X'00', X'00FF00FF0000', REPEAT(X'00FE', 40000), REPEAT('long text ', 1000), 'b', 'x,z',
   '{"a": [1, 2.5, "三"], "b": {"c": null, "d": true}}', ST_GeomFromText('POLYGON((0 0,10 0,10 10,0 10,0 0))'),
   POINT(1.25, -3.5), '123e4567-e89b-12d3-a456-426614174000', '2001:db8::ff00:42:8329'),
  (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (3, 0, 0, 0, 0, -0.0, 1e308, -0.000000000000000000000000000001, b'0', '1000-01-01', '00:00:00.001', NULL, 1901,
   '', '', X'', X'', X'', X'', '', 'a', '', '[]', ST_GeomFromText('LINESTRING(0 0,1 1,2 1)'), POINT(0, 0),
   '00000000-0000-0000-0000-000000000000', '::ffff:10.0.0.1');
INSERT INTO generated (id, price, qty) SELECT seq, seq * 1.25, seq % 7 FROM seq_1_to_50;
INSERT INTO parted SELECT seq, seq * 7 % 150, CONCAT('p', seq) FROM seq_1_to_120;
INSERT INTO myisam_log (msg) SELECT CONCAT('log ', seq) FROM seq_1_to_20;
ALTER TABLE accounts AUTO_INCREMENT = 5000;

CREATE VIEW rich AS SELECT owner, balance FROM accounts WHERE balance > 1000;
CREATE TRIGGER ledger_audit AFTER INSERT ON ledger FOR EACH ROW
  INSERT INTO audit (account_id, delta, at) VALUES (NEW.account_id, NEW.amount, '2020-01-01 00:00:00');
DELIMITER //
CREATE PROCEDURE transfer(IN source_id INT, IN target_id INT, IN amount DECIMAL(20,4))
BEGIN
  UPDATE accounts SET balance = balance - amount WHERE id = source_id;
  UPDATE accounts SET balance = balance + amount WHERE id = target_id;
END //
CREATE FUNCTION balance_of(account INT) RETURNS DECIMAL(20,4) READS SQL DATA
  RETURN (SELECT balance FROM accounts WHERE id = account) //
DELIMITER ;
CREATE EVENT nightly ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' DISABLE
  DO DELETE FROM audit WHERE at < '2000-01-01';
${many}
`;
}

/** What applications do: updates, inserts (a trigger fires), deletes, a sequence advanced. */
export const CHANGE_SQL = `
UPDATE accounts SET balance = balance + 7 WHERE id % 10 = 0;
INSERT INTO accounts (owner, balance, created) VALUES ('late 🛰️', 1, '2025-06-01 00:00:00');
DELETE FROM ledger WHERE id % 7 = 0;
INSERT INTO ledger (account_id, amount) VALUES (1, 5), (2, -5);
UPDATE types SET js = JSON_SET(js, '$.changed', 1) WHERE id = 1;
SELECT NEXTVAL(invoice_seq);
INSERT INTO myisam_log (msg) VALUES ('changed');
`;

export async function createFixtureDatabase(server: MariadbServer, name: string, charset = 'utf8mb4'): Promise<void> {
  await server.sql(`CREATE DATABASE \`${name}\` CHARACTER SET ${charset};`);
  await server.sql(fixtureSql(), name);
}

const q = (name: string) => `\`${name.replace(/`/g, '``')}\``;
const lit = (value: string) => `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

/**
 * Database `name` as comparable text, from the server: per base table `CHECKSUM TABLE ... EXTENDED` and its
 * row count, per object its SHOW CREATE, sequences' state, the database's character set, and the whole
 * mariadb-dump of the database. Two client runs and a dump, whatever the number of tables: every
 * statement of the second run gives one line (batch mode escapes newlines), read back in order.
 */
export async function fingerprint(server: MariadbServer, name: string): Promise<Record<string, string>> {
  const lines = (text: string) =>
    text
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => l.split('\t'));
  const db = lit(name);
  const objects = lines(
    await server.sql(
      `SELECT 'charset', DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ${db};
       SELECT TABLE_TYPE, TABLE_NAME, '' FROM information_schema.TABLES WHERE TABLE_SCHEMA = ${db} ORDER BY TABLE_NAME;
       SELECT ROUTINE_TYPE, ROUTINE_NAME, '' FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ${db} ORDER BY 1, 2;
       SELECT 'TRIGGER', TRIGGER_NAME, '' FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ${db} ORDER BY 2;
       SELECT 'EVENT', EVENT_NAME, '' FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ${db} ORDER BY 2;
       SELECT 'COLUMN', TABLE_NAME, CONCAT_WS(' ', COLUMN_NAME, EXTRA = 'VIRTUAL GENERATED', COLUMN_KEY = 'PRI')
         FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ${db} ORDER BY TABLE_NAME, ORDINAL_POSITION;`,
      name,
    ),
  );
  const result: Record<string, string> = {};
  const columns = new Map<string, { name: string; virtual: boolean; key: boolean }[]>();
  for (const [kind, table, spec] of objects) {
    if (kind !== 'COLUMN') continue;
    const [column, virtual, key] = spec!.split(' ');
    columns.set(table!, [
      ...(columns.get(table!) ?? []),
      { name: column!, virtual: virtual === '1', key: key === '1' },
    ]);
  }
  // [key, statement, which output columns make the value]
  const asks: [string, string, (row: string[]) => string][] = [];
  const rest = (from: number, to?: number) => (row: string[]) => row.slice(from, to).join('\t');
  for (const [kind, object, extra] of objects) {
    const o = q(object ?? '');
    if (kind === 'charset') result.charset = `${object} ${extra}`;
    else if (kind === 'VIEW') asks.push([`view ${object}`, `SHOW CREATE VIEW ${o}`, rest(1, 2)]);
    else if (kind === 'SEQUENCE') {
      asks.push([`sequence ${object}`, `SHOW CREATE SEQUENCE ${o}`, rest(1)]);
      asks.push([`sequence state ${object}`, `SELECT * FROM ${o}`, rest(0)]);
    } else if (kind === 'BASE TABLE') {
      asks.push([`table ${object}`, checksumSql(object!, columns.get(object!) ?? []), rest(1)]);
      asks.push([`rows ${object}`, `SELECT COUNT(*) FROM ${o}`, rest(0)]);
      asks.push([`create ${object}`, `SHOW CREATE TABLE ${o}`, rest(1)]);
    } else if (kind === 'PROCEDURE' || kind === 'FUNCTION' || kind === 'TRIGGER') {
      asks.push([`${kind.toLowerCase()} ${object}`, `SHOW CREATE ${kind} ${o}`, rest(1, 3)]);
    } else if (kind === 'EVENT') asks.push([`event ${object}`, `SHOW CREATE EVENT ${o}`, rest(1, 4)]);
  }
  const answers = lines(
    await server.sql(
      `SET SESSION group_concat_max_len = 1073741824;\n${asks.map(([, sql]) => `${sql};`).join('\n')}`,
      name,
    ),
  );
  if (answers.length !== asks.length)
    throw new Error(`fingerprint: ${asks.length} statements, ${answers.length} answers`);
  asks.forEach(([key, , value], i) => {
    result[key] = value(answers[i]!);
  });
  result.dump = await dumpOf(server, name);
  return result;
}

/**
 * CHECKSUM TABLE ... EXTENDED, except for tables with VIRTUAL generated columns: on MariaDB 10.11 it gives
 * the same rows different checksums when a virtual column is indexed (seen here: a copy of a table made
 * by INSERT ... SELECT checksums differently). Those are judged by an MD5 the server computes over every
 * stored column's value in primary key order instead. Either way one line: a label, then the value.
 */
function checksumSql(table: string, columns: { name: string; virtual: boolean; key: boolean }[]): string {
  if (!columns.some((c) => c.virtual)) return `CHECKSUM TABLE ${q(table)} EXTENDED`;
  const stored = columns.filter((c) => !c.virtual).map((c) => `HEX(${q(c.name)})`);
  const key = columns.filter((c) => c.key).map((c) => q(c.name));
  return `SELECT 'md5', MD5(GROUP_CONCAT(CONCAT_WS(',', ${stored.join(', ')}) ORDER BY ${key.join(', ')} SEPARATOR ';')) FROM ${q(table)}`;
}

/** mariadb-dump of a database as a judge: data and objects, without the lines that name the database. */
export async function dumpOf(server: MariadbServer, name: string): Promise<string> {
  const text = await server.tool('mariadb-dump', [
    '--skip-dump-date',
    '--skip-comments',
    '--routines',
    '--triggers',
    '--events',
    '--hex-blob',
    '--order-by-primary',
    '--',
    name,
  ]);
  return text;
}

export async function databaseExists(server: MariadbServer, name: string): Promise<boolean> {
  const out = await server.sql(`SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ${lit(name)}`);
  return out.trim() === '1';
}

/** Databases a restore left marked incomplete (RESTORING_COMMENT). */
export async function leftovers(server: MariadbServer): Promise<string[]> {
  const out = await server.sql(
    "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_COMMENT LIKE 'backupd:%' ORDER BY 1",
  );
  return out.split('\n').filter((l) => l !== '');
}
