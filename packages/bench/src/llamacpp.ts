// llama.cpp through node-llama-cpp@3.21.1 (its CPU prebuilt), driven so that it runs at its
// best: every batched decode step puts all sequences into one llama_decode call, by holding
// node-llama-cpp's dispatch until every sequence has queued its token.
import { getLlama, type Llama, type LlamaContext, type LlamaModel, type Token } from 'node-llama-cpp';
import type { EngineBenchOptions, Figures } from './engine-bench.js';
import { benchPrompt } from './engine-bench.js';

const GREEDY = { token: true, options: { temperature: 0 } } as const;
// node-llama-cpp brands token ids; ours are plain numbers.
const asTokens = (ids: number[]) => ids as Token[];
const asToken = (id: number) => id as Token;

export class LlamaCppRunner {
  private constructor(
    private readonly llama: Llama,
    private readonly model: LlamaModel,
    private readonly threads: number,
  ) {}

  static async open(ggufPath: string, threads: number): Promise<LlamaCppRunner> {
    const llama = await getLlama({ gpu: false, build: 'never', maxThreads: threads, logLevel: 'error' as never });
    const model = await llama.loadModel({ modelPath: ggufPath, useMmap: true });
    return new LlamaCppRunner(llama, model, threads);
  }

  /**
   * A context whose batches are dispatched only by `dispatch()`, which waits until all
   * `sequences` have queued their tokens (read from node-llama-cpp's internal queue: its public
   * schedules can only fire on a timer, which splits a step into uneven batches).
   */
  private async context(
    sequences: number,
    contextSize: number,
  ): Promise<{ ctx: LlamaContext; dispatch: (expected?: number) => Promise<void> }> {
    let pending: (() => void) | null = null;
    const ctx = await this.model.createContext({
      sequences,
      contextSize,
      batchSize: 512,
      threads: { ideal: this.threads, min: this.threads },
      batching: {
        dispatchSchedule: (d) => {
          pending = d;
        },
        itemPrioritizationStrategy: 'maximumParallelism',
      },
    });
    const queued = ctx as unknown as { _queuedDecodeSequenceIds: Set<number> };
    const dispatch = async (expected = sequences) => {
      // With every sequence of the context queued at the first schedule, node-llama-cpp has
      // already dispatched by itself (always the case for one sequence).
      if (sequences === 1) return;
      while (!pending || queued._queuedDecodeSequenceIds.size < expected) await new Promise((r) => setImmediate(r));
      const d = pending;
      pending = null;
      d();
    };
    return { ctx, dispatch };
  }

  async bench(o: EngineBenchOptions): Promise<Figures> {
    const single = await this.context(1, o.promptLen + o.decodeTokens + 64);
    const seq = single.ctx.getSequence();
    // warm up
    const warm = seq.evaluateWithoutGeneratingNewTokens(asTokens(benchPrompt(32, 9)));
    await single.dispatch();
    await warm;
    await seq.clearHistory();

    const prompt = benchPrompt(o.promptLen, 1);
    let t = performance.now();
    const pre = seq.controlledEvaluate([...asTokens(prompt.slice(0, -1)), [asToken(prompt.at(-1) as number), { generateNext: GREEDY }]]);
    await single.dispatch();
    let out = await pre;
    const prefillTps = o.promptLen / ((performance.now() - t) / 1000);
    let next = out.at(-1)?.next.token as number;
    const greedy: number[] = [];
    t = performance.now();
    for (let i = 0; i < o.decodeTokens; i++) {
      greedy.push(next);
      const p = seq.controlledEvaluate([[asToken(next), { generateNext: GREEDY }]]);
      await single.dispatch();
      out = await p;
      next = out[0]?.next.token as number;
    }
    const decodeTps = o.decodeTokens / ((performance.now() - t) / 1000);
    await single.ctx.dispose();

    const batchTps: Record<number, number> = {};
    for (const b of o.batches) {
      const { ctx, dispatch } = await this.context(b, 16 + o.batchDecodeSteps + 64);
      const seqs = Array.from({ length: b }, () => ctx.getSequence());
      const first = seqs.map((s, i) => {
        const p = benchPrompt(16, 100 + i);
        return s.controlledEvaluate([...asTokens(p.slice(0, -1)), [asToken(p.at(-1) as number), { generateNext: GREEDY }]]);
      });
      await dispatch();
      let tokens = (await Promise.all(first)).map((r) => r.at(-1)?.next.token as number);
      t = performance.now();
      for (let step = 0; step < o.batchDecodeSteps; step++) {
        const ps = seqs.map((s, i) => s.controlledEvaluate([[asToken(tokens[i] as number), { generateNext: GREEDY }]]));
        await dispatch();
        tokens = (await Promise.all(ps)).map((r) => r[0]?.next.token as number);
      }
      batchTps[b] = (b * o.batchDecodeSteps) / ((performance.now() - t) / 1000);
      await ctx.dispose();
    }
    return { prefillTps, decodeTps, batchTps, greedy };
  }

  async close(): Promise<void> {
    await this.model.dispose();
    await this.llama.dispose();
  }
}
