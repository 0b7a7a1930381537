// Restoring a logical backup (globals.json + dump.sql) into a NEW MariaDB database. MariaDB cannot rename
// a database (views, routines and events do not move with RENAME TABLE), so the target is created first,
// atomically (CREATE DATABASE fails if it exists: ALREADY_EXISTS, nothing touched), marked by its comment
// as incomplete until the whole dump has loaded; on any failure it is dropped again with the accounts this
// restore created. A crash leaves a database whose comment says what it is (RESTORING_COMMENT).

import { BackupdError, messageOf } from '../errors.js';
import { assertSegment } from '../layout.js';
import { accountKey, type MariadbAccount, type MariadbCatalog } from './mariadb-catalog.js';
import { MAX_PACKET, type MariadbClient, quoteName, quoteString } from './mariadb-client.js';
import { DUMP_END, DUMP_FILE, type DumpGlobals, GLOBALS_FILE, GLOBALS_FORMAT } from './mariadb-dump.js';
import { checkedInput } from './postgres-tools.js';
import { expectFile, parseVersioned, readSmall } from './restore-file.js';
import type { RestoreFile, RestoreResult } from './source.js';

/** MariaDB's longest database name, in characters. */
const MAX_NAME_CHARS = 64;
/** The comment of a database a restore is still loading (or a crashed restore left). */
export const RESTORING_COMMENT = 'backupd: restore in progress, incomplete';
/** globals.json is small; anything this large is not ours. */
const MAX_GLOBALS_BYTES = 64 << 20;

export interface DumpRestoreOptions {
  client: MariadbClient;
  catalog: MariadbCatalog;
  target: string;
  /** How a person reaches a database, without secrets: `mariadb://user@host:port/<name>`. */
  locationOf: (database: string) => string;
  signal?: AbortSignal;
}

/** A database name a restore may create: a safe path segment that fits MariaDB's name length. */
export function checkTargetName(target: string): string {
  assertSegment('target database', target);
  if ([...target].length > MAX_NAME_CHARS) {
    throw new BackupdError(
      'INVALID_ARGUMENT',
      `target database "${target}" is longer than ${MAX_NAME_CHARS} characters`,
    );
  }
  return target;
}

export async function restoreDump(
  files: AsyncIterable<RestoreFile>,
  options: DumpRestoreOptions,
): Promise<RestoreResult> {
  const { client, catalog, signal } = options;
  const target = checkTargetName(options.target);
  if (await catalog.database(target, signal)) {
    throw new BackupdError('ALREADY_EXISTS', `database ${target} already exists: restore into a new name`);
  }
  const iterator = files[Symbol.asyncIterator]();
  const globals = parseGlobals(await readSmall(await expectFile(iterator, GLOBALS_FILE, 'MariaDB'), MAX_GLOBALS_BYTES));

  const createdAccounts: MariadbAccount[] = [];
  let createdDatabase = false;
  try {
    const { charset, collation } = globals.database;
    await client
      .exec(
        `CREATE DATABASE ${quoteName(target)} CHARACTER SET ${quoteName(charset)} COLLATE ${quoteName(collation)} ` +
          `COMMENT ${quoteString(RESTORING_COMMENT)};`,
        `creating database ${target}`,
        { signal },
      )
      .catch((error: unknown) => {
        // Created by someone else since the check above (or a system schema): never touch it.
        if (/database exists/i.test(messageOf(error))) {
          throw new BackupdError('ALREADY_EXISTS', `database ${target} already exists: restore into a new name`);
        }
        throw error;
      });
    createdDatabase = true;

    const accounts = globals.accounts ?? [];
    if (accounts.length > 0) {
      const existing = await catalog.existingAccounts(accounts, signal);
      const missing = accounts.filter((a) => !existing.has(accountKey(a)));
      // Marked before the statements run: a cancelled client may have run them (DROP USER IF EXISTS undoes).
      createdAccounts.push(...missing);
      await client.exec(accountsSql(missing, accounts, target), `creating the accounts of database ${target}`, {
        signal,
      });
    }

    const dump = await expectFile(iterator, DUMP_FILE, 'MariaDB');
    await client.load(['--binary-mode', `--max-allowed-packet=${MAX_PACKET}`, `--database=${target}`], {
      input: checkedInput(dump, (tail) =>
        tail.includes(DUMP_END) ? undefined : 'lacks the end line mariadb-dump writes (a truncated dump)',
      ),
      stdout: 'ignore',
      signal,
      what: `loading the dump into database ${target}`,
    });
    const tableGrants = tablePrivilegesSql(accounts, target);
    if (tableGrants !== '') {
      await client.exec(tableGrants, `granting table privileges in database ${target}`, { signal });
    }
    const extra = await iterator.next();
    if (!extra.done)
      throw new BackupdError('SOURCE_FAILED', `unexpected file "${extra.value.name}" in a MariaDB backup`);

    await client.exec(
      `ALTER DATABASE ${quoteName(target)} COMMENT ${quoteString(globals.database.comment ?? '')};`,
      `marking database ${target} complete`,
      { signal },
    );
    createdDatabase = false;
    const note =
      createdAccounts.length > 0
        ? `Created account(s) ${createdAccounts.map((a) => `'${a.user}'@'${a.host}'`).join(', ')} that the database ` +
          'uses, locked and without a password: ALTER USER ... IDENTIFIED BY ... ACCOUNT UNLOCK for any that should log in.'
        : undefined;
    return { location: options.locationOf(target), ...(note ? { note } : {}) };
  } catch (error) {
    throw await undo(error, client, createdDatabase ? target : undefined, createdAccounts);
  }
}

