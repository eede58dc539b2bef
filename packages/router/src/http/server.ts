/**
 * The router's HTTP front door: OpenAI's API on Fastify (JSON-schema validation of bodies, SSE
 * streaming on the raw response). Every request goes through the same routing core as
 * kcache.v1.Generate (`serve`, with an HTTP ResponseSink per choice): no second path.
 *
 *   POST /v1/completions   POST /v1/chat/completions   GET /v1/models   GET /health
 */
import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import type { RedisClient } from '@kcache/block-index';
import type { ChatMessage } from '@kcache/models';
import type { GenerateRequest, GenerateRequest__Output, GenerateResponse } from '@kcache/protocol';
import Fastify, { type FastifyError, type FastifyReply, type FastifyRequest } from 'fastify';
import type { ResponseSink } from '../sink.js';
import { registerBatchApi } from './batches.js';
import {
  CHAT_SCHEMA,
  type ChatBody,
  COMPLETION_SCHEMA,
  type CompletionBody,
  chatLogprobs,
  chatRequests,
  completionLogprobs,
  completionRequests,
  finishReason,
  messageText,
  type OpenAIError,
  openaiError,
  type SamplingBody,
  type TokenLogprobs,
  usage,
} from './openai.js';

export type Serve = (r: GenerateRequest__Output, authorization: readonly string[], sink: ResponseSink) => Promise<void>;

export interface HttpOptions {
  host: string;
  port: number;
  serve: Serve;
  /** The models the cluster serves now. */
  models(): string[];
  /** The caller's tenant ('' without API keys); throws an error with a gRPC `code` when the key is missing or wrong. */
  authenticate(authorization: readonly string[]): string;
  /**
   * A chat's prompt: the model's chat template rendered for `messages` and tokenized as Hugging
   * Face's apply_chat_template does (BOS only where the template puts it). Throws an error with a
   * gRPC `code` (no such model, no template, not authenticated).
   */
  chatPrompt(model: string, messages: ChatMessage[], authorization: readonly string[]): Promise<{ modelId: string; ids: number[] }>;
  /** One token as text, for logprobs (`token_id:N` where the model has no tokenizer, as vLLM writes it). */
  tokenText(model: string, tokenId: number): string;
  /** The cluster's Redis for /v1/files and /v1/batches (a connection BullMQ may use); none: no batch API. */
  batchRedis?: RedisClient;
}

export interface HttpFrontDoor {
  port: number;
  close(): Promise<void>;
}

interface ChoiceResult {
  text: string;
  tokenIds: number[];
  logprobs: TokenLogprobs[];
  finish: string;
  final?: { promptTokens: number; completionTokens: number; cachedTokens: number; workerId: string };
  error?: OpenAIError;
}

/**
 * One choice's sink: passes chunks to `onText` and keeps the final message; `collect` also keeps
 * the whole text, token ids and logprobs (a response that is not streamed).
 */
function choiceSink(
  raw: ServerResponse,
  collect: boolean,
  onText: (text: string, tokenIds: readonly number[], logprobs: readonly TokenLogprobs[]) => void,
): { sink: ResponseSink; result: ChoiceResult } {
  const result: ChoiceResult = { text: '', tokenIds: [], logprobs: [], finish: '' };
  const listeners = new Set<() => void>();
  let gone = false;
  raw.on('close', () => {
    if (raw.writableFinished) return;
    gone = true; // the client disconnected before its answer: cancel the request
    for (const f of listeners) f();
  });
  const sink: ResponseSink = {
    get cancelled() {
      return gone;
    },
    onCancel(f) {
      listeners.add(f);
      return () => listeners.delete(f);
    },
    deadline: Number.POSITIVE_INFINITY,
    write(m: GenerateResponse) {
      if (m.chunk) {
        const ids = m.chunk.tokenIds ?? [];
        const lp: TokenLogprobs[] = m.chunk.logprobs?.length
          ? m.chunk.logprobs.map((l) => ({
              tokenId: Number(l.tokenId ?? 0),
              logprob: Number(l.logprob ?? 0),
              top: (l.top ?? []).map((t) => ({ tokenId: Number(t.tokenId ?? 0), logprob: Number(t.logprob ?? 0) })),
            }))
          : [];
        if (collect) {
          result.tokenIds.push(...ids);
          result.logprobs.push(...lp);
          if (m.chunk.text) result.text += m.chunk.text;
        }
        if (m.chunk.text || ids.length > 0) onText(m.chunk.text ?? '', ids, lp);
      }
      if (m.final) {
        if (m.final.text) {
          if (collect) result.text += m.final.text;
          onText(m.final.text, [], []);
        }
        result.finish = finishReason(m.final.finishReason ?? '');
        result.final = {
          promptTokens: Number(m.final.usage?.promptTokens ?? 0),
          completionTokens: Number(m.final.usage?.completionTokens ?? 0),
          cachedTokens: Number(m.final.usage?.cachedTokens ?? 0),
          workerId: m.final.workerId ?? '',
        };
      }
    },
    end() {},
    fail(code, details) {
      result.error = openaiError(code, details);
    },
  };
  return { sink, result };
}

