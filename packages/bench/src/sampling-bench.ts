// `kcache bench sampling`: the sampler (sample.ts) against its plain definition (reference.ts: the
// whole vocabulary sorted with a comparator, which is how sample() worked before), in one run, on
// logits a model produced: milliseconds a token on the event loop, which every stream of a worker
// shares, the ratio, and whether every draw gave the same token.
import { argmax, Engine, Rng, type SamplingParams, sample, sampleReference } from '@kcache/engine';
import { resolveModel } from '@kcache/models';

export interface SamplingBenchOptions {
  model: string;
  /** Rows of logits: the model's after each token of a greedy continuation. */
  rows: number;
  threads: number;
  log: (line: string) => void;
}

export interface SamplingBenchRow {
  setting: string;
  params: SamplingParams;
  sampleMs: number;
  referenceMs: number;
  /** Draws that gave the reference's token, of `draws`. */
  agreed: number;
  draws: number;
}

export interface SamplingBenchResult {
  model: string;
  vocab: number;
  rows: SamplingBenchRow[];
}

/** The OpenAI default, then settings vLLM users commonly send. */
export const SAMPLING_SETTINGS: readonly (readonly [string, SamplingParams])[] = [
  ['temperature 1', { temperature: 1, topK: 0, topP: 1, minP: 0 }],
  ['temperature 0.7, top_p 0.9', { temperature: 0.7, topK: 0, topP: 0.9, minP: 0 }],
  ['temperature 0.8, top_k 40, top_p 0.95, min_p 0.05', { temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05 }],
  ['temperature 1, min_p 0.1', { temperature: 1, topK: 0, topP: 1, minP: 0.1 }],
];

async function modelLogits(o: SamplingBenchOptions): Promise<Float32Array[]> {
  const engine = await Engine.load(resolveModel(o.model), { numBlocks: Math.ceil((16 + o.rows) / 16) + 1, threads: o.threads });
  try {
    const table = Array.from({ length: Math.ceil((16 + o.rows) / 16) + 1 }, (_, i) => i);
    const prompt = Array.from({ length: 16 }, (_, i) => 3 + ((i * 7919 + 13) % 256));
    let [l] = await engine.step([{ tokens: prompt, startPos: 0, blockTable: table }]);
    const out: Float32Array[] = [];
    for (let i = 0; i < o.rows; i++) {
      out.push((l as Float32Array).slice());
      [l] = await engine.step([{ tokens: [argmax(l as Float32Array)], startPos: 16 + i, blockTable: table }]);
    }
    return out;
  } finally {
    engine.dispose();
  }
}

function time(rows: Float32Array[], p: SamplingParams, f: typeof sample, repeats: number): { ms: number; tokens: number[] } {
  let best = Number.POSITIVE_INFINITY;
  let tokens: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const rng = new Rng(1);
    const t = performance.now();
    tokens = rows.map((l) => f(l, p, rng));
    best = Math.min(best, (performance.now() - t) / rows.length);
  }
  return { ms: best, tokens };
}

export async function runSamplingBench(o: SamplingBenchOptions): Promise<SamplingBenchResult> {
  o.log(`[${o.model}] logits of ${o.rows} decode steps ...`);
  const logits = await modelLogits(o);
  const rows: SamplingBenchRow[] = [];
  for (const [setting, params] of SAMPLING_SETTINGS) {
    o.log(`[${setting}] ...`);
    const ref = time(logits, params, sampleReference, 1);
    const fast = time(logits, params, sample, 5);
    const agreed = fast.tokens.filter((t, i) => t === ref.tokens[i]).length;
    rows.push({ setting, params, sampleMs: fast.ms, referenceMs: ref.ms, agreed, draws: logits.length });
  }
  return { model: o.model, vocab: logits[0]?.length ?? 0, rows };
}

export function formatSamplingBench(r: SamplingBenchResult): string {
  const lines = [
    `model ${r.model}, vocabulary ${r.vocab}: milliseconds a token on the event loop (best of 5 passes; the reference, one)`,
    '',
    '| setting | sample (ms) | reference: full sort (ms) | reference / sample | same token |',
    '|---|---:|---:|---:|---:|',
  ];
  for (const row of r.rows)
    lines.push(
      `| ${row.setting} | ${row.sampleMs.toFixed(3)} | ${row.referenceMs.toFixed(2)} | ${(row.referenceMs / row.sampleMs).toFixed(1)}× | ${row.agreed}/${row.draws} |`,
    );
  return lines.join('\n');
}
