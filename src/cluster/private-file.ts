// A node's private files: created 0600 and made durable in their folder before anything is written to them.

import { chmod, open as openFile } from 'node:fs/promises';

/**
 * Create a node's SQLite file (the local store's state.db, the outbox) with mode 0600 before SQLite sees it:
 * it holds task encryption keys, destination credentials or run reports. Creating it ourselves leaves no
 * moment where it is readable by others; the chmod after creation also tightens a file that already existed
 * with a looser mode (copied, restored from a backup). SQLite gives its -wal and -shm files the mode of the
 * database file.
 */
export async function createPrivate(path: string, dataDir: string): Promise<void> {
  let created = true;
  try {
    await (await openFile(path, 'wx', 0o600)).close();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    created = false;
  }
  await chmod(path, 0o600);
  if (!created) return;
  // The new directory entry must reach the disk too, or a power loss could lose the whole file.
  const dir = await openFile(dataDir, 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
