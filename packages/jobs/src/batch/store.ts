/**
 * A batch's record in Redis (keys: @kcache/protocol's redis.ts): its state and counts, its
 * requests, and its results. A result is written once per request (HSETNX) and counted in the
 * same script, so a request run twice (a runner killed after it wrote, before BullMQ heard) leaves
 * one line and one count.
 */
import { randomUUID } from 'node:crypto';
import type { RedisClient } from '@kcache/block-index';
import { BATCHES_SET, batchKey, batchRequestsKey, batchResultsKey } from '@kcache/protocol';
import type { BatchRequest } from './format.js';

/** OpenAI's batch states (`validating`, `failed` and `expired` never occur: a bad file is refused at submit). */
export type BatchStatus = 'in_progress' | 'completed' | 'cancelling' | 'cancelled';
export type BatchPriority = 'high' | 'normal' | 'low';
export type BatchOrder = 'cache' | 'file';

export interface BatchInfo {
  id: string;
  status: BatchStatus;
  counts: { total: number; completed: number; failed: number };
  usage: { promptTokens: number; completionTokens: number; cachedTokens: number };
  /** Unix ms. */
  createdAt: number;
  completedAt: number | null;
  cancelledAt: number | null;
  order: BatchOrder;
  priority: BatchPriority;
  /** Prefix groups the cache-aware order formed (file order: one a request). */
  groups: number;
  inputName: string;
  /** Who submitted it through the HTTP API ('' from the CLI or without API keys). */
  tenant: string;
  /** The endpoint named at /v1/batches ('' from the CLI: each line names its own). */
  endpoint: string;
}

/**
 * RESULT: KEYS[1]=batch, KEYS[2]=results; ARGV = index, line, ok (1|0), promptTokens,
 * completionTokens, cachedTokens, nowMs. Returns the requests done so far, or -1 when this
 * request already had its result. The last result completes the batch (unless it is being
 * cancelled: then `cancel` settles it).
 */
const RESULT = `
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return -1 end
redis.call('HINCRBY', KEYS[1], ARGV[3] == '1' and 'completed' or 'failed', 1)
redis.call('HINCRBY', KEYS[1], 'prompt_tokens', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'completion_tokens', ARGV[5])
redis.call('HINCRBY', KEYS[1], 'cached_tokens', ARGV[6])
local v = redis.call('HMGET', KEYS[1], 'completed', 'failed', 'total', 'status')
local done = tonumber(v[1] or '0') + tonumber(v[2] or '0')
if done >= tonumber(v[3]) and v[4] == 'in_progress' then
  redis.call('HSET', KEYS[1], 'status', 'completed', 'completed_at', ARGV[7])
end
return done
`;

/** CANCEL: KEYS[1]=batch; ARGV = nowMs. in_progress -> cancelling; returns the status after. */
const CANCEL = `
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return false end
if st == 'in_progress' then
  redis.call('HSET', KEYS[1], 'status', 'cancelling', 'cancelled_at', ARGV[1])
  return 'cancelling'
end
return st
`;

/** SETTLE: KEYS[1]=batch; ARGV = nowMs. cancelling -> cancelled (its running requests ended). */
const SETTLE = `
if redis.call('HGET', KEYS[1], 'status') == 'cancelling' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'completed_at', ARGV[1])
end
return redis.call('HGET', KEYS[1], 'status')
`;

type Scripted = RedisClient & {
  kcBatchResult(...args: string[]): Promise<number>;
  kcBatchCancel(...args: string[]): Promise<string | null>;
  kcBatchSettle(...args: string[]): Promise<string | null>;
};

export class BatchStore {
  private readonly redis: Scripted;

  constructor(redis: RedisClient) {
    const r = redis as Scripted;
    if (typeof r.kcBatchResult !== 'function') {
      r.defineCommand('kcBatchResult', { numberOfKeys: 2, lua: RESULT });
      r.defineCommand('kcBatchCancel', { numberOfKeys: 1, lua: CANCEL });
      r.defineCommand('kcBatchSettle', { numberOfKeys: 1, lua: SETTLE });
    }
    this.redis = r;
  }

