// Opening a SQLite database to read it, as SQLite presents it to its next reader. A database whose last
// writer stopped in the middle of a transaction has a hot journal, which SQLite rolls back before anyone
// reads the file; a read-only connection cannot (SQLITE_READONLY_ROLLBACK, "attempt to write a readonly
// database"), so the rollback is left to a connection that may write, exactly as the database's own
// applications would do it on their next open.

import Database from 'better-sqlite3';
import { BackupdError, messageOf } from '../errors.js';

/** How long a connection waits for another's lock before it fails (SQLITE_BUSY). */
const BUSY_TIMEOUT_MS = 30_000;

/**
 * A read-only connection to the database at `path` that has read its schema. A hot journal is rolled back
 * first (see above); when that cannot be done, SOURCE_FAILED names the journal and what to do.
 */
export function openForReading(path: string): Database.Database {
  try {
    return readOnly(path);
  } catch (error) {
    if ((error as { code?: string }).code !== 'SQLITE_READONLY_ROLLBACK') throw error;
  }
  try {
    const writer = new Database(path, { fileMustExist: true, timeout: BUSY_TIMEOUT_MS });
    try {
      writer.prepare('SELECT count(*) FROM sqlite_schema').get(); // rolls the hot journal back
    } finally {
      writer.close();
    }
  } catch (error) {
    throw new BackupdError(
      'SOURCE_FAILED',
      `${path} has a hot journal (${path}-journal): its last writer stopped in the middle of a transaction, ` +
        `and SQLite rolls that back when a connection that may write the database next opens it, which backupd could not do ` +
        `(${messageOf(error)}). Open the database once as a user who may write it and its folder ` +
        `(e.g. sqlite3 ${path} 'PRAGMA quick_check'), then back it up again`,
      { cause: error },
    );
  }
  return readOnly(path);
}

function readOnly(path: string): Database.Database {
  const db = new Database(path, { readonly: true, fileMustExist: true, timeout: BUSY_TIMEOUT_MS });
  try {
    db.prepare('SELECT count(*) FROM sqlite_schema').get();
    return db;
  } catch (error) {
    db.close();
    throw error;
  }
}
