/**
 * The worker's serving loop: exactly one engine step in flight; between steps it applies aborts,
 * asks the scheduler for the next batch, runs it, samples each sequence that reached its last
 * token, checks stop conditions and streams the new tokens to each request's sink.
 */
import { type Engine, validateSampling } from '@kcache/engine';
import type { WorkerLoad } from '@kcache/protocol';
import { WorkerError } from './errors.js';
import type { WorkerMetrics } from './metrics.js';
import { StreamDetokenizer } from './output/detokenizer.js';
import { RequestSampler, type RequestSampling, type TokenLogprobs, validatePenalties } from './sampling/request-sampler.js';
import type { BlockManager } from './scheduler/block-manager.js';
import { SchedRequest, type Scheduler } from './scheduler/scheduler.js';

export interface StopParams {
  maxTokens: number | null;
  minTokens: number;
  stopTokenIds: number[];
  stop: string[];
  ignoreEos: boolean;
}

export interface GenerateInput {
  requestId: string;
  tokenIds: number[];
  sampling: RequestSampling;
  stop: StopParams;
  cacheSalt: string;
  /** KCache: a lower N for this request's decode steps (null: the worker's). */
  kcacheTopN?: number | null;
  /** Lower is scheduled first (0: interactive). */
  priority?: number;
  /** The router that sent it (its load report counts requests per router). */
  origin?: string;
  /**
   * A request another worker started: the last `generated` of tokenIds are output already sent to
   * the client as `textLen` characters. Generation continues exactly as that worker's would have.
   */
  resume?: { generated: number; textLen: number };
}

export type FinishReason = 'stop' | 'length' | 'abort';

export interface Usage {
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
}

export interface StreamSink {
  chunk(c: { tokenIds: number[]; text: string; logprobs: TokenLogprobs[] }): void;
  final(f: { finishReason: FinishReason; usage: Usage; text: string }): void;
}

interface Live {
  req: SchedRequest;
  input: GenerateInput;
  sink: StreamSink;
  sampler: RequestSampler;
  detok: StreamDetokenizer;
  maxTokens: number;
  eos: Set<number>;
  arrival: number;
  firstStep: number | null;
  lastToken: number | null;
  aborted: boolean;
}

export interface LoopConfig {
  maxWaiting: number;
  /** The model's name in block hashes (the served name: every worker serving it hashes alike; default the model's id). */
  modelName?: string;
  /** KV tiers whose usage is reported (both hold the same blocks: KCache splits each block's K and V). */
  tiers: readonly string[];
  /** KCache workers: the largest N a request may ask for (null: full attention, kcache_topn ignored). */
  kcacheTopN: number | null;
  /**
   * Send a step's stream messages while the next step computes, instead of before it starts.
   * Worth it only when a core is free for the JavaScript thread: when the engine's threads take
   * every core, the overlap preempts them and each step's barrier waits (measured: slower).
   */
  overlapOutput: boolean;
}

export class EngineLoop {
  private readonly live = new Map<string, Live>();
  private wake: (() => void) | null = null;
  private stopped = false;
  private readonly done: Promise<void>;
  private idleWaiters: (() => void)[] = [];
  /** Stream messages of the last step, sent once the next step is running (overlapOutput). */
  private pending: (() => void)[] = [];
  /** Work that must not overlap a step (copying KV blocks out for a peer), run before the next one. */
  private tasks: (() => void)[] = [];
  /** EMA of seconds per token of steps that prefill (what computing a prefix costs here). */
  private prefillSpt: number | null = null;

  constructor(
    private readonly engine: Engine,
    private readonly bm: BlockManager,
    private readonly scheduler: Scheduler,
    private readonly metrics: WorkerMetrics,
    private readonly config: LoopConfig,
  ) {
    this.done = this.run();
  }

  get inFlight(): number {
    return this.live.size;
  }

