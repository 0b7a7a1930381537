// Restores, verifies and one-time backups between proto and domain: where a backup is (a task's
// destination or one given in full), what to restore into, and what came of it.

import type {
  ChainView,
  BackupLocation as DomainLocation,
  OneTimeInput,
  RestoreInput,
  VerifyInput,
  VerifyOutcome,
} from '../agent/operations.js';
import type { FieldProblem } from '../errors.js';
import type { BackupLocation } from '../generated/backupd/v1/BackupLocation.js';
import type { Chain } from '../generated/backupd/v1/Chain.js';
import type { OneTimeBackupRequest } from '../generated/backupd/v1/OneTimeBackupRequest.js';
import type { RestoreRequest } from '../generated/backupd/v1/RestoreRequest.js';
import type { RestoreResult } from '../generated/backupd/v1/RestoreResult.js';
import type { VerifyRequest } from '../generated/backupd/v1/VerifyRequest.js';
import type { VerifyResult } from '../generated/backupd/v1/VerifyResult.js';
import { backupType, bounded, checked, optional, required } from './convert-fields.js';
import { destinationFromProto, destinationsFromProto, destinationToProto } from './convert-task.js';

/** The location gives a destination spec of its own (an ad-hoc destination), not a task's destination. */
export function hasAdHocSpec(from: BackupLocation | null | undefined): boolean {
  const spec = from?.spec;
  return Boolean(spec && (spec.kind || spec.name || spec.configJson));
}

/** Where to read backups from; both forms at once, or neither, is a field problem. */
export function locationFromProto(
  from: BackupLocation | null | undefined,
  path: string,
  problems: FieldProblem[],
): DomainLocation {
  const task = from?.task ?? '';
  const destination = from?.destination ?? '';
  const spec = from?.spec;
  if (spec && hasAdHocSpec(from)) {
    if (task || destination) {
      problems.push({ path, message: 'give either task and destination, or spec, not both' });
    }
    return { spec: destinationFromProto(spec, `${path}.spec`, problems) };
  }
  if (!task) problems.push({ path: `${path}.task`, message: 'must name a task (or give spec)' });
  if (!destination) problems.push({ path: `${path}.destination`, message: "must name one of the task's destinations" });
  return {
    task: bounded(task, `${path}.task`, problems),
    destination: bounded(destination, `${path}.destination`, problems),
  };
}

export function restoreInputFromProto(request: RestoreRequest): RestoreInput {
  const problems: FieldProblem[] = [];
  const input: RestoreInput = {
    from: locationFromProto(request.from, 'from', problems),
    database: required(request.database, 'database', problems),
    chainId: required(request.chainId, 'chainId', problems),
    backupId: required(request.backupId, 'backupId', problems),
    target: required(request.target, 'target', problems),
    ...optional('key', request.encryptionKey),
    ...optional('cluster', bounded(request.cluster ?? '', 'cluster', problems)),
    ...optional('into', bounded(request.intoSource ?? '', 'intoSource', problems)),
  };
  return checked('restore request', input, problems);
}

export function verifyInputFromProto(request: VerifyRequest): VerifyInput {
  const problems: FieldProblem[] = [];
  const input: VerifyInput = {
    from: locationFromProto(request.from, 'from', problems),
    database: required(request.database, 'database', problems),
    chainId: required(request.chainId, 'chainId', problems),
    backupId: required(request.backupId, 'backupId', problems),
    ...optional('key', request.encryptionKey),
    ...(request.restore ? { restore: true } : {}),
  };
  return checked('verify request', input, problems);
}

/** A restore as another node is asked for it (forwarding to a node that has the source). */
export function restoreInputToProto(input: RestoreInput): RestoreRequest {
  return {
    from: locationToProto(input.from),
    database: input.database,
    chainId: input.chainId,
    backupId: input.backupId,
    target: input.target,
    encryptionKey: input.key ?? '',
    cluster: input.cluster ?? '',
    intoSource: input.into ?? '',
  };
}

/** A one-time backup as another node is asked for it (forwarding to a node that has the source). */
export function oneTimeInputToProto(input: OneTimeInput): OneTimeBackupRequest {
  return {
    database: input.database,
    type: input.type,
    encryptionKey: input.key ?? '',
    destinations: input.destinations.map(destinationToProto),
  };
}

function locationToProto(from: DomainLocation): BackupLocation {
  return 'spec' in from
    ? { task: '', destination: '', spec: destinationToProto(from.spec) }
    : { task: from.task, destination: from.destination };
}

export function oneTimeInputFromProto(request: OneTimeBackupRequest): OneTimeInput {
  const problems: FieldProblem[] = [];
  const input: OneTimeInput = {
    database: required(request.database, 'database', problems),
    type: backupType(request.type, 'type', problems),
    destinations: destinationsFromProto(request.destinations ?? [], 'destinations', problems),
    ...optional('key', request.encryptionKey),
  };
  if (input.destinations.length === 0)
    problems.push({ path: 'destinations', message: 'needs at least one destination' });
  return checked('one-time backup', input, problems);
}

export function chainToProto(chain: ChainView): Chain {
  return {
    cluster: chain.cluster,
    database: chain.database,
    chainId: chain.chainId,
    type: chain.type ?? '',
    backups: [...chain.backups],
    bytes: chain.bytes,
    newestAt: chain.newestAt ?? '',
  };
}

export function restoreResultToProto(result: {
  location: string;
  note?: string;
  bytes: number;
  seconds: number;
}): RestoreResult {
  return { location: result.location, note: result.note ?? '', bytes: result.bytes, seconds: result.seconds };
}

export function verifyResultToProto(result: VerifyOutcome): VerifyResult {
  const check = result.restore;
  return {
    packs: result.packs,
    chunks: result.chunks,
    rawBytes: result.rawBytes,
    packBytes: result.packBytes,
    seconds: result.seconds,
    restore: check
      ? {
          ok: check.ok,
          fingerprinted: check.fingerprinted,
          tables: check.tables,
          differences: check.differences,
          problems: check.problems,
          notes: check.notes,
          bytes: check.bytes,
          restoreSeconds: check.restoreMs / 1000,
          checkSeconds: check.checkMs / 1000,
          bytesPerSecond: check.bytesPerSecond,
        }
      : null,
  };
}
