// `kcache bench worker`: decode tokens/s through the whole worker (gRPC streaming, scheduler,
// sampling, detokenization) against the engine's raw batched-step rate for the same batches,
// measured in the same process and run.
import * as grpc from '@grpc/grpc-js';
import { argmax, Engine } from '@kcache/engine';
import { resolveModel } from '@kcache/models';
import { protos } from '@kcache/protocol';
import { startWorker } from '@kcache/worker';
import { benchPrompt } from './engine-bench.js';

export interface WorkerBenchOptions {
  model: string;
  streams: number[];
  tokens: number;
  threads: number;
  /** The streams' sampling temperature (0: greedy); the raw engine steps take the argmax either way. */
  temperature: number;
  log: (line: string) => void;
}

export interface WorkerBenchRow {
  streams: number;
  engineTps: number;
  workerTps: number;
}

const PROMPT = 16;

async function rawEngine(engine: Engine, b: number, tokens: number): Promise<number> {
  const blocks = Math.ceil((PROMPT + tokens) / 16);
  const table = (s: number) => Array.from({ length: blocks }, (_, i) => s * blocks + i);
  let outs = await engine.step(
    Array.from({ length: b }, (_, s) => ({ tokens: benchPrompt(PROMPT, 500 + s), startPos: 0, blockTable: table(s) })),
  );
  const t = performance.now();
  for (let step = 0; step < tokens - 1; step++) {
    outs = await engine.step(outs.map((l, s) => ({ tokens: [argmax(l)], startPos: PROMPT + step, blockTable: table(s) })));
  }
  return (b * (tokens - 1)) / ((performance.now() - t) / 1000);
}

/** Opens b streams at once; the decode rate counts from the moment every stream has its first token. */
async function throughWorker(address: string, b: number, tokens: number, temperature: number): Promise<number> {
  const client = new (protos().v1.Worker)(address, grpc.credentials.createInsecure());
  let firstTokens = 0;
  let t0 = 0;
  const ends = await Promise.all(
    Array.from(
      { length: b },
      (_, s) =>
        new Promise<number>((resolve, reject) => {
          const call = client.Generate({
            requestId: `bench-${b}-${s}`,
            tokenIds: benchPrompt(PROMPT, 500 + s),
            sampling: { temperature, seed: s },
            stop: { maxTokens: tokens, ignoreEos: true },
          });
          let n = 0;
          call.on('data', (m) => {
            if (m.chunk && ++n === 1 && ++firstTokens === b) t0 = performance.now();
          });
          call.on('end', () => resolve(performance.now()));
          call.on('error', reject);
        }),
    ),
  );
  client.close();
  return (b * (tokens - 1)) / ((Math.max(...ends) - t0) / 1000);
}

export async function runWorkerBench(o: WorkerBenchOptions): Promise<WorkerBenchRow[]> {
  const spec = resolveModel(o.model);
  const maxB = Math.max(...o.streams);
  const numBlocks = maxB * Math.ceil((PROMPT + o.tokens) / 16) + 16;
  // the worker's default KV cache ('auto'), so the ratio is the worker's overhead alone
  const engine = await Engine.load(spec, { numBlocks, threads: o.threads, kvDtype: 'auto' });
  await rawEngine(engine, 1, 4); // warm-up
  const raw: Record<number, number> = {};
  for (const b of o.streams) {
    o.log(`engine, ${b} sequences ...`);
    raw[b] = await rawEngine(engine, b, o.tokens);
  }
  engine.dispose();
  const worker = await startWorker({
    model: spec,
    port: 0,
    redisUrl: null,
    numBlocks,
    threads: o.threads,
    maxNumSeqs: maxB,
    maxBatchedTokens: Math.max(512, maxB * PROMPT),
  });
  await throughWorker(worker.address, 1, 4, o.temperature); // warm-up
  const rows: WorkerBenchRow[] = [];
  for (const b of o.streams) {
    o.log(`worker, ${b} streams ...`);
    rows.push({ streams: b, engineTps: raw[b] as number, workerTps: await throughWorker(worker.address, b, o.tokens, o.temperature) });
  }
  await worker.close();
  return rows;
}

export function formatWorkerBench(model: string, rows: WorkerBenchRow[], temperature = 0): string {
  const lines = [
    `model ${model}; decode tokens/s after every stream's first token, ${temperature === 0 ? 'greedy' : `streams sampled at temperature ${temperature}`}, ${PROMPT}-token prompts`,
    '',
    '| concurrent streams | raw engine steps | through the worker (gRPC) | worker / engine | overhead |',
    '|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    const ratio = r.workerTps / r.engineTps;
    lines.push(
      `| ${r.streams} | ${r.engineTps.toFixed(1)} | ${r.workerTps.toFixed(1)} | ${ratio.toFixed(3)} | ${((1 - ratio) * 100).toFixed(1)}% |`,
    );
  }
  return lines.join('\n');
}
