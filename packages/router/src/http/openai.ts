/**
 * OpenAI's HTTP API in kcache's terms (pure): request bodies to kcache.v1 GenerateRequests, the
 * worker's chunks and final message to OpenAI's completion objects and stream chunks, gRPC status
 * codes to HTTP statuses and OpenAI's error shape. Field names and defaults follow OpenAI's API
 * reference and vLLM's extensions (top_k, min_p, repetition_penalty, ignore_eos, ...).
 */
import * as grpc from '@grpc/grpc-js';
import type { GenerateRequest } from '@kcache/protocol';

/** The fields completions and chat completions share (OpenAI's, then vLLM's extensions). */
const SAMPLING_PROPERTIES = {
  model: { type: 'string' },
  max_tokens: { type: ['integer', 'null'], minimum: 1 },
  temperature: { type: ['number', 'null'], minimum: 0, maximum: 2 },
  top_p: { type: ['number', 'null'], exclusiveMinimum: 0, maximum: 1 },
  n: { type: ['integer', 'null'], minimum: 1, maximum: 16 },
  stream: { type: ['boolean', 'null'] },
  stream_options: { type: ['object', 'null'], properties: { include_usage: { type: 'boolean' } } },
  stop: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' }, maxItems: 4 }, { type: 'null' }] },
  seed: { type: ['integer', 'null'], minimum: 0 },
  presence_penalty: { type: ['number', 'null'], minimum: -2, maximum: 2 },
  frequency_penalty: { type: ['number', 'null'], minimum: -2, maximum: 2 },
  user: { type: 'string' },
  top_k: { type: ['integer', 'null'] },
  min_p: { type: ['number', 'null'], minimum: 0, maximum: 1 },
  repetition_penalty: { type: ['number', 'null'], exclusiveMinimum: 0 },
  min_tokens: { type: ['integer', 'null'], minimum: 0 },
  ignore_eos: { type: ['boolean', 'null'] },
  cache_salt: { type: 'string' },
  kcache_topn: { type: ['integer', 'null'], minimum: 1 },
  priority: { type: ['integer', 'null'], minimum: -1000000, maximum: 1000000 },
  return_token_ids: { type: ['boolean', 'null'] },
} as const;

/** The JSON schema Fastify validates `POST /v1/completions` bodies with (its errors name the field). */
export const COMPLETION_SCHEMA = {
  type: 'object',
  required: ['prompt'],
  properties: {
    ...SAMPLING_PROPERTIES,
    logprobs: { type: ['integer', 'null'], minimum: 0, maximum: 20 },
    prompt: {
      anyOf: [
        { type: 'string' },
        { type: 'array', items: { type: 'integer', minimum: 0 }, minItems: 1 },
        { type: 'array', items: { type: 'string' }, minItems: 1, maxItems: 1 },
      ],
    },
  },
} as const;

/** `POST /v1/chat/completions`: messages with text content (a string, or parts of type text). */
export const CHAT_SCHEMA = {
  type: 'object',
  required: ['messages'],
  properties: {
    ...SAMPLING_PROPERTIES,
    max_completion_tokens: { type: ['integer', 'null'], minimum: 1 },
    logprobs: { type: ['boolean', 'null'] },
    top_logprobs: { type: ['integer', 'null'], minimum: 0, maximum: 20 },
    messages: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['role', 'content'],
        properties: {
          role: { type: 'string', enum: ['system', 'developer', 'user', 'assistant'] },
          content: {
            anyOf: [
              { type: 'string' },
              {
                type: 'array',
                items: { type: 'object', required: ['type', 'text'], properties: { type: { const: 'text' }, text: { type: 'string' } } },
              },
            ],
          },
        },
      },
    },
  },
} as const;

export interface SamplingBody {
  model?: string;
  max_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  n?: number | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
  stop?: string | string[] | null;
  seed?: number | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  user?: string;
  top_k?: number | null;
  min_p?: number | null;
  repetition_penalty?: number | null;
  min_tokens?: number | null;
  ignore_eos?: boolean | null;
  cache_salt?: string;
  kcache_topn?: number | null;
  /** vLLM's: lower is scheduled first (0 by default; batch runners send higher). */
  priority?: number | null;
  /** vLLM's extension: each choice also carries its generated token ids. */
  return_token_ids?: boolean | null;
}

export interface CompletionBody extends SamplingBody {
  prompt: string | number[] | string[];
  /** Log probabilities of each chosen token and this many alternatives. */
  logprobs?: number | null;
}

export interface ChatBody extends SamplingBody {
  messages: { role: string; content: string | { type: 'text'; text: string }[] }[];
  max_completion_tokens?: number | null;
  logprobs?: boolean | null;
  top_logprobs?: number | null;
}

/** A message's text: a string, or its text parts joined. */
export const messageText = (c: ChatBody['messages'][number]['content']): string =>
  typeof c === 'string' ? c : c.map((p) => p.text).join('');

const opt = <T>(v: T | null | undefined): T | undefined => (v === null ? undefined : v);

/**
 * The requests of one completion: `n` of them, choice i seeded with seed + i (so the choices
 * differ yet the whole completion is reproducible); they share the prompt's cached blocks.
 * `maxTokens`: the body's, or the endpoint's default (16 for completions, as OpenAI; none for chat).
 */
