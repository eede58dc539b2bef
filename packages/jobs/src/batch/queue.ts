/**
 * Batches on BullMQ. A batch is one job a request, in the queue `kcache-batch` (prefix
 * BULLMQ_PREFIX). In the cache-aware order a group of requests sharing a prefix is a flow: a
 * `group` job whose child is the group's first request; when that request is done, the `group`
 * job adds the rest of the group, so the prefix is computed once and the rest find it cached.
 * Job ids are fixed (`<batch>-r<index>`, `<batch>-g<group>`): a job added twice is one job.
 */

import type { RedisClient } from '@kcache/block-index';
import { BULLMQ_PREFIX } from '@kcache/protocol';
import { FlowProducer, type JobsOptions, Queue } from 'bullmq';
import { BatchInputError, parseBatchInput } from './format.js';
import { cacheAwareGroups, fileOrderGroups, promptKey } from './order.js';
import { type BatchInfo, type BatchOrder, type BatchPriority, BatchStore } from './store.js';

export const BATCH_QUEUE = 'kcache-batch';
export const REQUEST_JOB = 'request';
export const GROUP_JOB = 'group';

/** BullMQ priorities (1 is first); interactive traffic never waits in this queue at all. */
export const PRIORITIES: Record<BatchPriority, number> = { high: 1, normal: 5, low: 10 };

/** Tries of one request: 429, 5xx and unreachable routers are retried with exponential backoff. */
export const REQUEST_ATTEMPTS = 6;

export interface RequestJobData {
  batchId: string;
  index: number;
}

export interface GroupJobData {
  batchId: string;
  followers: number[];
}

export const requestJobId = (batchId: string, index: number) => `${batchId}-r${index}`;
const groupJobId = (batchId: string, group: number) => `${batchId}-g${group}`;

export function requestJobOptions(batchId: string, index: number, priority: BatchPriority): JobsOptions {
  return {
    jobId: requestJobId(batchId, index),
    priority: PRIORITIES[priority],
    attempts: REQUEST_ATTEMPTS,
    backoff: { type: 'exponential', delay: 500 },
    removeOnComplete: true,
    removeOnFail: true,
  };
}

export interface SubmitOptions {
  order?: BatchOrder;
  priority?: BatchPriority;
  /** A name for the input (the file's), shown by status. */
  inputName?: string;
  /** Characters two prompts share at least to be one group (default 64, about 16 tokens). */
  minSharedChars?: number;
  /** The submitting tenant (the HTTP API's), recorded with the batch. */
  tenant?: string;
  /** The endpoint named at /v1/batches: every line must use it, as OpenAI requires. */
  endpoint?: string;
}

/**
 * Validates a Batch input file (BatchInputError names each bad line), records the batch and
 * queues its requests. `redis` is a connection BullMQ may use (maxRetriesPerRequest: null).
 */
export async function submitBatch(redis: RedisClient, text: string, o: SubmitOptions = {}): Promise<BatchInfo> {
  const requests = parseBatchInput(text);
  const other = o.endpoint ? requests.findIndex((r) => r.url !== o.endpoint) : -1;
  if (other >= 0)
    throw new BatchInputError([
      `request ${other + 1} (custom_id '${requests[other]?.customId}'): url ${requests[other]?.url} is not the batch's endpoint ${o.endpoint}`,
    ]);
  const order = o.order ?? 'cache';
  const priority = o.priority ?? 'normal';
  const groups = order === 'cache' ? cacheAwareGroups(requests.map(promptKey), o.minSharedChars) : fileOrderGroups(requests.length);
  const store = new BatchStore(redis);
  const id = await store.create(requests, {
    order,
    priority,
    groups: groups.length,
    inputName: o.inputName ?? '',
    tenant: o.tenant,
    endpoint: o.endpoint,
  });
  const queue = new Queue(BATCH_QUEUE, { connection: redis, prefix: BULLMQ_PREFIX });
  const flows = new FlowProducer({ connection: redis, prefix: BULLMQ_PREFIX });
  try {
    const single = (index: number) => ({
      name: REQUEST_JOB,
      data: { batchId: id, index } satisfies RequestJobData,
      opts: requestJobOptions(id, index, priority),
    });
    const flat = groups.filter((g) => g.length === 1).map((g) => single(g[0] as number));
    const grouped = groups
      .map((g, k) => ({ g, k }))
      .filter(({ g }) => g.length > 1)
      .map(({ g, k }) => {
        const leader = single(g[0] as number);
        return {
          name: GROUP_JOB,
          queueName: BATCH_QUEUE,
          data: { batchId: id, followers: g.slice(1) } satisfies GroupJobData,
          opts: { jobId: groupJobId(id, k), priority: PRIORITIES[priority], removeOnComplete: true, removeOnFail: true },
          children: [{ ...leader, queueName: BATCH_QUEUE, opts: { ...leader.opts, ignoreDependencyOnFailure: true } }],
        };
      });
    for (let i = 0; i < grouped.length; i += 500) await flows.addBulk(grouped.slice(i, i + 500));
    for (let i = 0; i < flat.length; i += 1000) await queue.addBulk(flat.slice(i, i + 1000));
  } finally {
    await flows.close();
    await queue.close();
  }
  return (await store.info(id)) as BatchInfo;
}

/**
 * Stops a batch: no request of it starts from now on (queued jobs are removed, and a runner
 * skips any it still takes); the batch is `cancelled` once the requests already running ended
 * (their results are kept). Returns the batch, or null when there is none.
 */
export async function cancelBatch(redis: RedisClient, id: string, waitMs = 30_000): Promise<BatchInfo | null> {
  const store = new BatchStore(redis);
  const info = await store.info(id);
  if (!info) return null;
  if ((await store.cancel(id)) !== 'cancelling') return store.info(id);
  const queue = new Queue(BATCH_QUEUE, { connection: redis, prefix: BULLMQ_PREFIX });
  try {
    const ids = [
      ...Array.from({ length: info.counts.total }, (_, i) => requestJobId(id, i)),
      ...Array.from({ length: info.groups }, (_, k) => groupJobId(id, k)),
    ];
    // an active (locked) job cannot be removed: it ends by itself
    for (let i = 0; i < ids.length; i += 500)
      await Promise.all(ids.slice(i, i + 500).map((j) => queue.remove(j, { removeChildren: true }).catch(() => 0)));
    const until = Date.now() + waitMs;
    while (Date.now() < until && (await runningOf(queue, id)) > 0) await new Promise((r) => setTimeout(r, 100));
    if ((await runningOf(queue, id)) === 0) await store.settle(id);
  } finally {
    await queue.close();
  }
  return store.info(id);
}

/** The batch as `status` shows it; a cancelled batch whose last requests ended is settled here. */
export async function batchStatus(redis: RedisClient, id: string): Promise<BatchInfo | null> {
  const store = new BatchStore(redis);
  const info = await store.info(id);
  if (info?.status !== 'cancelling') return info;
  const queue = new Queue(BATCH_QUEUE, { connection: redis, prefix: BULLMQ_PREFIX });
  try {
    if ((await runningOf(queue, id)) === 0) await store.settle(id);
  } finally {
    await queue.close();
  }
  return store.info(id);
}

async function runningOf(queue: Queue, batchId: string): Promise<number> {
  const active = await queue.getActive();
  return active.filter((j) => (j.data as { batchId?: string }).batchId === batchId).length;
}
