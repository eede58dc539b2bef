import { describe, expect, test } from 'vitest';
import { hashBlock, hashBlocks, ROOT_PARENT } from './block-hash.js';

// Golden vectors. The first pair was also computed independently with Python's hashlib:
//   h1 = sha256(bytes(8) + struct.pack('<2I', 1, 2) + b'm\0').hexdigest()[:16]
//   h2 = sha256(bytes.fromhex(h1) + struct.pack('<2I', 3, 4) + b'm\0').hexdigest()[:16]
describe('golden vectors (routers and workers must agree bit for bit)', () => {
  test('two blocks of two tokens, model "m", no salt', () => {
    expect(hashBlocks([1, 2, 3, 4], 2, { modelId: 'm' })).toEqual(['bbea1693cb3014a8', '071a1cb7bda6e0ca']);
  });

  test('40 tokens, block size 16: two full blocks, the partial third has no hash', () => {
    const t = Array.from({ length: 40 }, (_, i) => i * 7 + 1);
    expect(hashBlocks(t, 16, { modelId: 'dummy:tiny:f32' })).toEqual(['b55a3ea3ac4443b1', '1163fae9101c642c']);
    expect(hashBlocks(t, 16, { modelId: 'dummy:tiny:f32', cacheSalt: 'tenant-a' })).toEqual(['fbc1e1a4b722ed42', '6cc19fdc6b57315b']);
  });

  test('empty block, empty model id', () => {
    expect(hashBlock(ROOT_PARENT, [], { modelId: '' })).toBe('3e7077fd2f66d689');
  });
});

describe('properties', () => {
  const ex = { modelId: 'x' };
  test('a hash depends on every earlier block (chained)', () => {
    const a = hashBlocks([1, 2, 3, 4, 5, 6], 2, ex);
    const b = hashBlocks([9, 2, 3, 4, 5, 6], 2, ex);
    expect(a.every((h, i) => h !== b[i])).toBe(true);
  });
  test('shared prefixes share hashes; model and salt separate them', () => {
    const a = hashBlocks([1, 2, 3, 4, 5, 6], 2, ex);
    const b = hashBlocks([1, 2, 3, 4, 7, 8], 2, ex);
    expect(b.slice(0, 2)).toEqual(a.slice(0, 2));
    expect(b[2]).not.toBe(a[2]);
    expect(hashBlocks([1, 2], 2, { modelId: 'y' })).not.toEqual(hashBlocks([1, 2], 2, ex));
    expect(hashBlocks([1, 2], 2, { modelId: 'x', cacheSalt: 's' })).not.toEqual(hashBlocks([1, 2], 2, ex));
  });
  test('maxBlocks and bad block sizes', () => {
    expect(hashBlocks([1, 2, 3, 4, 5, 6], 2, ex, 1)).toHaveLength(1);
    expect(() => hashBlocks([1], 0, ex)).toThrow(/blockSize/);
  });
});
