// How what destinations did is written down: a destination's part of a run record, and the references
// destinations returned (Glacier archive ids) added to the unit's state. Shared by a run's own publish and
// the publish of a pending backup (pending.ts).

import type { RunRecord, Store } from '../cluster/store.js';
import { BackupdError, findError, messageOf } from '../errors.js';
import { type DestinationOutcome, PublishError } from '../uploader/publish.js';

/** Add the references destinations returned in this run to the unit's recorded ones. */
export async function recordRefs(
  ctx: { store: Store },
  record: Pick<RunRecord, 'task' | 'database'>,
  outcomes: readonly { destination: string; refs?: Record<string, string> }[],
): Promise<void> {
  if (!outcomes.some((o) => o.refs && Object.keys(o.refs).length > 0)) return;
  await ctx.store.updateUnitStatus(record.task, record.database, (current) => {
    const refs = { ...current.refs };
    for (const o of outcomes) {
      if (o.refs && Object.keys(o.refs).length > 0) refs[o.destination] = { ...refs[o.destination], ...o.refs };
    }
    return { ...current, refs };
  });
}

export function destinationRecord(outcome: DestinationOutcome): RunRecord['destinations'][number] {
  return {
    destination: outcome.destination,
    ok: outcome.ok,
    uploadedBytes: outcome.uploadedBytes,
    reusedPacks: outcome.reusedPacks,
    ...(outcome.error ? { error: outcome.error.message } : {}),
  };
}

/** The destination outcomes a failed publish carries in its error (a PublishError), or none. */
export function failedOutcomes(error: BackupdError): DestinationOutcome[] {
  return findError(error, PublishError)?.outcomes ?? [];
}

export function asBackupdError(error: unknown): BackupdError {
  if (error instanceof BackupdError) return error;
  return new BackupdError('INTERNAL', messageOf(error), { cause: error });
}
