// A concurrent writer for the SQLite benchmark (`node dist/bench/writer.js DB PAUSE_MS`): commits one
// small transaction, then pauses PAUSE_MS, over and over, and measures how long each commit took, which is
// how long it waited for the locks of whatever else reads the database (a backup). The transaction leaves
// the data as it was (UPDATE ... SET id = id), so the benchmark's fingerprints still hold. Prints "ready"
// after its first commit; when its stdin closes, one JSON line: transactions and the waits.

import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';

const [path, pause] = process.argv.slice(2);
if (!path) throw new Error('usage: writer.js DB [PAUSE_MS]');
const pauseMs = Number(pause ?? 20);
let stopping = false;
process.stdin.on('end', () => {
  stopping = true;
});
process.stdin.resume();

// A busy timeout far longer than any backup: the writer waits, as an application would, and never fails.
const db = new Database(path, { timeout: 600_000 });
const touch = db.prepare('UPDATE customers SET id = id WHERE id = 1');
const waits: number[] = [];
while (!stopping) {
  const start = performance.now();
  touch.run();
  waits.push(performance.now() - start);
  if (waits.length === 1) process.stdout.write('ready\n');
  await sleep(pauseMs);
}
db.close();
const sorted = [...waits].sort((a, b) => a - b);
process.stdout.write(
  `${JSON.stringify({
    transactions: waits.length,
    longestWaitMs: sorted.at(-1) ?? 0,
    medianWaitMs: sorted[Math.floor(sorted.length / 2)] ?? 0,
  })}\n`,
);
