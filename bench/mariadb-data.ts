// The MariaDB benchmarks' data and change (bench/mariadb.ts, bench/mariadb-incremental.ts): accounts and
// orders of realistic rows made by the server from the row number, and a change of 1% of the orders updated
// evenly over the table and 1% appended, flushed to the data files.

import type { MariadbServer } from '../test/harness/mariadb.js';

/** The data: accounts and orders, every value derived from the row number by the server (no client round trips). */
export function dataSql(orders: number): string {
  const accounts = Math.max(1000, Math.floor(orders / 10));
  const pick = (list: string[], expr: string) =>
    `ELT(1 + (${expr}) % ${list.length}, ${list.map((w) => `'${w}'`).join(', ')})`;
  const first = ['Ana', 'Bruno', 'Chloé', 'Dmitri', 'Emma', 'Farid', 'Grace', 'Hiro', 'Ines', 'José', 'Kai', 'Lena'];
  const last = ['Novak', 'Okafor', 'Pérez', 'Quinn', 'Rossi', 'Sato', 'Tanaka', 'Ueda', 'Varga', 'Weber', 'Yilmaz'];
  const cities = ['Lisboa', 'Berlin', 'Osaka', 'Lagos', 'Austin', 'Kraków', 'Montréal', 'Pune', 'Quito', 'Tromsø'];
  const agents = [
    'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0',
    'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148',
    'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36',
  ];
  const status = ['new', 'paid', 'shipped', 'delivered', 'returned'];
  return `
CREATE TABLE accounts (
  id INT PRIMARY KEY, name VARCHAR(80) NOT NULL, email VARCHAR(120) NOT NULL, city VARCHAR(40) NOT NULL,
  balance DECIMAL(14,2) NOT NULL, created DATETIME NOT NULL, KEY email_idx (email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE orders (
  id BIGINT PRIMARY KEY, account_id INT NOT NULL, status VARCHAR(12) NOT NULL, total DECIMAL(12,2) NOT NULL,
  items JSON NOT NULL, address VARCHAR(200) NOT NULL, agent VARCHAR(200) NOT NULL, ip INET6 NOT NULL,
  created DATETIME(3) NOT NULL, KEY account_idx (account_id), KEY created_idx (created)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
INSERT INTO accounts SELECT seq,
  CONCAT(${pick(first, 'seq * 7')}, ' ', ${pick(last, 'seq * 13')}),
  CONCAT('user', seq, '@', ${pick(['example.com', 'mail.test', 'post.example'], 'seq')}),
  ${pick(cities, 'seq * 3')}, (CRC32(seq) % 1000000) / 100, '2020-01-01' + INTERVAL (seq * 37) MINUTE
  FROM seq_1_to_${accounts};
INSERT INTO orders SELECT seq, 1 + CRC32(seq) % ${accounts}, ${pick(status, 'CRC32(seq * 3)')},
  (CRC32(seq * 5) % 100000) / 100,
  JSON_ARRAY(JSON_OBJECT('sku', CONCAT('SKU-', CRC32(seq) % 9973), 'qty', 1 + seq % 4, 'price', (CRC32(seq * 11) % 9999) / 100),
             JSON_OBJECT('sku', CONCAT('SKU-', CRC32(seq * 2) % 9973), 'qty', 1 + seq % 3, 'note', MD5(seq))),
  CONCAT(seq % 997, ' ', ${pick(['Rua Augusta', 'Hauptstraße', 'Main Street', 'Rue de la Paix'], 'seq')}, ', ', ${pick(cities, 'seq')}),
  ${pick(agents, 'CRC32(seq * 7)')}, INET6_NTOA(UNHEX(LPAD(HEX(CRC32(seq)), 32, '0'))),
  '2021-01-01' + INTERVAL seq SECOND
  FROM seq_1_to_${orders};
`;
}

/** The change: 1% of the orders updated (spread over the table), 1% more added at its end. */
export function changeSql(orders: number): string {
  const added = Math.max(1, Math.floor(orders / 100));
  return `
UPDATE orders SET status = 'refunded', total = total + 1 WHERE id % 100 = 37;
INSERT INTO orders SELECT ${orders} + seq, 1 + seq % 100, 'new', 9.99, JSON_ARRAY(JSON_OBJECT('sku', 'SKU-NEW', 'qty', 1)),
  'New Road 1', 'curl/8.5', '::1', '2026-12-01' + INTERVAL seq SECOND FROM seq_1_to_${added};
`;
}

/**
 * Wait until every changed page is written to the data files, as it is once a change is older than a
 * checkpoint: else a small change lives in the redo log only, and both incrementals would measure that instead.
 */
export async function flushDirtyPages(db: MariadbServer): Promise<void> {
  await db.sql('SET GLOBAL innodb_max_dirty_pages_pct_lwm = 0.001, GLOBAL innodb_max_dirty_pages_pct = 0;');
  for (let dirty = 1; dirty > 0; ) {
    dirty = Number(
      (
        await db.sql(
          "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'INNODB_BUFFER_POOL_PAGES_DIRTY'",
        )
      ).trim(),
    );
    if (dirty > 0) await new Promise((r) => setTimeout(r, 200));
  }
}
