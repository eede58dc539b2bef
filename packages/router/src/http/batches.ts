/**
 * OpenAI's Files and Batches endpoints on the router, over the same batches as `kcache batch`
 * (@kcache/jobs, BullMQ in the cluster's Redis; the batch runners execute them):
 *
 *   POST /v1/files (multipart: purpose=batch, file)   GET /v1/files/{id}   GET /v1/files/{id}/content
 *   POST /v1/batches   GET /v1/batches   GET /v1/batches/{id}   POST /v1/batches/{id}/cancel
 *
 * Files and batches belong to the tenant whose API key made them: another tenant gets 404.
 * A batch's output file is `file-out-<batch id>`: its results so far, in input order.
 */
import { randomUUID } from 'node:crypto';
import multipart from '@fastify/multipart';
import type { RedisClient } from '@kcache/block-index';
import { BATCH_URLS, type BatchInfo, BatchInputError, BatchStore, batchStatus, cancelBatch, submitBatch } from '@kcache/jobs';
import { fileKey } from '@kcache/protocol';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

/** Largest file /v1/files takes (OpenAI's batch input limit is 200 MB; Redis keeps it whole). */
const MAX_FILE_BYTES = 100 * 1024 * 1024;
const OUTPUT_PREFIX = 'file-out-';

export interface BatchApiOptions {
  /** A connection BullMQ may use (maxRetriesPerRequest: null). */
  redis: RedisClient;
  /** The caller's tenant id ('' without API keys); throws an error with an HTTP-mapped gRPC code otherwise. */
  tenantOf(req: FastifyRequest): string;
  /** Sends an error thrown by tenantOf in OpenAI's shape. */
  fail(reply: FastifyReply, e: unknown): FastifyReply;
}

const error = (reply: FastifyReply, status: number, message: string, param: string | null = null) =>
  reply.code(status).send({
    error: { message, type: status === 404 ? 'not_found_error' : 'invalid_request_error', param, code: null },
  });

/** OpenAI's Batch object for one of ours. */
function batchObject(b: BatchInfo): Record<string, unknown> {
  const s = (ms: number | null) => (ms === null ? null : Math.floor(ms / 1000));
  const finished = b.status === 'completed' || b.status === 'cancelled';
  return {
    id: b.id,
    object: 'batch',
    endpoint: b.endpoint || null,
    errors: null,
    input_file_id: b.inputName,
    completion_window: '24h',
    status: b.status,
    output_file_id: finished || b.counts.completed + b.counts.failed > 0 ? `${OUTPUT_PREFIX}${b.id}` : null,
    error_file_id: null,
    created_at: s(b.createdAt),
    in_progress_at: s(b.createdAt),
    expires_at: s(b.createdAt + 24 * 3600 * 1000),
    completed_at: b.status === 'completed' ? s(b.completedAt) : null,
    cancelling_at: b.cancelledAt === null ? null : s(b.cancelledAt),
    cancelled_at: b.status === 'cancelled' ? s(b.completedAt) : null,
    failed_at: null,
    expired_at: null,
    request_counts: b.counts,
    metadata: null,
  };
}

export async function registerBatchApi(app: FastifyInstance, o: BatchApiOptions): Promise<void> {
  await app.register(async (scope) => routes(scope, o));
}