function generateRequests(
  b: SamplingBody,
  input: Pick<GenerateRequest, 'text' | 'tokenIds'>,
  maxTokens: number | undefined,
  requestId: string,
  topLogprobs: number | null,
): GenerateRequest[] {
  const n = b.n ?? 1;
  return Array.from({ length: n }, (_, i) => ({
    ...input,
    model: b.model ?? '',
    requestId: n === 1 ? requestId : `${requestId}-${i}`,
    cacheSalt: b.cache_salt ?? '',
    kcacheTopn: opt(b.kcache_topn),
    priority: b.priority ?? 0,
    sampling: {
      temperature: opt(b.temperature),
      topP: opt(b.top_p),
      topK: opt(b.top_k),
      minP: opt(b.min_p),
      seed: b.seed === null || b.seed === undefined ? undefined : b.seed + i,
      presencePenalty: opt(b.presence_penalty),
      frequencyPenalty: opt(b.frequency_penalty),
      repetitionPenalty: opt(b.repetition_penalty),
      // the worker reports the chosen token's logprob with at least one alternative; the answer trims to what was asked
      logprobs: topLogprobs === null ? undefined : Math.max(1, topLogprobs),
    },
    stop: {
      maxTokens,
      minTokens: opt(b.min_tokens),
      stop: b.stop === null || b.stop === undefined ? [] : typeof b.stop === 'string' ? [b.stop] : b.stop,
      ignoreEos: b.ignore_eos ?? false,
    },
  }));
}

export function completionRequests(b: CompletionBody, requestId: string): GenerateRequest[] {
  const prompt = Array.isArray(b.prompt) && typeof b.prompt[0] === 'string' ? (b.prompt[0] as string) : b.prompt;
  const input = typeof prompt === 'string' ? { text: prompt } : { tokenIds: { ids: prompt as number[] } };
  return generateRequests(b, input, b.max_tokens ?? 16, requestId, b.logprobs ?? null);
}

/** A chat's requests, its prompt already rendered by the chat template and tokenized. */
export function chatRequests(b: ChatBody, promptIds: number[], requestId: string): GenerateRequest[] {
  const top = b.logprobs ? (b.top_logprobs ?? 0) : null;
  return generateRequests(b, { tokenIds: { ids: promptIds } }, b.max_completion_tokens ?? b.max_tokens ?? undefined, requestId, top);
}

/** OpenAI's finish reasons: the worker's "stop" and "length" as they are; nothing else reaches a client that got its answer. */
export const finishReason = (kcache: string): 'stop' | 'length' => (kcache === 'length' ? 'length' : 'stop');

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
}

/** Usage over the choices of one completion: the prompt counted once, completions summed. */
export function usage(finals: readonly { promptTokens: number; completionTokens: number; cachedTokens: number }[]): Usage {
  const prompt = finals[0]?.promptTokens ?? 0;
  const completion = finals.reduce((n, f) => n + f.completionTokens, 0);
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: finals[0]?.cachedTokens ?? 0 },
  };
}

const HTTP_STATUS: Partial<Record<grpc.status, [number, string]>> = {
  [grpc.status.INVALID_ARGUMENT]: [400, 'invalid_request_error'],
  [grpc.status.OUT_OF_RANGE]: [400, 'invalid_request_error'],
  [grpc.status.UNAUTHENTICATED]: [401, 'authentication_error'],
  [grpc.status.PERMISSION_DENIED]: [403, 'permission_error'],
  [grpc.status.NOT_FOUND]: [404, 'not_found_error'],
  [grpc.status.ALREADY_EXISTS]: [409, 'conflict_error'],
  [grpc.status.RESOURCE_EXHAUSTED]: [429, 'rate_limit_error'],
  [grpc.status.CANCELLED]: [499, 'cancelled'],
  [grpc.status.UNAVAILABLE]: [503, 'service_unavailable'],
  [grpc.status.DEADLINE_EXCEEDED]: [504, 'timeout'],
};

export interface OpenAIError {
  status: number;
  body: { error: { message: string; type: string; param: string | null; code: string } };
}

/** A gRPC status as OpenAI's error; `param` is the field a message names first (`text: ...` → prompt, `chat.messages` → messages). */
export function openaiError(code: grpc.status, message: string): OpenAIError {
  const [status, type] = HTTP_STATUS[code] ?? [500, 'internal_error'];
  const field = /^([a-z_.]+)(\[\d+\])?[.:]/.exec(message)?.[1];
  const param =
    field === undefined
      ? null
      : (({ text: 'prompt', token_ids: 'prompt', input: 'prompt', 'chat.messages': 'messages' } as Record<string, string>)[field] ?? field);
  return { status, body: { error: { message, type, param, code: grpc.status[code] ?? String(code) } } };
}

/** One generated token's log probability and its top alternatives, as the worker reports it. */
export interface TokenLogprobs {
  tokenId: number;
  logprob: number;
  top: { tokenId: number; logprob: number }[];
}

/** The completions API's logprobs object for `entries`, `top` alternatives each; `text(id)` renders a token. */
export function completionLogprobs(entries: readonly TokenLogprobs[], top: number, text: (id: number) => string, offset0 = 0) {
  const tokens = entries.map((e) => text(e.tokenId));
  const textOffset: number[] = [];
  let at = offset0;
  for (const t of tokens) {
    textOffset.push(at);
    at += t.length;
  }
  return {
    tokens,
    token_logprobs: entries.map((e) => e.logprob),
    top_logprobs: entries.map((e) => Object.fromEntries(e.top.slice(0, top).map((x) => [text(x.tokenId), x.logprob]))),
    text_offset: textOffset,
  };
}

/** The chat API's logprobs object (`content`, one entry a token, with its UTF-8 bytes). */
export function chatLogprobs(entries: readonly TokenLogprobs[], top: number, text: (id: number) => string) {
  const entry = (id: number, logprob: number) => {
    const token = text(id);
    return { token, logprob, bytes: [...Buffer.from(token, 'utf8')] };
  };
  return {
    content: entries.map((e) => ({
      ...entry(e.tokenId, e.logprob),
      top_logprobs: e.top.slice(0, top).map((x) => entry(x.tokenId, x.logprob)),
    })),
  };
}
