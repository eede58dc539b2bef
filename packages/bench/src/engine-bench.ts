// `kcache bench engine`: the native engine against llama.cpp (node-llama-cpp, CPU prebuilt) on
// identical weights, in one run, plus the machine's read bandwidth, measured around each decode run,
// as the roofline.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { argmax, defaultKvDtype, Engine, type KvDtype, kvBytesPerBlock, measureReadBandwidth } from '@kcache/engine';
import { type ModelSpec, resolveModel, rowBytes, type WeightDType } from '@kcache/models';
import { writeGguf } from './gguf.js';
import { LlamaCppRunner } from './llamacpp.js';

export interface EngineBenchOptions {
  model: string;
  dtypes: WeightDType[];
  threads: number;
  promptLen: number;
  decodeTokens: number;
  batches: number[];
  batchDecodeSteps: number;
  /** kcache's KV cache ('auto': the weights' 16-bit type; llama.cpp keeps its default, f16). */
  kvDtype: KvDtype | 'auto';
  llamaCpp: boolean;
  cacheDir: string;
  log: (line: string) => void;
}

export interface Figures {
  prefillTps: number;
  decodeTps: number;
  batchTps: Record<number, number>;
  greedy: number[];
}

export interface EngineBenchRow {
  dtype: WeightDType;
  bytesPerToken: number;
  /** Read bandwidth (bytes/s) measured just before and just after kcache's single-sequence decode, the larger: this row's roofline. */
  bandwidth: number;
  kcache: Figures;
  llamaCpp: Figures | null;
}

export interface EngineBenchResult {
  model: string;
  kvDtype: KvDtype | 'auto';
  promptLen: number;
  threads: number;
  rows: EngineBenchRow[];
}

/** Weight bytes one decode step reads (every matrix once; the embedding table only if tied as output). */
export function decodeWeightBytes(spec: ModelSpec): number {
  const tied = !spec.tensors.some((t) => t.name === 'output');
  return spec.tensors
    .filter((t) => t.name !== 'tok_embeddings' || tied)
    .reduce((n, t) => n + t.rows * (t.rows === 1 ? 4 * t.cols : rowBytes(t.quantize ?? t.dtype, t.cols)), 0);
}

/** Deterministic pseudo-random prompt ids among the byte tokens. */
export function benchPrompt(len: number, salt: number): number[] {
  return Array.from({ length: len }, (_, i) => 3 + ((i * 7919 + salt * 104729 + 13) % 256));
}

// The machine's read bandwidth drifts by a third within minutes on a shared VM, so each row's
// roofline is measured next to the decode it judges, not once for the whole run.
export const measureBandwidth = (o: { threads: number }) => measureReadBandwidth(1 << 30, o.threads);

async function benchKcache(spec: ModelSpec, o: EngineBenchOptions): Promise<Figures & { bandwidth: number }> {
  const maxCtx = Math.max(o.promptLen + o.decodeTokens, 16 + o.batchDecodeSteps);
  const blocksPerSeq = Math.ceil(maxCtx / 16);
  const maxBatch = Math.max(1, ...o.batches);
  const engine = await Engine.load(spec, { numBlocks: blocksPerSeq * maxBatch, threads: o.threads, kvDtype: o.kvDtype });
  try {
    const table = (s: number) => Array.from({ length: blocksPerSeq }, (_, i) => s * blocksPerSeq + i);
    // warm up: first touches of the weights and scratch buffers
    await engine.step([{ tokens: benchPrompt(32, 9), startPos: 0, blockTable: table(0) }]);

    const prompt = benchPrompt(o.promptLen, 1);
    let t = performance.now();
    let [logits] = await engine.step([{ tokens: prompt, startPos: 0, blockTable: table(0) }]);
    const prefillTps = o.promptLen / ((performance.now() - t) / 1000);

    const before = await measureBandwidth(o);
    const greedy: number[] = [];
    t = performance.now();
    for (let i = 0; i < o.decodeTokens; i++) {
      const next = argmax(logits as Float32Array);
      greedy.push(next);
      [logits] = await engine.step([{ tokens: [next], startPos: o.promptLen + i, blockTable: table(0) }]);
    }
    const decodeTps = o.decodeTokens / ((performance.now() - t) / 1000);
    const bandwidth = Math.max(before, await measureBandwidth(o));

    const batchTps: Record<number, number> = {};
    for (const b of o.batches) {
      const seqs = Array.from({ length: b }, (_, s) => ({ tokens: benchPrompt(16, 100 + s), startPos: 0, blockTable: table(s) }));
      let outs = await engine.step(seqs);
      t = performance.now();
      for (let step = 0; step < o.batchDecodeSteps; step++) {
        outs = await engine.step(outs.map((l, s) => ({ tokens: [argmax(l)], startPos: 16 + step, blockTable: table(s) })));
      }
      batchTps[b] = (b * o.batchDecodeSteps) / ((performance.now() - t) / 1000);
    }
    return { prefillTps, decodeTps, batchTps, greedy, bandwidth };
  } finally {
    engine.dispose();
  }
}

