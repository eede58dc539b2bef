import { existsSync } from 'node:fs';
import { cpus } from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import {
  formatEngineBench,
  formatRoutingBench,
  formatWorkerBench,
  mooncakeWorkload,
  runEngineBench,
  runRoutingBench,
  runWorkerBench,
  sharedPrefixWorkload,
} from '@kcache/bench';
import type { WeightDType } from '@kcache/engine';
import { POLICIES, type PolicyName } from '@kcache/routing';
import { idsArg, intArg, UsageError } from '../args.js';

export const BENCH_USAGE = `kcache bench engine [--model dummy:smol135] [--dtypes f32,bf16] [--threads N] [--prompt-len 512]
    [--decode-tokens 64] [--batches 8,32] [--no-llama-cpp] [--json]
  kcache bench worker [--model dummy:smol135:bf16] [--streams 1,8,32] [--tokens 64] [--threads N]
  kcache bench routing [--model dummy:smol135:bf16] [--workers 3] [--policies cache_aware,round_robin,...] [--requests 36] [--rate 1]
    [--trace ../shared/traces/mooncake_conversation_trace.jsonl] [--trace-requests 100] [--num-blocks 160]`;

export async function benchCommand(argv: string[]): Promise<void> {
  const [what, ...rest] = argv;
  if (what === 'worker') return workerBench(rest);
  if (what === 'routing') return routingBench(rest);
  if (what !== 'engine') throw new UsageError(`unknown benchmark '${what ?? ''}' (available: engine, worker, routing)`);
  const { values } = parseArgs({
    args: rest,
    strict: true,
    options: {
      model: { type: 'string' },
      dtypes: { type: 'string' },
      threads: { type: 'string' },
      'prompt-len': { type: 'string' },
      'decode-tokens': { type: 'string' },
      batches: { type: 'string' },
      'no-llama-cpp': { type: 'boolean' },
      json: { type: 'boolean' },
    },
  });
  const dtypes = (values.dtypes ?? 'f32,bf16').split(',');
  const bad = dtypes.find((d) => !['f32', 'bf16', 'f16'].includes(d));
  if (bad !== undefined) throw new UsageError(`--dtypes: '${bad}' is not one of f32, bf16, f16`);
  const result = await runEngineBench({
    model: values.model ?? 'dummy:smol135',
    dtypes: dtypes as WeightDType[],
    threads: intArg('threads', values.threads, cpus().length, 1),
    promptLen: intArg('prompt-len', values['prompt-len'], 512, 1),
    decodeTokens: intArg('decode-tokens', values['decode-tokens'], 64, 1),
    batches: idsArg('batches', values.batches ?? '8,32'),
    batchDecodeSteps: 32,
    llamaCpp: !values['no-llama-cpp'],
    cacheDir: '.bench',
    log: (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write(values.json ? `${JSON.stringify(result)}\n` : `${formatEngineBench(result)}\n`);
}

async function workerBench(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: { model: { type: 'string' }, streams: { type: 'string' }, tokens: { type: 'string' }, threads: { type: 'string' } },
  });
  const model = values.model ?? 'dummy:smol135:bf16';
  const rows = await runWorkerBench({
    model,
    streams: idsArg('streams', values.streams ?? '1,8,32'),
    tokens: intArg('tokens', values.tokens, 64, 2),
    threads: intArg('threads', values.threads, cpus().length, 1),
    log: (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write(`${formatWorkerBench(model, rows)}\n`);
}

async function routingBench(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      model: { type: 'string' },
      workers: { type: 'string' },
      policies: { type: 'string' },
      requests: { type: 'string' },
      rate: { type: 'string' },
      trace: { type: 'string' },
      'trace-requests': { type: 'string' },
      'time-scale': { type: 'string' },
      'num-blocks': { type: 'string' },
      threads: { type: 'string' },
    },
  });
  const policies = (values.policies ?? POLICIES.join(',')).split(',');
  const bad = policies.find((p) => !(POLICIES as readonly string[]).includes(p));
  if (bad !== undefined) throw new UsageError(`--policies: '${bad}' is not one of ${POLICIES.join(', ')}`);
  const trace = resolve(values.trace ?? '../shared/traces/mooncake_conversation_trace.jsonl');
  if (!existsSync(trace)) throw new UsageError(`--trace: ${trace} does not exist`);
  const shared = (ratePerSec: number) =>
    sharedPrefixWorkload({
      requests: intArg('requests', values.requests, 36, 1),
      groups: 6,
      prefixTokens: 1024,
      suffixTokens: 16,
      maxTokens: 4,
      ratePerSec,
      seed: 7,
    });
  const rate = Number(values.rate ?? 1);
  const workloads = [
    {
      name: `shared prefixes (6 system prompts of 1024 tokens, 16-token suffixes, 4 output tokens), Poisson arrivals at ${rate}/s`,
      requests: shared(rate),
    },
    { name: 'the same requests all at once (throughput at saturation)', requests: shared(0) },
    {
      name: 'Mooncake conversation trace, first requests, 512-token blocks scaled to 16 tokens, outputs scaled likewise (max 8), time x2',
      requests: mooncakeWorkload({
        path: trace,
        requests: intArg('trace-requests', values['trace-requests'], 100, 1),
        tokensPerBlock: 16,
        maxOutput: 8,
        timeScale: Number(values['time-scale'] ?? 0.5),
      }),
    },
  ];
  const result = await runRoutingBench({
    model: values.model ?? 'dummy:smol135:bf16',
    workers: intArg('workers', values.workers, 3, 1),
    numBlocks: intArg('num-blocks', values['num-blocks'], 160, 8),
    threads: intArg('threads', values.threads, 1, 1),
    policies: policies as PolicyName[],
    workloads,
    log: (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write(`${formatRoutingBench(result)}\n`);
}
