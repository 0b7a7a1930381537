// The part of the WebAssembly API that Node provides and this code uses, typed here because the project's
// TypeScript libraries (ES2023, no DOM) do not declare it.

export interface WasmMemory {
  /** A SharedArrayBuffer for a shared memory; its length is fixed unless the memory grows (ours never do). */
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
}

interface WasmApi {
  Memory: new (descriptor: { initial: number; maximum?: number; shared?: boolean }) => WasmMemory;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (
    module: object,
    imports: Record<string, Record<string, unknown>>,
  ) => { exports: Record<string, unknown> };
}

export const Wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

/** Bytes of one WebAssembly memory page: memories are sized and aligned in whole pages. */
export const WASM_PAGE = 64 << 10;
