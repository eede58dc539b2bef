/**
 * A typed client for a kcache cluster: the public kcache.v1.Generate service a router serves
 * (@kcache/protocol's generate.proto) and grpc.health.v1.
 *
 *   const client = new KcacheClient('127.0.0.1:50051');
 *   for await (const e of client.stream({ text: 'Once upon a time', maxTokens: 32 })) ...
 *   const done = await client.generate({ text: 'Hello', maxTokens: 16 });
 *   const reply = await client.generate({ messages: [{ role: 'user', content: 'Hi' }], logprobs: 2 });
 */
import * as grpc from '@grpc/grpc-js';
import { type GenerateClient, type GenerateRequest, type GenerateResponse__Output, protos } from '@kcache/protocol';
import { service as healthService } from 'grpc-health-check';

/** Where `kcache up` puts its first router. */
export const DEFAULT_ADDRESS = '127.0.0.1:50051';

export interface GenerateOptions {
  /** A text prompt (the router tokenizes it, with BOS where the model's tokenizer adds one) or token ids taken as given. */
  text?: string;
  tokenIds?: number[];
  /** A conversation, rendered by the router with the model's chat template (the assistant's turn opened). */
  messages?: ChatMessage[];
  /** Report each generated token's log probability and this many most likely alternatives (0..20). */
  logprobs?: number;
  maxTokens?: number;
  minTokens?: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  seed?: number;
  repetitionPenalty?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  stop?: string[];
  stopTokenIds?: number[];
  ignoreEos?: boolean;
  cacheSalt?: string;
  model?: string;
  requestId?: string;
  /** KCache workers: a lower N for this request. */
  kcacheTopN?: number;
  /** Run on this worker only (cache warm-up); listModels names the workers. */
  workerId?: string;
  /** Lower is scheduled first on the worker (0, the default, is interactive; batch work runs higher). */
  priority?: number;
  /** Deadline for the whole request, honoured by router and worker. */
  deadlineMs?: number;
  signal?: AbortSignal;
}

export interface ChatMessage {
  role: string;
  content: string;
}

/** One generated token's log probability and the most likely alternatives at its step. */
export interface TokenLogprobs {
  tokenId: number;
  logprob: number;
  top: { tokenId: number; logprob: number }[];
}

export interface Usage {
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
}

export type GenerateEvent =
  | { type: 'chunk'; text: string; tokenIds: number[]; logprobs: TokenLogprobs[] }
  | { type: 'final'; finishReason: string; usage: Usage; workerId: string; text: string };

export interface Completion {
  text: string;
  tokenIds: number[];
  /** One entry per token in tokenIds when the request asked for logprobs, else empty. */
  logprobs: TokenLogprobs[];
  finishReason: string;
  usage: Usage;
  workerId: string;
}

export interface ModelInfo {
  id: string;
  workers: number;
  blockSize: number;
  /** The live workers serving it (what `workerId` pins a request to). */
  workerIds: string[];
}

/** A failed call: the gRPC status code name (INVALID_ARGUMENT, UNAVAILABLE, ...) and the server's message. */
export class KcacheError extends Error {
  override readonly name = 'KcacheError';
  constructor(
    readonly code: string,
    readonly details: string,
  ) {
    super(`${code}: ${details}`);
  }
}

type HealthStub = grpc.Client & {
  check(req: { service: string }, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, v: { status?: string }) => void): void;
};

function toError(e: grpc.ServiceError): KcacheError {
  return new KcacheError(grpc.status[e.code] ?? String(e.code), e.details || e.message);
}

function toRequest(o: GenerateOptions): GenerateRequest {
  const inputs = [o.text, o.tokenIds, o.messages].filter((x) => x !== undefined).length;
  if (inputs !== 1) throw new KcacheError('INVALID_ARGUMENT', 'give exactly one of text, tokenIds and messages');
  return {
    ...(o.text !== undefined
      ? { text: o.text }
      : o.tokenIds !== undefined
        ? { tokenIds: { ids: o.tokenIds } }
        : { chat: { messages: o.messages } }),
    sampling: {
      temperature: o.temperature,
      topK: o.topK,
      topP: o.topP,
      minP: o.minP,
      seed: o.seed,
      repetitionPenalty: o.repetitionPenalty,
      presencePenalty: o.presencePenalty,
      frequencyPenalty: o.frequencyPenalty,
      logprobs: o.logprobs,
    },
    stop: {
      maxTokens: o.maxTokens,
      minTokens: o.minTokens,
      stop: o.stop ?? [],
      stopTokenIds: o.stopTokenIds ?? [],
      ignoreEos: o.ignoreEos ?? false,
    },
    cacheSalt: o.cacheSalt ?? '',
    model: o.model ?? '',
    requestId: o.requestId ?? '',
    kcacheTopn: o.kcacheTopN,
    workerId: o.workerId ?? '',
    priority: o.priority ?? 0,
  };
}

