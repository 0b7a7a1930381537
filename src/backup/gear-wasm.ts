// The gear-hash scan of the content-defined chunker (docs/FORMAT.md, "Chunks and ids") as a WebAssembly
// function, emitted here byte by byte (no toolchain needed at build or run time): the same loop in
// JavaScript cost about twice the CPU per MB on the main thread, where the whole stream passes. It scans
// the batch slots where they lie, in the shared memory of batch-slots.ts, with the gear table at offset 0.
//
//   cut(start, end, min, avg, max, maskHard, maskEasy) -> the end of the chunk that begins at `start`:
//     the hash starts at 0; for each byte at chunk offset i >= min (memory[start + i], before `end`):
//     h = (h << 1) + GEAR[byte]; cut after it when h & (i < avg ? maskHard : maskEasy) == 0;
//     returns start + max when no byte cut before; -1 when `end` came first.

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
    compiled ??= new Wasm.Module(gearModule());
    cut = new Wasm.Instance(compiled, { env: { memory } }).exports.cut as GearCut;
    cutters.set(memory, cut);
  }
  return cut;
}

let compiled: object | undefined;
const cutters = new WeakMap<WasmMemory, GearCut>();

// Just enough of the binary format (WebAssembly core spec 1.0, section 5) for one function.
const I32 = 0x7f;
const VOID = 0x40;
const op = {
  block: 0x02,
  loop: 0x03,
  if: 0x04,
  end: 0x0b,
  br: 0x0c,
  brIf: 0x0d,
  return: 0x0f,
  select: 0x1b,
  localGet: 0x20,
  localSet: 0x21,
  localTee: 0x22,
  i32Load: 0x28,
  i32Load8U: 0x2d,
  i32Const: 0x41,
  i32Eqz: 0x45,
  i32Eq: 0x46,
  i32LtU: 0x49,
  i32GtU: 0x4b,
  i32GeU: 0x4f,
  i32Add: 0x6a,
  i32And: 0x71,
  i32Shl: 0x74,
} as const;

function unsignedLeb(value: number): number[] {
  const out: number[] = [];
  let n = value >>> 0;
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

function signedLeb(value: number): number[] {
  const out: number[] = [];
  let n = value | 0;
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

const name = (text: string) => [...unsignedLeb(text.length), ...Buffer.from(text, 'utf8')];
const vector = (items: number[][]) => [...unsignedLeb(items.length), ...items.flat()];
const section = (id: number, body: number[]) => [id, ...unsignedLeb(body.length), ...body];

// The function's locals: its 7 parameters, then i (the memory offset of the next byte), h, limit.
const START = 0;
const END = 1;
const MIN = 2;
const AVG = 3;
const MAX = 4;
const MASK_HARD = 5;
const MASK_EASY = 6;
const I = 7;
const H = 8;
const LIMIT = 9;

const get = (local: number) => [op.localGet, local];
const set = (local: number) => [op.localSet, local];
const constant = (value: number) => [op.i32Const, ...signedLeb(value)];
/** limit = min(end, start + offset) (unsigned) */
const setLimit = (offset: number) => [
  ...get(END),
  ...get(START),
  ...get(offset),
  op.i32Add,
  ...get(END),
  ...get(START),
  ...get(offset),
  op.i32Add,
  op.i32LtU,
  op.select,
  ...set(LIMIT),
];
/** h = (h << 1) + GEAR[memory[i + k]]; if (h & mask) == 0 return i + k + 1 */
const step = (mask: number, k: number) => [
  ...get(H),
  ...constant(1),
  op.i32Shl,
  ...get(I),
  op.i32Load8U,
  0,
  ...unsignedLeb(k),
  ...constant(2),
  op.i32Shl,
  op.i32Load,
  2,
  0,
  op.i32Add,
  op.localTee,
  H,
  ...get(mask),
  op.i32And,
  op.i32Eqz,
  op.if,
  VOID,
  ...get(I),
  ...constant(k + 1),
  op.i32Add,
  op.return,
  op.end,
];
const advance = (count: number) => [...get(I), ...constant(count), op.i32Add, ...set(I)];
/** Hash bytes i .. limit-1 under `mask`: four a round while four remain, then one at a time. */
const scan = (mask: number) => [
  op.block,
  VOID,
  op.loop,
  VOID,
  ...get(I),
  ...constant(4),
  op.i32Add,
  ...get(LIMIT),
  op.i32GtU,
  op.brIf,
  1,
  ...step(mask, 0),
  ...step(mask, 1),
  ...step(mask, 2),
  ...step(mask, 3),
  ...advance(4),
  op.br,
  0,
  op.end,
  op.end,
  op.block,
  VOID,
  op.loop,
  VOID,
  ...get(I),
  ...get(LIMIT),
  op.i32GeU,
  op.brIf,
  1,
  ...step(mask, 0),
  ...advance(1),
  op.br,
  0,
  op.end,
  op.end,
];

function gearModule(): Uint8Array {
  const body = [
    ...vector([[3, I32]]), // locals i, h, limit
    ...get(START),
    ...get(MIN),
    op.i32Add,
    ...set(I),
    ...setLimit(AVG),
    ...scan(MASK_HARD),
    ...setLimit(MAX),
    ...scan(MASK_EASY),
    // i == start + max ? i : -1
    ...get(I),
    ...constant(-1),
    ...get(I),
    ...get(START),
    ...get(MAX),
    op.i32Add,
    op.i32Eq,
    op.select,
    op.end,
  ];
  return new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00], // "\0asm", version 1
    ...section(1, vector([[0x60, ...vector([[I32], [I32], [I32], [I32], [I32], [I32], [I32]]), ...vector([[I32]])]])),
    // import env.memory: shared, at least 1 page, at most 65536
    ...section(2, vector([[...name('env'), ...name('memory'), 0x02, 0x03, ...unsignedLeb(1), ...unsignedLeb(65536)]])),
    ...section(3, vector([[0]])),
    ...section(7, vector([[...name('cut'), 0x00, 0]])),
    ...section(10, vector([[...unsignedLeb(body.length), ...body]])),
  ]);
}
