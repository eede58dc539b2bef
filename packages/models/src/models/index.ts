import { existsSync, statSync } from 'node:fs';
import { ModelLoadError } from '../errors.js';
import { loadGguf } from '../gguf/model.js';
import { loadDummy } from './dummy.js';
import { loadHfDir } from './hf.js';
import { loadLlama2c } from './llama2c.js';
import { LOAD_QUANT_DTYPES, type LoadQuantDType, type ModelSpec, quantizeOnLoad, type WeightDType } from './spec.js';

export interface ResolveOptions {
  /** Weight dtype for dummy models when the reference does not name one. */
  dtype?: WeightDType;
  /** Seed of a dummy model's weights. */
  seed?: number;
  /** Quantize the float matrices as they load (`--quantize`). */
  quantize?: LoadQuantDType;
}

/** A model reference without its quantize-on-load suffix (`<path>#q8_0`), and that suffix. */
export function splitQuantSuffix(ref: string): { path: string; quantize?: LoadQuantDType } {
  const m = /^(.*)#([a-z0-9_]+)$/.exec(ref);
  if (!m || ref.startsWith('dummy:')) return { path: ref };
  const q = m[2] as LoadQuantDType;
  if (!LOAD_QUANT_DTYPES.includes(q)) throw new ModelLoadError(`${ref}: unknown quantization '${q}' (use ${LOAD_QUANT_DTYPES.join(', ')})`);
  return { path: m[1] as string, quantize: q };
}

/**
 * `dummy:<preset>[:<dtype>]`, a llama2.c `.bin` file, a GGUF file, or a Hugging Face directory;
 * a path may end in `#<type>` (the id of a model quantized on load: `opts.quantize` writes it).
 */
export function resolveModel(ref: string, opts: ResolveOptions = {}): ModelSpec {
  if (ref.startsWith('dummy:')) {
    if (opts.quantize)
      throw new ModelLoadError(`${ref}: name the quantized type in the reference instead (dummy:<preset>:${opts.quantize})`);
    return loadDummy(ref, opts);
  }
  const { path, quantize: fromRef } = splitQuantSuffix(ref);
  if (fromRef && opts.quantize && fromRef !== opts.quantize) throw new ModelLoadError(`${ref}: already names quantization ${fromRef}`);
  const quantize = fromRef ?? opts.quantize;
  if (!existsSync(path)) throw new ModelLoadError(`${path}: no such file or directory`);
  let spec: ModelSpec;
  if (statSync(path).isDirectory()) spec = loadHfDir(path);
  else if (path.endsWith('.bin')) spec = loadLlama2c(path);
  else if (path.endsWith('.gguf')) spec = loadGguf(path);
  else
    throw new ModelLoadError(
      `${path}: unsupported model file (expected a llama2.c .bin, a .gguf file, a Hugging Face directory, or dummy:<preset>)`,
    );
  return quantize ? quantizeOnLoad(spec, quantize) : spec;
}
