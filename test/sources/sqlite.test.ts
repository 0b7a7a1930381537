// The sqlite engine on its own: listing, snapshots taken while another process keeps writing, how long a
// logical backup holds the database's lock, and the refusals (unknown database, traversal names).
// What a restore keeps, database by database: sqlite-fidelity.test.ts.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  openSync,
  readdirSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it, onTestFinished, vi } from 'vitest';
import { runBackup } from '../../src/backup/backup.js';
import { BatchSlots } from '../../src/backup/batch-slots.js';
import { chunkFilled, DEFAULT_CDC } from '../../src/backup/chunker.js';
import { restoreBackup } from '../../src/backup/restore.js';
import { createSampleDb } from '../../src/cli/sample-db.js';
import type { SourceFile } from '../../src/sources/source.js';
import { type Workspace, workspace } from '../support/workspace.js';

let ws: Workspace;
beforeAll(async () => {
  ws = await workspace();
});
afterAll(() => ws.cleanup());

/** What every backup and restore of `database` here shares: this workspace's source, destination and staging. */
function runOf(database: string, type: 'backup' | 'snapshot') {
  return {
    ref: ws.ref(database),
    source: ws.source,
    type,
    destinations: [ws.destination],
    stagingDir: ws.stagingDir,
    node: 'n1',
    task: 't',
  };
}

function createLedger(path: string, mode: string): void {
  const db = new Database(path);
  db.pragma(`journal_mode = ${mode}`);
  db.exec('CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)');
  db.exec('CREATE TABLE transfers (id INTEGER PRIMARY KEY, src INTEGER, dst INTEGER, amount INTEGER, note TEXT)');
  db.exec('CREATE INDEX transfers_src ON transfers(src)');
  const insert = db.prepare('INSERT INTO accounts (id, balance) VALUES (?, 0)');
  db.transaction(() => {
    for (let i = 1; i <= 1000; i++) insert.run(i);
  })();
  // Some bulk so the copy takes a while.
  const log = db.prepare('INSERT INTO transfers (src, dst, amount, note) VALUES (0, 0, 0, ?)');
  db.transaction(() => {
    for (let i = 0; i < 150_000; i++) log.run(`seed row ${i} ${'y'.repeat(i % 100)}`);
  })();
  db.close();
}

/** Start the writer and resolve once it has committed its first transfers. */
function startWriter(
  path: string,
  mode: string,
  pauseMs: number,
): Promise<{ child: ChildProcess; committed: () => number }> {
  const child = spawn(
    process.execPath,
    [join(import.meta.dirname, '../support/writer.mjs'), path, mode, String(pauseMs)],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let committed = 0;
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (data: Buffer) => {
      const last = data.toString().trim().split('\n').at(-1);
      committed = Number(last);
      if (committed >= 500) resolve({ child, committed: () => committed });
    });
    child.on('exit', (code) => reject(new Error(`writer exited early with ${code}`)));
  });
}

