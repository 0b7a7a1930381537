// Loads proto/backupd/v1/backupd.proto at run time (@grpc/proto-loader) and types it with the generated
// definitions in src/generated/. Server and client load the API from this one place.

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType } from '../generated/backupd.js';

const PROTO = join('proto', 'backupd', 'v1', 'backupd.proto');

/** The options the generated types were made with (scripts/gen-proto.sh): keep them in step. */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** The project root: the nearest folder above this module holding proto/ (works from src/ and dist/src/). */
export function protoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, PROTO))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cannot find ${PROTO} above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
  return dir;
}

export function protoPath(): string {
  return join(protoRoot(), PROTO);
}

let loaded: { definition: protoLoader.PackageDefinition; api: ProtoGrpcType } | undefined;

/** The package definition (for reflection) and the typed API, loaded once. */
export function loadApi(): { definition: protoLoader.PackageDefinition; api: ProtoGrpcType } {
  if (!loaded) {
    const definition = protoLoader.loadSync(protoPath(), LOADER_OPTIONS);
    loaded = { definition, api: grpc.loadPackageDefinition(definition) as unknown as ProtoGrpcType };
  }
  return loaded;
}
