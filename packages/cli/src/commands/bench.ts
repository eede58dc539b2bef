import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { formatEngineBench, formatWorkerBench, runEngineBench, runWorkerBench } from '@kcache/bench';
import type { WeightDType } from '@kcache/engine';
import { idsArg, intArg, UsageError } from '../args.js';

export const BENCH_USAGE = `kcache bench engine [--model dummy:smol135] [--dtypes f32,bf16] [--threads N] [--prompt-len 512]
    [--decode-tokens 64] [--batches 8,32] [--no-llama-cpp] [--json]
  kcache bench worker [--model dummy:smol135:bf16] [--streams 1,8,32] [--tokens 64] [--threads N]`;

export async function benchCommand(argv: string[]): Promise<void> {
  const [what, ...rest] = argv;
  if (what === 'worker') return workerBench(rest);
  if (what !== 'engine') throw new UsageError(`unknown benchmark '${what ?? ''}' (available: engine, worker)`);
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
