/**
 * The offload tiers as the pool's neighbours: BlockManager.onEvict hands them every evicted block
 * (copied out by the engine before its slot is reused), and the scheduler's admission finds a
 * prefix's continuation in them (BlockSource) and has it copied back into fresh pool blocks. Both
 * run between engine steps (the loop's schedule() call); this adapter times them and counts what
 * each tier served.
 */
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

export class EngineOffload implements BlockSource {
  constructor(
    readonly tiers: OffloadTiers,
    private readonly blockSize: number,
    private readonly observer: OffloadObserver | null = null,
  ) {}

  /** BlockManager.onEvict: the evicted blocks go to the tiers before their slots are reused. */
  readonly onEvict = (evicted: EvictedBlock[]): void => {
    const t0 = performance.now();
    this.tiers.offload(evicted);
    this.observer?.copyOutSeconds((performance.now() - t0) / 1000);
  };

  lookup(hashes: readonly BlockHash[]): number {
    return this.tiers.lookup(hashes);
  }

  load(hashes: readonly BlockHash[], blocks: readonly number[]): number {
    const t0 = performance.now();
    const from = this.tiers.reload(hashes, blocks);
    if (from.length > 0) {
      for (const tier of ['offload_ram', 'offload_disk'] as const) {
        const n = from.filter((t) => t === tier).length;
        if (n > 0) this.observer?.reloaded(tier, n, n * this.blockSize);
      }
      this.observer?.reloadSeconds((performance.now() - t0) / 1000);
    }
    return from.length;
  }
}
