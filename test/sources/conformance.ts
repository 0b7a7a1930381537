// The conformance suite every source engine passes against its real database: an explicit list of cases,
// each on a database of its own. The engine's test supplies fixtures (a database with several schemas,
// many types, sequences, views, functions, indexes and constraints), a change to them, and a fingerprint:
// a content checksum per table plus the schema objects, compared between a database and its restore.
// Restores must be all or nothing: a refused, corrupt or truncated restore leaves nothing behind.

import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../../src/backup/backup.js';
import { restoreBackup } from '../../src/backup/restore.js';
import { BackupdError } from '../../src/errors.js';
import type { BackupType } from '../../src/layout.js';
import type { RestoreFile, Source } from '../../src/sources/source.js';
import { LocalDestination } from '../../src/uploader/local.js';
import { tempDir } from '../harness/process.js';

export interface SourceConformanceTarget {
  source: Source;
  /**
   * The engine's name for a database the suite calls `base` (a safe name of letters, digits and `_`), when
   * its databases' names have a form of their own (SQLite's are file names, `<base>.db`); `base` itself
   * when absent.
   */
  databaseName?(base: string): string;
  /** Create database `name` holding the engine's fixtures. */
  createDatabase(name: string): Promise<void>;
  /** Change database `name` the way applications do: updates, inserts, deletes, sequences advanced. */
  changeDatabase(name: string): Promise<void>;
  /**
   * Database `name` (a source database, or a restore target by its target name) as comparable text:
   * a content checksum per table (`table <schema>.<name>` keys) and the schema objects.
   */
  fingerprint(name: string): Promise<Record<string, string>>;
  /** True when a database (or restore target) `name` exists. */
  exists(name: string): Promise<boolean>;
  /** What failed restores may have left on the server (temporary databases, roles); empty when clean. */
  leftovers(): Promise<string[]>;
  /** Stop the servers; called once after every case. */
  teardown(): Promise<void>;
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<BackupdError> {
  try {
    await promise;
  } catch (error) {
    expect(error, `expected a BackupdError ${code}, got ${String(error)}`).toBeInstanceOf(BackupdError);
    expect((error as BackupdError).code, (error as Error).message).toBe(code);
    return error as BackupdError;
  }
  throw new Error(`expected ${code}, but the call succeeded`);
}

/** The files of one reading, held in memory (fixture databases are small). */
async function capture(source: Source, database: string, type: BackupType): Promise<{ name: string; data: Buffer }[]> {
  const reading = await source.read(database, type);
  const files: { name: string; data: Buffer }[] = [];
  try {
    for await (const file of reading.files) {
      const parts: Buffer[] = [];
      for await (const part of file.stream) parts.push(part as Buffer);
      files.push({ name: file.name, data: Buffer.concat(parts) });
    }
  } finally {
    await reading.close();
  }
  return files;
}

/** Captured files as restore input; `cut` gives the bytes a file's stream delivers (its size stays). */
async function* restoreFiles(
  files: { name: string; data: Buffer }[],
  cut: (name: string, data: Buffer) => Buffer = (_n, d) => d,
): AsyncGenerator<RestoreFile> {
  for (const file of files) {
    const delivered = cut(file.name, file.data);
    yield {
      name: file.name,
      size: file.data.length,
      stream: Readable.from([delivered]),
      writeTo: async (path) => writeFileSync(path, delivered),
    };
  }
}

export function describeSourceConformance(
  label: string,
  setup: () => Promise<SourceConformanceTarget>,
  options: { timeoutMs?: number } = {},
): void {
  describe(`${label} source conformance`, { timeout: options.timeoutMs ?? 60_000 }, () => {
    let target: SourceConformanceTarget | undefined;
    // Made in beforeAll, not while collecting: a filtered run collects suites whose hooks never run.
    let dir: { path: string; remove: () => void };
    let counter = 0;

    beforeAll(async () => {
      dir = tempDir(`${label}-conformance`);
      target = await setup();
    }, 120_000);

    afterAll(async () => {
      await target?.teardown();
      dir?.remove();
    }, 30_000);

    function t(): SourceConformanceTarget {
      if (!target) throw new Error(`${label}: the server did not start (see the beforeAll error)`);
      return target;
    }

    /** A fresh destination of its own for one case, backing up `database`. */
    function setupFor(database: string): { common: Parameters<typeof runBackup>[0]; repo: string } {
      counter += 1;
      const repo = join(dir.path, `repo${counter}`);
      return {
        repo,
        common: {
          ref: { cluster: 'test', source: t().source.name, database },
          source: t().source,
          type: 'backup',
          level: 'full',
          destinations: [new LocalDestination('disk', repo)],
          stagingDir: join(dir.path, 'staging'),
          node: 'n1',
          task: 'conformance',
        },
      };
    }

    /** A fixture database of its own, for a case that changes it. */
    const named = (base: string) => t().databaseName?.(base) ?? base;

    async function fixture(): Promise<{ database: string; common: Parameters<typeof runBackup>[0]; repo: string }> {
      const database = named(`conf${counter + 1}`);
      await t().createDatabase(database);
      return { database, ...setupFor(database) };
    }

    /** The fixture database the cases that only read share (created once). */
    let sharedName: Promise<string> | undefined;
    async function shared(): Promise<{ database: string; common: Parameters<typeof runBackup>[0]; repo: string }> {
      sharedName ??= t()
        .createDatabase(named('conf_shared'))
        .then(() => named('conf_shared'));
      const database = await sharedName;
      return { database, ...setupFor(database) };
    }

    function restoreOf(
      common: Parameters<typeof runBackup>[0],
      point: { chainId: string; backupId: string },
      target: string,
    ) {
      return restoreBackup({
        ref: common.ref,
        source: common.source,
        from: common.destinations[0]!,
        chainId: point.chainId,
        backupId: point.backupId,
        target,
        cacheDir: join(dir.path, 'cache'),
      });
    }

    it('lists the databases it holds, with their sizes', async () => {
      const { database } = await shared();
      const listed = await t().source.listDatabases();
      const entry = listed.find((d) => d.name === database);
      expect(entry, `${database} in ${JSON.stringify(listed)}`).toBeDefined();
      expect(entry!.sizeBytes).toBeGreaterThan(0);
    });

    it('restores a full backup to the same content, table by table, with every schema object', async () => {
      const { database, common } = await fixture();
      const before = await t().fingerprint(database);
      // Not vacuous: the fixtures really hold several tables and objects.
      expect(Object.keys(before).filter((k) => k.startsWith('table ')).length).toBeGreaterThanOrEqual(5);
      const full = await runBackup({ ...common, level: 'full' });
      expect(full.level).toBe('full');
      await t().changeDatabase(database); // the restore is of the backup, not of the database now
      const restored = await restoreOf(common, full, `${database}_restored`);
      expect(restored.location).toContain(`${database}_restored`);
      expect(await t().fingerprint(`${database}_restored`)).toEqual(before);
    });

    it('restores an incremental taken after changes to the changed content, storing less than the full', async () => {
      const { database, common } = await fixture();
      const full = await runBackup({ ...common, level: 'full' });
      await t().changeDatabase(database);
      const changed = await t().fingerprint(database);
      const incr = await runBackup({ ...common, level: 'incr' });
      expect(incr.level).toBe('incr');
      expect(incr.chainId).toBe(full.chainId);
      expect(incr.storedBytes).toBeLessThan(full.storedBytes);
      await restoreOf(common, incr, `${database}_incr`);
      expect(await t().fingerprint(`${database}_incr`)).toEqual(changed);
    });

    it('refuses to restore over an existing database (ALREADY_EXISTS) and leaves it as it was', async () => {
      const { database, common } = await fixture();
      const full = await runBackup({ ...common, level: 'full' });
      await t().changeDatabase(database);
      const before = await t().fingerprint(database);
      await expectCode(restoreOf(common, full, database), 'ALREADY_EXISTS');
      expect(await t().fingerprint(database)).toEqual(before);
      expect(await t().leftovers()).toEqual([]);
    });

    it('fails a restore from a corrupt pack and leaves nothing behind', async () => {
      const { database, common, repo } = await shared();
      const full = await runBackup({ ...common, level: 'full' });
      const packs = findFiles(repo, '.pack');
      const largest = packs.sort((a, b) => statSync(b).size - statSync(a).size)[0]!;
      const bytes = readFileSync(largest);
      // Past the middle: the restore has started writing the database when the bad chunk is reached.
      const at = Math.floor(bytes.length * 0.7);
      bytes[at] = bytes[at]! ^ 0xff;
      writeFileSync(largest, bytes);
      const error = await expectCode(restoreOf(common, full, `${database}_corrupt`), 'PACK_CORRUPT');
      expect(error.message).toMatch(/corrupt/);
      expect(await t().exists(`${database}_corrupt`)).toBe(false);
      expect(await t().leftovers()).toEqual([]);
    });

    it('fails a restore of a truncated file and leaves nothing behind', async () => {
      const { database } = await shared();
      const type: BackupType = 'backup';
      const files = await capture(t().source, database, type);
      expect(files.length).toBeGreaterThan(0);
      const last = files.at(-1)!.name;
      const cut = (name: string, data: Buffer) =>
        name === last ? data.subarray(0, Math.floor(data.length / 2)) : data;
      await expectCode(
        t().source.restore(restoreFiles(files, cut), { target: `${database}_cut`, type }),
        'SOURCE_FAILED',
      );
      expect(await t().exists(`${database}_cut`)).toBe(false);
      expect(await t().leftovers()).toEqual([]);
      // The same files, whole, restore fine: the failure above was the truncation.
      await t().source.restore(restoreFiles(files), { target: `${database}_whole`, type });
      expect(await t().fingerprint(`${database}_whole`)).toEqual(await t().fingerprint(database));
    });

    it('refuses an unknown database (NOT_FOUND) and a target name that is a path (INVALID_ARGUMENT)', async () => {
      const { database } = await shared();
      await expectCode(t().source.read('no_such_database', 'backup'), 'NOT_FOUND');
      await expectCode(t().source.read('../etc', 'backup'), 'NOT_FOUND');
      const files = await capture(t().source, database, 'backup');
      await expectCode(
        t().source.restore(restoreFiles(files), { target: '../escape', type: 'backup' }),
        'INVALID_ARGUMENT',
      );
      await expectCode(t().source.restore(restoreFiles(files), { target: 'a/b', type: 'backup' }), 'INVALID_ARGUMENT');
    });

    it('takes snapshots at the scope it declares', async () => {
      const { database } = await shared();
      if (t().source.snapshotScope === 'server') {
        const error = await expectCode(t().source.read(database, 'snapshot'), 'UNSUPPORTED');
        expect(error.message).toMatch(/server-wide/);
      } else {
        const reading = await t().source.read(database, 'snapshot');
        await reading.close();
      }
    });
  });
}

function findFiles(root: string, suffix: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(root, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && entry.name.endsWith(suffix)) found.push(join(entry.parentPath, entry.name));
  }
  return found;
}
