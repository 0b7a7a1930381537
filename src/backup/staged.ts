// A staged run: the packs and manifest of one restore point on local disk, with what publishing them
// needs, written before publishing starts. A run whose publishing failed keeps its staged folder, so
// retrying the same run publishes the same packs (reusing every one a destination already holds) instead
// of producing new ones.

import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BackupdError } from '../errors.js';
import type { DatabaseRef } from '../layout.js';
import type { Destination } from '../uploader/destination.js';
import { type DestinationOutcome, type PackToPublish, type PublishRequest, publish } from '../uploader/publish.js';

export interface StagedRun {
  ref: DatabaseRef;
  chainId: string;
  backupId: string;
  manifestKey: string;
  packs: PackToPublish[];
}

const DESCRIPTION = 'staged.json';
const MANIFEST = 'manifest';

export async function writeStaged(folder: string, run: StagedRun, manifest: Buffer): Promise<void> {
  await writeFile(join(folder, MANIFEST), manifest);
  await writeFile(join(folder, DESCRIPTION), JSON.stringify(run));
}

export async function readStaged(folder: string): Promise<StagedRun> {
  try {
    return JSON.parse(await readFile(join(folder, DESCRIPTION), 'utf8')) as StagedRun;
  } catch (error) {
    throw new BackupdError('NOT_FOUND', `no staged run in ${folder}`, { cause: error });
  }
}

export interface PublishStagedOptions {
  signal?: AbortSignal;
  onProgress?: PublishRequest['onProgress'];
  knownRefs?: PublishRequest['knownRefs'];
}

/**
 * Publish a staged run to every destination, all or nothing. On success the staged folder is removed;
 * on failure it stays for a retry and the error's details name it (`staged`).
 */
export async function publishStaged(
  folder: string,
  destinations: Destination[],
  options: PublishStagedOptions = {},
): Promise<{ run: StagedRun; outcomes: DestinationOutcome[] }> {
  const run = await readStaged(folder);
  const manifest = await readFile(join(folder, MANIFEST));
  try {
    const outcomes = await publish({
      destinations,
      packs: run.packs,
      manifest: { key: run.manifestKey, bytes: manifest },
      chainSource: destinations.find((d) => d.capabilities.listable),
      knownRefs: options.knownRefs,
      signal: options.signal,
      onProgress: options.onProgress,
    });
    await rm(folder, { recursive: true, force: true });
    return { run, outcomes };
  } catch (error) {
    if (error instanceof BackupdError && error.code !== 'CANCELLED') error.details.staged = folder;
    throw error;
  }
}