  /** Validates and queues a request; throws WorkerError naming the bad field. */
  submit(input: GenerateInput, sink: StreamSink): void {
    const { vocabSize, maxSeqLen } = this.engine.model.config;
    const ids = input.tokenIds;
    const bad = (m: string) => new WorkerError('INVALID_ARGUMENT', m);
    if (this.stopped) throw new WorkerError('UNAVAILABLE', 'the worker is shutting down');
    if (ids.length === 0) throw bad('token_ids: at least one token is required');
    const outside = ids.findIndex((t) => !Number.isInteger(t) || t < 0 || t >= vocabSize);
    if (outside >= 0) throw bad(`token_ids[${outside}] = ${ids[outside]} is outside the vocabulary (size ${vocabSize})`);
    if (ids.length >= maxSeqLen) throw bad(`token_ids: a prompt of ${ids.length} tokens leaves no room in the context length ${maxSeqLen}`);
    const resumed = input.resume?.generated ?? 0;
    if (!Number.isInteger(resumed) || resumed < 0 || resumed >= ids.length)
      throw bad(`resume_generated: ${resumed} must leave at least one prompt token of the ${ids.length} token_ids`);
    const promptLen = ids.length - resumed;
    const room = maxSeqLen - promptLen;
    const { maxTokens: asked, minTokens } = input.stop;
    if (asked !== null && asked > room) {
      throw bad(`max_tokens: ${asked} exceeds the ${room} tokens left in the context length ${maxSeqLen} after the prompt`);
    }
    if (asked === 0) throw bad('max_tokens must be at least 1');
    const maxTokens = asked ?? room;
    if (minTokens > maxTokens) throw bad(`min_tokens: ${minTokens} exceeds max_tokens ${maxTokens}`);
    if (resumed >= maxTokens) throw bad(`resume_generated: ${resumed} tokens already reach max_tokens ${maxTokens}`);
    const samplingError = validateSampling(input.sampling) ?? validatePenalties(input.sampling);
    if (samplingError) throw bad(samplingError);
    const maxN = this.config.kcacheTopN;
    const topN = input.kcacheTopN;
    if (topN !== null && topN !== undefined && maxN !== null && (!Number.isInteger(topN) || topN < 1 || topN > maxN))
      throw bad(`kcache_topn: ${topN} must be in 1..${maxN} (a request may lower this worker's N, not raise it)`);
    const blocks = Math.ceil((promptLen + maxTokens) / this.bm.blockSize);
    if (blocks > this.bm.numBlocks) {
      throw new WorkerError(
        'RESOURCE_EXHAUSTED',
        `max_tokens: the prompt plus ${maxTokens} tokens needs ${blocks} KV blocks but this worker has ${this.bm.numBlocks}`,
      );
    }
    if (this.live.has(input.requestId)) throw new WorkerError('ALREADY_EXISTS', `request_id: ${input.requestId} is already in flight`);
    if (this.scheduler.waiting.length >= this.config.maxWaiting) {
      throw new WorkerError('RESOURCE_EXHAUSTED', `the queue is full (${this.config.maxWaiting} waiting requests)`);
    }
    const eos = new Set(input.stop.stopTokenIds);
    if (!input.stop.ignoreEos) for (const e of this.engine.model.eosTokenIds) eos.add(e);
    const req = new SchedRequest(
      input.requestId,
      ids,
      { modelId: this.config.modelName ?? this.engine.model.id, cacheSalt: input.cacheSalt },
      performance.now(),
      promptLen,
    );
    req.priority = input.priority ?? 0;
    const sampler = new RequestSampler(input.sampling, [...eos], minTokens);
    sampler.skipDraws(resumed);
    const detok = new StreamDetokenizer(this.engine.model.tokenizer, input.stop.stop);
    if (resumed > 0) detok.resume(ids.slice(promptLen), input.resume?.textLen ?? 0);
    this.live.set(input.requestId, {
      req,
      input,
      sink,
      sampler,
      detok,
      maxTokens,
      eos,
      arrival: performance.now(),
      firstStep: null,
      lastToken: null,
      aborted: false,
    });
    this.scheduler.add(req);
    this.wake?.();
  }

  /**
   * Runs `fn` when no engine step is in flight (at once if the loop is idle, else before the next
   * step) and resolves with its result.
   */
  between<T>(fn: () => T): Promise<T> {
    if (this.stopped) return Promise.reject(new WorkerError('UNAVAILABLE', 'the worker is shutting down'));
    return new Promise<T>((resolve, reject) => {
      this.tasks.push(() => {
        try {
          resolve(fn());
        } catch (e) {
          reject(e);
        }
      });
      this.wake?.();
    });
  }

  /** Measured seconds per prompt token of this worker's prefill steps (null until one ran). */
  prefillSecondsPerToken(): number | null {
    return this.prefillSpt;
  }

  /** Aborts a request (applied before the next step); false if unknown. */
  abort(requestId: string): boolean {
    const l = this.live.get(requestId);
    if (!l) return false;
    l.aborted = true;
    this.wake?.();
    return true;
  }

  /** Resolves when no request is in flight. */
  idle(): Promise<void> {
    if (this.live.size === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Stops the loop after the current step; requests still in flight end with "abort". */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const l of this.live.values()) l.aborted = true;
    this.wake?.();
    await this.done;
  }

