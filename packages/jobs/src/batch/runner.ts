/**
 * A batch runner: a BullMQ worker on the `kcache-batch` queue that sends each request through the
 * router's OpenAI API like any client and records its result once. At least once: a runner killed
 * mid-request leaves its job locked until BullMQ's stalled check hands it to another runner; the
 * result script keeps one line per request whatever runs twice. Batch work is kept behind
 * interactive traffic by the runner's concurrency and rate limit (BullMQ's limiter).
 */
import { randomUUID } from 'node:crypto';
import type { RedisClient } from '@kcache/block-index';
import { BULLMQ_PREFIX } from '@kcache/protocol';
import { type Job, Queue, Worker } from 'bullmq';
import { type BatchOutcome, outputLine, succeeded } from './format.js';
import {
  BATCH_QUEUE,
  GROUP_JOB,
  type GroupJobData,
  REQUEST_ATTEMPTS,
  REQUEST_JOB,
  type RequestJobData,
  requestJobOptions,
} from './queue.js';
import { type BatchPriority, BatchStore } from './store.js';

export interface BatchRunnerOptions {
  /** A connection BullMQ may use (maxRetriesPerRequest: null); the runner duplicates it as it needs. */
  redis: RedisClient;
  /** The router's HTTP API, e.g. http://127.0.0.1:8000. */
  routerUrl: string;
  /** Sent as `Authorization: Bearer` (a router with API keys). */
  apiKey?: string;
  /** Requests this runner has in flight at once (default 4). */
  concurrency?: number;
  /** At most this many requests started per second by this runner (default: no limit). */
  ratePerSecond?: number;
  /** How long a job stays locked to a runner that stopped answering (default 30 s): BullMQ's lockDuration. */
  lockMs?: number;
  /** One request's time limit (default 10 min). */
  requestTimeoutMs?: number;
  /** Every finished request (for metrics and logs). */
  onResult?: (r: { batchId: string; customId: string; ok: boolean }) => void;
}

export interface BatchRunner {
  /** Stops taking jobs and waits for the running ones. */
  close(): Promise<void>;
}

/** The workers' scheduling priority of a batch's requests: always after interactive requests (0). */
const BATCH_SCHEDULING: Record<BatchPriority, number> = { high: 1, normal: 2, low: 3 };

/** Statuses worth another try: the cluster was busy or briefly without a worker. */
const RETRYABLE = new Set([408, 429, 500, 502, 503, 504]);

export async function startBatchRunner(o: BatchRunnerOptions): Promise<BatchRunner> {
  const store = new BatchStore(o.redis);
  const queue = new Queue(BATCH_QUEUE, { connection: o.redis, prefix: BULLMQ_PREFIX });
  const routerUrl = o.routerUrl.replace(/\/+$/, '');

  const call = async (url: string, body: unknown): Promise<BatchOutcome> => {
    const res = await fetch(`${routerUrl}${url}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(o.apiKey ? { authorization: `Bearer ${o.apiKey}` } : {}) },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(o.requestTimeoutMs ?? 600_000),
    });
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = { error: { message: text.slice(0, 500), type: 'invalid_response', param: null, code: null } };
    }
    return {
      kind: 'response',
      statusCode: res.status,
      requestId: res.headers.get('x-request-id') ?? `req_${randomUUID().replaceAll('-', '')}`,
      body: parsed,
    };
  };

  const runRequest = async (job: Job<RequestJobData>) => {
    const { batchId, index } = job.data;
    const info = await store.info(batchId);
    if (info?.status !== 'in_progress') return 'skipped';
    if (await store.hasResult(batchId, index)) return 'done before';
    const req = await store.request(batchId, index);
    if (!req) return 'gone';
    const last = job.attemptsMade + 1 >= (job.opts.attempts ?? REQUEST_ATTEMPTS);
    let outcome: BatchOutcome;
    try {
      // behind interactive traffic on the workers (vLLM's priority; 0 is interactive) unless the line sets one
      outcome = await call(req.url, { priority: BATCH_SCHEDULING[info.priority], ...req.body, ...tenantSalt(info.tenant, req.body) });
    } catch (e) {
      if (!last) throw e; // BullMQ retries it after a backoff
      outcome = { kind: 'error', code: 'request_failed', message: `the router at ${routerUrl} did not answer: ${(e as Error).message}` };
    }
    if (outcome.kind === 'response' && RETRYABLE.has(outcome.statusCode) && !last)
      throw new Error(`${req.url} answered ${outcome.statusCode}; trying again`);
    const usage = outcome.kind === 'response' ? usageOf(outcome.body) : { promptTokens: 0, completionTokens: 0, cachedTokens: 0 };
    const ok = succeeded(outcome);
    await store.putResult(batchId, index, outputLine(req.custom_id, outcome), ok, usage);
    o.onResult?.({ batchId, customId: req.custom_id, ok });
    return ok ? 'completed' : 'failed';
  };

  /** A group's first request is done (its prefix is cached): queue the rest of the group. */
  const runGroup = async (job: Job<GroupJobData>) => {
    const { batchId, followers } = job.data;
    const info = await store.info(batchId);
    if (info?.status !== 'in_progress') return 'skipped';
    await queue.addBulk(
      followers.map((index) => ({
        name: REQUEST_JOB,
        data: { batchId, index } satisfies RequestJobData,
        opts: requestJobOptions(batchId, index, info.priority),
      })),
    );
    return `queued ${followers.length}`;
  };

  const lockMs = o.lockMs ?? 30_000;
  const worker = new Worker(
    BATCH_QUEUE,
    async (job: Job) => (job.name === GROUP_JOB ? runGroup(job as Job<GroupJobData>) : runRequest(job as Job<RequestJobData>)),
    {
      connection: o.redis,
      prefix: BULLMQ_PREFIX,
      concurrency: o.concurrency ?? 4,
      limiter: o.ratePerSecond ? { max: o.ratePerSecond, duration: 1000 } : undefined,
      lockDuration: lockMs,
      stalledInterval: Math.max(500, Math.floor(lockMs / 2)),
      // a runner killed mid-request is not the request's fault: hand it on however often it happens
      maxStalledCount: 1000,
    },
  );
  worker.on('error', () => {}); // Redis away: BullMQ reconnects by itself
  await worker.waitUntilReady();
  return {
    async close() {
      await worker.close();
      await queue.close();
    },
  };
}

/**
 * The runner calls the router with its own key, so the router salts every batch request's cache
 * with the runner's tenant. A batch submitted through the HTTP API by another tenant gets that
 * tenant in its salt too (the request's own `cache_salt` refines it): two tenants' batches never
 * share cached blocks, and `cached_tokens` in one tenant's results says nothing about another's
 * prompts, as for their interactive requests (the router's tenancy/scope.ts).
 */
function tenantSalt(tenant: string, body: Record<string, unknown>): { cache_salt?: string } {
  if (tenant === '') return {};
  const own = typeof body.cache_salt === 'string' ? body.cache_salt : '';
  return { cache_salt: `batch-tenant:${tenant}\u0000${own}` };
}

function usageOf(body: unknown): { promptTokens: number; completionTokens: number; cachedTokens: number } {
  const u = (body as { usage?: Record<string, unknown> } | null)?.usage;
  const n = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
  return {
    promptTokens: n(u?.prompt_tokens),
    completionTokens: n(u?.completion_tokens),
    cachedTokens: n((u?.prompt_tokens_details as Record<string, unknown> | undefined)?.cached_tokens),
  };
}
