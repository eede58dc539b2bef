// Model loading: Hugging Face directories (single and sharded safetensors, tokenizer.json),
// llama2.c files, and one clear error naming the file for every broken input.
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Engine } from '@kcache/engine';
import { encodeSafetensors, loadHfDir, ModelLoadError, resolveModel } from '@kcache/models';
import { describe, expect, test } from 'vitest';
import { SMALL_HF, writeTinyHfModel } from './helpers/hf-model.js';
import { STORIES_260K } from './helpers/paths.js';
import { tempDir } from './helpers/temp.js';
import { TINY_BPE_TOKENIZER } from './helpers/tokenizer-json.js';

const tmp = () => tempDir('kcache-models-');
const base = SMALL_HF;

function expectLoadError(fn: () => unknown, file: string, problem: RegExp) {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ModelLoadError);
  const msg = (err as Error).message;
  expect(msg).toContain(file);
  expect(msg).toMatch(problem);
  expect(msg).not.toContain('\n');
}

describe('Hugging Face directories', () => {
  test('tokenizer.json is loaded offline and used for text', () => {
    const m = writeTinyHfModel(base);
    writeFileSync(join(m.dir, 'tokenizer.json'), JSON.stringify(TINY_BPE_TOKENIZER));
    const spec = loadHfDir(m.dir);
    expect(spec.tokenizer?.encode('hello world')).toEqual([7, 8, 9, 3, 10, 2, 11]);
    // no add_bos_token and a post-processor that adds nothing: no BOS, as Hugging Face's tokenizer(text)
    expect(spec.tokenizer?.addsBos).toBe(false);
    expect(spec.tokenizer?.encode('hello', { addBos: true })).toEqual([7]);
    expect(spec.tokenizer?.decode([7, 8, 9, 3, 10, 2, 11, 13])).toBe('hello world');
    expect(spec.eosTokenIds).toEqual([2]);
  });

  test('BOS only where the tokenizer adds one: add_bos_token, else what the post-processor prepends', () => {
    const m = writeTinyHfModel(base);
    const bosOf = (tokenizer: object, config?: object) => {
      writeFileSync(join(m.dir, 'tokenizer.json'), JSON.stringify({ ...TINY_BPE_TOKENIZER, ...tokenizer }));
      if (config) writeFileSync(join(m.dir, 'tokenizer_config.json'), JSON.stringify(config));
      return loadHfDir(m.dir).tokenizer?.encode('hello', { addBos: true });
    };
    // Llama 3: a TemplateProcessing post-processor puts the BOS special token first
    const llama3 = {
      post_processor: {
        type: 'TemplateProcessing',
        single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
        pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
        special_tokens: { '<s>': { id: '<s>', ids: [12], tokens: ['<s>'] } },
      },
    };
    expect(bosOf(llama3)).toEqual([12, 7]);
    // Qwen2: a ByteLevel post-processor adds nothing
    expect(bosOf({ post_processor: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false } })).toEqual([7]);
    // tokenizer_config.json's add_bos_token decides where it is set, with its named bos_token
    expect(bosOf({}, { add_bos_token: true, bos_token: '<s>' })).toEqual([12, 7]);
    expect(bosOf({}, { add_bos_token: true, bos_token: { content: '<s>', special: true } })).toEqual([12, 7]);
    expect(bosOf(llama3, { add_bos_token: false, bos_token: '<s>' })).toEqual([7]);
    // without a name, config.json's bos_token_id
    expect(bosOf({}, { add_bos_token: true })).toEqual([1, 7]);
    // with addBos false (chat templates put BOS in the text) nothing is added
    expect(loadHfDir(m.dir).tokenizer?.encode('hello')).toEqual([7]);
  });

  test('sharded safetensors load through the index', async () => {
    const m = writeTinyHfModel({ ...base, shards: 2 });
    const engine = await Engine.load(loadHfDir(m.dir), { numBlocks: 2 });
    expect(engine.readWeight('layers.0.w2')).toEqual(m.weights.get('layers.0.w2'));
    engine.dispose();
  });

  test('loading reports progress: bytes of weights as stored, rising to the whole model', async () => {
    const m = writeTinyHfModel({ ...base, dtype: 'bf16' });
    const calls: [number, number][] = [];
    const engine = await Engine.load(loadHfDir(m.dir), { numBlocks: 2, onProgress: (loaded, total) => calls.push([loaded, total]) });
    engine.dispose();
    await new Promise((r) => setImmediate(r)); // calls may trail the load
    let total = 0;
    for (const w of m.weights.values()) total += w.length * 2; // bf16: 2 bytes a weight
    expect(calls.length).toBe(m.weights.size); // one call a tensor
    expect(calls.every(([, t]) => t === total)).toBe(true);
    expect(calls.map(([l]) => l)).toEqual([...calls.map(([l]) => l)].sort((a, b) => a - b));
    expect(calls.at(-1)).toEqual([total, total]);
  });

  test('missing config.json', () => expectLoadError(() => loadHfDir(tmp()), 'config.json', /missing/));

  test('config.json that is not JSON', () => {
    const d = tmp();
    writeFileSync(join(d, 'config.json'), '{ nope');
    expectLoadError(() => loadHfDir(d), join(d, 'config.json'), /not valid JSON/);
  });

  test('unsupported architecture', () => {
    const m = writeTinyHfModel(base);
    writeFileSync(join(m.dir, 'config.json'), JSON.stringify({ ...m.config, architectures: ['GPT2LMHeadModel'] }));
    expectLoadError(() => loadHfDir(m.dir), 'config.json', /unsupported architecture 'GPT2LMHeadModel'/);
  });

  test('unsupported rope scaling', () => {
    const m = writeTinyHfModel(base);
    writeFileSync(join(m.dir, 'config.json'), JSON.stringify({ ...m.config, rope_scaling: { rope_type: 'yarn', factor: 4 } }));
    expectLoadError(() => loadHfDir(m.dir), 'config.json', /unsupported rope_scaling type 'yarn'/);
  });

  test('truncated safetensors', () => {
    const m = writeTinyHfModel(base);
    const file = join(m.dir, 'model.safetensors');
    writeFileSync(file, readFileSync(file).subarray(0, 5000));
    expectLoadError(() => loadHfDir(m.dir), file, /truncated/);
  });

  test('unsupported tensor dtype', () => {
    const m = writeTinyHfModel(base);
    const file = join(m.dir, 'model.safetensors');
    const buf = readFileSync(file);
    const len = Number(buf.readBigUInt64LE(0));
    const header = buf
      .subarray(8, 8 + len)
      .toString()
      .replace('"dtype":"F32"', '"dtype":"I8" ');
    writeFileSync(file, Buffer.concat([buf.subarray(0, 8), Buffer.from(header), buf.subarray(8 + len)]));
    expectLoadError(() => loadHfDir(m.dir), file, /unsupported dtype I8/);
  });

  test('a required weight is absent', () => {
    const m = writeTinyHfModel(base);
    writeFileSync(
      join(m.dir, 'model.safetensors'),
      encodeSafetensors([{ name: 'model.norm.weight', dtype: 'f32', shape: [32], data: new Uint8Array(128) }]),
    );
    expectLoadError(() => loadHfDir(m.dir), m.dir, /model.embed_tokens.weight not found/);
  });

  test('a weight whose shape disagrees with config.json', async () => {
    const m = writeTinyHfModel(base);
    writeFileSync(join(m.dir, 'config.json'), JSON.stringify({ ...m.config, intermediate_size: 40 }));
    await expect(Engine.load(loadHfDir(m.dir), { numBlocks: 1 })).rejects.toThrow(
      /tensor layers\.0\.w1: expected shape \[40, 32\], got \[48, 32\]/,
    );
  });

  test('a shard named in the index is missing', () => {
    const m = writeTinyHfModel({ ...base, shards: 2 });
    const index = JSON.parse(readFileSync(join(m.dir, 'model.safetensors.index.json'), 'utf8'));
    index.weight_map['model.norm.weight'] = 'model-gone.safetensors';
    writeFileSync(join(m.dir, 'model.safetensors.index.json'), JSON.stringify(index));
    expectLoadError(() => loadHfDir(m.dir), 'model-gone.safetensors', /cannot open \(ENOENT\)/);
  });
});

