/**
 * The block index in Redis, shared by every router: per worker, a hash of the blocks it holds
 * (block hash -> "tier|storedAtMs", the eviction metadata) and the cursor of the last event
 * applied; each change and each lookup is one Lua script on one worker's keys (scripts.ts).
 *
 * A lookup runs one MATCH per candidate worker, in parallel: O(workers × matched blocks) HGETs,
 * one round trip per worker (pipelined by ioredis on one connection; spread over the nodes on a
 * Redis Cluster). Keeping a worker's blocks together (rather than a key per block listing its
 * workers) is what lets a cluster split the index by worker, and it costs one hash field per
 * (worker, block) instead of a key per block plus a reverse set.
 */
import { blocksKey, cursorKey, INDEXED_SET, type KvEventEntry, kvStreamKey } from '@kcache/protocol';
import type { RedisClient } from './connect.js';
import { APPLY, MATCH, PURGE, RESYNC } from './scripts.js';
import type { ApplyResult, BlockIndex, MatchResult, WorkerSnapshot } from './types.js';

/** MATCH's reply: matched, device, offload_ram, offload_disk. */
type MatchCounts = [number, number, number, number];

type ScriptRedis = RedisClient & {
  kcApply(cursor: string, blocks: string, ...argv: string[]): Promise<ApplyResult>;
  kcResync(cursor: string, blocks: string, ...argv: string[]): Promise<string>;
  kcPurge(cursor: string, blocks: string, stream: string): Promise<number>;
  kcMatch(blocks: string, ...hashes: string[]): Promise<MatchCounts>;
};

function withScripts(redis: RedisClient): ScriptRedis {
  if (!('kcApply' in redis)) {
    redis.defineCommand('kcApply', { numberOfKeys: 2, lua: APPLY });
    redis.defineCommand('kcResync', { numberOfKeys: 2, lua: RESYNC });
    redis.defineCommand('kcPurge', { numberOfKeys: 3, lua: PURGE });
    redis.defineCommand('kcMatch', { numberOfKeys: 1, lua: MATCH, readOnly: true });
  }
  return redis as ScriptRedis;
}

export class RedisBlockIndex implements BlockIndex {
  private readonly redis: ScriptRedis;
  /** Workers this instance has recorded in INDEXED_SET (one SADD per worker and epoch start). */
  private readonly announced = new Set<string>();

  constructor(redis: RedisClient) {
    this.redis = withScripts(redis);
  }

  async findMatches(hashes: readonly string[], workers: readonly string[]): Promise<Map<string, MatchResult>> {
    const out = new Map<string, MatchResult>();
    const results = await Promise.all(
      workers.map((w) =>
        hashes.length === 0 ? Promise.resolve([0, 0, 0, 0] as MatchCounts) : this.redis.kcMatch(blocksKey(w), ...hashes),
      ),
    );
    workers.forEach((w, i) => {
      const [matched, device, ram, disk] = results[i] as MatchCounts;
      out.set(w, {
        matchedBlocks: Number(matched),
        deviceBlocks: Number(device),
        offloadRamBlocks: Number(ram),
        offloadDiskBlocks: Number(disk),
      });
    });
    return out;
  }

  async apply(worker: string, { epoch, seq, event }: KvEventEntry): Promise<ApplyResult> {
    const tier = event.type === 'cleared' ? 'device' : event.tier;
    const hashes = event.type === 'cleared' ? [] : event.hashes;
    const r = await this.redis.kcApply(
      cursorKey(worker),
      blocksKey(worker),
      String(epoch),
      String(seq),
      event.type,
      tier,
      String(Date.now()),
      ...hashes,
    );
    if (r === 'ok' && (event.type === 'cleared' || !this.announced.has(worker))) await this.announce(worker);
    return r;
  }

  async resync(worker: string, snap: WorkerSnapshot): Promise<void> {
    await this.redis.kcResync(
      cursorKey(worker),
      blocksKey(worker),
      String(snap.epoch),
      String(snap.seq),
      String(Date.now()),
      ...snap.tiers.flatMap((t) => [t.tier, String(t.hashes.length), ...t.hashes]),
    );
    await this.announce(worker);
  }

  /** Also deletes the worker's event stream: nobody reads a dead worker's events. */
  async removeWorker(worker: string): Promise<number> {
    const n = await this.redis.kcPurge(cursorKey(worker), blocksKey(worker), kvStreamKey(worker));
    await this.redis.srem(INDEXED_SET, worker);
    this.announced.delete(worker);
    return Number(n);
  }

  indexedWorkers(): Promise<string[]> {
    return this.redis.smembers(INDEXED_SET);
  }

  workerBlockCount(worker: string): Promise<number> {
    return this.redis.hlen(blocksKey(worker));
  }

  // A separate command: the set lives in another slot than the worker's keys.
  private async announce(worker: string): Promise<void> {
    await this.redis.sadd(INDEXED_SET, worker);
    this.announced.add(worker);
  }
}
