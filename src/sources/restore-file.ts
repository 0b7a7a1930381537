// The small files a tool-based backup holds beside its dump or data directory (globals.json, snapshot.json),
// read back at restore: in their order, bounded in size, of the one format version this backupd writes.
// Shared by the postgres and mariadb sources.

import { BackupdError, messageOf } from '../errors.js';
import type { RestoreFile } from './source.js';

/** The restore's next file, which must be `name`; SOURCE_FAILED when the `engine` backup holds another or none. */
export async function expectFile(
  iterator: AsyncIterator<RestoreFile>,
  name: string,
  engine: string,
): Promise<RestoreFile> {
  const next = await iterator.next();
  if (next.done) throw new BackupdError('SOURCE_FAILED', `the ${engine} backup holds no ${name}`);
  if (next.value.name !== name) {
    throw new BackupdError(
      'SOURCE_FAILED',
      `unexpected file "${next.value.name}" in a ${engine} backup (expected ${name})`,
    );
  }
  return next.value;
}

/** A small file's text; SOURCE_FAILED when it is larger than `maxBytes` (a damaged size, not read into memory). */
export async function readSmall(file: RestoreFile, maxBytes: number): Promise<string> {
  if (file.size > maxBytes) throw new BackupdError('SOURCE_FAILED', `${file.name} is too large (${file.size} bytes)`);
  const parts: Buffer[] = [];
  for await (const part of file.stream) parts.push(part as Buffer);
  return Buffer.concat(parts).toString('utf8');
}

/**
 * `text` as the JSON of `fileName` in format `format`: SOURCE_FAILED when it is not JSON, UNSUPPORTED_FORMAT
 * when it names another format. The caller checks the fields it needs.
 */
export function parseVersioned<T extends { format: unknown }>(text: string, fileName: string, format: number): T {
  let parsed: T;
  try {
    parsed = JSON.parse(text) as T;
  } catch (error) {
    throw new BackupdError('SOURCE_FAILED', `${fileName} is not valid JSON: ${messageOf(error)}`);
  }
  if (parsed?.format !== format) {
    throw new BackupdError(
      'UNSUPPORTED_FORMAT',
      `${fileName} has format ${String(parsed?.format)}; this backupd reads format ${format}`,
    );
  }
  return parsed;
}
