// A tool's stdout read through a pipe into shared memory (tool-pipe.ts, PgTools.stream): the bytes come
// through whole either way they are read (`stream`, `fill`), and the tool's failures, a cancel and a consumer that stops
// early all end it. Plain system tools (cat, sh, sleep, yes) stand in for pg_dump.

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { BatchSlots } from '../../src/backup/batch-slots.js';
import { chunkFilled, chunkStream, DEFAULT_CDC } from '../../src/backup/chunker.js';
import { PgTools } from '../../src/sources/postgres-tools.js';
import { type Workspace, workspace } from '../support/workspace.js';

let ws: Workspace;
beforeAll(async () => {
  ws = await workspace();
});
afterAll(() => ws.cleanup());

const tools = new PgTools('/usr/bin', {});

async function collect(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const kept: Buffer[] = [];
  for await (const piece of stream) kept.push(piece);
  return Buffer.concat(kept);
}

describe('a tool read through a pipe', () => {
  it('brings every byte through `stream`, as copies that stay whole', async () => {
    const file = join(ws.dir, 'data.bin');
    const data = randomBytes(5 << 20);
    writeFileSync(file, data);
    const viaStream = await collect(tools.stream('cat', [file], { what: 'cat' }).stream);
    expect(viaStream.equals(data)).toBe(true);
  });

  it('hands on nearly full pieces when the tool writes 4 KiB at a time, as pg_dump does', async () => {
    const file = join(ws.dir, 'small-writes.bin');
    const data = randomBytes(3 << 20);
    writeFileSync(file, data);
    const sizes: number[] = [];
    const kept: Buffer[] = [];
    for await (const piece of tools.stream('dd', [`if=${file}`, 'bs=4096', 'status=none'], { what: 'dd' }).stream) {
      sizes.push(piece.length);
      kept.push(piece);
    }
    expect(Buffer.concat(kept).equals(data)).toBe(true);
    // 768 writes arrive as a few pieces: every piece but the last fills all but less than 64 KiB of its 1 MiB.
    expect(sizes.length).toBeLessThan(6);
    expect(Math.min(...sizes.slice(0, -1))).toBeGreaterThan((1 << 20) - (64 << 10));
  });

  it('brings every byte of a tool that writes a little at a time, with pauses', async () => {
    const script = 'for i in $(seq 1 200); do echo "line $i"; sleep 0.001; done';
    const text = await collect(tools.stream('sh', ['-c', script], { what: 'sh' }).stream);
    const expected = Array.from({ length: 200 }, (_, i) => `line ${i + 1}\n`).join('');
    expect(text.toString()).toBe(expected);
  });

  it('never passes a stream killed while it is read for the whole output', async () => {
    const run = tools.stream('sh', ['-c', 'yes backupd-kill-test'], { what: 'yes' });
    const read = (async () => {
      let pieces = 0;
      for await (const _ of run.stream) {
        if (++pieces === 3) run.kill();
      }
      return pieces;
    })();
    await expect(read).rejects.toMatchObject({ code: expect.stringMatching(/^(CANCELLED|SOURCE_FAILED)$/) });
  });

  it.each([
    [
      'a failing tool, with its stderr',
      'sh',
      ['-c', 'echo "FATAL: database \\"x\\" does not exist" >&2; exit 1'],
      'NOT_FOUND',
      /database "x" does not exist/,
    ],
    ['a tool that exits 3 with nothing said', 'sh', ['-c', 'exit 3'], 'SOURCE_FAILED', /exited with status 3/],
    ['a missing tool', 'no-such-tool', [], 'NOT_FOUND', /no-such-tool not found/],
  ])('fails on %s', async (_name, tool, args, code, message) => {
    await expect(collect(tools.stream(tool, args, { what: 'the test' }).stream)).rejects.toMatchObject({
      code,
      message: expect.stringMatching(message),
    });
  });

  it('writes straight into the regions a consumer gives (fill), as the backup pipeline cuts them', async () => {
    const file = join(ws.dir, 'fill.bin');
    const data = randomBytes(5 << 20);
    writeFileSync(file, data);
    const expected: number[] = [];
    for await (const group of chunkStream(DEFAULT_CDC, Readable.from([data])))
      expected.push(...group.map((c) => c.length));
    const slots = new BatchSlots(6, 256 << 10);
    const run = tools.stream('dd', [`if=${file}`, 'bs=4096', 'status=none'], { what: 'dd' });
    const lengths: number[] = [];
    const kept: Buffer[] = [];
    for await (const batch of chunkFilled(DEFAULT_CDC, run.fill, slots, 3)) {
      lengths.push(...batch.lengths);
      const length = batch.lengths.reduce((sum, n) => sum + n, 0);
      kept.push(Buffer.from(batch.slot.bytes.subarray(batch.start, batch.start + length)));
      slots.release(batch.slot.index);
    }
    expect(Buffer.concat(kept).equals(data)).toBe(true);
    expect(lengths).toEqual(expected);
    expect(slots.available).toBe(slots.count);
  });

  it('gives back the regions of a fill stopped early once its reader thread is gone, and stops the tool', async () => {
    const marker = `backupd-fill-${process.pid}`;
    const slots = new BatchSlots(6, 256 << 10);
    const run = tools.stream('sh', ['-c', `yes ${marker}`], { what: 'yes' });
    let batches = 0;
    for await (const batch of chunkFilled(DEFAULT_CDC, run.fill, slots, 3)) {
      slots.release(batch.slot.index);
      if (++batches === 4) break;
    }
    await vi.waitFor(() => expect(slots.available).toBe(slots.count), { timeout: 5000 });
    expect(() => execFileSync('pgrep', ['-f', marker])).toThrow(); // pgrep exits 1: nothing left running
  });

  it('stops the tool on cancel, and when the reader stops early', async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 200);
    await expect(
      collect(tools.stream('sleep', ['30'], { what: 'sleeping', signal: controller.signal }).stream),
    ).rejects.toMatchObject({ code: 'CANCELLED' });
    const marker = `backupd-test-${process.pid}`;
    let pieces = 0;
    for await (const _ of tools.stream('sh', ['-c', `yes ${marker}`], { what: 'yes' }).stream) {
      if (++pieces === 5) break;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(() => execFileSync('pgrep', ['-f', marker])).toThrow(); // pgrep exits 1: nothing left running
  });
});
