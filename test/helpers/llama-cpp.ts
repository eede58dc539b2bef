// llama.cpp (node-llama-cpp@3.21.1, its CPU prebuilt) on a GGUF file: tokenization, and a greedy
// run that records each step's full next-token distribution.
import { getLlama, type Llama, type LlamaModel, type Token } from 'node-llama-cpp';

export class LlamaCpp {
  private constructor(
    private readonly llama: Llama,
    readonly model: LlamaModel,
  ) {}

  static async open(path: string): Promise<LlamaCpp> {
    const llama = await getLlama({ gpu: false, build: 'never', maxThreads: 2, logLevel: 'error' as never });
    const model = await llama.loadModel({ modelPath: path, useMmap: true });
    return new LlamaCpp(llama, model);
  }

  /** Token ids of `text` with special tokens parsed, no BOS. */
  tokenize(text: string): number[] {
    return this.model.tokenize(text, true).map(Number);
  }

  // f32 KV (llama.cpp's default is f16), so that a comparison isolates how weights are read
  private context(size: number) {
    return this.model.createContext({
      contextSize: size,
      sequences: 1,
      threads: 2,
      experimentalKvCacheKeyType: 'F32',
      experimentalKvCacheValueType: 'F32',
      flashAttention: false,
    });
  }

  /** The next-token probabilities (temperature 1) after each prefix of `tokens`. */
  async probabilities(tokens: number[], vocabSize: number): Promise<Float64Array[]> {
    const ctx = await this.context(tokens.length + 16);
    try {
      const next = { probabilities: true, options: { temperature: 1, topK: 0, topP: 1, minP: 0 } } as const;
      const out = await ctx.getSequence().controlledEvaluate(tokens.map((t) => [t as Token, { generateNext: next }]));
      return out.map((o) => {
        const dist = new Float64Array(vocabSize);
        for (const [t, v] of o?.next.probabilities ?? []) dist[Number(t)] = v;
        return dist;
      });
    } finally {
      await ctx.dispose();
    }
  }

  /** `steps` greedy tokens after `prompt`, and the probabilities (temperature 1) llama.cpp gave every token at each step. */
  async greedy(prompt: number[], steps: number, vocabSize: number): Promise<{ tokens: number[]; probs: Float64Array[] }> {
    const ctx = await this.context(prompt.length + steps + 16);
    try {
      const seq = ctx.getSequence();
      const next = { token: true, probabilities: true, options: { temperature: 1, topK: 0, topP: 1, minP: 0 } } as const;
      const tokens: number[] = [];
      const probs: Float64Array[] = [];
      let input: Parameters<typeof seq.controlledEvaluate>[0] = [
        ...(prompt.slice(0, -1) as Token[]),
        [prompt.at(-1) as Token, { generateNext: next }],
      ];
      for (let i = 0; i < steps; i++) {
        const out = await seq.controlledEvaluate(input);
        const p = out.at(-1)?.next.probabilities;
        if (!p) throw new Error('llama.cpp gave no probabilities');
        const dist = new Float64Array(vocabSize);
        for (const [t, v] of p) dist[Number(t)] = v;
        const top = Number(p.keys().next().value);
        probs.push(dist);
        tokens.push(top);
        input = [[top as Token, { generateNext: next }]];
      }
      return { tokens, probs };
    } finally {
      await ctx.dispose();
    }
  }

  async close(): Promise<void> {
    await this.model.dispose();
    await this.llama.dispose();
  }
}
