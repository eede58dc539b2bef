/**
 * A worker's offload tiers, below its KV pool (Dynamo's KV block manager, LMCache and SGLang's
 * HiCache do the same): a block evicted from the pool is copied to host RAM (`--offload-bytes`),
 * and what RAM evicts goes to disk (`--offload-dir`, `--offload-disk-bytes`), each tier with its
 * own LRU; what disk evicts is gone. A prefix found in a tier is copied back into the pool instead
 * of recomputed. Tiers are exclusive: a block is in the pool or in one offload tier, so the index
 * records one tier per block and each move is `removed` from one tier then `stored` in the next.
 * (These are not KCache's host-resident V half, which is part of the pool: tier `host`.)
 *
 * The RAM tier is the engine's host tier: slots of host memory the backend copies pool blocks to
 * and from in the order of its work, without waiting (pinned memory and stream-ordered copies on
 * a GPU, memcpy on the CPU). A copy out of an evicted block is queued before the step that reuses
 * the block, a copy into a fresh block before the step that reads it; the bytes cross to this
 * process only for the disk tier and for peers.
 *
 * Blocks are keyed by their chain hash (model, cache salt and every token before them), so a
 * reloaded block is exactly the one that was evicted. A disk file carries a header naming the
 * pool layout it belongs to (model, KV dtype, block size, bytes) and the hash, and a CRC-32 of the
 * data: a missing, truncated, corrupt or foreign file is a miss (the block is recomputed), never
 * wrong output.
 *
 * The worker wires `onEvent` to its KV event stream; every engine copy happens between steps.
 */
import { mkdirSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import type { Engine } from '@kcache/engine';
import type { BlockHash, KvEvent, OffloadTier } from '@kcache/protocol';

/** A block's contents as the engine stores them, with its place in the prefix chain. */
export interface BlockCopy {
  hash: BlockHash;
  parent: BlockHash | null;
  data: Uint8Array;
}

/** A pool block about to be reused, and its place in the prefix chain. */
export interface PoolBlock {
  block: number;
  hash: BlockHash;
  parent: BlockHash | null;
}

/** The engine's copies the tiers use: pool blocks to and from host tier slots, and bytes. */
export type BlockCopier = Pick<
  Engine,
  'readBlocks' | 'writeBlocks' | 'offloadToHost' | 'reloadFromHost' | 'readHostSlots' | 'writeHostSlots'
>;

export interface OffloadOptions {
  engine: BlockCopier;
  /** Slots of the engine's host tier (Engine.load's hostTierBytes): the RAM tier's capacity, 0 for none. */
  ramSlots: number;
  /** Disk tier directory (this worker's blocks go in a subdirectory of its own); null: no disk tier. */
  diskDir: string | null;
  diskBytes: number;
  /** Bytes of one block (the engine's kvBytesPerBlock). */
  blockBytes: number;
  /** What a block's bytes are compatible with: model id, KV dtype, block size. Written into each disk file. */
  layout: string;
  /** This worker's id (the disk subdirectory). */
  workerId: string;
  onEvent?: (e: KvEvent) => void;
  /** Told of every block stored in a tier, failing its check, or falling off the last tier (metrics). */
  observer?: TierObserver;
}

export interface TierObserver {
  stored(tier: OffloadTier, blocks: number): void;
  corrupt(blocks: number): void;
  dropped(blocks: number): void;
}

export interface TierStats {
  blocks: number;
  bytes: number;
  capacityBlocks: number;
}

/** Counters since start, per tier (metrics). */
export interface OffloadCounters {
  offloaded: Record<OffloadTier, number>;
  reloaded: Record<OffloadTier, number>;
  /** Disk blocks that failed their check (corrupt, truncated, missing, foreign): recomputed. */
  corrupt: number;
  /** Blocks that fell off the last tier. */
  dropped: number;
}

const MAGIC = 'KCKVB1';

/** An LRU of hashes (Map insertion order: least recently used first). */
class Lru<V> {
  readonly map = new Map<BlockHash, V>();
  get size(): number {
    return this.map.size;
  }
  has(h: BlockHash): boolean {
    return this.map.has(h);
  }
  set(h: BlockHash, v: V): void {
    this.map.delete(h);
    this.map.set(h, v);
  }
  take(h: BlockHash): V | undefined {
    const v = this.map.get(h);
    this.map.delete(h);
    return v;
  }
  oldest(): [BlockHash, V] | undefined {
    return this.map.entries().next().value;
  }
}

interface RamEntry {
  parent: BlockHash | null;
  slot: number;
  /** The tier it was promoted from (a disk block read ahead for a request), for the accounting. */
  from?: OffloadTier;
}

export class OffloadTiers {
  private readonly ram = new Lru<RamEntry>();
  private readonly freeSlots: number[] = [];
  private readonly disk = new Lru<{ parent: BlockHash | null }>();
  private readonly ramCap: number;
  private readonly diskCap: number;
  private readonly dir: string | null;
  private readonly engine: BlockCopier;
  private readonly emit: (e: KvEvent) => void;
  private readonly observer: TierObserver | null;
  readonly counters: OffloadCounters = {
    offloaded: { offload_ram: 0, offload_disk: 0 },
    reloaded: { offload_ram: 0, offload_disk: 0 },
    corrupt: 0,
    dropped: 0,
  };

  constructor(private readonly o: OffloadOptions) {
    if (!(o.blockBytes > 0)) throw new RangeError(`offload: blockBytes must be positive, got ${o.blockBytes}`);
    this.engine = o.engine;
    this.ramCap = o.ramSlots;
    for (let s = o.ramSlots - 1; s >= 0; s--) this.freeSlots.push(s);
    this.diskCap = o.diskDir === null ? 0 : Math.floor(o.diskBytes / o.blockBytes);
    this.emit = o.onEvent ?? (() => {});
    this.observer = o.observer ?? null;
    if (o.diskDir !== null && this.diskCap > 0) {
      // a restarted worker starts with an empty index entry (its epoch's `cleared`): old files are not announced, so remove them
      this.dir = join(o.diskDir, o.workerId.replace(/[^A-Za-z0-9._-]/g, '_'));
      rmSync(this.dir, { recursive: true, force: true });
      mkdirSync(this.dir, { recursive: true });
    } else {
      this.dir = null;
    }
  }

  private count(what: OffloadTier | 'corrupt' | 'dropped'): void {
    if (what === 'corrupt' || what === 'dropped') {
      this.counters[what]++;
      this.observer?.[what](1);
    } else {
      this.counters.offloaded[what]++;
      this.observer?.stored(what, 1);
    }
  }

  /** Whether any tier can hold a block. */
  get enabled(): boolean {
    return this.ramCap > 0 || this.diskCap > 0;
  }

  stats(): Record<OffloadTier, TierStats> {
    return {
      offload_ram: { blocks: this.ram.size, bytes: this.ram.size * this.o.blockBytes, capacityBlocks: this.ramCap },
      offload_disk: { blocks: this.disk.size, bytes: this.disk.size * this.o.blockBytes, capacityBlocks: this.diskCap },
    };
  }

  /** Which tier holds `hash` (null: none). */
  tierOf(hash: BlockHash): OffloadTier | null {
    if (this.ram.has(hash)) return 'offload_ram';
    if (this.disk.has(hash)) return 'offload_disk';
    return null;
  }

  /** How many leading `hashes` some tier holds. */
  lookup(hashes: readonly BlockHash[]): number {
    let n = 0;
    while (n < hashes.length && this.tierOf(hashes[n] as BlockHash) !== null) n++;
    return n;
  }

  /** Pool blocks about to be reused (BlockManager.onEvict): into RAM, or straight to disk without a RAM tier. */
  offload(evicted: readonly PoolBlock[]): void {
    for (const b of evicted) {
      if (this.tierOf(b.hash) !== null) continue; // already below (cannot happen with exclusive tiers; harmless)
      if (this.ramCap > 0) {
        const slot = this.takeSlot();
        // queued before the step that reuses the block; one block at a time, so a slot spilled
        // to disk later was written by a copy issued before that spill's read
        this.engine.offloadToHost([b.block], [slot]);
        this.ram.set(b.hash, { parent: b.parent, slot });
        this.count('offload_ram');
        this.emit({ type: 'stored', hashes: [b.hash], parent: b.parent, tier: 'offload_ram' });
      } else {
        this.putDisk({ hash: b.hash, parent: b.parent, data: this.engine.readBlocks([b.block]) });
      }
    }
  }

  /** A free slot of the RAM tier, spilling its least recently used block to disk if none is free. */
  private takeSlot(): number {
    const free = this.freeSlots.pop();
    if (free !== undefined) return free;
    const [h, v] = this.ram.oldest() as [BlockHash, RamEntry];
    this.ram.take(h);
    this.emit({ type: 'removed', hashes: [h], tier: 'offload_ram' });
    if (this.dir !== null) this.putDisk({ hash: h, parent: v.parent, data: this.engine.readHostSlots([v.slot]) });
    else this.count('dropped');
    return v.slot;
  }

  private putDisk(b: BlockCopy): void {
    if (this.dir === null) {
      this.count('dropped');
      return;
    }
    while (this.disk.size >= this.diskCap) {
      const [h] = this.disk.oldest() as [BlockHash, unknown];
      this.disk.take(h);
      this.unlink(h);
      this.count('dropped');
      this.emit({ type: 'removed', hashes: [h], tier: 'offload_disk' });
    }
    try {
      writeFileSync(this.diskFile(b.hash), encodeBlockFile(b, this.o.layout));
    } catch (e) {
      process.emitWarning(`offload: cannot write ${this.diskFile(b.hash)}: ${(e as Error).message}`);
      this.count('dropped');
      return;
    }
    this.disk.set(b.hash, { parent: b.parent });
    this.count('offload_disk');
    this.emit({ type: 'stored', hashes: [b.hash], parent: b.parent, tier: 'offload_disk' });
  }

  /**
   * Copies the leading blocks of `hashes` the tiers hold into the pool blocks `blocks` (as many as
   * there are), removing them from the tiers: from RAM by the engine's queued copy, from disk by
   * reading the file. Stops at the first block no tier holds or whose file fails its check (that
   * one is dropped). Returns the tier each block came from, in order.
   */
  reload(hashes: readonly BlockHash[], blocks: readonly number[]): OffloadTier[] {
    const out: OffloadTier[] = [];
    for (let i = 0; i < Math.min(hashes.length, blocks.length); i++) {
      const h = hashes[i] as BlockHash;
      const block = blocks[i] as number;
      const r = this.ram.take(h);
      if (r) {
        this.engine.reloadFromHost([r.slot], [block]);
        this.freeSlots.push(r.slot); // a later copy into it is queued after this one
        this.emit({ type: 'removed', hashes: [h], tier: 'offload_ram' });
        const tier = r.from ?? 'offload_ram';
        this.counters.reloaded[tier]++;
        out.push(tier);
        continue;
      }
      const d = this.disk.take(h);
      if (!d) break;
      this.emit({ type: 'removed', hashes: [h], tier: 'offload_disk' });
      const data = this.readDisk(h);
      this.unlink(h);
      if (!data) {
        this.count('corrupt');
        break;
      }
      this.engine.writeBlocks([block], data);
      this.counters.reloaded.offload_disk++;
      out.push('offload_disk');
    }
    return out;
  }

  /**
   * Reads the disk blocks among the leading `hashes` into RAM ahead of a request's admission
   * (asynchronously: the serving loop keeps running while the files are read), so admission only
   * queues copies from memory. Stops at the first hash neither RAM nor disk holds, or whose file
   * fails its check. Without a RAM tier nothing is promoted (admission reads the files). Returns
   * how many moved.
   */
  async promote(hashes: readonly BlockHash[]): Promise<number> {
    if (this.ramCap === 0 || this.dir === null) return 0;
    let moved = 0;
    for (const h of hashes) {
      if (this.ram.has(h)) continue;
      const d = this.disk.map.get(h);
      if (!d) break;
      const data = await this.readDiskAsync(h);
      if (this.disk.map.get(h) !== d) break; // taken or dropped while it was read
      this.disk.take(h);
      this.unlink(h);
      this.emit({ type: 'removed', hashes: [h], tier: 'offload_disk' });
      if (!data) {
        this.count('corrupt');
        break;
      }
      const slot = this.takeSlot();
      this.engine.writeHostSlots([slot], data);
      this.ram.set(h, { parent: d.parent, slot, from: 'offload_disk' });
      this.count('offload_ram');
      this.emit({ type: 'stored', hashes: [h], parent: d.parent, tier: 'offload_ram' });
      moved++;
    }
    return moved;
  }

  /** A held block's bytes, left in its tier (for a peer); null if no tier holds it or its file fails the check. */
  peek(hash: BlockHash): Uint8Array | null {
    const r = this.ram.map.get(hash);
    if (r) return this.engine.readHostSlots([r.slot]);
    return this.disk.has(hash) ? this.readDisk(hash) : null;
  }

  /** Every block held, tier by tier, parents with them: what a (re)announcement publishes. */
  snapshot(): { tier: OffloadTier; blocks: { hash: BlockHash; parent: BlockHash | null }[] }[] {
    return [
      { tier: 'offload_ram', blocks: [...this.ram.map].map(([hash, v]) => ({ hash, parent: v.parent })) },
      { tier: 'offload_disk', blocks: [...this.disk.map].map(([hash, v]) => ({ hash, parent: v.parent })) },
    ];
  }

  /** The disk tier's files go with the worker. */
  close(): void {
    if (this.dir !== null) rmSync(this.dir, { recursive: true, force: true });
  }

  /** Where the disk tier keeps (or would keep) a block. */
  diskFile(h: BlockHash): string {
    if (this.dir === null) throw new Error('offload: no disk tier');
    return join(this.dir, `${h}.kvblock`);
  }

  private unlink(h: BlockHash): void {
    try {
      unlinkSync(this.diskFile(h));
    } catch {
      // already gone: nothing to free
    }
  }

  private async readDiskAsync(h: BlockHash): Promise<Uint8Array | null> {
    try {
      return decodeBlockFile(await readFile(this.diskFile(h)), h, this.o.layout, this.o.blockBytes);
    } catch {
      return null;
    }
  }

  private readDisk(h: BlockHash): Uint8Array | null {
    try {
      const f = this.diskFile(h);
      if (statSync(f).size > this.o.blockBytes + 4096) return null;
      return decodeBlockFile(readFileSync(f), h, this.o.layout, this.o.blockBytes);
    } catch {
      return null;
    }
  }
}

/**
 * A disk block file: one header line (JSON: magic, layout, hash, bytes, crc32 of the data), then
 * the data. Written by hand because no library does exactly this and it is twenty lines.
 */
export function encodeBlockFile(b: BlockCopy, layout: string): Buffer {
  const header = `${JSON.stringify({ magic: MAGIC, layout, hash: b.hash, bytes: b.data.length, crc32: crc32(b.data) })}\n`;
  return Buffer.concat([Buffer.from(header, 'utf8'), b.data]);
}

/** The data of a block file, or null unless header and checksum match what is expected. */
export function decodeBlockFile(file: Buffer, hash: BlockHash, layout: string, bytes: number): Uint8Array | null {
  const nl = file.indexOf(10);
  if (nl < 0) return null;
  let h: { magic?: unknown; layout?: unknown; hash?: unknown; bytes?: unknown; crc32?: unknown };
  try {
    h = JSON.parse(file.subarray(0, nl).toString('utf8'));
  } catch {
    return null;
  }
  if (h.magic !== MAGIC || h.layout !== layout || h.hash !== hash || h.bytes !== bytes) return null;
  const data = file.subarray(nl + 1);
  if (data.length !== bytes || crc32(data) !== h.crc32) return null;
  return new Uint8Array(data.buffer, data.byteOffset, data.length);
}
