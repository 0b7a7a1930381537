// A separate process that writes to a SQLite database without pause: each transaction moves an amount
// between two accounts and logs it, so any consistent copy has balances summing to zero and one log row
// per transfer. Runs until killed; prints the number of committed transfers every 100. An optional third
// argument pauses that many milliseconds between transfers.
import Database from 'better-sqlite3';

const [path, mode, pause] = process.argv.slice(2);
const pauseMs = Number(pause ?? 0);
const sleeper = new Int32Array(new SharedArrayBuffer(4));
const db = new Database(path, { timeout: 30000 });
db.pragma(`journal_mode = ${mode}`);
const move = db.prepare('UPDATE accounts SET balance = balance + ? WHERE id = ?');
const log = db.prepare('INSERT INTO transfers (src, dst, amount, note) VALUES (?, ?, ?, ?)');
const transfer = db.transaction((n) => {
  const src = 1 + (n % 1000);
  const dst = 1 + ((n * 7919) % 1000);
  const amount = (n % 97) + 1;
  move.run(-amount, src);
  move.run(amount, dst);
  log.run(src, dst, amount, `transfer ${n} ${'x'.repeat(n % 200)}`);
});
let n = 0;
for (;;) {
  transfer(n++);
  if (n % 100 === 0) process.stdout.write(`${n}\n`);
  // With a pause the WAL is often fully checkpointed when a snapshot starts: the direct-read path.
  if (pauseMs > 0) Atomics.wait(sleeper, 0, 0, pauseMs);
}
