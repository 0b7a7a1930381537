// The backup pipeline on a byte stream of its own (no database engine): batches in shared slots, the
// WebAssembly cuts, naming and sealing in the workers. What goes in comes back byte for byte, chunks are
// cut where the format says, a chunk repeated across batches is stored once, an unchanged stream adds
// nothing, chunks are named as the format says, a stream that fails mid-way fails the run without
// leaving staged files, and a source told the previous restore point can repeat a file of it unread.

import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { Blake3Hasher } from '@napi-rs/blake-hash';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../../src/backup/backup.js';
import { KeyRing, loadManifest } from '../../src/backup/chain.js';
import { chunkStream, DEFAULT_CDC } from '../../src/backup/chunker.js';
import { FORMAT_VERSION } from '../../src/backup/manifest.js';
import { restoreBackup } from '../../src/backup/restore.js';
import { prng } from '../../src/cli/sample-db.js';
import { BackupdError } from '../../src/errors.js';
import { manifestKey, packKey } from '../../src/layout.js';
import type { PreviousPoint, Source, SourceReading } from '../../src/sources/source.js';
import { restoreIntoMemory } from '../support/memory-restore.js';
import { type Workspace, workspace } from '../support/workspace.js';

/** A source of one streamed file per database, cut by CDC; restore keeps the file's bytes in memory. */
function streamSource(
  files: Map<string, () => Readable>,
): Source & { restored: Map<string, Buffer>; reads: { opened: number; closed: number } } {
  const restored = new Map<string, Buffer>();
  const reads = { opened: 0, closed: 0 };
  return {
    name: 'mem',
    engine: 'stream',
    types: ['backup'],
    snapshotScope: 'database',
    restored,
    reads,
    async listDatabases() {
      return [...files.keys()].map((name) => ({ name }));
    },
    async read(database: string): Promise<SourceReading> {
      const open = files.get(database);
      if (!open) throw new BackupdError('NOT_FOUND', database);
      async function* one() {
        yield { name: 'data.bin', chunking: { kind: 'cdc' as const }, stream: open!() };
      }
      reads.opened++;
      return {
        engineVersion: 'stream 1',
        files: one(),
        close: async () => {
          reads.closed++;
        },
      };
    },
    restore: restoreIntoMemory(restored),
    async close() {},
  };
}

/** `data` in pieces of changing, odd sizes, as a pipe hands them over. */
function piecewise(data: Buffer): Readable {
  const rnd = prng(11);
  async function* pieces() {
    for (let at = 0; at < data.length; ) {
      const size = 1 + Math.floor(rnd() * 150_000);
      yield data.subarray(at, at + size);
      at += size;
    }
  }
  return Readable.from(pieces(), { objectMode: false });
}

const rnd = prng(5);
const words = ['INSERT', 'order', 'Zürich', '2026-12-03', 'shipped', '\t', '\n', 'NULL', '42.50'];
const text = Buffer.from(Array.from({ length: 700_000 }, () => words[Math.floor(rnd() * words.length)]).join(' '));
const random = Buffer.from(Array.from({ length: 1_500_000 }, () => Math.floor(rnd() * 256)));
/** Text, incompressible bytes, zeros, and the text again (its chunks are repeats, several batches later). */
const data = Buffer.concat([text, random, Buffer.alloc(300_000), text]);

