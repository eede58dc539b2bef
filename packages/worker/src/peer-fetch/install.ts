/**
 * Places blocks fetched from a peer into the pool as cached, idle blocks, most recently used, so
 * the request they were fetched for finds them at admission like any prefix hit. Call between
 * engine steps. The prompt's leading blocks already in the pool are held while the new blocks
 * are allocated, so making room never evicts the prefix the fetched blocks continue.
 */
import type { BlockHash } from '@kcache/protocol';
import type { BlockManager } from '../scheduler/block-manager.js';
import type { FetchedBlock } from './peer-fetch.js';

export function installBlocks(
  bm: BlockManager,
  engine: { writeBlocks(blocks: readonly number[], data: Uint8Array): void },
  got: readonly FetchedBlock[],
  prefix: readonly BlockHash[],
): number {
  const held = bm.lookup(prefix);
  bm.acquire(held);
  try {
    const n = Math.min(got.length, bm.available);
    if (n === 0) return 0;
    const ids = bm.allocate(n) as number[];
    const bytes = got[0]?.data.length ?? 0;
    const buf = new Uint8Array(n * bytes);
    for (let i = 0; i < n; i++) buf.set((got[i] as FetchedBlock).data, i * bytes);
    try {
      engine.writeBlocks(ids, buf);
    } catch (e) {
      bm.release(ids);
      throw e;
    }
    for (let i = 0; i < n; i++) {
      const g = got[i] as FetchedBlock;
      bm.register(ids[i] as number, g.hash, g.parent);
    }
    bm.release(ids);
    return n;
  } finally {
    bm.release(held);
  }
}
