// The typed errors: a subclass carries its fields with the code and message its caller expects, and
// findError() finds one through the errors that wrap it (a staged publish's failure inside a backup's).

import { describe, expect, it } from 'vitest';
import { BackupFailure } from '../src/backup/backup.js';
import { StagedPublishError } from '../src/backup/staged.js';
import { BackupdError, findError, RevisionConflict, ValidationError } from '../src/errors.js';
import { DestinationError } from '../src/uploader/failure.js';
import { PublishError } from '../src/uploader/publish.js';

describe('findError', () => {
  it('finds each part of a wrapped failure by its class, keeping the innermost code and message', () => {
    const published = new PublishError([
      { destination: 'a', ok: true, uploadedBytes: 10, reusedPacks: 0, refs: { 'p/1.pack': 'archive-1' } },
      {
        destination: 'b',
        ok: false,
        uploadedBytes: 0,
        reusedPacks: 0,
        refs: {},
        error: new DestinationError('UNAVAILABLE', 'b: connection reset', 'b', 's3'),
      },
    ]);
    expect(published.code).toBe('DESTINATION_FAILED');
    expect(published.message).toBe('not published: destination b failed: b: connection reset');
    const staged = new StagedPublishError('/data/pending/r1', published);
    const failure = new BackupFailure(
      { chainId: 'c1', backupId: 'b1', level: 'full', rawBytes: 5, storedBytes: 3 },
      staged,
    );
    expect([failure.code, failure.message, failure.retryable]).toEqual([
      published.code,
      published.message,
      published.retryable,
    ]);
    expect(failure).toBeInstanceOf(BackupdError);
    expect(findError(failure, BackupFailure)?.backup.backupId).toBe('b1');
    expect(findError(failure, StagedPublishError)?.folder).toBe('/data/pending/r1');
    expect(findError(failure, PublishError)?.outcomes.map((o) => o.refs)).toEqual([{ 'p/1.pack': 'archive-1' }, {}]);
    expect(findError(failure, ValidationError)).toBeUndefined();
    expect(findError('not an error', PublishError)).toBeUndefined();
  });

  it('a publish whose every failed destination was cancelled is CANCELLED', () => {
    const cancelled = new PublishError([
      {
        destination: 'b',
        ok: false,
        uploadedBytes: 0,
        reusedPacks: 0,
        refs: {},
        error: new BackupdError('CANCELLED', 'cancelled'),
      },
    ]);
    expect(cancelled.code).toBe('CANCELLED');
  });

  it('a revision conflict is INVALID_ARGUMENT with the current revision', () => {
    const conflict = new RevisionConflict('task t changed since revision 1 (now 2): read it again and retry', 2);
    expect(conflict).toBeInstanceOf(BackupdError);
    expect([conflict.code, conflict.revision, conflict.retryable]).toEqual(['INVALID_ARGUMENT', 2, false]);
  });

  it('a validation error with its own message and code keeps its problems', () => {
    const problems = [{ path: 'kind', message: 'unknown destination kind "tape"' }];
    const error = new ValidationError('destination', problems, { message: 'kind: unknown "tape"', code: 'NOT_FOUND' });
    expect([error.code, error.message, error.problems]).toEqual(['NOT_FOUND', 'kind: unknown "tape"', problems]);
    expect(new ValidationError('task', problems).message).toBe('invalid task: kind: unknown destination kind "tape"');
  });
});