/** Drop what a failed restore created; the restore's own error is what the caller sees. */
async function undo(
  error: unknown,
  client: MariadbClient,
  database: string | undefined,
  accounts: MariadbAccount[],
): Promise<unknown> {
  const problems: string[] = [];
  // No signal: a cancelled restore must still clean up.
  if (database !== undefined) {
    await client
      .exec(`DROP DATABASE IF EXISTS ${quoteName(database)};`, `dropping database ${database}`)
      .catch((e: unknown) => problems.push(messageOf(e)));
  }
  if (accounts.length > 0) {
    await client
      .exec(`DROP USER IF EXISTS ${accounts.map(accountName).join(', ')};`, 'dropping the accounts the restore created')
      .catch((e: unknown) => problems.push(messageOf(e)));
  }
  if (problems.length === 0) return error;
  const code = error instanceof BackupdError ? error.code : 'SOURCE_FAILED';
  return new BackupdError(code, `${messageOf(error)}; cleaning up also failed: ${problems.join('; ')}`, {
    cause: error,
  });
}

function accountName(a: { user: string; host: string }): string {
  return `${quoteString(a.user)}@${quoteString(a.host)}`;
}

/** CREATE USER for each missing account (locked, no password), then every account's privileges on `target`. */
function accountsSql(missing: MariadbAccount[], all: MariadbAccount[], target: string): string {
  const lines: string[] = [];
  for (const a of missing) lines.push(`CREATE USER ${accountName(a)} ACCOUNT LOCK;`);
  for (const a of all) {
    if (a.databasePrivileges.length > 0) {
      lines.push(
        `GRANT ${a.databasePrivileges.map(privilege).join(', ')} ON ${quoteName(target)}.* TO ${accountName(a)}` +
          `${a.grantOption ? ' WITH GRANT OPTION' : ''};`,
      );
    }
  }
  return `${lines.join('\n')}\n`;
}

/** Table-level privileges on `target`'s tables, given once the dump has created them ('' when none). */
function tablePrivilegesSql(accounts: MariadbAccount[], target: string): string {
  const lines: string[] = [];
  for (const a of accounts) {
    for (const t of a.tablePrivileges) {
      lines.push(
        `GRANT ${t.privileges.map(privilege).join(', ')} ON ${quoteName(target)}.${quoteName(t.table)} TO ${accountName(a)};`,
      );
    }
  }
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}

/** A privilege name as GRANT takes it; anything else is not from our catalog read. */
function privilege(name: string): string {
  if (!/^[A-Z ]+$/.test(name)) throw new BackupdError('SOURCE_FAILED', `${GLOBALS_FILE} names an unknown privilege`);
  return name;
}

function parseGlobals(text: string): DumpGlobals {
  const globals = parseVersioned<DumpGlobals>(text, GLOBALS_FILE, GLOBALS_FORMAT);
  const db = globals.database;
  if (typeof db?.charset !== 'string' || typeof db.collation !== 'string') {
    throw new BackupdError('SOURCE_FAILED', `${GLOBALS_FILE} lacks the database's character set`);
  }
  if (globals.accounts !== undefined && !Array.isArray(globals.accounts)) {
    throw new BackupdError('SOURCE_FAILED', `${GLOBALS_FILE} has accounts that are not a list`);
  }
  return globals;
}