describe('llama2.c checkpoints and references', () => {
  test('stories260K header', () => {
    const s = resolveModel(STORIES_260K);
    expect(s.config).toMatchObject({
      dim: 64,
      hiddenDim: 172,
      nLayers: 5,
      nHeads: 8,
      nKvHeads: 4,
      vocabSize: 512,
      maxSeqLen: 512,
      headDim: 8,
    });
    expect(s.tokenizer).toBeNull();
  });

  test('truncated file', () => {
    const d = tmp();
    const file = join(d, 'cut.bin');
    writeFileSync(file, readFileSync(STORIES_260K).subarray(0, 100_000));
    expectLoadError(() => resolveModel(file), file, /truncated: the header describes \d+ bytes of weights but the file has 100000/);
  });

  test('not a checkpoint', () => {
    const d = tmp();
    const file = join(d, 'junk.bin');
    writeFileSync(file, Buffer.from('this is not a model file at all, not at all'));
    expectLoadError(() => resolveModel(file), file, /not a llama2.c checkpoint/);
  });

  test('missing file, unknown preset, unknown format', () => {
    expectLoadError(() => resolveModel('/nonexistent/model.bin'), '/nonexistent/model.bin', /no such file or directory/);
    expectLoadError(() => resolveModel('dummy:huge'), 'dummy:huge', /unknown dummy preset 'huge'/);
    expectLoadError(() => resolveModel('dummy:tiny:int4'), 'dummy:tiny:int4', /unsupported dtype 'int4'/);
    const d = tmp();
    copyFileSync(STORIES_260K, join(d, 'model.onnx'));
    expectLoadError(() => resolveModel(join(d, 'model.onnx')), 'model.onnx', /unsupported model file/);
    copyFileSync(STORIES_260K, join(d, 'model.gguf'));
    expectLoadError(() => resolveModel(join(d, 'model.gguf')), 'model.gguf', /not a GGUF file/);
  });
});