/** The routes, in their own Fastify scope: its hook authenticates every call before a body is read. */
async function routes(app: FastifyInstance, o: BatchApiOptions): Promise<void> {
  await app.register(multipart, { limits: { fileSize: MAX_FILE_BYTES, files: 1 } });
  const store = new BatchStore(o.redis);
  const tenants = new WeakMap<object, string>();
  app.addHook('onRequest', async (req, reply) => {
    try {
      tenants.set(req.raw, o.tenantOf(req));
    } catch (e) {
      return o.fail(reply, e);
    }
  });

  /** The batch if the caller's tenant owns it, else null (404: another tenant's batches do not exist for it). */
  const ownBatch = async (id: string, tenant: string) => {
    const b = await batchStatus(o.redis, id);
    return b && b.tenant === tenant ? b : null;
  };

  app.post('/v1/files', async (req, reply) => {
    const tenant = tenants.get(req.raw) as string;
    if (!req.isMultipart()) return error(reply, 400, 'file: send multipart/form-data with the fields purpose and file', 'file');
    let content: Buffer | null = null;
    let filename = 'file.jsonl';
    let purpose: string | null = null;
    for await (const part of req.parts()) {
      if (part.type === 'file') {
        filename = part.filename || filename;
        content = await part.toBuffer();
      } else if (part.fieldname === 'purpose') purpose = String(part.value);
    }
    if (purpose !== 'batch') return error(reply, 400, `purpose: must be "batch", got ${JSON.stringify(purpose)}`, 'purpose');
    if (!content) return error(reply, 400, 'file: required', 'file');
    const id = `file-${randomUUID().replaceAll('-', '')}`;
    const createdAt = Math.floor(Date.now() / 1000);
    await o.redis.hset(fileKey(id), { tenant, filename, purpose, bytes: content.length, created_at: createdAt, content });
    return { id, object: 'file', bytes: content.length, created_at: createdAt, filename, purpose };
  });

  app.get<{ Params: { id: string } }>('/v1/files/:id', async (req, reply) => {
    const tenant = tenants.get(req.raw) as string;
    const id = req.params.id;
    if (id.startsWith(OUTPUT_PREFIX)) {
      const b = await ownBatch(id.slice(OUTPUT_PREFIX.length), tenant);
      if (!b) return error(reply, 404, `file ${id} does not exist`, 'file_id');
      return {
        id,
        object: 'file',
        bytes: null,
        created_at: Math.floor(b.createdAt / 1000),
        filename: `${b.id}_output.jsonl`,
        purpose: 'batch_output',
      };
    }
    const f = await o.redis.hmget(fileKey(id), 'tenant', 'filename', 'purpose', 'bytes', 'created_at');
    if (f[0] === null || f[0] !== tenant) return error(reply, 404, `file ${id} does not exist`, 'file_id');
    return { id, object: 'file', bytes: Number(f[3]), created_at: Number(f[4]), filename: f[1], purpose: f[2] };
  });

  app.get<{ Params: { id: string } }>('/v1/files/:id/content', async (req, reply) => {
    const tenant = tenants.get(req.raw) as string;
    const id = req.params.id;
    if (id.startsWith(OUTPUT_PREFIX)) {
      const b = await ownBatch(id.slice(OUTPUT_PREFIX.length), tenant);
      if (!b) return error(reply, 404, `file ${id} does not exist`, 'file_id');
      let out = '';
      for await (const line of store.results(b.id)) out += `${line}\n`;
      return reply.type('application/jsonl').send(out);
    }
    const [owner, content] = await o.redis.hmget(fileKey(id), 'tenant', 'content');
    if (owner === null || owner !== tenant) return error(reply, 404, `file ${id} does not exist`, 'file_id');
    return reply.type('application/jsonl').send(content ?? '');
  });

  app.post<{ Body: { input_file_id?: unknown; endpoint?: unknown; completion_window?: unknown } }>('/v1/batches', async (req, reply) => {
    const tenant = tenants.get(req.raw) as string;
    const b = req.body ?? {};
    if (typeof b.input_file_id !== 'string') return error(reply, 400, 'input_file_id: required', 'input_file_id');
    if (!(BATCH_URLS as readonly unknown[]).includes(b.endpoint))
      return error(reply, 400, `endpoint: must be one of ${BATCH_URLS.join(', ')}`, 'endpoint');
    if (b.completion_window !== undefined && b.completion_window !== '24h')
      return error(reply, 400, 'completion_window: must be "24h"', 'completion_window');
    const [owner, content] = await o.redis.hmget(fileKey(b.input_file_id), 'tenant', 'content');
    if (owner === null || owner !== tenant) return error(reply, 404, `file ${b.input_file_id} does not exist`, 'input_file_id');
    let info: BatchInfo;
    try {
      info = await submitBatch(o.redis, content ?? '', { inputName: b.input_file_id, tenant, endpoint: b.endpoint as string });
    } catch (e) {
      if (e instanceof BatchInputError) return error(reply, 400, `input_file_id: ${e.message}`, 'input_file_id');
      throw e;
    }
    return batchObject(info);
  });

  app.get<{ Querystring: { limit?: string } }>('/v1/batches', async (req) => {
    const tenant = tenants.get(req.raw) as string;
    const limit = Math.min(100, Math.max(1, Number(req.query.limit ?? 20) || 20));
    const data: Record<string, unknown>[] = [];
    for (const id of await store.list(1000)) {
      if (data.length >= limit) break;
      const info = await store.info(id);
      if (info && info.tenant === tenant) data.push(batchObject(info));
    }
    return { object: 'list', data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: false };
  });

  app.get<{ Params: { id: string } }>('/v1/batches/:id', async (req, reply) => {
    const tenant = tenants.get(req.raw) as string;
    const b = await ownBatch(req.params.id, tenant);
    if (!b) return error(reply, 404, `batch ${req.params.id} does not exist`, 'batch_id');
    return batchObject(b);
  });

  app.post<{ Params: { id: string } }>('/v1/batches/:id/cancel', async (req, reply) => {
    const tenant = tenants.get(req.raw) as string;
    if (!(await ownBatch(req.params.id, tenant))) return error(reply, 404, `batch ${req.params.id} does not exist`, 'batch_id');
    // answer while it is cancelling: its running requests end by themselves (status settles later)
    const b = (await cancelBatch(o.redis, req.params.id, 0)) as BatchInfo;
    return batchObject(b);
  });
}
