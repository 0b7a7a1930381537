// Publishing one restore point to every destination, all or nothing (DESIGN.md "Publishing"):
// 1. every destination gets every pack the restore point reads (in parallel across destinations; a pack
//    already there with the same size is reused: packs are named by their content hash);
// 2. only when all destinations hold all packs, the manifest is written to each;
// 3. if any destination fails, manifests this run wrote are removed again and the run fails naming
//    every destination that failed. Packs stay, to be reused by the next attempt or removed as orphans.

import { createReadStream } from 'node:fs';
import { BackupdError, messageOf } from '../errors.js';
import type { Destination, PutResult } from './destination.js';

export interface PackToPublish {
  key: string;
  size: number;
  /** Staged local file of a pack written by this run; absent for packs of earlier restore points. */
  localPath?: string;
}

export interface PublishRequest {
  destinations: Destination[];
  packs: PackToPublish[];
  manifest: { key: string; bytes: Buffer };
  /** Where packs of earlier restore points are copied from when a destination lacks them. */
  chainSource?: Destination;
  /**
   * What earlier runs recorded for destinations that cannot stat without a reference (Glacier): by
   * destination name, object key -> reference. A pack found here is reused instead of uploaded again.
   */
  knownRefs?: Record<string, Record<string, string>>;
  signal?: AbortSignal;
  /**
   * Bytes done so far (sent, or found already there), summed over destinations, the total, and the same
   * per destination name.
   */
  onProgress?: (done: number, total: number, byDestination: Record<string, { done: number; total: number }>) => void;
  /** How many packs one destination uploads at once. */
  concurrency?: number;
}

export interface DestinationOutcome {
  destination: string;
  ok: boolean;
  uploadedBytes: number;
  reusedPacks: number;
  /**
   * Object key -> the destination's own reference, for destinations that return one (Glacier archive ids):
   * keep them with the unit's status, restore and retention need them.
   */
  refs: Record<string, string>;
  error?: BackupdError;
}

export async function publish(request: PublishRequest): Promise<DestinationOutcome[]> {
  const each = request.packs.reduce((sum, p) => sum + p.size, 0);
  const total = request.destinations.length * each;
  const byDestination = Object.fromEntries(request.destinations.map((d) => [d.name, { done: 0, total: each }]));
  let done = 0;
  const progress = (destination: Destination, bytes: number) => {
    done += bytes;
    byDestination[destination.name]!.done += bytes;
    request.onProgress?.(done, total, byDestination);
  };
  const outcomes = await Promise.all(request.destinations.map((d) => uploadPacks(d, request, progress)));
  if (outcomes.some((o) => !o.ok)) throw publishFailure(outcomes);

  const written: Destination[] = [];
  const manifestResults = await Promise.allSettled(
    request.destinations.map(async (destination, i) => {
      const put = await destination.put(request.manifest.key, request.manifest.bytes, request.manifest.bytes.length, {
        signal: request.signal,
      });
      if (put.ref) outcomes[i]!.refs[request.manifest.key] = put.ref;
      written.push(destination);
    }),
  );
  manifestResults.forEach((result, i) => {
    if (result.status === 'rejected') {
      outcomes[i]!.ok = false;
      outcomes[i]!.error = asError(result.reason, request.destinations[i]!);
    }
  });
  if (outcomes.some((o) => !o.ok)) {
    // Take back every manifest this run wrote: a restore point exists everywhere or nowhere. Destinations
    // that delete by reference (Glacier) get theirs; a manifest taken back is no longer in the refs.
    await Promise.allSettled(
      written.map(async (d) => {
        const refs = outcomes[request.destinations.indexOf(d)]!.refs;
        await d.delete(request.manifest.key, { ref: refs[request.manifest.key] });
        delete refs[request.manifest.key];
      }),
    );
    throw publishFailure(outcomes);
  }
  return outcomes;
}

async function uploadPacks(
  destination: Destination,
  request: PublishRequest,
  progress: (destination: Destination, bytes: number) => void,
): Promise<DestinationOutcome> {
  const outcome: DestinationOutcome = {
    destination: destination.name,
    ok: true,
    uploadedBytes: 0,
    reusedPacks: 0,
    refs: {},
  };
  const queue = [...request.packs];
  const worker = async () => {
    for (let pack = queue.shift(); pack; pack = queue.shift()) {
      if (request.signal?.aborted) throw new BackupdError('CANCELLED', 'publishing cancelled');
      const known = request.knownRefs?.[destination.name]?.[pack.key];
      if (known && !destination.capabilities.listable) {
        // Archives cannot be described without an inventory job: the recorded reference is the proof.
        outcome.refs[pack.key] = known;
        outcome.reusedPacks++;
        progress(destination, pack.size);
        continue;
      }
      const present = await destination.stat(pack.key);
      if (present && present.size === pack.size) {
        outcome.reusedPacks++;
        progress(destination, pack.size);
        continue;
      }
      let put: PutResult;
      // At most one destination adopts a staged file in place (a hard link): two destinations sharing one
      // inode would share one copy, and damage to it would reach both.
      if (pack.localPath && destination.putFile && destination === adopter(request.destinations)) {
        put = await destination.putFile(pack.key, pack.localPath, pack.size);
        progress(destination, pack.size);
      } else {
        const body = await packBody(pack, destination, request.chainSource);
        let sent = 0;
        put = await destination.put(pack.key, body, pack.size, {
          signal: request.signal,
          onProgress: (bytes) => {
            progress(destination, bytes - sent);
            sent = bytes;
          },
        });
      }
      if (put.ref) outcome.refs[pack.key] = put.ref;
      outcome.uploadedBytes += pack.size;
    }
  };
  try {
    const concurrency = Math.max(1, request.concurrency ?? 2);
    await Promise.all(Array.from({ length: concurrency }, worker));
  } catch (error) {
    outcome.ok = false;
    outcome.error = asError(error, destination);
    queue.length = 0;
  }
  return outcome;
}

function adopter(destinations: Destination[]): Destination | undefined {
  return destinations.find((d) => d.putFile);
}

async function packBody(pack: PackToPublish, target: Destination, chainSource: Destination | undefined) {
  if (pack.localPath) {
    const path = pack.localPath;
    return () => createReadStream(path, { highWaterMark: 1 << 20 });
  }
  if (!chainSource || chainSource === target) {
    throw new BackupdError('PACK_MISSING', `pack ${pack.key} of an earlier restore point is missing at ${target.name}`);
  }
  // A pack of an earlier restore point this destination lacks: copy it from where the chain was read.
  const bytes: Buffer[] = [];
  for await (const part of await chainSource.get(pack.key)) bytes.push(part as Buffer);
  return Buffer.concat(bytes);
}

function asError(error: unknown, destination: Destination): BackupdError {
  if (error instanceof BackupdError) return error;
  return new BackupdError('DESTINATION_FAILED', `${destination.name}: ${messageOf(error)}`, { cause: error });
}

/** Publishing failed at a destination: what each destination did (references kept, errors), all or nothing. */
export class PublishError extends BackupdError {
  constructor(readonly outcomes: DestinationOutcome[]) {
    const failed = outcomes.filter((o) => !o.ok);
    const cancelled = failed.every((o) => o.error?.code === 'CANCELLED');
    super(
      cancelled ? 'CANCELLED' : 'DESTINATION_FAILED',
      `not published: ${failed.map((o) => `destination ${o.destination} failed: ${o.error?.message}`).join('; ')}`,
    );
    this.name = 'PublishError';
  }
}

function publishFailure(outcomes: DestinationOutcome[]): PublishError {
  return new PublishError(outcomes);
}