export interface ClientOptions {
  /** Sent as `authorization: Bearer <key>` on every call (a router started with API keys wants one). */
  apiKey?: string;
}

export class KcacheClient {
  private readonly stub: GenerateClient;
  private readonly health: HealthStub;
  private readonly metadata = new grpc.Metadata();

  constructor(
    readonly address: string = DEFAULT_ADDRESS,
    o: ClientOptions = {},
  ) {
    // per-call metadata rather than call credentials: grpc-js sends those only over TLS, and a
    // router on loopback is plaintext
    if (o.apiKey) this.metadata.set('authorization', `Bearer ${o.apiKey}`);
    this.stub = new (protos().v1.Generate)(address, grpc.credentials.createInsecure());
    const Health = grpc.makeGenericClientConstructor(healthService, 'Health');
    this.health = new Health(address, grpc.credentials.createInsecure()) as unknown as HealthStub;
  }

  /** Streams a generation: chunks as the worker produces them, then one final event. */
  async *stream(o: GenerateOptions): AsyncGenerator<GenerateEvent> {
    const call = this.stub.Generate(toRequest(o), this.metadata, o.deadlineMs ? { deadline: Date.now() + o.deadlineMs } : {});
    const onAbort = () => call.cancel();
    o.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const m of call as AsyncIterable<GenerateResponse__Output>) {
        if (m.chunk)
          yield {
            type: 'chunk',
            text: m.chunk.text ?? '',
            tokenIds: m.chunk.tokenIds ?? [],
            logprobs: (m.chunk.logprobs ?? []).map((l) => ({
              tokenId: l.tokenId ?? 0,
              logprob: l.logprob ?? 0,
              top: (l.top ?? []).map((t) => ({ tokenId: t.tokenId ?? 0, logprob: t.logprob ?? 0 })),
            })),
          };
        if (m.final)
          yield {
            type: 'final',
            finishReason: m.final.finishReason ?? '',
            usage: { promptTokens: 0, completionTokens: 0, cachedTokens: 0, ...m.final.usage },
            workerId: m.final.workerId ?? '',
            text: m.final.text ?? '',
          };
      }
    } catch (e) {
      throw (e as grpc.ServiceError).code !== undefined ? toError(e as grpc.ServiceError) : e;
    } finally {
      o.signal?.removeEventListener('abort', onAbort);
    }
  }

  /** The whole generation; onText sees the text as it streams. */
  async generate(o: GenerateOptions, onText?: (text: string) => void): Promise<Completion> {
    const out: Completion = {
      text: '',
      tokenIds: [],
      logprobs: [],
      finishReason: '',
      usage: { promptTokens: 0, completionTokens: 0, cachedTokens: 0 },
      workerId: '',
    };
    for await (const e of this.stream(o)) {
      if (e.type === 'chunk') {
        out.text += e.text;
        out.tokenIds.push(...e.tokenIds);
        out.logprobs.push(...e.logprobs);
        if (e.text) onText?.(e.text);
      } else {
        out.text += e.text;
        if (e.text) onText?.(e.text);
        out.finishReason = e.finishReason;
        out.usage = e.usage;
        out.workerId = e.workerId;
      }
    }
    return out;
  }

  tokenize(text: string, model = ''): Promise<number[]> {
    return new Promise((res, rej) =>
      this.stub.Tokenize({ text, model }, this.metadata, { deadline: Date.now() + 10_000 }, (e, v) =>
        e ? rej(toError(e)) : res(v?.tokenIds ?? []),
      ),
    );
  }

  listModels(): Promise<ModelInfo[]> {
    return new Promise((res, rej) =>
      this.stub.ListModels({}, this.metadata, { deadline: Date.now() + 10_000 }, (e, v) =>
        e
          ? rej(toError(e))
          : res(
              (v?.models ?? []).map((m) => ({
                id: m.id ?? '',
                workers: m.workers ?? 0,
                blockSize: m.blockSize ?? 0,
                workerIds: m.workerIds ?? [],
              })),
            ),
      ),
    );
  }

  /** grpc.health.v1 status of the server ('' asks for the whole server). */
  checkHealth(service = '', timeoutMs = 2000): Promise<string> {
    return new Promise((res, rej) =>
      this.health.check({ service }, { deadline: Date.now() + timeoutMs }, (e, v) => (e ? rej(toError(e)) : res(String(v.status)))),
    );
  }

  close(): void {
    this.stub.close();
    this.health.close();
  }
}
