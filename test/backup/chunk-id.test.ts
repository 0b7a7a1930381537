// Chunk ids (docs/FORMAT.md, "Chunks and ids"): BLAKE3 as its specification defines it, keyed and not, so a
// reader written from the format names chunks the same way.

import { describe, expect, it } from 'vitest';
import { chunkNamer } from '../../src/backup/chunk-id.js';

/** BLAKE3's published test vectors (test_vectors.json): input byte i is i % 251; the key is this string. */
const VECTOR_KEY = Buffer.from('whats the Elvish word for friend');
const vectorInput = (length: number) => Buffer.from(Array.from({ length }, (_, i) => i % 251));
const VECTORS = [
  {
    length: 0,
    hash: 'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262',
    keyed: '92b2b75604ed3c761f9d6f62392c8a9227ad0ea3f09573e783f1498a4ed60d26',
  },
  {
    length: 1,
    hash: '2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213',
    keyed: '6d7878dfff2f485635d39013278ae14f1454b8c0a3a2d34bc1ab38228a80c95b',
  },
  {
    length: 1024,
    hash: '42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7',
    keyed: '75c46f6f3d9eb4f55ecaaee480db732e6c2105546f1e675003687c31719c7ba4',
  },
  {
    length: 102400,
    hash: 'bc3e3d41a1146b069abffad3c0d44860cf664390afce4d9661f7902e7943e085',
    keyed: '1c35d1a5811083fd7119f5d5d1ba027b4d01c0c6c49fb6ff2cf75393ea5db4a7',
  },
];

describe('chunk ids', () => {
  it('blake3 gives the specification test vectors, keyed and unkeyed, chunk after chunk from one namer', () => {
    const keyed = chunkNamer(VECTOR_KEY);
    const plain = chunkNamer(undefined);
    for (const { length, hash, keyed: keyedHash } of VECTORS) {
      expect(keyed(vectorInput(length)).toString('hex')).toBe(keyedHash);
      expect(plain(vectorInput(length)).toString('hex')).toBe(hash);
    }
    // Again in reverse order: a namer's reused hasher carries nothing from one chunk to the next.
    for (const { length, keyed: keyedHash } of [...VECTORS].reverse()) {
      expect(keyed(vectorInput(length)).toString('hex')).toBe(keyedHash);
    }
  });

  it('refuses a key that is not 32 bytes', () => {
    expect(() => chunkNamer(Buffer.alloc(16))).toThrow(/32 bytes/);
  });
});
