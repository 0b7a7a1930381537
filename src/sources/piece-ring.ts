// A ring of pieces in shared memory that a producer thread fills and the main thread reads as views
// (SourceFile.pieces): used for pg_dump's pipe (tool-pipe.ts) and the SQLite dump (sqlite.ts). A piece
// crosses threads as an index and a length, never as a new buffer: a transferred 1 MiB ArrayBuffer per
// piece cost postMessage time, and V8 counts such external memory toward full collections of the main
// isolate (78 of them in one logical backup of the 1 GiB bench database).
//
// Piece n lies in slot n % slots. The consumer may still use the three pieces before the one it asks for
// next, so with 4 slots the producer fills piece n only once the consumer has asked for piece n - 1, and
// each slot beyond 4 lets it run one piece further ahead.

import { BackupdError } from '../errors.js';

/** Indexes into the control array (Int32). */
const COMPLETED = 0; // pieces the producer has published
const TAKEN = 1; // pieces the consumer has asked for
const STATE = 2; // RUNNING, ENDED (by the producer: every piece is published) or STOPPED (by the consumer)
const LENGTHS = 3; // a length per slot follows: the bytes of the piece last published in it
const RUNNING = 0;
const ENDED = 1;
const STOPPED = 2;

/** Pieces the consumer may still be using besides the one it asks for: the ring needs more slots than this. */
const HELD = 3;

/** What the producer thread is given (in its workerData). */
export interface RingMemory {
  ring: SharedArrayBuffer;
  control: SharedArrayBuffer;
  pieceBytes: number;
  /** Pieces the ring holds (at least 4). */
  slots: number;
}

/** What a producer thread posts when it fails; the consumer gets it as the pieces' error. */
export interface RingFailure {
  error: string;
  /** A BackupdError code, when the producer knows one. */
  code?: string;
}

/** Memories of rings read to their end, for the next rings: V8 does not count shared memory toward its
 * collections, so a new ring per run would stay until a full collection happened to run. */
const spares: RingMemory[] = [];
const SPARES = 4;

/** The producer's side, in its worker thread. */
export class RingWriter {
  private readonly memory: Uint8Array;
  private readonly state: Int32Array;
  private readonly pieceBytes: number;
  private readonly slots: number;
  private n = 0;

  constructor({ ring, control, pieceBytes, slots }: RingMemory) {
    this.memory = new Uint8Array(ring);
    this.state = new Int32Array(control);
    this.pieceBytes = pieceBytes;
    this.slots = slots;
  }

  /** The consumer stopped reading: produce no more. */
  get stopped(): boolean {
    return Atomics.load(this.state, STATE) === STOPPED;
  }

  /** The next piece to fill, once its slot is free (blocks); undefined when the consumer stopped. */
  next(): Uint8Array | undefined {
    const ahead = this.slots - HELD - 1; // pieces published beyond the last one asked for
    for (let taken = Atomics.load(this.state, TAKEN); this.n > taken + ahead; taken = Atomics.load(this.state, TAKEN)) {
      if (this.stopped) return undefined;
      Atomics.wait(this.state, TAKEN, taken);
    }
    if (this.stopped) return undefined;
    const slot = this.n % this.slots;
    return this.memory.subarray(slot * this.pieceBytes, (slot + 1) * this.pieceBytes);
  }

  /** Hand on the piece next() gave, with its first `length` bytes filled. */
  publish(length: number): void {
    this.state[LENGTHS + (this.n % this.slots)] = length;
    Atomics.store(this.state, COMPLETED, ++this.n);
    Atomics.notify(this.state, COMPLETED);
  }

  /** Copy `bytes` into as many pieces as they fill; false when the consumer stopped. */
  write(bytes: Uint8Array): boolean {
    for (let at = 0; at < bytes.length; ) {
      const piece = this.next();
      if (!piece) return false;
      const length = Math.min(piece.length, bytes.length - at);
      piece.set(bytes.subarray(at, at + length));
      this.publish(length);
      at += length;
    }
    return true;
  }

  /** Every piece is published. */
  end(): void {
    Atomics.compareExchange(this.state, STATE, RUNNING, ENDED);
    Atomics.notify(this.state, COMPLETED);
  }
}

/** The consumer's side, on the main thread. */
export class RingReader {
  readonly memory: RingMemory;
  private readonly pieceMemory: Buffer;
  private readonly state: Int32Array;
  private failure: Error | undefined;
  private done = 0;
  /** The memory went back for another ring: this one never touches it again. */
  private released = false;

  /** `slots` pieces of `pieceBytes`; the memory of a ring of that shape read to its end is reused. */
  constructor(pieceBytes: number, slots = HELD + 1) {
    if (slots <= HELD) throw new BackupdError('INTERNAL', `a ring needs more than ${HELD} slots`);
    const spare = spares.findIndex((s) => s.pieceBytes === pieceBytes && s.slots === slots);
    this.memory =
      spare >= 0
        ? spares.splice(spare, 1)[0]!
        : {
            ring: new SharedArrayBuffer(slots * pieceBytes),
            control: new SharedArrayBuffer(4 * (LENGTHS + slots)),
            pieceBytes,
            slots,
          };
    this.pieceMemory = Buffer.from(this.memory.ring);
    this.state = new Int32Array(this.memory.control);
    this.state.fill(0);
  }

  /** The producer failed: the pieces fail with `error` once those published before are read. */
  fail(error: Error): void {
    this.failure ??= error;
    if (!this.released) Atomics.notify(this.state, COMPLETED);
  }

  /** The producer thread exited (its 'exit' event): before ending the ring, that is a failure. */
  producerExited(failure: () => Error): void {
    const state = Atomics.load(this.state, STATE);
    if (state === RUNNING) this.fail(failure());
    Atomics.notify(this.state, COMPLETED);
    if (state === ENDED) this.recycle();
  }

  /** Stop reading: the producer stops at its next piece (idempotent). */
  close(): void {
    if (this.released) return;
    if (Atomics.compareExchange(this.state, STATE, RUNNING, STOPPED) === RUNNING) Atomics.notify(this.state, TAKEN);
  }

  /**
   * The pieces, as views of the ring: the caller must be done with a piece (copied it) before it asks for
   * the third next one, and with all of them once they end. A ring stopped by close() while still read
   * fails with CANCELLED, so a cut-short output never passes for a whole one.
   */
  async *pieces(): AsyncGenerator<Buffer> {
    try {
      for (let n = 0; ; n++) {
        for (;;) {
          if (Atomics.load(this.state, COMPLETED) > n) break;
          if (this.failure) throw this.failure;
          const state = Atomics.load(this.state, STATE);
          if (state !== RUNNING && Atomics.load(this.state, COMPLETED) <= n) {
            if (state === STOPPED) throw new BackupdError('CANCELLED', 'the output was closed before its end');
            this.recycle();
            return;
          }
          const waiting = Atomics.waitAsync(this.state, COMPLETED, n);
          if (waiting.async) await waiting.value;
        }
        Atomics.store(this.state, TAKEN, n + 1);
        Atomics.notify(this.state, TAKEN);
        const slot = n % this.memory.slots;
        const start = slot * this.memory.pieceBytes;
        yield this.pieceMemory.subarray(start, start + this.state[LENGTHS + slot]!);
      }
    } finally {
      this.close();
    }
  }

  /** Both sides are done (the producer exited, the consumer saw the end): the memory serves another ring. */
  private recycle(): void {
    if (++this.done < 2) return;
    this.released = true;
    if (spares.length < SPARES) spares.push(this.memory);
  }
}
