// The gear-hash scan of the content-defined chunker (docs/FORMAT.md, "Chunks and ids") as a WebAssembly
// function: the same loop in JavaScript cost about twice the CPU per MB on the main thread, where the whole
// stream passes. Its source is gear.wat beside this file (what `cut` computes is written there); the bytes
// are generated from it into src/generated/gear-wasm.ts, so no toolchain is needed at build or run time.
// It scans the batch slots where they lie, in the shared memory of batch-slots.ts, with the gear table at offset 0.

import { GEAR_WASM } from '../generated/gear-wasm.js';
import { Wasm, type WasmMemory } from './wasm-api.js';

/** Bytes the gear table takes at the start of the memory (256 signed 32-bit values). */
export const GEAR_TABLE_BYTES = 256 * 4;

/** Finds the end of one chunk (see the file comment); the numbers are offsets in the memory. */
export type GearCut = (
  start: number,
  end: number,
  min: number,
  avg: number,
  max: number,
  maskHard: number,
  maskEasy: number,
) => number;

/**
 * The cut function over `memory` (a shared WebAssembly memory), whose first GEAR_TABLE_BYTES it fills
 * with `gear` (they must be reserved for it). The module is compiled once per thread, instantiated once
 * per memory.
 */
export function gearCutter(memory: WasmMemory, gear: Int32Array): GearCut {
  let cut = cutters.get(memory);
  if (!cut) {
    new Int32Array(memory.buffer, 0, 256).set(gear);
    compiled ??= new Wasm.Module(GEAR_WASM);
    cut = new Wasm.Instance(compiled, { env: { memory } }).exports.cut as GearCut;
    cutters.set(memory, cut);
  }
  return cut;
}

let compiled: object | undefined;
const cutters = new WeakMap<WasmMemory, GearCut>();
