import { parseArgs } from 'node:util';
import { Engine, generate, validateSampling } from '@kcache/engine';
import { resolveModel, type WeightDType } from '@kcache/models';
import { ATTENTION_OPTIONS, attentionArgs, idsArg, intArg, kvDtypeArg, modelRefArg, numArg, UsageError } from '../args.js';
import { stderrLoadProgress } from '../load-progress.js';

export const GENERATE_USAGE = `kcache generate --model <dir | file.gguf | file.bin | dummy:preset[:dtype]> (--prompt TEXT | --prompt-ids 1,2,3)
    [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] [--min-p P] [--seed S] [--ignore-eos] [--json]
    [--dtype f32|bf16|f16] [--quantize q8_0|q4_0|q5_0|q4_k] [--kv-cache-dtype f32|f16|bf16|q8_0] [--threads N] [--block-size N] [--attention full|kcache] [--kcache-topn N] [--kcache-full-layers L]`;

/** Offline generation with the native engine, one sequence. */
export async function generateCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      model: { type: 'string' },
      prompt: { type: 'string' },
      'prompt-ids': { type: 'string' },
      'max-tokens': { type: 'string' },
      temperature: { type: 'string' },
      'top-k': { type: 'string' },
      'top-p': { type: 'string' },
      'min-p': { type: 'string' },
      seed: { type: 'string' },
      'ignore-eos': { type: 'boolean' },
      json: { type: 'boolean' },
      dtype: { type: 'string' },
      quantize: { type: 'string' },
      'kv-cache-dtype': { type: 'string' },
      threads: { type: 'string' },
      'block-size': { type: 'string' },
      ...ATTENTION_OPTIONS,
    },
  });
  if (!values.model) throw new UsageError('--model is required');
  const attention = attentionArgs(values);
  if ((values.prompt === undefined) === (values['prompt-ids'] === undefined))
    throw new UsageError('give exactly one of --prompt and --prompt-ids');
  if (values.dtype !== undefined && !['f32', 'bf16', 'f16'].includes(values.dtype)) {
    throw new UsageError(`--dtype must be f32, bf16 or f16, got '${values.dtype}'`);
  }
  const sampling = {
    temperature: numArg('temperature', values.temperature, 1),
    topK: intArg('top-k', values['top-k'], 0),
    topP: numArg('top-p', values['top-p'], 1),
    minP: numArg('min-p', values['min-p'], 0),
  };
  const bad = validateSampling(sampling);
  if (bad) throw new UsageError(`--${bad.replace('_', '-')}`);
  const maxTokens = intArg('max-tokens', values['max-tokens'], 64);
  const seed = intArg('seed', values.seed, 0);
  const threads = intArg('threads', values.threads, 0);
  const blockSize = intArg('block-size', values['block-size'], 16, 1);

  const spec = resolveModel(modelRefArg(values.model, values.quantize), { dtype: values.dtype as WeightDType | undefined });
  const tokenizer = spec.tokenizer;
  let promptIds: number[];
  if (values['prompt-ids'] !== undefined) {
    promptIds = idsArg('prompt-ids', values['prompt-ids']);
  } else {
    if (!tokenizer) throw new UsageError(`${spec.id} has no tokenizer: pass --prompt-ids instead of --prompt`);
    promptIds = tokenizer.encode(values.prompt ?? '', { addBos: true });
  }
  const vocab = spec.config.vocabSize;
  const outside = promptIds.findIndex((id) => id >= vocab);
  if (outside >= 0)
    throw new UsageError(`--prompt-ids: ${promptIds[outside]} at index ${outside} is outside the vocabulary (size ${vocab})`);
  if (promptIds.length + maxTokens > spec.config.maxSeqLen) {
    throw new UsageError(
      `--max-tokens: prompt (${promptIds.length}) + max tokens (${maxTokens}) exceeds the context length ${spec.config.maxSeqLen}`,
    );
  }
  const blocks = Math.ceil((promptIds.length + maxTokens) / blockSize);
  const progress = stderrLoadProgress(spec.id);
  const kvDtype = kvDtypeArg(values['kv-cache-dtype']) ?? 'auto';
  const engine = await Engine.load(spec, {
    blockSize,
    numBlocks: blocks,
    threads,
    kvDtype,
    ...attention,
    onProgress: progress.update,
  }).catch((e: unknown) => {
    progress.abort();
    throw e;
  });

  // Stream text as it completes; hold back a trailing partial UTF-8 character.
  const generated: number[] = [];
  let printed = 0;
  const onToken = values.json
    ? undefined
    : (id: number) => {
        generated.push(id);
        if (!tokenizer) {
          process.stdout.write(`${generated.length > 1 ? ',' : ''}${id}`);
          return;
        }
        const text = tokenizer.decode(generated);
        if (text.endsWith('\uFFFD')) return;
        process.stdout.write(text.slice(printed));
        printed = text.length;
      };
  const result = await generate(engine, { promptIds, maxTokens, sampling, seed, ignoreEos: values['ignore-eos'] ?? false }, onToken);
  const text = tokenizer ? tokenizer.decode(result.tokenIds) : '';
  const { backend, threads: usedThreads } = engine.info();
  engine.dispose();
  if (values.json) {
    process.stdout.write(
      `${JSON.stringify({
        tokenIds: result.tokenIds,
        text,
        promptTokens: result.promptTokens,
        finishReason: result.finishReason,
        timings: { ...result.timings, backend, threads: usedThreads },
      })}\n`,
    );
    return;
  }
  if (tokenizer) process.stdout.write(text.slice(printed));
  process.stdout.write('\n');
  const t = result.timings;
  process.stderr.write(
    `[${result.finishReason}] prompt ${result.promptTokens} tokens, generated ${result.tokenIds.length}; ` +
      `prefill ${t.prefillTokensPerSecond.toFixed(1)} tok/s, decode ${t.decodeTokensPerSecond.toFixed(1)} tok/s (${backend}, ${usedThreads} threads)\n`,
  );
}
