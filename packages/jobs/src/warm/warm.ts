/**
 * `kcache warm`: prefills prompts on chosen workers through the router (each request pinned to
 * its worker with worker_id, one generated token), so the first real requests with those
 * prefixes hit the cache. Through the router, a warm-up request is hashed and salted like the
 * tenant's own requests (the API key names the tenant), and its KV events reach the index as
 * every request's do.
 */
import { type KcacheClient, KcacheError } from '@kcache/client';
import { type WarmPrompt, warmPlan } from './plan.js';

export interface WarmOptions {
  client: KcacheClient;
  prompts: readonly WarmPrompt[];
  /** Workers to prefill each prompt on (default 1). */
  replicas?: number;
  /** The model (default: the one the cluster serves). */
  model?: string;
  /** Prefills in flight at once (default 4). */
  concurrency?: number;
}

export interface WarmResult {
  model: string;
  workers: string[];
  prefills: number;
  /** Prompt tokens over all prefills, and how many of them were cached already. */
  promptTokens: number;
  cachedTokens: number;
}

export async function warm(o: WarmOptions): Promise<WarmResult> {
  const models = await o.client.listModels();
  const model = o.model ?? (models.length === 1 ? (models[0]?.id as string) : '');
  if (!model)
    throw new KcacheError('INVALID_ARGUMENT', `model: the cluster serves ${models.map((m) => m.id).join(', ') || 'no model'}; name one`);
  const m = models.find((x) => x.id === model);
  if (!m || m.workerIds.length === 0) throw new KcacheError('NOT_FOUND', `model: no live worker serves '${model}'`);
  const plan = warmPlan(o.prompts.length, m.workerIds, o.replicas ?? 1);
  const jobs = plan.flatMap((workers, i) => workers.map((workerId) => ({ prompt: o.prompts[i] as WarmPrompt, workerId })));
  const result: WarmResult = { model, workers: m.workerIds, prefills: 0, promptTokens: 0, cachedTokens: 0 };
  let next = 0;
  const lane = async () => {
    while (next < jobs.length) {
      const job = jobs[next++] as (typeof jobs)[number];
      const r = await o.client.generate({ ...job.prompt, model, workerId: job.workerId, maxTokens: 1, temperature: 0, ignoreEos: true });
      result.prefills++;
      result.promptTokens += r.usage.promptTokens;
      result.cachedTokens += r.usage.cachedTokens;
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.concurrency ?? 4, jobs.length) }, lane));
  return result;
}
