/** Deterministic token ids for tests: BOS (1) first, then ids in [3, vocab) from an LCG. */
export function randomIds(n: number, vocab: number, seed: number): number[] {
  let s = seed;
  return Array.from({ length: n }, (_, i) => {
    s = (s * 1103515245 + 12345) >>> 0;
    return i === 0 ? 1 : 3 + (s % (vocab - 3));
  });
}
