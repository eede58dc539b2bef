// GGUF models against llama.cpp on the same files: tokenization from GGUF metadata (SentencePiece
// and byte-level BPE vocabularies), and greedy tokens and next-token distributions of random
// llama-architecture models in every weight type kcache runs.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine, generate, quantKernels } from '@kcache/engine';
import {
  GGML_TYPE,
  type GgufEntry,
  type GgufTensorOut,
  GgufType,
  loadChatTemplate,
  resolveModel,
  type WeightDType,
  writeGgufFile,
} from '@kcache/models';
import { afterAll, describe, expect, test } from 'vitest';
import { bpeVocab, CHATML, CORPUS, chatVocab, spmVocab, writeTestModel } from './helpers/gguf-model.js';
import { LlamaCpp } from './helpers/llama-cpp.js';
import { runKcache, spawnKcache, UP_FREE_PORTS } from './helpers/processes.js';

const dir = mkdtempSync(join(tmpdir(), 'kcache-gguf-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const STRINGS = [
  ...CORPUS,
  'Hello world',
  ' leading space',
  'trailing space ',
  '   three leading spaces',
  'a  b   c    d',
  '\n\nnew lines\r\nand returns\t\ttabs',
  'unicode: ÀÉÎÕÜ ß ø 東京 سلام Ελληνικά 🙂👍🏽',
  'specials: <|im_start|>user\nhi<|im_end|> and <|tool|>call',
  '<s>not parsed as BOS inside text?</s>',
  "don't won't it's I'm we'll you've",
  'numbers 1 22 333 4444 55555 666666',
  '',
];

describe('tokenization from GGUF metadata equals llama.cpp', () => {
  test.each([
    ['spm', () => spmVocab()],
    ['bpe gpt-2', () => bpeVocab('gpt-2')],
    ['bpe default', () => bpeVocab('default')],
    ['bpe llama-bpe', () => bpeVocab('llama-bpe')],
    ['bpe qwen2', () => bpeVocab('qwen2')],
    ['bpe smollm', () => bpeVocab('smollm')],
  ])(
    '%s',
    async (name, vocab) => {
      const file = join(dir, `tok-${name.replace(/ /g, '-')}.gguf`);
      writeTestModel(file, 'f32', vocab());
      const ours = resolveModel(file).tokenizer;
      if (!ours) throw new Error('no tokenizer');
      const ref = await LlamaCpp.open(file);
      try {
        for (const s of STRINGS) expect(ours.encode(s), JSON.stringify(s)).toEqual(ref.tokenize(s));
      } finally {
        await ref.close();
      }
    },
    60_000,
  );
});

describe('random GGUF models: kcache and llama.cpp agree', () => {
  // max |Δp| over every token of 40 next-token distributions, llama.cpp with an f32 KV cache and
  // no flash attention. llama.cpp multiplies quantized weights with activations it rounds to 8
  // bits (q8_0 / q8_K blocks); kcache keeps them in f32.
  // Measured (2026-12-01, this suite's seeds): f32 4e-6; f16 1e-3 and bf16 9e-3 (llama.cpp rounds
  // the activations of a 16-bit matmul to 16 bits too); quantized 6e-8 (q4_1) to 4e-2 (q8_0), and
  // 0.20 for q6_k (0.17 since q6_k runs on the VNNI variant's integer path, 2026-12-02), whose
  // llama.cpp kernel rounds activations with one scale per 256 values (q8_K): kcache's generic
  // kernels, which keep activations in f32, differ from it by 0.13 there too.
  const TOLERANCE: Record<string, number> = { f32: 1e-5, f16: 1e-2, bf16: 2e-2, q6_k: 0.25 };
  const QUANTIZED_TOLERANCE = 0.1;
  const TYPES: WeightDType[] = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0', 'q4_1', 'q5_0', 'q5_1', 'q4_k', 'q5_k', 'q6_k'];
  const vocab = spmVocab();
  const CASES: ['llama' | 'qwen2', WeightDType][] = [
    ...TYPES.map((t) => ['llama', t] as ['llama', WeightDType]),
    ['qwen2', 'f32'],
    ['qwen2', 'q4_k'],
  ];
  test.each(CASES)(
    '%s %s: the same 32 greedy tokens, and next-token distributions within tolerance',
    async (arch, type) => {
      const file = join(dir, `model-${arch}-${type}.gguf`);
      writeTestModel(file, type, vocab, 100 + TYPES.indexOf(type), arch);
      const spec = resolveModel(file);
      expect(spec.tensors.find((t) => t.name === 'layers.0.wq')?.dtype).toBe(type);
      expect(spec.config.rope.style).toBe(arch === 'qwen2' ? 'half-split' : 'interleaved');
      expect(spec.config.qkvBias).toBe(arch === 'qwen2');
      const tokenizer = spec.tokenizer;
      if (!tokenizer) throw new Error('no tokenizer');
      const V = spec.config.vocabSize;
      const prompt = [1, ...tokenizer.encode('Once upon a time')];
      // a varied text, so the distributions are compared in many contexts (free-running greedy
      // text from random weights soon repeats itself)
      const text = [1, ...tokenizer.encode(`${CORPUS[0]} ${CORPUS[1]} ${CORPUS[3]}`)].slice(0, 40);
      const ref = await LlamaCpp.open(file);
      let llamaGreedy: number[];
      let llamaProbs: Float64Array[];
      try {
        llamaGreedy = (await ref.greedy(prompt, 32, V)).tokens;
        llamaProbs = await ref.probabilities(text, V);
      } finally {
        await ref.close();
      }
      const engine = await Engine.load(spec, { numBlocks: 8, threads: 2 });
      try {
        const ours = await generate(engine, {
          promptIds: prompt,
          maxTokens: 32,
          sampling: { temperature: 0, topK: 0, topP: 1, minP: 0 },
          ignoreEos: true,
        });
        const [logits] = await engine.step([{ tokens: text, startPos: 0, blockTable: [0, 1, 2], allLogits: true }]);
        let maxDiff = 0;
        let sameTop = 0;
        for (let i = 0; i < text.length; i++) {
          const row = (logits as Float32Array).subarray(i * V, (i + 1) * V);
          const p = llamaProbs[i] as Float64Array;
          let top = 0;
          let refTop = 0;
          for (let t = 1; t < V; t++) {
            if ((row[t] as number) > (row[top] as number)) top = t;
            if ((p[t] as number) > (p[refTop] as number)) refTop = t;
          }
          sameTop += top === refTop ? 1 : 0;
          const m = row[top] as number;
          let sum = 0;
          for (let t = 0; t < V; t++) sum += Math.exp((row[t] as number) - m);
          for (let t = 0; t < V; t++) maxDiff = Math.max(maxDiff, Math.abs(Math.exp((row[t] as number) - m) / sum - (p[t] as number)));
        }
        console.log(
          `${arch} ${type}: greedy ${ours.tokenIds.filter((t, i) => t === llamaGreedy[i]).length}/32; along the text: same argmax ${sameTop}/${text.length}, max |Δp| ${maxDiff.toExponential(2)}`,
        );
        expect(ours.tokenIds).toEqual(llamaGreedy);
        // near-ties along the text may go either way under that rounding
        expect(sameTop).toBeGreaterThanOrEqual(text.length - 3);
        expect(maxDiff).toBeLessThanOrEqual(TOLERANCE[type] ?? QUANTIZED_TOLERANCE);
      } finally {
        engine.dispose();
      }
    },
    60_000,
  );
});

describe('GGUF files and quantize-on-load', () => {
  test('bad files: one error naming the file and the problem', () => {
    const ok = join(dir, 'ok.gguf');
    writeTestModel(ok, 'q8_0', spmVocab());
    const bytes = readFileSync(ok);
    const truncated = join(dir, 'truncated.gguf');
    writeFileSync(truncated, bytes.subarray(0, 5000));
    expect(() => resolveModel(truncated)).toThrow(/truncated\.gguf: truncated GGUF header/);
    const unsupported = (mutate: (entries: GgufEntry[], tensors: GgufTensorOut[]) => void, name: string) => {
      const f = join(dir, name);
      const entries: GgufEntry[] = [
        { key: 'general.architecture', type: GgufType.STRING, value: 'llama' },
        { key: 'llama.embedding_length', type: GgufType.U32, value: 32 },
        { key: 'llama.feed_forward_length', type: GgufType.U32, value: 32 },
        { key: 'llama.block_count', type: GgufType.U32, value: 0 },
        { key: 'llama.attention.head_count', type: GgufType.U32, value: 1 },
        { key: 'llama.context_length', type: GgufType.U32, value: 64 },
      ];
      const tensors: GgufTensorOut[] = [{ name: 'token_embd.weight', dims: [32, 4], ggmlType: GGML_TYPE.f32, data: new Uint8Array(512) }];
      mutate(entries, tensors);
      writeGgufFile(f, entries, tensors);
      return () => resolveModel(f);
    };
    expect(unsupported((e) => (e[0] = { key: 'general.architecture', type: GgufType.STRING, value: 'falcon' }), 'arch.gguf')).toThrow(
      /arch\.gguf: unsupported architecture 'falcon'/,
    );
    expect(unsupported((_, t) => ((t[0] as GgufTensorOut).ggmlType = 10), 'q2k.gguf')).toThrow(
      /q2k\.gguf: tensor token_embd\.weight has type Q2_K/,
    );
    expect(unsupported((e) => e.splice(1, 1), 'meta.gguf')).toThrow(/meta\.gguf: metadata llama\.embedding_length is missing/);
    expect(
      unsupported(
        (e) =>
          e.push(
            { key: 'tokenizer.ggml.model', type: GgufType.STRING, value: 'gpt2' },
            { key: 'tokenizer.ggml.pre', type: GgufType.STRING, value: 'tekken' },
            { key: 'tokenizer.ggml.tokens', type: GgufType.ARRAY, elem: GgufType.STRING, value: ['a'] },
            { key: 'tokenizer.ggml.merges', type: GgufType.ARRAY, elem: GgufType.STRING, value: [] },
          ),
        'pre.gguf',
      ),
    ).toThrow(/pre\.gguf: tokenizer\.ggml\.pre 'tekken' is not supported/);
  });

  test("a GGUF file's chat template and special tokens", () => {
    const f = join(dir, 'chat.gguf');
    const vocab = chatVocab(`{{ bos_token }}${CHATML}`);
    writeTestModel(f, 'f16', vocab);
    const t = loadChatTemplate(f);
    expect(t?.render([{ role: 'user', content: 'hi' }])).toBe('<s><|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n');
    expect(loadChatTemplate(`${f}#q8_0`)?.source).toBe(t?.source);
    const spec = resolveModel(f);
    expect(spec.bosTokenId).toBe(1);
    expect(spec.eosTokenIds).toEqual([2]);
    expect(spec.tokenizer?.encode('hi', { addBos: true })[0]).toBe(1);
  });

  test('--quantize: float matrices become the type (or its fallback) as they load; norms stay f32', async () => {
    const f = join(dir, 'float.gguf');
    writeTestModel(f, 'f32', spmVocab());
    const plain = await Engine.load(resolveModel(f), { numBlocks: 4, threads: 2 });
    const source = plain.readWeight('layers.0.wq').slice(0, 256);
    plain.dispose();
    for (const q of ['q8_0', 'q4_0', 'q5_0', 'q4_k'] as const) {
      const spec = resolveModel(f, { quantize: q });
      expect(spec.id).toBe(`${f}#${q}`);
      expect(resolveModel(spec.id).tensors).toEqual(spec.tensors);
      const engine = await Engine.load(spec, { numBlocks: 4, threads: 2 });
      try {
        const wq = spec.tensors.find((t) => t.name === 'layers.0.wq');
        expect(wq?.quantize).toBe(q);
        expect(spec.tensors.find((t) => t.name === 'norm')?.quantize).toBeUndefined();
        // the bytes the engine holds are the quantizer's output for the file's f32 row
        const raw = engine.readWeightRaw('layers.0.wq');
        const row0 = quantKernels.quantizeRow(q, source);
        expect(Array.from(raw.subarray(0, row0.length))).toEqual(Array.from(row0));
        // and they dequantize back within a step of the format
        const back = quantKernels.dequantizeRow(q, row0, 256);
        expect(Math.max(...Array.from(back, (v, i) => Math.abs(v - (source[i] as number))))).toBeLessThan(0.2);
      } finally {
        engine.dispose();
      }
    }
    expect(() => resolveModel(`${f}#q3_k`)).toThrow(/unknown quantization 'q3_k'/);
  });

  test('the CLI takes .gguf models and --quantize', async () => {
    const f = join(dir, 'cli.gguf');
    writeTestModel(f, 'q4_k', spmVocab());
    const ok = await runKcache('generate', '--model', f, '--prompt', 'Once upon', '--max-tokens', '4', '--temperature', '0', '--json');
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout).tokenIds).toHaveLength(4);
    const q = await runKcache('generate', '--model', f, '--quantize', 'q8_0', '--prompt', 'Once upon', '--max-tokens', '2', '--json');
    expect(q.code).toBe(0);
    const bad = await runKcache('generate', '--model', f, '--quantize', 'q3', '--prompt', 'x');
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/--quantize must be one of q8_0, q4_0, q5_0, q4_k, got 'q3'/);
    const dummy = await runKcache('generate', '--model', 'dummy:tiny', '--quantize', 'q8_0', '--prompt-ids', '1');
    expect(dummy.code).toBe(2);
    expect(dummy.stderr).toMatch(/dummy:<preset>:q8_0/);
  }, 60_000);
});