// A busy writer and a pausing one (the WAL often fully checkpointed when a snapshot starts) in WAL mode,
// and a busy writer in rollback-journal mode (the file is read in place; writers wait on the read lock).
// Logical backups too: in rollback-journal mode their rows are copied from the file's pages.
describe.each([
  { type: 'snapshot', mode: 'wal', pauseMs: 0 },
  { type: 'snapshot', mode: 'wal', pauseMs: 2 },
  { type: 'snapshot', mode: 'delete', pauseMs: 0 },
  { type: 'backup', mode: 'wal', pauseMs: 0 },
  { type: 'backup', mode: 'delete', pauseMs: 0 },
] as const)('$type while another process writes (journal_mode=$mode, pause $pauseMs ms)', ({ type, mode, pauseMs }) => {
  it('restores to a consistent database', async () => {
    const name = `ledger-${type}-${mode}-${pauseMs}.db`;
    createLedger(join(ws.dbDir, name), mode);
    const writer = await startWriter(join(ws.dbDir, name), mode, pauseMs);
    try {
      const before = writer.committed();
      const common = runOf(name, type);
      const full = await runBackup({ ...common, level: 'full' });
      const incr = await runBackup({ ...common, level: 'incr' });
      if (mode === 'wal') {
        expect(writer.committed()).toBeGreaterThan(before); // the writer really wrote during the backups
      } else {
        // In rollback-journal mode the writer waits on the backup's read lock, so its next hundred commits
        // (it reports every 100) can all fall after the backups. What must hold is that it stayed alive
        // through them and goes on committing once the lock is gone.
        const deadline = Date.now() + 10_000;
        while (writer.committed() <= before && Date.now() < deadline) await sleep(20);
        expect(writer.committed(), 'the writer commits again after the snapshots').toBeGreaterThan(before);
      }
      for (const point of [full, incr]) {
        const restored = await restoreBackup({
          ...common,
          from: ws.destination,
          ...point,
          target: `copy-${type}-${mode}-${pauseMs}-${point.level}`,
          cacheDir: ws.cacheDir,
        });
        const db = new Database(restored.location, { readonly: true });
        expect(db.pragma('integrity_check', { simple: true }), `${point.level} restore`).toBe('ok');
        expect(db.prepare('SELECT sum(balance) FROM accounts').pluck().get()).toBe(0);
        const transfers = db.prepare('SELECT count(*) FROM transfers WHERE src > 0').pluck().get() as number;
        const moved = db.prepare('SELECT sum(abs(balance)) FROM accounts').pluck().get() as number;
        expect(transfers).toBeGreaterThan(0);
        expect(moved).toBeGreaterThan(0);
        db.close();
      }
    } finally {
      writer.child.kill('SIGKILL');
    }
  });
});