  private finish(l: Live, reason: FinishReason): void {
    this.scheduler.finish(l.req);
    this.live.delete(l.req.id);
    const text = reason === 'abort' ? '' : l.detok.flush();
    const usage = { promptTokens: l.req.promptLen, completionTokens: l.req.outputLen, cachedTokens: l.req.cachedTokens };
    const now = performance.now();
    this.metrics.e2e.observe((now - l.arrival) / 1000);
    this.metrics.success.inc({ finished_reason: reason });
    this.metrics.promptTokens.inc(l.req.promptLen);
    this.send(() => l.sink.final({ finishReason: reason, usage, text }));
    if (this.live.size === 0) {
      this.flush();
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  private send(write: () => void): void {
    if (this.config.overlapOutput) this.pending.push(write);
    else write();
  }

  private flush(): void {
    for (const write of this.pending.splice(0)) write();
  }

  /** The load this worker reports (lease, metrics): read at any time, true between steps too. */
  load(): WorkerLoad {
    const byRouter: Record<string, number> = {};
    const backgroundByRouter: Record<string, number> = {};
    let background = 0;
    for (const l of this.live.values()) {
      const origin = l.input.origin;
      if (origin) byRouter[origin] = (byRouter[origin] ?? 0) + 1;
      if (l.req.priority > 0) {
        background++;
        if (origin) backgroundByRouter[origin] = (backgroundByRouter[origin] ?? 0) + 1;
      }
    }
    return {
      byRouter,
      background,
      backgroundByRouter,
      running: this.scheduler.running.length,
      waiting: this.scheduler.waiting.length,
      kvUsage: this.bm.usage,
      cachedBlocks: this.bm.cachedBlocks,
      numBlocks: this.bm.numBlocks,
    };
  }

  private async run(): Promise<void> {
    for (;;) {
      for (const t of this.tasks.splice(0)) t();
      for (const l of [...this.live.values()]) if (l.aborted) this.finish(l, 'abort');
      if (this.stopped && this.live.size === 0) {
        for (const t of this.tasks.splice(0)) t();
        return;
      }
      if (!this.scheduler.hasWork()) {
        this.flush();
        await new Promise<void>((r) => {
          this.wake = r;
        });
        this.wake = null;
        continue;
      }
      const plan = this.scheduler.schedule();
      this.metrics.preemptions.inc(plan.preempted.length);
      for (const it of plan.items) {
        const l = this.live.get(it.req.id) as Live;
        if (l.firstStep === null) {
          l.firstStep = performance.now();
          this.metrics.queueTime.observe((l.firstStep - l.arrival) / 1000);
          this.metrics.prefixQueries.inc(l.req.promptLen);
          this.metrics.prefixHits.inc(l.req.cachedTokens);
          // reloaded tokens are counted by the offload tiers, per tier
          const pooled = l.req.cachedTokens - l.req.reloadedTokens;
          if (pooled > 0) this.metrics.hitsByTier.inc({ tier: this.bm.tier }, pooled);
        }
      }
      if (plan.items.length === 0) {
        // Nothing fits although the pool was checked at admission: wait for a running request to end.
        this.flush();
        await new Promise<void>((r) => setImmediate(r));
        continue;
      }
      const t0 = performance.now();
      let logits: Float32Array[];
      try {
        const step = this.engine.step(
          plan.items.map((it) => ({
            tokens: it.tokens,
            startPos: it.startPos,
            blockTable: it.blockTable,
            topN: this.config.kcacheTopN === null ? undefined : (this.live.get(it.req.id)?.input.kcacheTopN ?? undefined),
          })),
        );
        this.flush();
        logits = await step;
      } catch (e) {
        // An engine failure fails the requests of this step, not the worker.
        for (const it of plan.items) {
          const l = this.live.get(it.req.id);
          if (l) this.finish(l, 'abort');
        }
        process.emitWarning(`engine step failed: ${(e as Error).message}`);
        continue;
      }
      const seconds = (performance.now() - t0) / 1000;
      this.metrics.stepDuration.observe(seconds);
      if (plan.items.some((it) => it.tokens.length > 1)) {
        const spt = seconds / plan.items.reduce((n, it) => n + it.tokens.length, 0);
        this.prefillSpt = this.prefillSpt === null ? spt : 0.8 * this.prefillSpt + 0.2 * spt;
      }
      this.scheduler.commit(plan);
      plan.items.forEach((it, i) => {
        if (!it.sample) return;
        const l = this.live.get(it.req.id);
        if (!l || l.aborted) return;
        this.emitToken(l, logits[i] as Float32Array);
      });
    }
  }

  private emitToken(l: Live, logits: Float32Array): void {
    const req = l.req;
    const { token, logprobs } = l.sampler.next(logits, req.promptLen, req.tokens);
    this.scheduler.append(req, token);
    const now = performance.now();
    if (l.lastToken === null) this.metrics.ttft.observe((now - l.arrival) / 1000);
    else this.metrics.itl.observe((now - l.lastToken) / 1000);
    l.lastToken = now;
    this.metrics.generationTokens.inc();

    const isEos = l.eos.has(token) && req.outputLen > l.input.stop.minTokens - 1;
    const { text, stopped } = isEos ? { text: '', stopped: false } : l.detok.push([token]);
    this.send(() => l.sink.chunk({ tokenIds: [token], text, logprobs: logprobs ? [logprobs] : [] }));
    if (isEos || stopped) this.finish(l, 'stop');
    else if (req.outputLen >= l.maxTokens) this.finish(l, 'length');
  }
}
