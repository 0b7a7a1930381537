// A source's restore for tests of the pipeline below the engines: the bytes of each restore point's files,
// concatenated, are kept in memory under the restore's target name.

import type { Source } from '../../src/sources/source.js';

export function restoreIntoMemory(restored: Map<string, Buffer>): Source['restore'] {
  return async (input, options) => {
    for await (const file of input) {
      const parts: Buffer[] = [];
      for await (const part of file.stream) parts.push(part as Buffer);
      restored.set(options.target, Buffer.concat(parts));
    }
    return { location: options.target };
  };
}