describe('sqlite source', () => {
  it('lists *.db and *.sqlite files as databases, and nothing else', async () => {
    createSampleDb(join(ws.dbDir, 'listed.sqlite'), 10, 1);
    const names = (await ws.source.listDatabases()).map((d) => d.name);
    expect(names).toContain('listed.sqlite');
    expect(names.every((n) => /\.(db|sqlite)$/.test(n))).toBe(true);
    expect(names.some((n) => n.startsWith('.'))).toBe(false);
  });

  it('tells the databases it leaves out because no backup can name them, and why', async () => {
    const unsafe = ['my app.db', 'café.sqlite', 'a..b.db', '-dash.db', '.restoring-1a2b-x.db'];
    for (const name of unsafe) createSampleDb(join(ws.dbDir, name), 5, 1);
    onTestFinished(() => {
      for (const name of unsafe) rmSync(join(ws.dbDir, name), { force: true });
    });
    const names = (await ws.source.listDatabases()).map((d) => d.name);
    const leftOut = (await ws.source.listLeftOut?.()) ?? [];
    // Hidden files (a restore's temporary database among them) are neither listed nor left out.
    expect(leftOut.map((d) => d.name)).toEqual(['-dash.db', 'a..b.db', 'café.sqlite', 'my app.db']);
    expect(names).not.toContain('.restoring-1a2b-x.db');
    for (const d of leftOut) {
      expect(names).not.toContain(d.name);
      expect(d.reason).toMatch(/not a safe path segment.*rename it/);
    }
  });

  it('reads a rollback-journal database in place for a snapshot, keeping writers off it until closed', async () => {
    const path = join(ws.dbDir, 'held.db');
    createSampleDb(path, 100, 1);
    const setup = new Database(path);
    setup.pragma('journal_mode = DELETE');
    setup.close();
    const reading = await ws.source.read('held.db', 'snapshot');
    const files = [];
    for await (const file of reading.files) files.push(file);
    const onDisk = files[0]?.onDisk;
    expect(onDisk?.size).toBe(statSync(path).size);
    files[0]!.stream.destroy(); // as the pipeline does: it must not close the file's descriptor
    const header = Buffer.alloc(16);
    readSync(onDisk!.fd, header, 0, 16, 0);
    expect(header.toString('latin1')).toBe('SQLite format 3\0');
    const writer = new Database(path, { timeout: 0 });
    try {
      expect(() => writer.exec('CREATE TABLE late (x)')).toThrow(/locked|busy/i);
      await reading.close();
      writer.exec('CREATE TABLE late (x)');
    } finally {
      writer.close();
    }
  });

  it('refuses an unknown database with NOT_FOUND', async () => {
    await expect(ws.source.read('absent.db', 'backup')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(ws.source.read('../../etc/passwd', 'backup')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it("holds a rollback-journal database's lock for a logical backup only while it copies the file", async () => {
    // Enough rows that the dump is several times what it runs ahead of its reader (a few MiB).
    const path = join(ws.dbDir, 'unheld.db');
    createSampleDb(path, 300_000, 1);
    const setup = new Database(path);
    setup.pragma('journal_mode = DELETE');
    setup.close();
    const reading = await ws.source.read('unheld.db', 'backup');
    try {
      // Nothing reads the dump yet: a writer that will not wait at all commits all the same.
      const writer = new Database(path, { timeout: 0 });
      try {
        writer.exec("INSERT INTO events (kind, body, at) VALUES ('during', 'the backup', 1)");
      } finally {
        writer.close();
      }
      let bytes = 0;
      for await (const file of reading.files) for await (const piece of file.stream) bytes += (piece as Buffer).length;
      expect(bytes).toBeGreaterThan(24 << 20);
    } finally {
      await reading.close();
    }
    // The copy it dumped from is gone.
    expect(readdirSync(join(ws.dir, 'tmp')).filter((f) => f.startsWith('.dump-'))).toEqual([]);
  });

  it('fills the regions its reader gives with the same dump as its stream, and stops when the reader stops', async () => {
    createSampleDb(join(ws.dbDir, 'filled.db'), 60_000, 2);
    const dumpOf = async (read: (file: SourceFile) => Promise<Buffer>) => {
      const reading = await ws.source.read('filled.db', 'backup');
      try {
        const bytes: Buffer[] = [];
        for await (const file of reading.files) bytes.push(await read(file));
        return Buffer.concat(bytes);
      } finally {
        await reading.close();
      }
    };
    const streamed = await dumpOf(async (file) => {
      const parts: Buffer[] = [];
      for await (const part of file.stream) parts.push(part as Buffer);
      return Buffer.concat(parts);
    });
    const slots = new BatchSlots(6, 256 << 10);
    const filled = await dumpOf(async (file) => {
      expect(file.fill).toBeDefined();
      file.stream.destroy();
      const parts: Buffer[] = [];
      for await (const batch of chunkFilled(DEFAULT_CDC, file.fill!, slots, 3)) {
        const length = batch.lengths.reduce((sum, n) => sum + n, 0);
        parts.push(Buffer.from(batch.slot.bytes.subarray(batch.start, batch.start + length)));
        slots.release(batch.slot.index);
      }
      return Buffer.concat(parts);
    });
    expect(streamed.length).toBeGreaterThan(4 << 20);
    expect(filled.equals(streamed)).toBe(true);
    expect(slots.available).toBe(slots.count);

    // A reader that stops after two batches: the dump's worker stops, and every region comes back.
    const reading = await ws.source.read('filled.db', 'backup');
    try {
      for await (const file of reading.files) {
        let batches = 0;
        for await (const batch of chunkFilled(DEFAULT_CDC, file.fill!, slots, 3)) {
          slots.release(batch.slot.index);
          if (++batches === 2) break;
        }
      }
      await vi.waitFor(() => expect(slots.available).toBe(slots.count), { timeout: 10_000 });
    } finally {
      await reading.close();
    }
  });

  it('cancels a logical backup while its dump fills the batch slots, leaving no copy and no staged run', async () => {
    createSampleDb(join(ws.dbDir, 'cancelled.db'), 150_000, 4);
    const controller = new AbortController();
    let progressed = 0;
    const run = runBackup({
      ...runOf('cancelled.db', 'backup'),
      level: 'full',
      signal: controller.signal,
      onProgress: () => {
        if (++progressed === 1) controller.abort();
      },
    });
    await expect(run).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(progressed).toBeGreaterThan(0);
    expect(readdirSync(join(ws.dir, 'tmp')).filter((f) => f.startsWith('.dump-'))).toEqual([]);
    expect(readdirSync(ws.stagingDir)).toEqual([]);
  });

  it.each(['wal', 'delete'])('a logical restore keeps the journal mode of a %s database', async (mode) => {
    const name = `journal-${mode}.db`;
    createSampleDb(join(ws.dbDir, name), 200, 3);
    const db = new Database(join(ws.dbDir, name));
    db.pragma(`journal_mode = ${mode}`);
    db.close();
    const common = runOf(name, 'backup');
    const full = await runBackup({ ...common, level: 'full' });
    const restored = await restoreBackup({
      ...common,
      from: ws.destination,
      ...full,
      target: `journal-${mode}-restored`,
      cacheDir: ws.cacheDir,
    });
    const check = new Database(restored.location, { readonly: true });
    expect(check.pragma('journal_mode', { simple: true })).toBe(mode);
    expect(check.pragma('integrity_check', { simple: true })).toBe('ok');
    check.close();
    expect(readdirSync(ws.dbDir).filter((f) => f.startsWith('.restoring-') && f.includes(`journal-${mode}`))).toEqual(
      [],
    );
  });

  it('fails the logical backup of a database with a corrupt row with SOURCE_FAILED, naming the table', async () => {
    const path = join(ws.dbDir, 'corrupt-row.db');
    const db = new Database(path);
    db.exec("CREATE TABLE fine (a); INSERT INTO fine VALUES (1); CREATE TABLE hurt (a); INSERT INTO hurt VALUES ('x')");
    const root = db.prepare("SELECT rootpage FROM sqlite_schema WHERE name = 'hurt'").pluck().get() as number;
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    db.close();
    const fd = openSync(path, 'r+');
    const pointer = Buffer.alloc(2);
    readSync(fd, pointer, 0, 2, (root - 1) * pageSize + 8); // the leaf's one cell: length, rowid, record [2, 15, 'x']
    writeSync(fd, Buffer.from([10]), 0, 1, (root - 1) * pageSize + pointer.readUInt16BE(0) + 3); // a reserved type
    closeSync(fd);
    await expect(runBackup({ ...runOf('corrupt-row.db', 'backup'), level: 'full' })).rejects.toMatchObject({
      code: 'SOURCE_FAILED',
      message: expect.stringMatching(
        /corrupt-row\.db.*a row of table "hurt" .* is corrupt: serial type 10 is reserved/,
      ),
    });
  });

  it.each(['backup', 'snapshot'] as const)(
    'fails a %s of a database whose hot journal it may not roll back, naming the journal and what to do',
    async (type) => {
      const path = join(ws.dbDir, `stuck-${type}.db`);
      createSampleDb(path, 2000, 1);
      const setup = new Database(path);
      setup.pragma('journal_mode = DELETE');
      setup.close();
      // A writer that stops mid-transaction after writing pages into the file: a hot journal is left.
      const crash = spawnSync(process.execPath, [
        '-e',
        `const D = require('better-sqlite3'); const db = new D(${JSON.stringify(path)}); db.pragma('cache_size = 1');
         db.exec('BEGIN'); db.exec("UPDATE events SET body = body || 'x'"); process.exit(0);`,
      ]);
      expect(crash.status, String(crash.stderr)).toBe(0);
      expect(statSync(`${path}-journal`).size).toBeGreaterThan(512);
      // The database may not be written: as root only an immutable file says so (chattr, ext4 and others).
      const root = process.getuid?.() === 0;
      const protect = (on: boolean) => {
        if (root) {
          const result = spawnSync('chattr', [on ? '+i' : '-i', path], { encoding: 'utf8' });
          if (result.status !== 0)
            throw new Error(`chattr cannot make ${path} immutable: ${result.error ?? result.stderr}`);
        } else chmodSync(path, on ? 0o444 : 0o644);
      };
      protect(true);
      try {
        await expect(runBackup({ ...runOf(`stuck-${type}.db`, type), level: 'full' })).rejects.toMatchObject({
          code: 'SOURCE_FAILED',
          message: expect.stringMatching(
            /has a hot journal \(.*stuck-.*\.db-journal\).*Open the database once as a user who may write it/,
          ),
        });
      } finally {
        protect(false);
      }
      expect(statSync(`${path}-journal`).size, 'the journal is left as it was').toBeGreaterThan(512);
    },
  );

  it.each(['backup', 'snapshot'] as const)(
    'fails a %s of a file that is not a database with SOURCE_FAILED, naming the file',
    async (type) => {
      const path = join(ws.dbDir, `junk-${type}.db`);
      writeFileSync(path, randomBytes(10_000));
      await expect(runBackup({ ...runOf(`junk-${type}.db`, type), level: 'full' })).rejects.toMatchObject({
        code: 'SOURCE_FAILED',
        message: expect.stringMatching(new RegExp(`junk-${type}\\.db.*file is not a database`)),
      });
    },
  );
});
