// Batch slots: fixed regions of one shared memory where the main thread gathers a batch of chunks and a
// blob worker then names and seals them in place. Only a slot's index and the chunk lengths cross between
// threads: transferring a fresh 1 MiB ArrayBuffer per batch cost 150-500 µs of postMessage and left
// garbage behind, a message about a slot of shared memory costs a few µs. The memory is a shared
// WebAssembly memory so the content-defined chunker (gear-wasm.ts) scans a slot where it lies.

import { BackupdError } from '../errors.js';
import { WASM_PAGE, Wasm, type WasmMemory } from './wasm-api.js';

/** One slot: its place in the memory and a view over it; `index` names it to a worker. */
export interface Slot {
  index: number;
  /** Byte offset of the slot in the memory (where the chunker's WebAssembly code finds it). */
  offset: number;
  bytes: Uint8Array;
}

/**
 * Copy `bytes` into `slot` at `at`. Not `slot.bytes.set(bytes, at)`: V8 copies into shared memory with
 * relaxed atomic stores, byte by byte unless source and target are 8-byte aligned alike, which cost
 * 0.6-0.8 ms/MB here (pipe reads land anywhere in a slot) against 0.05 for Buffer#fill, whose native
 * code copies a Buffer value with one memcpy when the range is exactly its length.
 */
export function copyIntoSlot(slot: Slot, at: number, bytes: Uint8Array): void {
  if (bytes.length === 0) return;
  if (at < 0 || at + bytes.length > slot.bytes.length) {
    throw new BackupdError('INTERNAL', `${bytes.length} bytes at ${at} do not fit a ${slot.bytes.length}-byte slot`);
  }
  const target = Buffer.from(slot.bytes.buffer, slot.offset + at, bytes.length);
  target.fill(bytes);
}

/**
 * Slot sets of finished runs, kept for the next ones, by their shape. V8 does not count shared memory
 * toward its collection heuristics, so a new set per backup (about 12.5 MB) stayed until a full collection
 * happened to run: 30 small backups in a row took a process from 100 to 268 MB of RSS (flat at 85 MB with
 * a collection forced after each). An agent runs backups for days.
 */
const spares = new Map<string, BatchSlots[]>();
/** Sets kept per shape: enough for the backups an agent runs at once on a small machine. */
const SPARES_PER_SHAPE = 2;

const pagesOf = (bytes: number) => Math.ceil(bytes / WASM_PAGE);
const shapeOf = (count: number, slotBytes: number, reservedBytes: number) =>
  `${count}x${pagesOf(slotBytes)}+${pagesOf(reservedBytes)}`;

export class BatchSlots {
  /** A set of this shape that an earlier run gave back (see recycle), else a new one. */
  static take(count: number, slotBytes: number, reservedBytes = WASM_PAGE): BatchSlots {
    return (
      spares.get(shapeOf(count, slotBytes, reservedBytes))?.pop() ?? new BatchSlots(count, slotBytes, reservedBytes)
    );
  }

  readonly memory: WasmMemory;
  readonly slotBytes: number;
  private readonly free: number[] = [];
  private readonly waiting: ((slot: Slot) => void)[] = [];
  private readonly slots: Slot[] = [];

  /**
   * `count` slots of at least `slotBytes` bytes each (rounded up to whole pages), after `reservedBytes` at
   * the start of the memory that belong to the chunker (its gear table).
   */
  constructor(
    count: number,
    slotBytes: number,
    readonly reservedBytes = WASM_PAGE,
  ) {
    this.slotBytes = Math.ceil(slotBytes / WASM_PAGE) * WASM_PAGE;
    const pages = (Math.ceil(reservedBytes / WASM_PAGE) * WASM_PAGE + count * this.slotBytes) / WASM_PAGE;
    this.memory = new Wasm.Memory({ initial: pages, maximum: pages, shared: true });
    const first = Math.ceil(reservedBytes / WASM_PAGE) * WASM_PAGE;
    for (let i = 0; i < count; i++) {
      const offset = first + i * this.slotBytes;
      this.slots.push({ index: i, offset, bytes: new Uint8Array(this.memory.buffer, offset, this.slotBytes) });
      this.free.push(i);
    }
  }

  get count(): number {
    return this.slots.length;
  }

  /** A free slot; waits for a release when all are in use. The holder must release it exactly once. */
  acquire(): Promise<Slot> {
    const index = this.free.pop();
    if (index !== undefined) return Promise.resolve(this.slots[index]!);
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** A free slot now, or undefined when all are in use. */
  tryAcquire(): Slot | undefined {
    const index = this.free.pop();
    return index === undefined ? undefined : this.slots[index];
  }

  release(index: number): void {
    const slot = this.slots[index];
    if (!slot || this.free.includes(index)) throw new BackupdError('INTERNAL', `batch slot ${index} released twice`);
    const next = this.waiting.shift();
    if (next) next(slot);
    else this.free.push(index);
  }

  /** Slots not held by anyone (for tests and checks that every batch let its slot go). */
  get available(): number {
    return this.free.length;
  }

  /**
   * Give the set back for a later run's take(), once its run is over: only when no slot is held (a run
   * that failed midway may leave one held by a batch that never finished; that set is left to the garbage
   * collector). The caller must not use the set afterwards.
   */
  recycle(): void {
    if (this.free.length !== this.slots.length || this.waiting.length > 0) return;
    const shape = shapeOf(this.slots.length, this.slotBytes, this.reservedBytes);
    const kept = spares.get(shape) ?? [];
    if (kept.length < SPARES_PER_SHAPE && !kept.includes(this)) kept.push(this);
    spares.set(shape, kept);
  }
}