test('kcache up serves a GGUF model (quantized on load, q8_0 KV): its tokenizer and chat template through the router, a prefix cache hit', async ({
  onTestFinished,
}) => {
  const f = join(dir, 'served.gguf');
  const vocab = chatVocab(CHATML);
  writeTestModel(f, 'f16', vocab);
  const {
    proc: up,
    ready: started,
    exited,
  } = spawnKcache([
    'up',
    '--model',
    f,
    '--quantize',
    'q8_0',
    '--kv-cache-dtype',
    'q8_0',
    '--workers',
    '1',
    ...UP_FREE_PORTS,
    '--threads',
    '1',
    '--json',
  ]);
  let pids: number[] = [];
  onTestFinished(() => {
    if (up.exitCode === null) up.kill('SIGKILL');
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {}
    }
  });
  const ready = (await started) as { routers: { address: string }[]; pids: number[] };
  pids = ready.pids;
  const addr = (ready.routers[0] as { address: string }).address;
  const ask = (...a: string[]) =>
    runKcache('ask', '--addr', addr, '--json', '--max-tokens', '4', '--ignore-eos', '--temperature', '0', ...a);
  const text = `${CORPUS[0]} ${CORPUS[1]}`;
  const first = await ask(text);
  expect(first.code).toBe(0);
  const tok = resolveModel(f).tokenizer;
  const a = JSON.parse(first.stdout);
  expect(a.usage.promptTokens).toBe(tok?.encode(text, { addBos: true }).length);
  const second = JSON.parse((await ask(text)).stdout);
  expect(second.usage.cachedTokens).toBeGreaterThan(0);
  expect(second.tokenIds).toEqual(a.tokenIds);
  const chat = await ask('--chat', 'hi');
  expect(chat.code).toBe(0);
  // the rendered conversation, tokenized as a chat prompt is (no BOS of its own; this template
  // writes none): '<|im_start|>' is one token of the GGUF vocabulary
  expect(JSON.parse(chat.stdout).usage.promptTokens).toBe(tok?.encode('<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n').length);
  up.kill('SIGTERM');
  expect(await exited).toBe(0);
}, 120_000);