/** llama.cpp's figures on the same weights: the model written as GGUF (once, into o.cacheDir), then run by node-llama-cpp. */
export async function llamaCppFigures(spec: ModelSpec, o: EngineBenchOptions): Promise<Figures> {
  mkdirSync(o.cacheDir, { recursive: true });
  const gguf = join(o.cacheDir, `${spec.id.replaceAll(':', '-')}-seed1234.gguf`);
  if (!existsSync(gguf)) {
    o.log(`[${spec.id}] writing ${gguf} ...`);
    const engine = await Engine.load(spec, { numBlocks: 1, threads: o.threads });
    writeGguf(gguf, spec, engine);
    engine.dispose();
  }
  o.log(`[${spec.id}] llama.cpp ...`);
  const runner = await LlamaCppRunner.open(gguf, o.threads);
  try {
    return await runner.bench(o);
  } finally {
    await runner.close();
  }
}

export async function runEngineBench(o: EngineBenchOptions): Promise<EngineBenchResult> {
  const rows: EngineBenchRow[] = [];
  for (const dtype of o.dtypes) {
    const spec = resolveModel(o.model.split(':').length > 2 ? o.model : `${o.model}:${dtype}`);
    const kv = o.kvDtype === 'auto' ? defaultKvDtype(spec) : o.kvDtype;
    // K and V of every layer for one token: a one-token block
    const kvBytesPerToken = kvBytesPerBlock(spec.config, 1, 'full', 0, kv).device;
    // average context over the single-sequence decode run
    const bytesPerToken = decodeWeightBytes(spec) + (o.promptLen + o.decodeTokens / 2) * kvBytesPerToken;
    o.log(`[${spec.id}] kcache ...`);
    const { bandwidth, ...kcache } = await benchKcache(spec, o);
    o.log(`[${spec.id}] measured read bandwidth around the decode: ${(bandwidth / 1e9).toFixed(2)} GB/s (${o.threads} threads)`);
    const llama = o.llamaCpp ? await llamaCppFigures(spec, o) : null;
    rows.push({ dtype: spec.id.split(':')[2] as WeightDType, bytesPerToken, bandwidth, kcache, llamaCpp: llama });
  }
  return { model: o.model, kvDtype: o.kvDtype, promptLen: o.promptLen, threads: o.threads, rows };
}

const f1 = (n: number) => n.toFixed(1);
/** Bandwidths in GB/s: one figure, or the range. */
const gbs = (bs: number[]) => {
  const [lo, hi] = [Math.min(...bs) / 1e9, Math.max(...bs) / 1e9];
  return lo.toFixed(1) === hi.toFixed(1) ? lo.toFixed(1) : `${lo.toFixed(1)}–${hi.toFixed(1)}`;
};
const ratio = (a: number, b: number | undefined) => (b ? `${(a / b).toFixed(2)}×` : 'n/a');

/** The result as a Markdown table (the form recorded in docs/BENCHMARKS.md). */
export function formatEngineBench(r: EngineBenchResult): string {
  const lines: string[] = [];
  lines.push(
    `model ${r.model}, ${r.threads} threads, kcache KV cache ${r.kvDtype} (llama.cpp: f16), read bandwidth measured around each kcache decode run ${gbs(r.rows.map((row) => row.bandwidth))} GB/s`,
  );
  lines.push('');
  lines.push('| weights | figure | kcache | llama.cpp | kcache / llama.cpp |');
  lines.push('|---|---|---:|---:|---:|');
  for (const row of r.rows) {
    const k = row.kcache;
    const l = row.llamaCpp;
    const roofline = row.bandwidth / row.bytesPerToken;
    lines.push(
      `| ${row.dtype} | prefill tok/s (${r.promptLen}-token prompt) | ${f1(k.prefillTps)} | ${l ? f1(l.prefillTps) : 'n/a'} | ${ratio(k.prefillTps, l?.prefillTps)} |`,
    );
    lines.push(
      `| ${row.dtype} | decode tok/s, 1 sequence | ${f1(k.decodeTps)} | ${l ? f1(l.decodeTps) : 'n/a'} | ${ratio(k.decodeTps, l?.decodeTps)} |`,
    );
    for (const b of Object.keys(k.batchTps).map(Number)) {
      const kb = k.batchTps[b] as number;
      const lb = l?.batchTps[b];
      lines.push(`| ${row.dtype} | aggregate decode tok/s, ${b} sequences | ${f1(kb)} | ${lb ? f1(lb) : 'n/a'} | ${ratio(kb, lb)} |`);
    }
    lines.push(
      `| ${row.dtype} | decode roofline tok/s (${(row.bytesPerToken / 1e6).toFixed(1)} MB/token at ${(row.bandwidth / 1e9).toFixed(1)} GB/s) | ${f1(roofline)} | | kcache at ${((100 * k.decodeTps) / roofline).toFixed(0)}%` +
        (l ? `, llama.cpp at ${((100 * l.decodeTps) / roofline).toFixed(0)}%` : '') +
        ' |',
    );
    if (l) {
      const n = Math.min(k.greedy.length, l.greedy.length);
      let same = 0;
      while (same < n && k.greedy[same] === l.greedy[same]) same++;
      lines.push(`| ${row.dtype} | greedy tokens identical before first divergence | ${same}/${n} | | |`);
    }
  }
  return lines.join('\n');
}
