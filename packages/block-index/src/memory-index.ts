/** The block index in this process's memory: the Redis index's semantics, for tests and for reasoning. */
import type { KvEventEntry, Tier } from '@kcache/protocol';
import { type ApplyResult, type BlockIndex, type MatchResult, sequenceCheck, type WorkerSnapshot } from './types.js';

interface WorkerState {
  cursor: { epoch: number; seq: number } | null;
  blocks: Map<string, Tier>;
}

export class MemoryBlockIndex implements BlockIndex {
  private readonly workers = new Map<string, WorkerState>();

  private state(worker: string): WorkerState {
    let s = this.workers.get(worker);
    if (!s) {
      s = { cursor: null, blocks: new Map() };
      this.workers.set(worker, s);
    }
    return s;
  }

  async findMatches(hashes: readonly string[], workers: readonly string[]): Promise<Map<string, MatchResult>> {
    const out = new Map<string, MatchResult>();
    for (const w of workers) {
      const blocks = this.workers.get(w)?.blocks;
      const m: MatchResult = { matchedBlocks: 0, deviceBlocks: 0, offloadRamBlocks: 0, offloadDiskBlocks: 0 };
      for (const h of hashes) {
        const tier = blocks?.get(h);
        if (tier === undefined) break;
        m.matchedBlocks++;
        if (tier === 'device') m.deviceBlocks++;
        else if (tier === 'offload_ram') m.offloadRamBlocks++;
        else if (tier === 'offload_disk') m.offloadDiskBlocks++;
      }
      out.set(w, m);
    }
    return out;
  }

  async apply(worker: string, entry: KvEventEntry): Promise<ApplyResult> {
    const s = this.state(worker);
    const r = sequenceCheck(s.cursor, entry);
    if (r !== 'ok') return r;
    const e = entry.event;
    if (e.type === 'cleared') s.blocks.clear();
    else if (e.type === 'stored') for (const h of e.hashes) s.blocks.set(h, e.tier);
    else for (const h of e.hashes) s.blocks.delete(h);
    s.cursor = { epoch: entry.epoch, seq: entry.seq };
    return 'ok';
  }

  async resync(worker: string, snap: WorkerSnapshot): Promise<void> {
    const s = this.state(worker);
    // a snapshot older than events already applied of the same epoch changes nothing (as RESYNC)
    if (s.cursor && s.cursor.epoch === snap.epoch && s.cursor.seq > snap.seq) return;
    s.blocks = new Map(snap.tiers.flatMap((t) => t.hashes.map((h): [string, Tier] => [h, t.tier])));
    s.cursor = { epoch: snap.epoch, seq: snap.seq };
  }

  async removeWorker(worker: string): Promise<number> {
    const n = this.workers.get(worker)?.blocks.size ?? 0;
    this.workers.delete(worker);
    return n;
  }

  async indexedWorkers(): Promise<string[]> {
    return [...this.workers.keys()];
  }

  async workerBlockCount(worker: string): Promise<number> {
    return this.workers.get(worker)?.blocks.size ?? 0;
  }
}
