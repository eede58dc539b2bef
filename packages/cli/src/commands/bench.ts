import { existsSync } from 'node:fs';
import { cpus } from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import {
  type BudgetRow,
  capacity,
  FAULT_CASES,
  type FaultCase,
  type FidelityConfig,
  formatAttention,
  formatBatchBench,
  formatBudget,
  formatCapacity,
  formatDecode,
  formatEngineBench,
  formatFaultsBench,
  formatFidelity,
  formatKvDtypeBench,
  formatOffloadReplay,
  formatReload,
  formatRoutingBench,
  formatSamplingBench,
  formatSpill,
  formatWorkerBench,
  measureAttention,
  measureBudgetDecode,
  measureDecode,
  measureFidelity,
  measureOffloadReplay,
  measureReload,
  measureSpill,
  mooncakeWorkload,
  oracleHitRate,
  renderClusterPlot,
  runBatchBench,
  runEngineBench,
  runFaultsBench,
  runKvDtypeBench,
  runRoutingBench,
  runSamplingBench,
  runWorkerBench,
  sharedPrefixWorkload,
} from '@kcache/bench';
import type { KvDtype } from '@kcache/engine';
import { LOAD_QUANT_DTYPES, resolveModel, type WeightDType } from '@kcache/models';
import { POLICIES, type PolicyName } from '@kcache/routing';
import { idsArg, intArg, kvDtypeArg, numArg, UsageError } from '../args.js';

