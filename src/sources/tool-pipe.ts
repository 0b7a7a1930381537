// A tool's stdout read into reused memory instead of a new buffer per read. Node's child stdout
// allocates a fresh 64 KiB ArrayBuffer for every read; for a pg_dump of a gigabyte that is 15,000 of them,
// and V8 counts that external memory toward full garbage collections: 50-80 per 878 MB, 1-1.5 CPU ms per
// MB of dump (docs/BENCHMARKS.md, "Pipeline CPU per MB"). And pg_dump writes 4 KiB at a time: read on the
// event loop, nearly every write woke it. So the pipe is read by a thread of its own (tool-pipe-worker.ts)
// into regions of shared memory its consumer gives it (piece-ring.ts), and a region reaches the consumer
// once it is nearly full: the backup pipeline's batch slots (SourceFile.fill), or fillStream's regions.
//
// Node cannot create an anonymous pipe, so a FIFO in a private temporary folder stands in for one: its
// write end becomes the tool's stdout, and its name is removed as soon as both ends are open.

import { execFile } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BackupdError } from '../errors.js';
import { startWorker } from '../worker.js';
import type { PieceQueue, RingFailure } from './piece-ring.js';
import type { PipeJob } from './tool-pipe-worker.js';

/** A piece is handed on once less than this is left in it: no read gets less room than this. */
const MIN_ROOM = 64 << 10;

/** The write end of a new pipe, for a child's stdio (close it here once the child has it). */
export interface ToolPipe {
  writeFd: number;
}

/** A new pipe whose reader thread fills what `consumer` gives it, until every writer closed the pipe. */
export async function openToolPipe(consumer: PieceQueue): Promise<ToolPipe> {
  const dir = await mkdtemp(join(tmpdir(), 'backupd-pipe-'));
  const fifo = join(dir, 'out');
  let readFd: number;
  let writeFd: number;
  try {
    await promisify(execFile)('mkfifo', ['-m', '600', fifo]);
    // An open for reading alone would wait for a writer, so a non-blocking read end comes first; the write
    // end then opens at once, and with a writer there the blocking read end the reader thread wants too.
    const waiting = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      writeFd = openSync(fifo, constants.O_WRONLY);
      readFd = openSync(fifo, constants.O_RDONLY);
    } finally {
      closeSync(waiting);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const reader = startWorker(import.meta.url, './tool-pipe-worker', {
    ...consumer.shared,
    fd: readFd,
    minRoom: MIN_ROOM,
  } satisfies PipeJob);
  reader.on('message', (message: RingFailure) =>
    consumer.fail(new BackupdError('SOURCE_FAILED', `reading the tool's output: ${message.error}`)),
  );
  reader.on('error', (error) => consumer.fail(error));
  reader.on('exit', () => {
    closeSync(readFd);
    consumer.producerExited(() => new BackupdError('INTERNAL', 'the pipe reader stopped early'));
  });
  return { writeFd };
}
