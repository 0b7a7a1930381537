// The durable local outbox on a real SQLite file: one row per key (newest put wins and moves to the end, first
// claim wins), done() that never drops a newer value, durability across reopen, and the file's mode.

import { chmodSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { OUTBOX_FILE, Outbox } from '../../src/cluster/outbox.js';
import { workspace } from '../support/workspace.js';

/** An outbox in a fresh data folder, closed (unless the test closed it) and removed afterwards. */
async function withOutbox(body: (outbox: Outbox, dataDir: string) => Promise<void> | void): Promise<void> {
  const ws = await workspace();
  const dataDir = join(ws.dir, 'data');
  const outbox = await Outbox.open(dataDir);
  try {
    await body(outbox, dataDir);
  } finally {
    outbox.close(); // A no-op when the test closed it already.
    ws.cleanup();
  }
}

const keysOf = (outbox: Outbox) => outbox.pending().map((e) => e.key);

describe('Outbox', () => {
  it('starts empty', async () => {
    await withOutbox((outbox) => {
      expect(outbox.size).toBe(0);
      expect(outbox.pending()).toEqual([]);
      expect(outbox.has('tasks/t/units/local/a.db/status')).toBe(false);
    });
  });

  it('keeps entries in the order they were written', async () => {
    await withOutbox((outbox) => {
      outbox.add({ key: 'a', value: '1', kind: 'put' });
      outbox.add({ key: 'b', value: '2', kind: 'claim' });
      outbox.add({ key: 'c', value: '3', kind: 'put' });
      expect(outbox.pending().map(({ key, value, kind }) => ({ key, value, kind }))).toEqual([
        { key: 'a', value: '1', kind: 'put' },
        { key: 'b', value: '2', kind: 'claim' },
        { key: 'c', value: '3', kind: 'put' },
      ]);
      expect(outbox.size).toBe(3);
      expect(outbox.has('b')).toBe(true);
    });
  });

  it('keeps only the newest put of a key, moved to the end of the order', async () => {
    await withOutbox((outbox) => {
      outbox.add({ key: 'a', value: 'old', kind: 'put' });
      outbox.add({ key: 'b', value: 'b', kind: 'put' });
      outbox.add({ key: 'a', value: 'new', kind: 'put' });
      expect(outbox.size).toBe(2);
      expect(keysOf(outbox)).toEqual(['b', 'a']);
      expect(outbox.pending().find((e) => e.key === 'a')?.value).toBe('new');
    });
  });

  it('keeps the first claim of a key, in its first place', async () => {
    await withOutbox((outbox) => {
      outbox.add({ key: 'tick', value: 'first', kind: 'claim' });
      outbox.add({ key: 'other', value: 'x', kind: 'put' });
      outbox.add({ key: 'tick', value: 'second', kind: 'claim' });
      expect(outbox.size).toBe(2);
      expect(keysOf(outbox)).toEqual(['tick', 'other']);
      expect(outbox.pending()[0]).toMatchObject({ key: 'tick', value: 'first', kind: 'claim' });
    });
  });

  it('drops an entry once done with its seq', async () => {
    await withOutbox((outbox) => {
      outbox.add({ key: 'a', value: '1', kind: 'put' });
      outbox.add({ key: 'b', value: '2', kind: 'put' });
      const [a] = outbox.pending();
      outbox.done(a!.key, a!.seq);
      expect(keysOf(outbox)).toEqual(['b']);
      expect(outbox.has('a')).toBe(false);
    });
  });

  it('does not drop a newer value put while an older one was being written', async () => {
    await withOutbox((outbox) => {
      outbox.add({ key: 'a', value: 'old', kind: 'put' });
      const [flushing] = outbox.pending();
      // The flush is writing 'old' to etcd when a newer report arrives.
      outbox.add({ key: 'a', value: 'new', kind: 'put' });
      outbox.done(flushing!.key, flushing!.seq);
      expect(outbox.pending()).toMatchObject([{ key: 'a', value: 'new', kind: 'put' }]);
    });
  });

  it('gives a re-put key a seq above every seq handed out while it was pending', async () => {
    await withOutbox((outbox) => {
      outbox.add({ key: 'a', value: '1', kind: 'put' });
      outbox.add({ key: 'b', value: '1', kind: 'put' });
      const before = new Map(outbox.pending().map((e) => [e.key, e.seq]));
      outbox.add({ key: 'a', value: '2', kind: 'put' });
      const after = outbox.pending().find((e) => e.key === 'a')!.seq;
      expect(after).toBeGreaterThan(Math.max(...before.values()));
    });
  });

  it('keeps its entries across close and reopen', async () => {
    await withOutbox(async (outbox, dataDir) => {
      outbox.add({ key: 'a', value: 'old', kind: 'put' });
      outbox.add({ key: 'tick', value: 'claim', kind: 'claim' });
      outbox.add({ key: 'a', value: 'new', kind: 'put' });
      const before = outbox.pending();
      outbox.close();

      const reopened = await Outbox.open(dataDir);
      try {
        expect(reopened.pending()).toEqual(before);
        expect(reopened.size).toBe(2);
        // Order carries on after the reopen: a new put goes last.
        reopened.add({ key: 'z', value: 'later', kind: 'put' });
        expect(keysOf(reopened)).toEqual(['tick', 'a', 'z']);
      } finally {
        reopened.close();
      }
    });
  });

  it('creates its data folder and keeps its file readable by its owner only', async () => {
    await withOutbox((outbox, dataDir) => {
      outbox.add({ key: 'a', value: '1', kind: 'put' });
      expect(statSync(join(dataDir, OUTBOX_FILE)).mode & 0o777).toBe(0o600);
    });
  });

  it('tightens a file that existed with a looser mode', async () => {
    await withOutbox(async (outbox, dataDir) => {
      const path = join(dataDir, OUTBOX_FILE);
      outbox.close();
      chmodSync(path, 0o644);
      const reopened = await Outbox.open(dataDir);
      try {
        expect(statSync(path).mode & 0o777).toBe(0o600);
      } finally {
        reopened.close();
      }
    });
  });

  // SQLite creates -wal and -shm with the database file's mode at that moment: the file must be 0600 first.
  it('keeps its write-ahead log readable by its owner only from the first open', async () => {
    // The usual umask, so the outcome does not depend on the shell that runs the tests.
    const umask = process.umask(0o022);
    try {
      await withOutbox((outbox, dataDir) => {
        outbox.add({ key: 'a', value: '1', kind: 'put' });
        for (const suffix of ['-wal', '-shm']) {
          expect(statSync(join(dataDir, OUTBOX_FILE + suffix)).mode & 0o777).toBe(0o600);
        }
      });
    } finally {
      process.umask(umask);
    }
  });

  it('remembers the ticks this node claimed across a reopen, until they expire, and which were duplicates', async () => {
    await withOutbox(async (outbox, dataDir) => {
      const tick = { task: 't', database: 'main/a.db', kind: 'full' as const, scheduledAt: '2026-12-07T22:13:30.000Z' };
      // A drill of the same unit at the same time is another tick.
      const drill = { ...tick, kind: 'drill' as const };
      const drillKey = `ticks/t/main/a.db/drill/${tick.scheduledAt}`;
      const key = `ticks/t/main/a.db/full/${tick.scheduledAt}`;
      const now = Date.now();
      outbox.remember(key, tick, now + 60_000, now);
      outbox.remember(drillKey, drill, now + 60_000, now);
      outbox.remember('ticks/old', { ...tick, scheduledAt: 'old' }, now + 10, now);
      outbox.close();
      const reopened = await Outbox.open(dataDir);
      try {
        expect(reopened.claimed(key, now)).toBe(true);
        expect(reopened.claimed('ticks/old', now + 20)).toBe(false);
        expect(reopened.claimed('ticks/never', now)).toBe(false);
        expect(reopened.duplicateOf(tick)).toBeUndefined();
        reopened.markDuplicate(drillKey, 'n3');
        expect(reopened.duplicateOf(drill)).toBe('n3');
        expect(reopened.duplicateOf(tick)).toBeUndefined();
        reopened.markDuplicate(key, 'n2');
        expect(reopened.duplicateOf(tick)).toBe('n2');
        // The claims table is no report for etcd.
        expect(reopened.size).toBe(0);
      } finally {
        reopened.close();
      }
    });
  });
});
