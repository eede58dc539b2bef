/**
 * The Redis contract between workers (writers) and routers (readers): key names, the worker lease,
 * and the KV-event stream entries.
 *
 * Every key that belongs to one worker carries the hash tag `{<workerId>}`, so all of a worker's
 * keys live in one slot of a Redis Cluster and each index script (which touches one worker's keys
 * only) runs on one node. The only cross-worker keys are two small sets of worker ids.
 *
 *   kcache:workers              SET    worker ids that announced themselves (leases say which live)
 *   kcache:indexed              SET    worker ids the index holds blocks or a cursor for
 *   kcache:{w}:lease            STRING JSON WorkerLease, PX = lease TTL, renewed by the worker
 *   kcache:{w}:kv               STREAM the worker's KV events (encodeKvEvent), MAXLEN ~
 *   kcache:{w}:blocks           HASH   block hash -> "tier|lastAccessMs" (the index, per worker; Tier below)
 *   kcache:{w}:cursor           STRING "epoch:seq" of the last event applied to :blocks
 *
 * Background jobs (@kcache/jobs): a batch's keys carry the hash tag `{<batchId>}` (one slot, so
 * its result script runs on one node); BullMQ's queues live under the prefix BULLMQ_PREFIX (one
 * hash tag: BullMQ's own rule for a Redis Cluster).
 *
 *   kcache:batches              ZSET   batch ids by creation time (ms)
 *   kcache:batch:{b}            HASH   the batch: status, counts, token sums, times, order, priority
 *   kcache:batch:{b}:requests   HASH   request index -> the input line ({custom_id, url, body})
 *   kcache:batch:{b}:results    HASH   request index -> the output line, written once (HSETNX)
 *   kcache:file:{f}             HASH   a file uploaded to /v1/files: tenant, filename, purpose, bytes, created_at, content
 *   kcache:upkeep               HASH   the last index upkeep: time, workers, blocks, drift, purged
 */

/**
 * Where a worker holds a block. In its KV pool: `device`, or `host` when KCache keeps the block's
 * V half in host memory (the same pool, not a copy). Below the pool, copies of blocks evicted from
 * it (a worker's offload tiers, `--offload-bytes` / `--offload-dir`): `offload_ram`, then
 * `offload_disk`. A block is in exactly one tier of a worker at a time; `stored` in a new tier
 * after `removed` from the old one is a move.
 */
export type Tier = 'device' | 'host' | 'offload_ram' | 'offload_disk';
export const TIERS: readonly Tier[] = ['device', 'host', 'offload_ram', 'offload_disk'];
export type OffloadTier = 'offload_ram' | 'offload_disk';

/** A tier's name as written by a worker; `device` for anything else (an older writer wrote none). */
export function parseTier(s: unknown): Tier {
  return TIERS.includes(s as Tier) ? (s as Tier) : 'device';
}

export const WORKERS_SET = 'kcache:workers';
export const INDEXED_SET = 'kcache:indexed';

const tagged = (workerId: string, what: string) => `kcache:{${workerId}}:${what}`;
export const leaseKey = (workerId: string) => tagged(workerId, 'lease');
export const kvStreamKey = (workerId: string) => tagged(workerId, 'kv');
export const blocksKey = (workerId: string) => tagged(workerId, 'blocks');
export const cursorKey = (workerId: string) => tagged(workerId, 'cursor');

export const BATCHES_SET = 'kcache:batches';
export const UPKEEP_KEY = 'kcache:upkeep';
export const BULLMQ_PREFIX = '{kcache-bull}';
const batchTagged = (batchId: string, what: string) => `kcache:batch:{${batchId}}${what ? `:${what}` : ''}`;
export const batchKey = (batchId: string) => batchTagged(batchId, '');
export const batchRequestsKey = (batchId: string) => batchTagged(batchId, 'requests');
export const batchResultsKey = (batchId: string) => batchTagged(batchId, 'results');
export const fileKey = (fileId: string) => `kcache:file:{${fileId}}`;

/** What a worker reports of its own load, so every router sees the same figures. */
export interface WorkerLoad {
  /** Requests in the running batch. */
  running: number;
  /** Requests queued behind it. */
  waiting: number;
  /** Share of the KV pool in use by running requests, 0..1. */
  kvUsage: number;
  /** Blocks holding cached prefixes (in use or reusable): how full the prefix cache is. */
  cachedBlocks: number;
  /** The KV pool's size in blocks. */
  numBlocks: number;
  /**
   * Of running + waiting, how many each router sent (by its id, from the ROUTER_METADATA of the
   * call). A router counts its own requests itself, exactly and at once, and adds the others'.
   */
  byRouter: Record<string, number>;
  /**
   * Of running + waiting, how many are background work (priority > 0: batch jobs), which
   * the worker's scheduler serves after interactive requests; and of those, how many each router
   * sent. An interactive request counts them at a fraction (the router's BACKGROUND_LOAD_WEIGHT).
   */
  background: number;
  backgroundByRouter: Record<string, number>;
}

