// Pieces of a byte stream handed from a producer thread to the main thread through shared memory, never
// as new buffers: a transferred 1 MiB ArrayBuffer per piece cost postMessage time, and V8 counts such
// external memory toward full collections of the main isolate (78 of them in one logical backup of the
// 1 GiB bench database). Used for pg_dump's pipe (tool-pipe.ts) and the SQLite dump (sqlite.ts): the
// SourceFile.fill of both.
//
// The consumer decides where each piece goes: it gives the producer regions of a shared memory, in order
// (PieceQueue.give), and the producer fills them in that order (PieceWriter), each with as many bytes as
// it has, and hands on how many. The backup pipeline gives its batch slots, so the bytes land where they
// are cut, named and sealed, and the main thread never copies them; fillStream (source.ts) gives regions
// of its own and copies each out.

import { BackupdError } from '../errors.js';

/** Indexes into the control array (Int32). */
const COMPLETED = 0; // pieces the producer has handed on
const GIVEN = 1; // regions the consumer has given
const STATE = 2; // RUNNING, ENDED (by the producer: every piece is handed on) or STOPPED (by the consumer)
const ENTRIES = 3; // then per queue entry: the region's offset and room, and the bytes handed on in it
const OFFSET = 0;
const ROOM = 1;
const LENGTH = 2;
const ENTRY = 3;
const RUNNING = 0;
const ENDED = 1;
const STOPPED = 2;

/** What the producer thread is given (in its workerData or a message). */
export interface PieceMemory {
  /** Where the regions lie. */
  memory: SharedArrayBuffer;
  control: SharedArrayBuffer;
}

/** What a producer thread posts when it fails; the consumer gets it as the pieces' error. */
export interface RingFailure {
  error: string;
  /** A BackupdError code, when the producer knows one. */
  code?: string;
}

/** The producer's side, in its worker thread. */
export class PieceWriter {
  private readonly memory: Uint8Array;
  private readonly state: Int32Array;
  private readonly capacity: number;
  private n = 0;

  constructor({ memory, control }: PieceMemory) {
    this.memory = new Uint8Array(memory);
    this.state = new Int32Array(control);
    this.capacity = (this.state.length - ENTRIES) / ENTRY;
  }

  /** The consumer stopped reading: produce no more. */
  get stopped(): boolean {
    return Atomics.load(this.state, STATE) === STOPPED;
  }

  /** The next region to fill, once the consumer has given it (blocks); undefined when the consumer stopped. */
  next(): Uint8Array | undefined {
    for (let given = Atomics.load(this.state, GIVEN); given <= this.n; given = Atomics.load(this.state, GIVEN)) {
      if (this.stopped) return undefined;
      Atomics.wait(this.state, GIVEN, given);
    }
    if (this.stopped) return undefined;
    const entry = ENTRIES + (this.n % this.capacity) * ENTRY;
    const offset = this.state[entry + OFFSET]!;
    return this.memory.subarray(offset, offset + this.state[entry + ROOM]!);
  }

  /** Hand on the region next() gave, with its first `length` bytes filled. */
  handOn(length: number): void {
    this.state[ENTRIES + (this.n % this.capacity) * ENTRY + LENGTH] = length;
    Atomics.store(this.state, COMPLETED, ++this.n);
    Atomics.notify(this.state, COMPLETED);
  }

  /** Copy `bytes` into as many regions as they fill; false when the consumer stopped. */
  write(bytes: Uint8Array): boolean {
    for (let at = 0; at < bytes.length; ) {
      const piece = this.next();
      if (!piece) return false;
      const length = Math.min(piece.length, bytes.length - at);
      piece.set(bytes.subarray(at, at + length));
      this.handOn(length);
      at += length;
    }
    return true;
  }

  /** Every piece is handed on. */
  end(): void {
    Atomics.compareExchange(this.state, STATE, RUNNING, ENDED);
    Atomics.notify(this.state, COMPLETED);
  }
}

