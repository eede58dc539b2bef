// `kcache bench engine --kv-cache-dtypes f32,f16,bf16,q8_0`: long-context decode with each KV cache
// dtype on the same weights, in one run. One engine per KV dtype, each prefilled with the same
// prompt; decode then goes in rounds, every engine in turn (the order rotating each round), and a
// dtype's figure against the first-listed one is the median of the per-round ratios. On a shared
// 2-vCPU VM two separate runs a minute apart differ by more than the effect being measured (the
// same f32 run gave 38 and 50 tok/s); rounds a second long see the same machine.
import { argmax, Engine, type KvDtype, kvBytesPerBlock } from '@kcache/engine';
import { resolveModel, type WeightDType } from '@kcache/models';
import { benchPrompt, decodeWeightBytes, type Figures, llamaCppFigures, measureBandwidth } from './engine-bench.js';

export interface KvDtypeBenchOptions {
  /** a model without its weight type (dummy:smol135) or with it (dummy:smol135:bf16) */
  model: string;
  dtype: WeightDType;
  /** the first is the baseline of the ratios */
  kvDtypes: KvDtype[];
  threads: number;
  promptLen: number;
  rounds: number;
  stepsPerRound: number;
  /** llama.cpp (its default f16 KV cache) decoding at the same context, for reference */
  llamaCpp: boolean;
  cacheDir: string;
  log: (line: string) => void;
}

export interface KvDtypeRow {
  kvDtype: KvDtype;
  prefillTps: number;
  /** median over the rounds */
  decodeTps: number;
  /** median, lowest and highest over the rounds of this dtype's decode rate over the baseline's */
  ratio: number;
  ratioMin: number;
  ratioMax: number;
  /** weights plus the KV cache at the run's average context */
  bytesPerToken: number;
  /** greedy tokens identical to the baseline's before the first divergence */
  sameAsBaseline: number;
}