export async function benchCommand(argv: string[]): Promise<void> {
  const [what, ...rest] = argv;
  if (what === 'worker') return workerBench(rest);
  if (what === 'routing') return routingBench(rest);
  if (what === 'kcache') return kcacheBench(rest);
  if (what === 'plot') return plotCommand(rest);
  if (what === 'faults') return faultsBench(rest);
  if (what === 'batch') return batchBench(rest);
  if (what === 'sampling') return samplingBench(rest);
  if (what !== 'engine')
    throw new UsageError(`unknown benchmark '${what ?? ''}' (available: engine, worker, routing, kcache, plot, faults, batch, sampling)`);
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
      'kv-cache-dtype': { type: 'string' },
      'kv-cache-dtypes': { type: 'string' },
      rounds: { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  const dtypes = (values.dtypes ?? 'f32,bf16').split(',');
  const allowed = ['f32', 'bf16', 'f16', ...LOAD_QUANT_DTYPES];
  const bad = dtypes.find((d) => !allowed.includes(d));
  if (bad !== undefined) throw new UsageError(`--dtypes: '${bad}' is not one of ${allowed.join(', ')}`);
  if (values['kv-cache-dtypes'] !== undefined)
    return kvDtypesBench(values, (values.dtypes === undefined ? ['bf16'] : dtypes) as WeightDType[]);
  if (values.rounds !== undefined) throw new UsageError('--rounds goes with --kv-cache-dtypes');
  const result = await runEngineBench({
    model: values.model ?? 'dummy:smol135',
    dtypes: dtypes as WeightDType[],
    threads: intArg('threads', values.threads, cpus().length, 1),
    promptLen: intArg('prompt-len', values['prompt-len'], 512, 1),
    decodeTokens: intArg('decode-tokens', values['decode-tokens'], 64, 1),
    batches: idsArg('batches', values.batches ?? '8,32'),
    batchDecodeSteps: 32,
    kvDtype: values['kv-cache-dtype'] === 'auto' ? 'auto' : (kvDtypeArg(values['kv-cache-dtype']) ?? 'auto'),
    llamaCpp: !values['no-llama-cpp'],
    cacheDir: '.bench',
    log: (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write(values.json ? `${JSON.stringify(result)}\n` : `${formatEngineBench(result)}\n`);
}

/** `bench engine --kv-cache-dtypes f32,f16`: long-context decode with each KV dtype, interleaved (kv-dtype-bench.ts). */
async function kvDtypesBench(values: Record<string, string | boolean | undefined>, dtypes: WeightDType[]): Promise<void> {
  const str = (k: string) => values[k] as string | undefined;
  if (values['kv-cache-dtype'] !== undefined) throw new UsageError('--kv-cache-dtype and --kv-cache-dtypes: give one of them');
  if (values.batches !== undefined) throw new UsageError('--batches does not apply to --kv-cache-dtypes (one sequence at a long context)');
  const kvDtypes = (str('kv-cache-dtypes') as string).split(',').map((v) => kvDtypeArg(v) as KvDtype);
  if (new Set(kvDtypes).size !== kvDtypes.length) throw new UsageError('--kv-cache-dtypes: a dtype is listed twice');
  const rounds = intArg('rounds', str('rounds'), 5, 1);
  const decodeTokens = intArg('decode-tokens', str('decode-tokens'), 120, 1);
  for (const dtype of dtypes) {
    const result = await runKvDtypeBench({
      model: str('model') ?? 'dummy:smol135',
      dtype,
      kvDtypes,
      threads: intArg('threads', str('threads'), cpus().length, 1),
      promptLen: intArg('prompt-len', str('prompt-len'), 8000, 1),
      rounds,
      stepsPerRound: Math.ceil(decodeTokens / rounds),
      llamaCpp: !values['no-llama-cpp'],
      cacheDir: '.bench',
      log: (line) => process.stderr.write(`${line}\n`),
    });
    process.stdout.write(values.json ? `${JSON.stringify(result)}\n` : `${formatKvDtypeBench(result)}\n`);
  }
}

async function workerBench(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      model: { type: 'string' },
      streams: { type: 'string' },
      tokens: { type: 'string' },
      threads: { type: 'string' },
      temperature: { type: 'string' },
    },
  });
  const model = values.model ?? 'dummy:smol135:bf16';
  const temperature = numArg('temperature', values.temperature, 0);
  if (temperature < 0) throw new UsageError(`--temperature must be >= 0, got '${values.temperature}'`);
  const rows = await runWorkerBench({
    model,
    streams: idsArg('streams', values.streams ?? '1,8,32'),
    tokens: intArg('tokens', values.tokens, 64, 2),
    threads: intArg('threads', values.threads, cpus().length, 1),
    temperature,
    log: (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write(`${formatWorkerBench(model, rows, temperature)}\n`);
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
      parts: { type: 'string' },
      'overhead-model': { type: 'string' },
      'load-cost-tokens': { type: 'string' },
      routers: { type: 'string' },
      workloads: { type: 'string' },
      'tier-model': { type: 'string' },
      'host-multiple': { type: 'string' },
      'reload-tokens': { type: 'string' },
    },
  });
  const parts = (values.parts ?? 'workloads,overhead,decisions').split(',');
  const chosen = (values.workloads ?? 'poisson,saturation,trace').split(',');
  const badWorkload = chosen.find((w) => !['poisson', 'saturation', 'trace'].includes(w));
  if (badWorkload !== undefined) throw new UsageError(`--workloads: '${badWorkload}' is not one of poisson, saturation, trace`);
  const ROUTING_PARTS = ['workloads', 'overhead', 'decisions', 'http', 'reload', 'offload', 'spill'];
  const badPart = parts.find((p) => !ROUTING_PARTS.includes(p));
  if (badPart !== undefined) throw new UsageError(`--parts: '${badPart}' is not one of ${ROUTING_PARTS.join(', ')}`);
  const tierModel = values['tier-model'] ?? 'dummy:smol135:bf16';
  const hostMultiple = intArg('host-multiple', values['host-multiple'], 4, 1);
  const reloadTokens = intArg('reload-tokens', values['reload-tokens'], 512, 32);
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
      key: 'poisson',
      name: `shared prefixes (6 system prompts of 1024 tokens, 16-token suffixes, 4 output tokens), Poisson arrivals at ${rate}/s`,
      requests: shared(rate),
    },
    { key: 'saturation', name: 'the same requests all at once (throughput at saturation)', requests: shared(0) },
    {
      key: 'trace',
      name: 'Mooncake conversation trace, first requests, 512-token blocks scaled to 16 tokens, outputs scaled likewise (max 8), time x2',
      requests: mooncakeWorkload({
        path: trace,
        requests: intArg('trace-requests', values['trace-requests'], 100, 1),
        tokensPerBlock: 16,
        maxOutput: 8,
        timeScale: Number(values['time-scale'] ?? 0.5),
      }),
    },
  ].filter((w) => chosen.includes(w.key));
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const threads = intArg('threads', values.threads, 1, 1);
  const tierOut: string[] = [];
  if (parts.includes('reload'))
    tierOut.push(formatReload(await measureReload({ model: tierModel, threads, promptTokens: reloadTokens, reps: 3, log })), '');
  if (parts.includes('offload')) {
    const traceRequests = mooncakeWorkload({
      path: trace,
      requests: intArg('trace-requests', values['trace-requests'], 2500, 1),
      tokensPerBlock: 16,
      maxOutput: 8,
      timeScale: Number(values['time-scale'] ?? 8),
    });
    const r = await measureOffloadReplay({
      model: values.model ?? 'dummy:tiny',
      workers: intArg('workers', values.workers, 4, 1),
      numBlocks: values['num-blocks'] === undefined ? null : intArg('num-blocks', values['num-blocks'], 160, 8),
      threads,
      hostMultiple,
      workload: { name: 'Mooncake conversation trace', requests: traceRequests },
      oracle: oracleHitRate(traceRequests, 16),
      log,
    });
    tierOut.push(formatOffloadReplay(r), '');
  }
  if (parts.includes('spill'))
    tierOut.push(formatSpill(await measureSpill({ model: tierModel, threads, prefixes: 4, prefixTokens: 1024, loaders: 9, log })), '');
  if (tierOut.length > 0) process.stdout.write(`${tierOut.join('\n')}\n`);
  if (!parts.some((p) => ['workloads', 'overhead', 'decisions', 'http'].includes(p))) return;
  const result = await runRoutingBench({
    cli: process.argv[1] as string,
    model: values.model ?? 'dummy:smol135:bf16',
    workers: intArg('workers', values.workers, 3, 1),
    routers: intArg('routers', values.routers, 1, 1),
    numBlocks: intArg('num-blocks', values['num-blocks'], 160, 8),
    threads,
    policies: policies as PolicyName[],
    workloads,
    overheadModel: values['overhead-model'],
    cacheAware:
      values['load-cost-tokens'] === undefined
        ? undefined
        : { loadCostTokens: intArg('load-cost-tokens', values['load-cost-tokens'], 256, 0) },
    parts: {
      workloads: parts.includes('workloads'),
      overhead: parts.includes('overhead'),
      decisions: parts.includes('decisions'),
      http: parts.includes('http'),
    },
    log: (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write(`${formatRoutingBench(result)}\n`);
}

const KCACHE_PARTS = ['fidelity', 'attention', 'decode', 'budget', 'capacity'];

async function kcacheBench(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      parts: { type: 'string' },
      'fidelity-model': { type: 'string' },
      'fidelity-topn': { type: 'string' },
      model: { type: 'string' },
      contexts: { type: 'string' },
      'decode-contexts': { type: 'string' },
      batches: { type: 'string' },
      topn: { type: 'string' },
      threads: { type: 'string' },
      'budget-gib': { type: 'string' },
      'budget-contexts': { type: 'string' },
      'kv-cache-dtype': { type: 'string' },
    },
  });
  const parts = (values.parts ?? KCACHE_PARTS.join(',')).split(',');
  const bad = parts.find((p) => !KCACHE_PARTS.includes(p));
  if (bad !== undefined) throw new UsageError(`--parts: '${bad}' is not one of ${KCACHE_PARTS.join(', ')}`);
  // the attention part's caches (the end-to-end parts keep KCache's f32 figures comparable)
  const attentionKv = kvDtypeArg(values['kv-cache-dtype']);
  if (attentionKv !== undefined && !parts.includes('attention')) throw new UsageError('--kv-cache-dtype applies to --parts attention');
  const threads = intArg('threads', values.threads, cpus().length, 1);
  const topNs = idsArg('topn', values.topn ?? '32,64');
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const model = values.model ?? 'dummy:smol135:bf16';
  const spec = resolveModel(model);
  const shape = spec.config;
  const out: string[] = [];
  if (parts.includes('fidelity')) {
    const fidelityModel = resolve(values['fidelity-model'] ?? '../shared/models/stories260K.bin');
    if (!existsSync(fidelityModel)) throw new UsageError(`--fidelity-model: ${fidelityModel} does not exist`);
    const fidelityTopNs = idsArg('fidelity-topn', values['fidelity-topn'] ?? '4,8,16,32,64,128,256');
    const configs: FidelityConfig[] = [];
    for (const renormalize of [true, false])
      for (const fullLayers of [0, 1, 2]) for (const topN of fidelityTopNs) configs.push({ topN, fullLayers, renormalize });
    const o = { model: fidelityModel, sequences: 8, length: 500, scoreFrom: 64, configs, seed: 1, threads };
    out.push('### fidelity', '', formatFidelity('stories260K', o, await measureFidelity(o, log)), '');
  }
  if (parts.includes('attention')) {
    const contexts = idsArg('contexts', values.contexts ?? '1024,4096,16384,32768');
    const rows = await measureAttention(shape, contexts, topNs, threads, log, attentionKv ?? 'f32');
    out.push(
      `### decode attention alone (${model} shape: ${shape.nLayers} layers, ${shape.nHeads}/${shape.nKvHeads} heads of ${shape.headDim}, ${attentionKv ?? 'f32'} KV cache)`,
      '',
      formatAttention(rows, shape),
      '',
    );
  }
  if (parts.includes('decode')) {
    const contexts = idsArg('decode-contexts', values['decode-contexts'] ?? '2048,4096,8000');
    const rows = await measureDecode(spec, contexts, idsArg('batches', values.batches ?? '1,4'), topNs, threads, 8, log);
    out.push('### end-to-end decode', '', formatDecode(model, rows), '');
  }
  if (parts.includes('budget')) {
    const gib = Number(values['budget-gib'] ?? '2');
    if (!(gib > 0 && gib <= 64)) throw new UsageError(`--budget-gib: '${values['budget-gib']}' is not a number of GiB in (0, 64]`);
    const rows: BudgetRow[] = [];
    for (const context of idsArg('budget-contexts', values['budget-contexts'] ?? '4096,8000')) {
      try {
        rows.push(await measureBudgetDecode(spec, context, gib * 2 ** 30, topNs, threads, 8, log));
      } catch (e) {
        if (e instanceof RangeError) throw new UsageError(`--budget-contexts / --budget-gib: ${e.message}`);
        throw e;
      }
    }
    out.push('### decode at a fixed device-tier budget', '', formatBudget(model, rows), '');
  }
  if (parts.includes('capacity')) {
    const budget = 4 * 2 ** 30;
    out.push('### capacity', '', formatCapacity(budget, 8000, capacity(shape, budget, 8000, [0, 1, 2])), '');
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

async function plotCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: { out: { type: 'string' }, seconds: { type: 'string' }, model: { type: 'string' } },
  });
  const out = resolve(values.out ?? 'docs/img/cluster.svg');
  const r = await renderClusterPlot({
    cli: process.argv[1] as string,
    out,
    seconds: intArg('seconds', values.seconds, 30, 3),
    model: values.model ?? 'dummy:smol135:bf16',
    log: (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write(
    `wrote ${out}: ${r.requests} requests (${r.failed} failed), cluster prefix cache hit rate ${(100 * r.hitRate).toFixed(1)}%\n`,
  );
}

async function faultsBench(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: { model: { type: 'string' }, cases: { type: 'string' }, json: { type: 'boolean' } },
  });
  const cases = (values.cases ?? FAULT_CASES.join(',')).split(',');
  const bad = cases.find((c) => !(FAULT_CASES as readonly string[]).includes(c));
  if (bad !== undefined) throw new UsageError(`--cases: '${bad}' is not one of ${FAULT_CASES.join(', ')}`);
  const rows = await runFaultsBench({
    cli: process.argv[1] as string,
    model: values.model ?? 'dummy:tiny',
    cases: cases as FaultCase[],
    log: (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write(values.json ? `${JSON.stringify(rows)}\n` : `${formatFaultsBench(rows)}\n`);
  if (rows.some((r) => !r.met)) process.exitCode = 1;
}

async function samplingBench(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: { model: { type: 'string' }, rows: { type: 'string' }, threads: { type: 'string' }, json: { type: 'boolean' } },
  });
  const result = await runSamplingBench({
    model: values.model ?? 'dummy:smol135:q4_0',
    rows: intArg('rows', values.rows, 32, 1),
    threads: intArg('threads', values.threads, cpus().length, 1),
    log: (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write(values.json ? `${JSON.stringify(result)}\n` : `${formatSamplingBench(result)}\n`);
  if (result.rows.some((r) => r.agreed !== r.draws)) process.exitCode = 1;
}

async function batchBench(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      model: { type: 'string' },
      requests: { type: 'string' },
      groups: { type: 'string' },
      'prefix-chars': { type: 'string' },
      'num-blocks': { type: 'string' },
      interactive: { type: 'string' },
      rate: { type: 'string' },
      'max-background-prefill-tokens': { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  const cap = values['max-background-prefill-tokens'];
  const r = await runBatchBench({
    cli: process.argv[1] as string,
    model: values.model ?? 'dummy:smol135:bf16',
    requests: intArg('requests', values.requests, 60, 1),
    groups: intArg('groups', values.groups, 6, 1),
    prefixChars: intArg('prefix-chars', values['prefix-chars'], 400, 1),
    numBlocks: intArg('num-blocks', values['num-blocks'], 64, 8),
    interactive: intArg('interactive', values.interactive, 40, 2),
    ratePerS: intArg('rate', values.rate, 4, 1),
    maxBackgroundPrefillTokens: cap === undefined ? undefined : intArg('max-background-prefill-tokens', cap, 0, 1),
    log: (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write(values.json ? `${JSON.stringify(r)}\n` : `${formatBatchBench(r)}\n`);
}