describe.each([
  { encrypted: false, key: undefined },
  { encrypted: true, key: 'pipeline key' },
])('backup pipeline (encrypted: $encrypted)', ({ key }) => {
  let ws: Workspace;
  let source: ReturnType<typeof streamSource>;
  beforeAll(async () => {
    ws = await workspace();
    source = streamSource(
      new Map<string, () => Readable>([
        ['stream', () => piecewise(data)],
        ['second', () => piecewise(data.subarray(0, 200_000))],
        [
          'failing',
          () => {
            // Several batches go through before the dump tool dies.
            async function* dying() {
              yield* piecewise(data.subarray(0, 3_000_000));
              throw new BackupdError('SOURCE_FAILED', 'the dump tool died');
            }
            return Readable.from(dying(), { objectMode: false });
          },
        ],
      ]),
    );
  });
  afterAll(() => ws.cleanup());

  const common = () => ({
    ref: { cluster: 'test', source: 'mem', database: 'stream' },
    source,
    type: 'backup' as const,
    destinations: [ws.destination],
    stagingDir: ws.stagingDir,
    key,
    node: 'n1',
    task: 't1',
  });

  it('stores the stream in the format cuts, each repeated chunk once, and restores it byte for byte', async () => {
    const expected: Buffer[] = [];
    for await (const group of chunkStream(DEFAULT_CDC, Readable.from([data]))) expected.push(...group);
    const distinct = new Set(expected.map((chunk) => chunk.toString('base64')));
    expect(distinct.size).toBeLessThan(expected.length); // the second copy of the text repeats chunks

    const full = await runBackup({ ...common(), level: 'full' });
    expect(full.rawBytes).toBe(data.length);
    expect(full.chunks).toBe(expected.length);
    expect(full.newChunks).toBe(distinct.size);

    await restoreBackup({ ...common(), from: ws.destination, ...full, target: 'back', cacheDir: ws.cacheDir });
    expect(source.restored.get('back')?.equals(data)).toBe(true);

    const again = await runBackup({ ...common(), level: 'incr' });
    expect(again.chainId).toBe(full.chainId);
    expect(again.newChunks).toBe(0);
  });

  it('names chunks with BLAKE3, keyed under K_id when encrypted (since format version 2)', async () => {
    const full = await runBackup({ ...common(), level: 'full' });
    const { manifest, keys } = await loadManifest(
      ws.destination,
      common().ref,
      full.chainId,
      full.backupId,
      new KeyRing(key),
    );
    expect(manifest.format).toBe(FORMAT_VERSION);
    expect(manifest.chunkIds).toBe('blake3');
    expect(Boolean(keys)).toBe(key !== undefined);
    const file = manifest.files[0]!;
    let at = 0;
    for (const index of file.chunks) {
      const [id, , , , rawLength] = manifest.chunks[index]!;
      const hasher = keys ? Blake3Hasher.newKeyed(keys.chunkId) : new Blake3Hasher();
      expect(
        hasher
          .update(data.subarray(at, at + rawLength))
          .digestBuffer()
          .toString('base64'),
      ).toBe(id);
      at += rawLength;
    }
    expect(at).toBe(data.length);
  });

  it('a stored chunk changed in place fails its restore: by its id (unencrypted) or by GCM (encrypted)', async () => {
    const ref = { ...common().ref, database: 'stream' };
    const full = await runBackup({ ...common(), level: 'full' });
    const { manifest } = await loadManifest(ws.destination, ref, full.chainId, full.backupId, new KeyRing(key));
    // A chunk of the random bytes, stored as it is (tag 0: 1 byte more than the chunk, 29 when encrypted), so
    // the flipped byte survives decoding unless something checks it.
    const stored = manifest.chunks.find(([, , , length, rawLength]) => length === rawLength + (key ? 29 : 1));
    const [, pack, offset, length] = stored!;
    const path = ws.destination.pathOf(packKey(ref, full.chainId, manifest.packs[pack]!.id));
    const bytes = readFileSync(path);
    bytes[offset + length - (key ? 20 : 3)]! ^= 0x10;
    writeFileSync(path, bytes);
    await expect(
      restoreBackup({ ...common(), from: ws.destination, ...full, target: 'flipped', cacheDir: ws.cacheDir }),
    ).rejects.toMatchObject({
      code: 'PACK_CORRUPT',
      message: expect.stringMatching(key ? /authentication failed/ : /content does not match its chunk id/),
    });
    expect(source.restored.has('flipped')).toBe(false);
  });

  it('fails the run with the stream error and leaves nothing staged', async () => {
    const failing = { ...common(), ref: { cluster: 'test', source: 'mem', database: 'failing' } };
    await expect(runBackup({ ...failing, level: 'full' })).rejects.toMatchObject({
      code: 'SOURCE_FAILED',
      message: expect.stringMatching(/the dump tool died/),
    });
    expect(existsSync(ws.stagingDir) ? readdirSync(ws.stagingDir) : []).toEqual([]);
  });

  it('does not open the source when the chain it continues cannot be read, and closes every source it opened', async () => {
    // A source holds a lock or runs a dump tool while it is open: a run that fails on its chain opens none.
    const ref = { ...common().ref, database: 'second' };
    const full = await runBackup({ ...common(), ref, level: 'full' });
    expect(source.reads.closed).toBe(source.reads.opened);
    writeFileSync(ws.destination.pathOf(manifestKey(ref, full.chainId, full.backupId)), 'not a manifest');
    const before = { ...source.reads };
    await expect(runBackup({ ...common(), ref, level: 'incr' })).rejects.toMatchObject({ code: 'MANIFEST_CORRUPT' });
    expect(source.reads).toEqual(before);
    expect(existsSync(ws.stagingDir) ? readdirSync(ws.stagingDir) : []).toEqual([]);
  });
});

