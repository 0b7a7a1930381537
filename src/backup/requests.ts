// What the backup layer's operations take and give back: a backup of one database into a chain
// (backup.ts), a restore of a restore point into a new database (restore.ts), a verify (verify.ts,
// verify-restore.ts), and the progress they report. Callers import the operations from their own files.

import type { Logger } from 'pino';
import type { BackupLevel, BackupType, DatabaseRef } from '../layout.js';
import type { Source } from '../sources/source.js';
import type { Destination } from '../uploader/destination.js';
import type { DestinationOutcome } from '../uploader/publish.js';

export interface Progress {
  phase: 'reading' | 'publishing' | 'restoring' | 'verifying';
  /** Bytes of database content processed so far (before dedupe and compression). */
  bytesDone: number;
  /** Total when known (restore, verify), else undefined. */
  bytesTotal?: number;
}

export interface BackupRequest {
  ref: DatabaseRef;
  source: Source;
  type: BackupType;
  /** 'full' starts a new chain; 'incr' continues the newest chain of this type at the first destination. */
  level: BackupLevel;
  /** Every destination gets the backup or none does. The first one is also read for the chain's state. */
  destinations: Destination[];
  /** Local folder for packs and manifest before they are published. */
  stagingDir: string;
  /**
   * Leave the staged run in `stagingDir` after publishing it: the caller removes it once it has recorded the
   * outcome, so a crash in between still shows which restore point was being published (the agent's runs).
   */
  keepStaged?: boolean;
  /** The task key; undefined for an unencrypted backup. */
  key?: string;
  node: string;
  task: string;
  /** Leader term (fencing token) recorded in the manifest; 0 on a single node. */
  term?: number;
  /**
   * References earlier runs of this chain recorded, by destination name then object key (the `refs` of
   * their results): destinations that cannot stat without them (Glacier) reuse those packs.
   */
  knownRefs?: Record<string, Record<string, string>>;
  signal?: AbortSignal;
  onProgress?: (progress: Progress) => void;
  logger?: Logger;
  now?: () => Date;
}

export interface BackupResult {
  chainId: string;
  backupId: string;
  level: BackupLevel;
  /** Bytes of database content read. */
  rawBytes: number;
  /** Bytes of new packs written (what this restore point added to the chain). */
  storedBytes: number;
  /** Bytes of the manifest. */
  manifestBytes: number;
  chunks: number;
  newChunks: number;
  durationMs: number;
  /** What each destination did: bytes uploaded, packs it already held. */
  destinations: DestinationOutcome[];
  /** The manifest's notes: what a restore of this point will not bring back. */
  notes?: string[];
}

export interface RestoreRequest {
  ref: DatabaseRef;
  source: Source;
  from: Destination;
  chainId: string;
  backupId: string;
  /** The new database's name; refused if it exists. */
  target: string;
  key?: string;
  /** Object key -> destination reference (Glacier archive ids), as publishing reported them. */
  refs?: Record<string, string>;
  /** Folder for packs fetched from destinations that cannot be read in place. */
  cacheDir: string;
  signal?: AbortSignal;
  onProgress?: (progress: Progress) => void;
  logger?: Logger;
}

export interface VerifyRequest {
  ref: DatabaseRef;
  from: Destination;
  chainId: string;
  backupId: string;
  key?: string;
  /** Object key -> destination reference (Glacier archive ids), as publishing reported them. */
  refs?: Record<string, string>;
  signal?: AbortSignal;
  onProgress?: (progress: Progress) => void;
}