  /** Records a new batch (in progress) with its requests; returns its id. */
  async create(
    requests: readonly BatchRequest[],
    o: { order: BatchOrder; priority: BatchPriority; groups: number; inputName: string; tenant?: string; endpoint?: string },
  ): Promise<string> {
    const id = `batch_${randomUUID().replaceAll('-', '')}`;
    const now = Date.now();
    const lines: string[] = [];
    requests.forEach((r, i) => {
      lines.push(String(i), JSON.stringify({ custom_id: r.customId, url: r.url, body: r.body }));
    });
    // in slices: one HSET of a 50,000-line batch would be one huge command
    for (let i = 0; i < lines.length; i += 2000) await this.redis.hset(batchRequestsKey(id), ...lines.slice(i, i + 2000));
    await this.redis.hset(batchKey(id), {
      status: 'in_progress',
      total: requests.length,
      completed: 0,
      failed: 0,
      prompt_tokens: 0,
      completion_tokens: 0,
      cached_tokens: 0,
      created_at: now,
      order: o.order,
      priority: o.priority,
      groups: o.groups,
      input_name: o.inputName,
      tenant: o.tenant ?? '',
      endpoint: o.endpoint ?? '',
    });
    await this.redis.zadd(BATCHES_SET, now, id);
    return id;
  }

  async info(id: string): Promise<BatchInfo | null> {
    const h = await this.redis.hgetall(batchKey(id));
    if (!h.status) return null;
    const n = (k: string) => Number(h[k] ?? 0);
    return {
      id,
      status: h.status as BatchStatus,
      counts: { total: n('total'), completed: n('completed'), failed: n('failed') },
      usage: { promptTokens: n('prompt_tokens'), completionTokens: n('completion_tokens'), cachedTokens: n('cached_tokens') },
      createdAt: n('created_at'),
      completedAt: h.completed_at ? Number(h.completed_at) : null,
      cancelledAt: h.cancelled_at ? Number(h.cancelled_at) : null,
      order: (h.order ?? 'cache') as BatchOrder,
      priority: (h.priority ?? 'normal') as BatchPriority,
      groups: n('groups'),
      inputName: h.input_name ?? '',
      tenant: h.tenant ?? '',
      endpoint: h.endpoint ?? '',
    };
  }

  /** Batch ids, newest first. */
  async list(limit = 100): Promise<string[]> {
    return this.redis.zrevrange(BATCHES_SET, 0, limit - 1);
  }

  /** The input line of request `index`, or null. */
  async request(id: string, index: number): Promise<{ custom_id: string; url: string; body: Record<string, unknown> } | null> {
    const line = await this.redis.hget(batchRequestsKey(id), String(index));
    return line === null ? null : JSON.parse(line);
  }

  async hasResult(id: string, index: number): Promise<boolean> {
    return (await this.redis.hexists(batchResultsKey(id), String(index))) === 1;
  }

  /** Writes request `index`'s result unless it has one; returns whether this call wrote it. */
  async putResult(
    id: string,
    index: number,
    line: string,
    ok: boolean,
    usage: { promptTokens: number; completionTokens: number; cachedTokens: number },
  ): Promise<boolean> {
    const done = await this.redis.kcBatchResult(
      batchKey(id),
      batchResultsKey(id),
      String(index),
      line,
      ok ? '1' : '0',
      String(usage.promptTokens),
      String(usage.completionTokens),
      String(usage.cachedTokens),
      String(Date.now()),
    );
    return Number(done) >= 0;
  }

  /** The output lines, in input order (requests without a result are left out). */
  async *results(id: string): AsyncGenerator<string> {
    const total = Number((await this.redis.hget(batchKey(id), 'total')) ?? 0);
    for (let i = 0; i < total; i += 500) {
      const fields = Array.from({ length: Math.min(500, total - i) }, (_, k) => String(i + k));
      for (const line of await this.redis.hmget(batchResultsKey(id), ...fields)) if (line !== null) yield line;
    }
  }

  /** in_progress -> cancelling; the status after (null: no such batch). */
  async cancel(id: string): Promise<BatchStatus | null> {
    return (await this.redis.kcBatchCancel(batchKey(id), String(Date.now()))) as BatchStatus | null;
  }

  /** cancelling -> cancelled, once nothing of the batch runs; the status after. */
  async settle(id: string): Promise<BatchStatus | null> {
    return (await this.redis.kcBatchSettle(batchKey(id), String(Date.now()))) as BatchStatus | null;
  }
}