export interface KvDtypeBenchResult {
  model: string;
  promptLen: number;
  threads: number;
  rounds: number;
  stepsPerRound: number;
  bandwidth: number;
  rows: KvDtypeRow[];
  llamaCpp: Figures | null;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

interface Run {
  kvDtype: KvDtype;
  engine: Engine;
  logits: Float32Array;
  pos: number;
  greedy: number[];
  prefillTps: number;
  rates: number[];
}

export async function runKvDtypeBench(o: KvDtypeBenchOptions): Promise<KvDtypeBenchResult> {
  if (o.kvDtypes.length === 0) throw new Error('runKvDtypeBench: no KV dtypes');
  const spec = resolveModel(o.model.split(':').length > 2 ? o.model : `${o.model}:${o.dtype}`);
  const decodeTokens = o.rounds * o.stepsPerRound;
  if (o.promptLen + decodeTokens > spec.config.maxSeqLen)
    throw new RangeError(
      `prompt (${o.promptLen}) + decode tokens (${decodeTokens}) exceed ${spec.id}'s context of ${spec.config.maxSeqLen} positions`,
    );
  const blocks = Math.ceil((o.promptLen + decodeTokens) / 16);
  const table = Array.from({ length: blocks }, (_, i) => i);
  const prompt = benchPrompt(o.promptLen, 1);
  const runs: Run[] = [];
  // the roofline's bandwidth: measured just before and just after the decode rounds, the larger
  // (it drifts by a third within minutes on a shared VM)
  let bandwidth = 0;
  try {
    for (const kvDtype of o.kvDtypes) {
      o.log(`[${spec.id}] KV ${kvDtype}: prefill ...`);
      const engine = await Engine.load(spec, { numBlocks: blocks, threads: o.threads, kvDtype });
      const run: Run = { kvDtype, engine, logits: new Float32Array(0), pos: o.promptLen, greedy: [], prefillTps: 0, rates: [] };
      runs.push(run);
      await engine.step([{ tokens: benchPrompt(32, 9), startPos: 0, blockTable: table }]); // first touches
      const t = performance.now();
      [run.logits] = (await engine.step([{ tokens: prompt, startPos: 0, blockTable: table }])) as [Float32Array];
      run.prefillTps = o.promptLen / ((performance.now() - t) / 1000);
    }
    bandwidth = await measureBandwidth(o);
    for (let round = 0; round < o.rounds; round++) {
      for (let i = 0; i < runs.length; i++) {
        const run = runs[(round + i) % runs.length] as Run;
        const t = performance.now();
        for (let s = 0; s < o.stepsPerRound; s++) {
          const next = argmax(run.logits);
          run.greedy.push(next);
          [run.logits] = (await run.engine.step([{ tokens: [next], startPos: run.pos++, blockTable: table }])) as [Float32Array];
        }
        run.rates.push(o.stepsPerRound / ((performance.now() - t) / 1000));
      }
      o.log(`round ${round + 1}/${o.rounds}: ${runs.map((r) => `${r.kvDtype} ${(r.rates.at(-1) as number).toFixed(1)}`).join(', ')} tok/s`);
    }
    bandwidth = Math.max(bandwidth, await measureBandwidth(o));
    o.log(`measured read bandwidth around the decode rounds: ${(bandwidth / 1e9).toFixed(2)} GB/s (${o.threads} threads)`);
  } finally {
    for (const r of runs) r.engine.dispose();
  }
  const base = runs[0] as Run;
  const rows = runs.map((r): KvDtypeRow => {
    const ratios = r.rates.map((x, i) => x / (base.rates[i] as number));
    let same = 0;
    while (same < r.greedy.length && r.greedy[same] === base.greedy[same]) same++;
    const kvPerToken = kvBytesPerBlock(spec.config, 1, 'full', 0, r.kvDtype).device;
    return {
      kvDtype: r.kvDtype,
      prefillTps: r.prefillTps,
      decodeTps: median(r.rates),
      ratio: median(ratios),
      ratioMin: Math.min(...ratios),
      ratioMax: Math.max(...ratios),
      bytesPerToken: decodeWeightBytes(spec) + (o.promptLen + decodeTokens / 2) * kvPerToken,
      sameAsBaseline: same,
    };
  });
  const llamaCpp = o.llamaCpp
    ? await llamaCppFigures(spec, {
        model: o.model,
        dtypes: [o.dtype],
        threads: o.threads,
        promptLen: o.promptLen,
        decodeTokens,
        batches: [],
        batchDecodeSteps: 0,
        kvDtype: 'f16',
        llamaCpp: true,
        cacheDir: o.cacheDir,
        log: o.log,
      })
    : null;
  return {
    model: spec.id,
    promptLen: o.promptLen,
    threads: o.threads,
    rounds: o.rounds,
    stepsPerRound: o.stepsPerRound,
    bandwidth,
    rows,
    llamaCpp,
  };
}

const f1 = (n: number) => n.toFixed(1);

/** The result as a Markdown table (the form recorded in docs/BENCHMARKS.md). */
export function formatKvDtypeBench(r: KvDtypeBenchResult): string {
  const base = r.rows[0] as KvDtypeRow;
  const decodeTokens = r.rounds * r.stepsPerRound;
  const lines = [
    `model ${r.model}, ${r.threads} threads, ${r.promptLen}-token prompt then ${decodeTokens} decode steps in ${r.rounds} rounds of ${r.stepsPerRound}, ` +
      `every KV dtype in turn each round; read bandwidth measured around the rounds ${(r.bandwidth / 1e9).toFixed(2)} GB/s`,
    '',
    `| KV cache | prefill tok/s | decode tok/s (median) | decode / ${base.kvDtype} KV (median, range) | MB/token | roofline | greedy tokens as ${base.kvDtype} KV |`,
    '|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const row of r.rows) {
    const roofline = r.bandwidth / row.bytesPerToken;
    lines.push(
      `| ${row.kvDtype} | ${f1(row.prefillTps)} | ${f1(row.decodeTps)} | ${row.ratio.toFixed(2)}× (${row.ratioMin.toFixed(2)}–${row.ratioMax.toFixed(2)}) | ` +
        `${(row.bytesPerToken / 1e6).toFixed(1)} | ${((100 * row.decodeTps) / roofline).toFixed(0)}% | ${row.sameAsBaseline}/${decodeTokens} |`,
    );
  }
  if (r.llamaCpp) {
    const l = r.llamaCpp;
    const f16 = r.rows.find((x) => x.kvDtype === 'f16');
    lines.push(
      `| llama.cpp, f16 | ${f1(l.prefillTps)} | ${f1(l.decodeTps)} | ${(l.decodeTps / base.decodeTps).toFixed(2)}× (one run, not interleaved) | | | |`,
    );
    if (f16) lines.push('', `kcache f16 KV / llama.cpp f16 KV, decode: ${(f16.decodeTps / l.decodeTps).toFixed(2)}×`);
  }
  return lines.join('\n');
}
