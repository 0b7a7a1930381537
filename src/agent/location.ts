// How a destination's folder is named to a person: the path a listing searched, so that an answer with
// no backups says where it looked (a folder, a bucket and prefix, an FTP path, a Glacier vault).

import { join, posix } from 'node:path';
import type { DestinationSpec } from '../uploader/registry.js';

/** `<name> (<kind>): <where>`, `prefix` (below the destination's root) included. Never holds a secret. */
export function searchedPath(spec: DestinationSpec, prefix: string): string {
  const config = (typeof spec.config === 'object' && spec.config !== null ? spec.config : {}) as Record<
    string,
    unknown
  >;
  const text = (key: string) => (typeof config[key] === 'string' ? (config[key] as string) : '');
  const root = text('prefix');
  const inner = `${root}${root === '' || root.endsWith('/') ? '' : '/'}${prefix}`;
  let where: string;
  switch (spec.kind) {
    case 'local':
      where = join(text('path'), prefix) + (prefix === '' ? '/' : '');
      break;
    case 's3':
      where = `s3://${text('bucket')}/${inner}`;
      break;
    case 'gcs':
      where = `gs://${text('bucket')}/${inner}`;
      break;
    case 'azure':
      where = `container ${text('container')}, prefix "${inner}"`;
      break;
    case 'ftp':
      where = `ftp://${text('host')}${posix.join(text('root') || '/', prefix)}`;
      break;
    case 'glacier':
      where = `vault ${text('vault')}, the archives recorded under "${prefix}"`;
      break;
    default:
      where = `"${prefix}"`;
  }
  return `${spec.name} (${spec.kind}): ${where}`;
}
