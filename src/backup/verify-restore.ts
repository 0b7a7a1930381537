// Verify by restoring: the restore point is restored into a scratch place nothing else sees (Source.scratch),
// the engine's own checks run on it, and its fingerprint is compared, table by table, with the one the backup
// recorded. The scratch is removed whatever happens; one left by a killed process is taken back at the
// agent's next start. One function for the API, backupctl and scheduled drills.

import type { Logger } from 'pino';
import { BackupdError, messageOf } from '../errors.js';
import { compareFingerprints, type FingerprintDifference } from '../sources/fingerprint.js';
import type { Source } from '../sources/source.js';
import { KeyRing, loadManifest } from './chain.js';
import type { VerifyRequest } from './requests.js';
import { restoreBackup } from './restore.js';

export interface VerifyRestoreRequest extends VerifyRequest {
  /** The source of the database's engine on this node: it makes the scratch place. */
  source: Source;
  /** This node's own folder for scratch places (removed at the agent's start). */
  scratchDir: string;
  /** Folder for packs fetched from destinations that cannot be read in place. */
  cacheDir: string;
  logger?: Logger;
}

export interface VerifyRestoreResult {
  chainId: string;
  backupId: string;
  /** The restore loaded, the engine's checks found nothing, and every fingerprint matched. */
  ok: boolean;
  /** Whether the restore point recorded a fingerprint to compare with (else it was restored and checked only). */
  fingerprinted: boolean;
  /** Tables the fingerprint compared. */
  tables: number;
  /** Every difference from the fingerprint at backup time, by table. */
  differences: FingerprintDifference[];
  /** What failed otherwise: the restore itself, or the engine's own checks (integrity_check, amcheck). */
  problems: string[];
  /** What was not checked, which is no failure (e.g. amcheck not installed, no fingerprint recorded). */
  notes: string[];
  /** Bytes of the restore point's files restored. */
  bytes: number;
  /** The restore's duration (the measured time to recover), and the checks' after it. */
  restoreMs: number;
  checkMs: number;
  /** bytes / restore duration. */
  bytesPerSecond: number;
}

/**
 * Restore `chainId/backupId` into a scratch place and compare it with its fingerprint. A restore the engine
 * rejects is a failed result (`problems`), not an error; errors are what stops the verify itself: NOT_FOUND,
 * KEY_REQUIRED, WRONG_KEY, PACK_MISSING, PACK_CORRUPT, MANIFEST_CORRUPT, UNSUPPORTED (no scratch for the
 * engine, or a restore point of another engine), CANCELLED.
 */
export async function verifyByRestoring(request: VerifyRestoreRequest): Promise<VerifyRestoreResult> {
  const { ref, chainId, backupId, source } = request;
  const { manifest } = await loadManifest(request.from, ref, chainId, backupId, new KeyRing(request.key), request.refs);
  if (manifest.engine !== source.engine) {
    throw new BackupdError(
      'UNSUPPORTED',
      `backup ${chainId}/${backupId} is of engine ${manifest.engine}; source ${source.name} is ${source.engine}`,
    );
  }
  if (!source.scratch) {
    throw new BackupdError('UNSUPPORTED', `source ${source.name} (${source.engine}) cannot verify by restoring`);
  }
  const scratch = await source.scratch(request.scratchDir, manifest.type);
  const problems: string[] = [];
  const notes: string[] = [];
  let differences: FingerprintDifference[] = [];
  let bytes = 0;
  let restoreMs = 0;
  let checkMs = 0;
  const log = request.logger?.child({ verify: `${chainId}/${backupId}`, scratch: scratch.target });
  try {
    const started = performance.now();
    let restored = false;
    try {
      const result = await restoreBackup({
        ref,
        source: scratch.source,
        from: request.from,
        chainId,
        backupId,
        target: scratch.target,
        key: request.key,
        refs: request.refs,
        cacheDir: request.cacheDir,
        signal: request.signal,
        onProgress: request.onProgress,
      });
      bytes = result.bytes;
      restored = true;
    } catch (error) {
      // The engine refused the data: that is what this verify is for. Anything else stops it.
      if (!(error instanceof BackupdError) || error.code !== 'SOURCE_FAILED') throw error;
      problems.push(`the restore failed: ${error.message}`);
    }
    restoreMs = performance.now() - started;
    if (restored) {
      request.onProgress?.({ phase: 'verifying', bytesDone: bytes, bytesTotal: bytes });
      const checking = performance.now();
      try {
        const found = await scratch.inspect(request.signal);
        problems.push(...found.problems);
        notes.push(...(found.notes ?? []));
        if (manifest.fingerprint) differences = compareFingerprints(manifest.fingerprint, found.fingerprint);
      } catch (error) {
        if (!(error instanceof BackupdError) || error.code !== 'SOURCE_FAILED') throw error;
        problems.push(`the restored database cannot be read: ${messageOf(error)}`);
      }
      checkMs = performance.now() - checking;
    }
  } finally {
    await scratch.remove().catch((error: unknown) => {
      // Logged, not thrown: the verify's own outcome matters more, and the next start takes it back.
      log?.error({ err: error }, 'scratch place not removed');
    });
  }
  const ok = problems.length === 0 && differences.length === 0;
  const result: VerifyRestoreResult = {
    chainId,
    backupId,
    ok,
    fingerprinted: manifest.fingerprint !== undefined,
    tables: manifest.fingerprint?.tables.length ?? 0,
    differences,
    problems,
    notes,
    bytes,
    restoreMs,
    checkMs,
    bytesPerSecond: restoreMs > 0 ? Math.round((bytes / restoreMs) * 1000) : 0,
  };
  log?.info(
    { ok, differences: differences.length, problems: problems.length, restoreMs, bytes },
    'verified by restoring',
  );
  return result;
}
