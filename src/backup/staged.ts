// A staged run: the packs and manifest of one restore point on local disk, with what publishing them
// needs, written before publishing starts. A run whose publishing failed keeps its staged folder, so
// retrying the same run publishes the same packs (reusing every one a destination already holds) instead
// of producing new ones. Paths inside the folder are stored relative to it, so the folder can be moved
// (the agent keeps a failed run's folder aside until a later run publishes it).

import { readFile, rm, writeFile } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
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
  const packs = run.packs.map((p) => (p.localPath ? { ...p, localPath: inside(folder, p.localPath) } : p));
  await writeFile(join(folder, MANIFEST), manifest);
  await writeFile(join(folder, DESCRIPTION), JSON.stringify({ ...run, packs }));
}

/** The staged run in `folder`, its packs' local paths absolute; NOT_FOUND when there is none or it is unreadable. */
export async function readStaged(folder: string): Promise<StagedRun> {
  let run: Partial<StagedRun> | null;
  try {
    run = JSON.parse(await readFile(join(folder, DESCRIPTION), 'utf8')) as Partial<StagedRun> | null;
  } catch (error) {
    throw new BackupdError('NOT_FOUND', `no staged run in ${folder}`, { cause: error });
  }
  if (!run || typeof run.manifestKey !== 'string' || !Array.isArray(run.packs)) {
    throw new BackupdError('NOT_FOUND', `no staged run in ${folder}: ${DESCRIPTION} is incomplete`);
  }
  // Paths inside the folder are relative to it; one outside it (see inside()) is absolute, and resolve() keeps it.
  const packs = run.packs.map((p) => (p.localPath ? { ...p, localPath: resolve(folder, p.localPath) } : p));
  return { ...(run as StagedRun), packs };
}

/** `path` relative to `folder` when it lies inside it, else as it is. */
function inside(folder: string, path: string): string {
  const rel = relative(folder, path);
  return rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel) ? path : rel;
}

/** Publishing a staged run failed (not cancelled): its code and message, and the folder that still holds it. */
export class StagedPublishError extends BackupdError {
  constructor(
    readonly folder: string,
    cause: BackupdError,
  ) {
    super(cause.code, cause.message, { cause, retryable: cause.retryable });
    this.name = 'StagedPublishError';
  }
}

export interface PublishStagedOptions {
  /** Leave the folder after a successful publish (the caller removes it once the outcome is recorded). */
  keep?: boolean;
  signal?: AbortSignal;
  onProgress?: PublishRequest['onProgress'];
  knownRefs?: PublishRequest['knownRefs'];
}

/**
 * Publish a staged run to every destination, all or nothing. On success the staged folder is removed (unless
 * `keep`);
 * on failure it stays for a retry, and the error (a StagedPublishError, unless cancelled) names it.
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
    if (!options.keep) await rm(folder, { recursive: true, force: true });
    return { run, outcomes };
  } catch (error) {
    if (error instanceof BackupdError && error.code !== 'CANCELLED') throw new StagedPublishError(folder, error);
    throw error;
  }
}