describe('a source repeating the previous restore point', () => {
  it("is told the previous point's files and engineState, lists a repeated file's chunks again, and fails a repeat of a file that point lacks", async () => {
    const ws = await workspace();
    try {
      const seen: (PreviousPoint | undefined)[] = [];
      let run = 0;
      const source: Source = {
        name: 'mem',
        engine: 'stream',
        types: ['snapshot'],
        snapshotScope: 'database',
        async listDatabases() {
          return [{ name: 'db' }];
        },
        async read(_database, _type, _signal, previous): Promise<SourceReading> {
          seen.push(previous);
          run += 1;
          const n = run;
          async function* files() {
            if (n === 1) {
              yield { name: 'base.bin', chunking: { kind: 'cdc' as const }, stream: piecewise(data) };
              return;
            }
            yield {
              name: n === 2 ? 'base.bin' : 'other.bin',
              chunking: { kind: 'cdc' as const },
              stream: Readable.from([]),
              repeat: true as const,
            };
            yield {
              name: `delta-${n}.bin`,
              chunking: { kind: 'cdc' as const },
              stream: Readable.from([text.subarray(0, 50_000)]),
            };
          }
          return {
            engineVersion: 'stream 1',
            files: files(),
            engineState: async () => `state ${n}`,
            close: async () => {},
          };
        },
        restore: restoreIntoMemory(new Map()),
        async close() {},
      };
      const common = {
        ref: { cluster: 'test', source: 'mem', database: 'db' },
        source,
        type: 'snapshot' as const,
        destinations: [ws.destination],
        stagingDir: ws.stagingDir,
        node: 'n1',
        task: 't1',
      };
      const full = await runBackup({ ...common, level: 'full' });
      const incr = await runBackup({ ...common, level: 'incr' });
      expect(seen).toEqual([undefined, { files: ['base.bin'], engineState: 'state 1' }]);
      const load = async (point: { chainId: string; backupId: string }) =>
        (await loadManifest(ws.destination, common.ref, point.chainId, point.backupId, new KeyRing(undefined)))
          .manifest;
      const [before, after] = [await load(full), await load(incr)];
      const ids = (m: typeof before, name: string) =>
        m.files.find((f) => f.name === name)!.chunks.map((i) => m.chunks[i]![0]);
      expect(after.files.map((f) => f.name)).toEqual(['base.bin', 'delta-2.bin']);
      expect(ids(after, 'base.bin')).toEqual(ids(before, 'base.bin'));
      expect(after.files[0]!.size).toBe(data.length);
      expect(after.engineState).toBe('state 2');
      expect(incr.rawBytes).toBe(50_000); // the repeated file was not read again
      await expect(runBackup({ ...common, level: 'incr' })).rejects.toMatchObject({
        code: 'SOURCE_FAILED',
        message: expect.stringMatching(/repeats other\.bin of the previous restore point, which has no such file/),
      });
    } finally {
      await ws.cleanup();
    }
  });
});
