/**
 * The offload tiers wired to the engine: blocks the pool evicts are copied out of the engine
 * (readBlocks) into the tiers, and a prefix the tiers hold is copied back into fresh pool blocks
 * (writeBlocks) when the scheduler admits a request. Both run between engine steps (the loop's
 * schedule() call); on the CPU backend a copy is a memcpy, on CUDA a device copy.
 */
import type { Engine } from '@kcache/engine';
import type { BlockHash, OffloadTier } from '@kcache/protocol';
import type { EvictedBlock } from '../scheduler/block-manager.js';
import type { BlockSource } from '../scheduler/scheduler.js';
import type { OffloadTiers } from './tiers.js';

/** Where the copies are counted (the worker's metrics); the tiers' own moves go to a TierObserver. */
export interface OffloadObserver {
  reloaded(tier: OffloadTier, blocks: number, tokens: number): void;
  copyOutSeconds(s: number): void;
  reloadSeconds(s: number): void;
}

type BlockCopier = Pick<Engine, 'readBlocks' | 'writeBlocks'>;

export class EngineOffload implements BlockSource {
  constructor(
    private readonly engine: BlockCopier,
    readonly tiers: OffloadTiers,
    private readonly blockBytes: number,
    private readonly blockSize: number,
    private readonly observer: OffloadObserver | null = null,
  ) {}

  /** BlockManager.onEvict: copy the evicted blocks out before their slots are reused. */
  readonly onEvict = (evicted: EvictedBlock[]): void => {
    const t0 = performance.now();
    const data = this.engine.readBlocks(evicted.map((e) => e.block));
    this.tiers.offload(
      evicted.map((e, i) => ({ hash: e.hash, parent: e.parent, data: data.subarray(i * this.blockBytes, (i + 1) * this.blockBytes) })),
    );
    this.observer?.copyOutSeconds((performance.now() - t0) / 1000);
  };

  lookup(hashes: readonly BlockHash[]): number {
    return this.tiers.lookup(hashes);
  }

  load(hashes: readonly BlockHash[], blocks: readonly number[]): number {
    const t0 = performance.now();
    const got = this.tiers.take(hashes.slice(0, blocks.length));
    if (got.length > 0) {
      const buf = new Uint8Array(got.length * this.blockBytes);
      got.forEach((g, i) => {
        buf.set(g.data, i * this.blockBytes);
      });
      this.engine.writeBlocks(blocks.slice(0, got.length), buf);
      for (const tier of ['offload_ram', 'offload_disk'] as const) {
        const n = got.filter((g) => g.tier === tier).length;
        if (n > 0) this.observer?.reloaded(tier, n, n * this.blockSize);
      }
      this.observer?.reloadSeconds((performance.now() - t0) / 1000);
    }
    return got.length;
  }
}
