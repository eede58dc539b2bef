/**
 * The KV block pool of one worker and its prefix cache (vLLM's automatic prefix caching).
 *
 * Every block is either free, in use (reference count > 0), or cached-and-idle (refcount 0 but
 * still holding a full block whose hash is known, evictable in LRU order). A block enters the
 * cache when a sequence has computed all its tokens (`register`); a later sequence whose prompt
 * starts with the same block hashes reuses it (`acquire`). Allocation takes free blocks first,
 * then evicts the least recently used idle cached blocks. Every change to the set of cached
 * hashes is reported as a KV event (stored / removed / cleared) for the cluster's block index.
 * An evicted block is handed to `onEvict` before its slot is reused (the worker copies it to its
 * offload tiers). Pure: no I/O; the caller wires `onEvent` to Redis.
 */
import type { BlockHash, KvEvent, Tier } from '@kcache/protocol';

export type { KvEvent, Tier };

/** A cached block about to be overwritten: its slot, and its place in the prefix chain. */
export interface EvictedBlock {
  block: number;
  hash: BlockHash;
  parent: BlockHash | null;
}

export class BlockManager {
  private readonly refs: Int32Array;
  private readonly hashOf: (BlockHash | null)[];
  private readonly byHash = new Map<BlockHash, number>();
  private readonly parentOf = new Map<BlockHash, BlockHash | null>();
  /** Idle cached blocks, least recently used first (Map keeps insertion order). */
  private readonly idle = new Map<number, true>();
  private readonly freeList: number[] = [];
  /** Called with the blocks an allocation evicts, after their `removed` event, before anything overwrites them. */
  onEvict: ((blocks: EvictedBlock[]) => void) | null = null;

  constructor(
    readonly numBlocks: number,
    readonly blockSize: number,
    private readonly onEvent: (e: KvEvent) => void = () => {},
    readonly tier: Tier = 'device',
  ) {
    this.refs = new Int32Array(numBlocks);
    this.hashOf = new Array(numBlocks).fill(null);
    for (let b = numBlocks - 1; b >= 0; b--) this.freeList.push(b);
  }

  /** Blocks an allocation could get now: free ones plus idle cached ones. */
  get available(): number {
    return this.freeList.length + this.idle.size;
  }

  /** Fraction of blocks held by running sequences (idle cached blocks count as free, as in vLLM). */
  get usage(): number {
    return 1 - this.available / this.numBlocks;
  }

  get cachedBlocks(): number {
    return this.byHash.size;
  }

  /** Block ids holding the longest cached prefix of `hashes` (no reference taken). */
  lookup(hashes: readonly BlockHash[]): number[] {
    const out: number[] = [];
    for (const h of hashes) {
      const b = this.byHash.get(h);
      if (b === undefined) break;
      out.push(b);
    }
    return out;
  }

  /** Takes a reference on cached blocks found by lookup. */
  acquire(blocks: readonly number[]): void {
    for (const b of blocks) {
      if (this.refs[b] === 0) this.idle.delete(b);
      this.refs[b] = (this.refs[b] as number) + 1;
    }
  }

  /** n fresh blocks (refcount 1), evicting idle cached blocks LRU-first; null (and no change) if impossible. */
  allocate(n: number): number[] | null {
    if (n > this.available) return null;
    const out: number[] = [];
    const evicted: EvictedBlock[] = [];
    while (out.length < n) {
      let b = this.freeList.pop();
      if (b === undefined) {
        const oldest = this.idle.keys().next().value as number;
        this.idle.delete(oldest);
        const h = this.hashOf[oldest] as BlockHash;
        evicted.push({ block: oldest, hash: h, parent: this.parentOf.get(h) ?? null });
        this.byHash.delete(h);
        this.parentOf.delete(h);
        this.hashOf[oldest] = null;
        b = oldest;
      }
      this.refs[b] = 1;
      out.push(b);
    }
    if (evicted.length > 0) {
      this.onEvent({ type: 'removed', hashes: evicted.map((e) => e.hash), tier: this.tier });
      this.onEvict?.(evicted);
    }
    return out;
  }

  /**
   * Records that `block` now holds the full block with this hash. If another block already holds
   * the same hash (two sequences computed it at once), the first stays the cached copy.
   */
  register(block: number, hash: BlockHash, parent: BlockHash | null): void {
    if (this.hashOf[block] !== null || this.byHash.has(hash)) return;
    this.hashOf[block] = hash;
    this.byHash.set(hash, block);
    this.parentOf.set(hash, parent);
    this.onEvent({ type: 'stored', hashes: [hash], parent, tier: this.tier });
  }

  /**
   * Drops one reference per block of a sequence's block table; unreferenced blocks become idle
   * cached (if hashed) or free. Released tail first (vLLM's order): the end of a prefix becomes
   * least recently used before its start, so eviction never takes a block that the sequence's
   * later cached blocks depend on while those stay.
   */
  release(blocks: readonly number[]): void {
    for (let i = blocks.length - 1; i >= 0; i--) {
      const b = blocks[i] as number;
      const r = (this.refs[b] as number) - 1;
      if (r < 0) throw new Error(`block ${b} released more often than acquired`);
      this.refs[b] = r;
      if (r > 0) continue;
      if (this.hashOf[b] !== null) {
        this.idle.delete(b);
        this.idle.set(b, true); // most recently used
      } else {
        this.freeList.push(b);
      }
    }
  }

  /** The cached hashes with their parents, parents first: what a (re)announcement publishes. */
  snapshot(): { hash: BlockHash; parent: BlockHash | null }[] {
    const out: { hash: BlockHash; parent: BlockHash | null }[] = [];
    const seen = new Set<BlockHash>();
    const visit = (h: BlockHash) => {
      if (seen.has(h)) return;
      const p = this.parentOf.get(h) ?? null;
      if (p !== null && this.byHash.has(p)) visit(p);
      seen.add(h);
      out.push({ hash: h, parent: p });
    };
    for (const h of this.byHash.keys()) visit(h);
    return out;
  }
}