const asOutput = (r: GenerateRequest) => r as unknown as GenerateRequest__Output;

export async function startHttp(o: HttpOptions): Promise<HttpFrontDoor> {
  // a prompt may be long: the router's own limits (bytes, context) apply after parsing
  const app = Fastify({ bodyLimit: 64 * 1024 * 1024 });
  const authorization = (h: string | undefined) => (h === undefined ? [] : [h]);
  const sendError = (reply: FastifyReply, e: OpenAIError) => reply.code(e.status).send(e.body);

  app.setErrorHandler((err: FastifyError, _req, reply) => {
    if (err.validation) {
      const v = err.validation[0];
      const field =
        (v?.instancePath.replace(/^\//, '').split('/')[0] || (v?.params as { missingProperty?: string })?.missingProperty) ?? null;
      return reply.code(400).send({
        error: {
          message: `${field ?? 'body'}: ${v?.message ?? err.message}`,
          type: 'invalid_request_error',
          param: field,
          code: 'INVALID_ARGUMENT',
        },
      });
    }
    const status = err.statusCode ?? 500;
    return reply.code(status).send({
      error: {
        message: err.message,
        type: status < 500 ? 'invalid_request_error' : 'internal_error',
        param: null,
        code: err.code ?? null,
      },
    });
  });

  if (o.batchRedis)
    await registerBatchApi(app, {
      redis: o.batchRedis,
      tenantOf: (req) => o.authenticate(authorization(req.headers.authorization)),
      fail: (reply, e) => sendError(reply, openaiError((e as { code?: grpc.status }).code ?? grpc.status.INTERNAL, (e as Error).message)),
    });

  app.get('/health', async (_req, reply) =>
    reply.code(o.models().length > 0 ? 200 : 503).send({ status: o.models().length > 0 ? 'ok' : 'no workers' }),
  );

  app.get('/v1/models', async (req, reply) => {
    try {
      o.authenticate(authorization(req.headers.authorization));
    } catch (e) {
      return sendError(reply, openaiError((e as { code?: grpc.status }).code ?? grpc.status.INTERNAL, (e as Error).message));
    }
    const created = Math.floor(Date.now() / 1000);
    return { object: 'list', data: o.models().map((id) => ({ id, object: 'model', created, owned_by: 'kcache' })) };
  });

  /** Runs a completion's choices and answers, whole or as server-sent events, in the endpoint's shape. */
  const answer = async (
    req: FastifyRequest,
    reply: FastifyReply,
    b: SamplingBody,
    requests: GenerateRequest[],
    kind: 'completion' | 'chat',
    id: string,
    model: string,
    /** Alternatives per token when the body asked for logprobs; null: none. */
    top: number | null,
  ) => {
    const created = Math.floor(Date.now() / 1000);
    const text = (tokenId: number) => o.tokenText(model, tokenId);
    const logprobsOf = (entries: readonly TokenLogprobs[], offset0 = 0) =>
      top === null ? null : kind === 'chat' ? chatLogprobs(entries, top, text) : completionLogprobs(entries, top, text, offset0);
    const auth = authorization(req.headers.authorization);
    const raw = reply.raw;
    const tokenIds = (ids: readonly number[]) => (b.return_token_ids ? { token_ids: ids } : {});
    if (!b.stream) {
      const choices = requests.map(() => choiceSink(raw, true, () => {}));
      await Promise.all(requests.map((r, i) => o.serve(asOutput(r), auth, (choices[i] as { sink: ResponseSink }).sink)));
      const failed = choices.find((c) => c.result.error)?.result.error;
      if (failed) return sendError(reply, failed);
      const results = choices.map((c) => c.result);
      reply.header('x-kcache-worker', [...new Set(results.map((r) => r.final?.workerId ?? ''))].join(','));
      return {
        id,
        object: kind === 'chat' ? 'chat.completion' : 'text_completion',
        created,
        model,
        choices: results.map((r, index) =>
          kind === 'chat'
            ? {
                index,
                message: { role: 'assistant', content: r.text },
                logprobs: logprobsOf(r.logprobs),
                finish_reason: r.finish,
                ...tokenIds(r.tokenIds),
              }
            : { index, text: r.text, logprobs: logprobsOf(r.logprobs), finish_reason: r.finish, ...tokenIds(r.tokenIds) },
        ),
        usage: usage(results.flatMap((r) => (r.final ? [r.final] : []))),
      };
    }
    // streamed: headers go out with the first text, so an early error still gets its status
    reply.hijack();
    let open = false;
    // events of one turn of the event loop (a choice's tokens that arrived together, n choices'
    // tokens of one engine step) leave in one write
    let corked = false;
    const send = (text: string) => {
      if (!corked) {
        corked = true;
        raw.cork();
        setImmediate(() => {
          corked = false;
          raw.uncork();
        });
      }
      raw.write(text);
    };
    const event = (data: unknown) => send(`data: ${JSON.stringify(data)}\n\n`);
    const start = () => {
      if (open) return;
      open = true;
      raw.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    };
    const object = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    // what every chunk event of this response starts with, serialized once (a token's event is
    // this, its one choice, and the close)
    const head = `data: {"id":${JSON.stringify(id)},"object":"${object}","created":${created},"model":${JSON.stringify(model)},"choices":[`;
    const began = new Set<number>();
    const sent = new Map<number, number>(); // text length sent per choice (completions' text_offset)
    const chunk = (index: number, piece: string, ids: readonly number[], finish: string | null, lp: readonly TokenLogprobs[] = []) => {
      if (piece === '' && finish === null && !b.return_token_ids && (top === null || lp.length === 0)) return;
      const offset = sent.get(index) ?? 0;
      sent.set(index, offset + piece.length);
      const logprobs = lp.length > 0 ? logprobsOf(lp, offset) : null;
      start();
      let choice: Record<string, unknown>;
      if (kind === 'chat') {
        // the first delta of a choice names the role, as OpenAI's do
        const delta = began.has(index) ? (piece ? { content: piece } : {}) : { role: 'assistant', content: piece };
        began.add(index);
        choice = { index, delta, logprobs, finish_reason: finish, ...tokenIds(ids) };
      } else choice = { index, text: piece, logprobs, finish_reason: finish, ...tokenIds(ids) };
      send(`${head}${JSON.stringify(choice)}]}\n\n`);
    };
    const choices = requests.map((_, index) => choiceSink(raw, false, (piece, ids, lp) => chunk(index, piece, ids, null, lp)));
    await Promise.all(
      requests.map(async (r, index) => {
        const c = choices[index] as (typeof choices)[number];
        await o.serve(asOutput(r), auth, c.sink);
        if (!c.result.error && !c.sink.cancelled) chunk(index, '', [], c.result.finish);
      }),
    );
    if (raw.destroyed) return;
    const failed = choices.find((c) => c.result.error)?.result.error;
    if (failed && !open) {
      raw.writeHead(failed.status, { 'content-type': 'application/json' });
      raw.end(JSON.stringify(failed.body));
      return;
    }
    start();
    if (failed) event(failed.body);
    else if (b.stream_options?.include_usage)
      event({ id, object, created, model, choices: [], usage: usage(choices.flatMap((c) => (c.result.final ? [c.result.final] : []))) });
    raw.end('data: [DONE]\n\n');
  };

  /** The body's model, or the one the cluster serves. */
  const modelOf = (b: SamplingBody) => b.model || (o.models().length === 1 ? (o.models()[0] as string) : '');

  app.post<{ Body: CompletionBody }>('/v1/completions', { schema: { body: COMPLETION_SCHEMA } }, async (req, reply) => {
    const id = `cmpl-${randomUUID().replaceAll('-', '')}`;
    const b = req.body;
    return answer(req, reply, b, completionRequests(b, id), 'completion', id, modelOf(b), b.logprobs ?? null);
  });

  app.post<{ Body: ChatBody }>('/v1/chat/completions', { schema: { body: CHAT_SCHEMA } }, async (req, reply) => {
    const b = req.body;
    const id = `chatcmpl-${randomUUID().replaceAll('-', '')}`;
    let prompt: { modelId: string; ids: number[] };
    try {
      prompt = await o.chatPrompt(
        b.model ?? '',
        b.messages.map((m) => ({ role: m.role, content: messageText(m.content) })),
        authorization(req.headers.authorization),
      );
    } catch (e) {
      return sendError(reply, openaiError((e as { code?: grpc.status }).code ?? grpc.status.INTERNAL, (e as Error).message));
    }
    const withModel = { ...b, model: prompt.modelId };
    const top = b.logprobs ? (b.top_logprobs ?? 0) : null;
    return answer(req, reply, withModel, chatRequests(withModel, prompt.ids, id), 'chat', id, prompt.modelId, top);
  });

  const address = await app.listen({ host: o.host, port: o.port });
  return {
    port: Number(new URL(address).port),
    close: () => app.close(),
  };
}