export interface WorkerLease {
  workerId: string;
  /** host:port routers dial. */
  address: string;
  /** The model's name in the API and block hashes (`--served-model-name`, else its reference). */
  modelId: string;
  /** What the model was loaded from (a path or dummy:…): where a router finds its tokenizer and chat template. */
  modelRef: string;
  blockSize: number;
  /** The model's context length: the longest prompt plus output the worker accepts. */
  maxModelLen: number;
  /** Requests it holds at once, running plus queued (0: no limit known); past it, it answers RESOURCE_EXHAUSTED. */
  maxRequests: number;
  /** The worker process's start (ms); a new epoch restarts its KV-event sequence. */
  epoch: number;
  /** Unique per worker process: a second process started with the same worker id is refused. */
  instance: string;
  /** When the worker wrote this lease and its load (its clock, ms). */
  writtenAt: number;
  /** How long the lease lives unless renewed (ms): how long a router may trust it without seeing it again. */
  ttlMs: number;
  load: WorkerLoad;
}

export const IDLE_LOAD: WorkerLoad = {
  running: 0,
  waiting: 0,
  kvUsage: 0,
  cachedBlocks: 0,
  numBlocks: 0,
  byRouter: {},
  background: 0,
  backgroundByRouter: {},
};

export function encodeLease(lease: WorkerLease): string {
  return JSON.stringify(lease);
}

/** A lease as written by encodeLease; null for anything else (a foreign or older writer). */
export function parseLease(raw: string): WorkerLease | null {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return null;
  }
  const l = v as Partial<WorkerLease>;
  if (typeof l?.workerId !== 'string' || typeof l.address !== 'string' || typeof l.modelId !== 'string') return null;
  if (!Number.isInteger(l.blockSize) || (l.blockSize as number) < 1 || !Number.isFinite(l.epoch)) return null;
  const load = l.load ?? IDLE_LOAD;
  const num = (x: unknown) => (typeof x === 'number' && Number.isFinite(x) && x >= 0 ? x : 0);
  const counts = (m: unknown) => Object.fromEntries(Object.entries(m && typeof m === 'object' ? m : {}).map(([k, v]) => [k, num(v)]));
  return {
    workerId: l.workerId,
    address: l.address,
    modelId: l.modelId,
    modelRef: typeof l.modelRef === 'string' && l.modelRef !== '' ? l.modelRef : l.modelId,
    blockSize: l.blockSize as number,
    maxModelLen: Number.isInteger(l.maxModelLen) && (l.maxModelLen as number) > 0 ? (l.maxModelLen as number) : 0,
    maxRequests: Number.isInteger(l.maxRequests) && (l.maxRequests as number) > 0 ? (l.maxRequests as number) : 0,
    epoch: l.epoch as number,
    instance: typeof l.instance === 'string' ? l.instance : '',
    writtenAt: Number.isFinite(l.writtenAt) ? (l.writtenAt as number) : 0,
    ttlMs: Number.isFinite(l.ttlMs) && (l.ttlMs as number) > 0 ? (l.ttlMs as number) : 10_000,
    load: {
      running: num(load.running),
      waiting: num(load.waiting),
      kvUsage: num(load.kvUsage),
      cachedBlocks: num(load.cachedBlocks),
      numBlocks: num(load.numBlocks),
      byRouter: counts(load.byRouter),
      background: num(load.background),
      backgroundByRouter: counts(load.backgroundByRouter),
    },
  };
}

/** vLLM / Dynamo KV events: blocks stored in or removed from a tier, or the whole cache cleared. */
export type KvEvent =
  | { type: 'stored'; hashes: string[]; parent: string | null; tier: Tier }
  | { type: 'removed'; hashes: string[]; tier: Tier }
  | { type: 'cleared' };

/** One stream entry: the event and its place in the worker's sequence. */
export interface KvEventEntry {
  /** Monotonic per epoch, from 1; a consumer that sees a jump resyncs from the worker's snapshot. */
  seq: number;
  epoch: number;
  event: KvEvent;
}

/** XADD field/value pairs of an entry. */
export function encodeKvEvent({ seq, epoch, event }: KvEventEntry): string[] {
  const fields = ['seq', String(seq), 'epoch', String(epoch), 'type', event.type];
  if (event.type !== 'cleared') fields.push('hashes', event.hashes.join(','), 'tier', event.tier);
  if (event.type === 'stored') fields.push('parent', event.parent ?? '');
  return fields;
}

/** The entry of XREAD's flat field list; null if it is not a well-formed KV event. */
export function decodeKvEvent(flat: readonly string[]): KvEventEntry | null {
  const f: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) f[flat[i] as string] = flat[i + 1] as string;
  const seq = Number(f.seq);
  const epoch = Number(f.epoch);
  if (!Number.isInteger(seq) || seq < 1 || !Number.isFinite(epoch)) return null;
  const hashes = f.hashes ? f.hashes.split(',') : [];
  const tier = parseTier(f.tier);
  switch (f.type) {
    case 'cleared':
      return { seq, epoch, event: { type: 'cleared' } };
    case 'stored':
      return { seq, epoch, event: { type: 'stored', hashes, parent: f.parent || null, tier } };
    case 'removed':
      return { seq, epoch, event: { type: 'removed', hashes, tier } };
    default:
      return null;
  }
}
