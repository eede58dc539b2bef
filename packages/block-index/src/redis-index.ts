/**
 * The Redis block index and the consumer that keeps it current.
 *
 * Workers append KV events to `kcache:kv:{worker}` and hold a lease `kcache:worker:{worker}`
 * (see packages/worker/src/kv-events). Any number of routers run a consumer: each reads every
 * live worker's stream (XREAD) and applies the events with one atomic script per event; the
 * per-worker cursor in Redis makes repeated application a no-op, so consumers need no
 * coordination. A sequence gap (events trimmed or lost) triggers a resync from the worker's own
 * snapshot (the `resync` callback, the worker's Snapshot RPC). A worker whose lease has expired
 * is purged: its blocks leave the index.
 */
import type { Redis } from 'ioredis';
import { APPLY, MATCH, PURGE, RESYNC } from './scripts.js';

export interface WorkerLease {
  workerId: string;
  address: string;
  modelId: string;
  blockSize: number;
  epoch: number;
}

export interface MatchResult {
  matchedBlocks: number;
  deviceBlocks: number;
}

export interface WorkerSnapshot {
  epoch: number;
  seq: number;
  tier: string;
  hashes: string[];
}

const streamKey = (w: string) => `kcache:kv:${w}`;
const cursorKey = (w: string) => `kcache:cursor:${w}`;
const blocksKey = (w: string) => `kcache:wblk:${w}`;
const LEASE_PREFIX = 'kcache:worker:';
/** Workers announce themselves here (see packages/worker/src/kv-events); leases say which are alive. */
export const WORKERS_SET = 'kcache:workers';

type ScriptRedis = Redis & {
  kcApply(k1: string, k2: string, ...argv: string[]): Promise<string>;
  kcResync(k1: string, k2: string, ...argv: string[]): Promise<string>;
  kcPurge(k1: string, k2: string, worker: string): Promise<number>;
  kcMatch(...argv: string[]): Promise<(string | number)[]>;
};

function withScripts(redis: Redis): ScriptRedis {
  if (!('kcApply' in redis)) {
    redis.defineCommand('kcApply', { numberOfKeys: 2, lua: APPLY });
    redis.defineCommand('kcResync', { numberOfKeys: 2, lua: RESYNC });
    redis.defineCommand('kcPurge', { numberOfKeys: 2, lua: PURGE });
    redis.defineCommand('kcMatch', { numberOfKeys: 0, lua: MATCH, readOnly: true });
  }
  return redis as ScriptRedis;
}

export class RedisBlockIndex {
  private readonly redis: ScriptRedis;

  constructor(redis: Redis) {
    this.redis = withScripts(redis);
  }

  /** Workers holding a live lease (registered in `kcache:workers`, lease key present). */
  async liveWorkers(): Promise<WorkerLease[]> {
    const ids = await this.redis.smembers(WORKERS_SET);
    if (ids.length === 0) return [];
    const values = await this.redis.mget(...ids.map((id) => `${LEASE_PREFIX}${id}`));
    return values.filter((v): v is string => v !== null).map((v) => JSON.parse(v) as WorkerLease);
  }

  /** For each worker, the number of leading `hashes` it holds. */
  async findMatches(hashes: readonly string[], workers: readonly string[]): Promise<Map<string, MatchResult>> {
    const out = new Map<string, MatchResult>();
    if (workers.length === 0) return out;
    if (hashes.length === 0) {
      for (const w of workers) out.set(w, { matchedBlocks: 0, deviceBlocks: 0 });
      return out;
    }
    const flat = await this.redis.kcMatch(String(workers.length), ...workers, ...hashes);
    for (let i = 0; i < flat.length; i += 3)
      out.set(String(flat[i]), { matchedBlocks: Number(flat[i + 1]), deviceBlocks: Number(flat[i + 2]) });
    return out;
  }

  /** Applies one stream entry; "gap" means the caller must resync this worker. */
  apply(worker: string, fields: Record<string, string>): Promise<string> {
    const hashes = fields.hashes ? fields.hashes.split(',') : [];
    return this.redis.kcApply(
      cursorKey(worker),
      blocksKey(worker),
      worker,
      fields.epoch ?? '0',
      fields.seq ?? '0',
      fields.type ?? '',
      fields.tier ?? 'device',
      String(Date.now()),
      ...hashes,
    );
  }

  resync(worker: string, snap: WorkerSnapshot): Promise<string> {
    return this.redis.kcResync(
      cursorKey(worker),
      blocksKey(worker),
      worker,
      String(snap.epoch),
      String(snap.seq),
      snap.tier,
      String(Date.now()),
      ...snap.hashes,
    );
  }

  /** Forgets a worker: its blocks leave the index. Returns how many it held. */
  removeWorker(worker: string): Promise<number> {
    return this.redis.kcPurge(cursorKey(worker), blocksKey(worker), worker);
  }

  /** Workers the index holds blocks or a cursor for (live or not). */
  indexedWorkers(): Promise<string[]> {
    return this.redis.smembers('kcache:indexed');
  }

  /** Blocks the index attributes to a worker. */
  workerBlockCount(worker: string): Promise<number> {
    return this.redis.scard(blocksKey(worker));
  }
}

/**
 * Tails every live worker's KV stream into the index. `resync` fetches a worker's snapshot when
 * a gap is found. run() loops until stop().
 */
export class IndexConsumer {
  private readonly lastId = new Map<string, string>();
  private stopped = false;
  private loop: Promise<void> | null = null;
  /** Events applied, gaps found (for metrics and tests). */
  readonly stats = { applied: 0, duplicates: 0, gaps: 0, purged: 0 };

  constructor(
    private readonly index: RedisBlockIndex,
    /** A dedicated connection: XREAD BLOCK holds it. */
    private readonly reader: Redis,
    private readonly resync: (lease: WorkerLease) => Promise<WorkerSnapshot>,
    private readonly blockMs = 50,
  ) {}

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  /** One pass: purge dead workers, then read and apply what the live ones appended. */
  async poll(): Promise<void> {
    const live = await this.index.liveWorkers();
    const liveIds = new Set(live.map((l) => l.workerId));
    for (const w of await this.index.indexedWorkers()) {
      if (!liveIds.has(w)) {
        await this.index.removeWorker(w);
        this.lastId.delete(w);
        this.stats.purged++;
      }
    }
    if (live.length === 0) {
      await new Promise((r) => setTimeout(r, this.blockMs));
      return;
    }
    const keys = live.map((l) => streamKey(l.workerId));
    const ids = live.map((l) => this.lastId.get(l.workerId) ?? '0');
    const res = (await this.reader.xread('COUNT', 1000, 'BLOCK', this.blockMs, 'STREAMS', ...keys, ...ids)) as
      | [string, [string, string[]][]][]
      | null;
    for (const [key, entries] of res ?? []) {
      const worker = key.slice('kcache:kv:'.length);
      const lease = live.find((l) => l.workerId === worker) as WorkerLease;
      for (const [id, flat] of entries) {
        const fields: Record<string, string> = {};
        for (let i = 0; i < flat.length; i += 2) fields[flat[i] as string] = flat[i + 1] as string;
        const r = await this.index.apply(worker, fields);
        this.lastId.set(worker, id);
        if (r === 'ok') this.stats.applied++;
        else if (r === 'dup') this.stats.duplicates++;
        else {
          this.stats.gaps++;
          await this.index.resync(worker, await this.resync(lease));
        }
      }
    }
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.poll();
      } catch {
        // Redis away or a worker unreachable for resync: try again shortly.
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }
}
