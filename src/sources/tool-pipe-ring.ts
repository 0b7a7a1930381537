// The memory tool-pipe.ts and its reader thread (tool-pipe-worker.ts) share: a ring of pieces, and a
// control array of Int32s saying how far each side is.

/** Indexes into the control array (Int32). */
export const COMPLETED = 0; // pieces filled so far (piece n is ring slot n % RING)
export const TAKEN = 1; // pieces the consumer has asked for
export const STATE = 2; // RUNNING, ENDED (every piece is completed), or STOPPED (by the consumer)
export const LENGTHS = 3; // RING lengths follow: the bytes of the piece last filled into each slot
export const RUNNING = 0;
export const ENDED = 1;
export const STOPPED = 2;

export interface PipeJob {
  /** The pipe's read end, blocking; tool-pipe.ts closes it once the reader has exited. */
  fd: number;
  ring: SharedArrayBuffer;
  control: SharedArrayBuffer;
  pieceBytes: number;
  /** A piece is complete once less room than this is left in it (or at the end of the pipe). */
  minRoom: number;
}

/** Any failure: the consumer gets it as the pipe's error. */
export interface PipeFailure {
  error: string;
}