/**
 * The consumer's side, on the main thread: it gives regions and takes back how much of each was filled.
 * At most `capacity` regions are given and not yet taken.
 */
export class PieceQueue {
  readonly shared: PieceMemory;
  private readonly state: Int32Array;
  private readonly capacity: number;
  private given = 0;
  private taken = 0;
  private failure: Error | undefined;
  private exited = false;
  private readonly idleWaiters: (() => void)[] = [];

  /** A queue over `memory`; `control` (from controlBytes) may be reused from an earlier queue. */
  constructor(memory: SharedArrayBuffer, capacity: number, control?: SharedArrayBuffer) {
    if (!(capacity >= 1)) throw new BackupdError('INTERNAL', 'a piece queue holds at least one region');
    this.capacity = capacity;
    this.shared = { memory, control: control ?? new SharedArrayBuffer(PieceQueue.controlBytes(capacity)) };
    this.state = new Int32Array(this.shared.control);
    this.state.fill(0);
  }

  static controlBytes(capacity: number): number {
    return 4 * (ENTRIES + capacity * ENTRY);
  }

  /** Give the producer the next region to fill: `room` bytes at `offset` of the memory. */
  give(offset: number, room: number): void {
    if (this.given - this.taken >= this.capacity) {
      throw new BackupdError('INTERNAL', `a piece queue of ${this.capacity} regions was given one more`);
    }
    const entry = ENTRIES + (this.given % this.capacity) * ENTRY;
    this.state[entry + OFFSET] = offset;
    this.state[entry + ROOM] = room;
    Atomics.store(this.state, GIVEN, ++this.given);
    Atomics.notify(this.state, GIVEN);
  }

  /**
   * The bytes filled in the oldest region given and not taken back (waits for the producer); undefined
   * once every piece was taken and the producer ended. Fails with the producer's failure, and with
   * CANCELLED once stopped by close(), so a cut-short output never passes for a whole one.
   */
  async next(): Promise<number | undefined> {
    const n = this.taken;
    for (;;) {
      if (Atomics.load(this.state, COMPLETED) > n) break;
      if (this.failure) throw this.failure;
      const state = Atomics.load(this.state, STATE);
      if (state !== RUNNING && Atomics.load(this.state, COMPLETED) <= n) {
        if (state === STOPPED) throw new BackupdError('CANCELLED', 'the output was closed before its end');
        return undefined;
      }
      if (n >= this.given) throw new BackupdError('INTERNAL', 'a piece was asked for before its region was given');
      const waiting = Atomics.waitAsync(this.state, COMPLETED, n);
      if (waiting.async) await waiting.value;
    }
    this.taken = n + 1;
    return this.state[ENTRIES + (n % this.capacity) * ENTRY + LENGTH]!;
  }

  /** The producer failed: next() fails with `error` once the pieces handed on before are taken. */
  fail(error: Error): void {
    this.failure ??= error;
    Atomics.notify(this.state, COMPLETED);
  }

  /** The producer thread exited (its 'exit' event): before ending the queue, that is a failure. */
  producerExited(failure: () => Error): void {
    if (Atomics.load(this.state, STATE) === RUNNING) this.fail(failure());
    Atomics.notify(this.state, COMPLETED);
    this.exited = true;
    for (const wake of this.idleWaiters.splice(0)) wake();
  }

  /** The producer ended, or exited: it writes into no region given to it any more. */
  get idle(): boolean {
    return this.exited || Atomics.load(this.state, STATE) === ENDED;
  }

  /** Call `then` once idle: only then may the regions given and not taken serve anything else. */
  whenIdle(then: () => void): void {
    if (this.idle) then();
    else this.idleWaiters.push(then);
  }

  /** Stop reading: the producer stops at its next region (idempotent). */
  close(): void {
    if (Atomics.compareExchange(this.state, STATE, RUNNING, STOPPED) === RUNNING) Atomics.notify(this.state, GIVEN);
  }
}
