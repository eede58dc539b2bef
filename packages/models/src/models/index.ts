import { existsSync, statSync } from 'node:fs';
import { ModelLoadError } from '../errors.js';
import { loadDummy } from './dummy.js';
import { loadHfDir } from './hf.js';
import { loadLlama2c } from './llama2c.js';
import type { ModelSpec, WeightDType } from './spec.js';

export interface ResolveOptions {
  /** Weight dtype for dummy models when the reference does not name one. */
  dtype?: WeightDType;
  /** Seed of a dummy model's weights. */
  seed?: number;
}

/** `dummy:<preset>[:<dtype>]`, a llama2.c `.bin` file, or a Hugging Face directory. */
export function resolveModel(ref: string, opts: ResolveOptions = {}): ModelSpec {
  if (ref.startsWith('dummy:')) return loadDummy(ref, opts);
  if (!existsSync(ref)) throw new ModelLoadError(`${ref}: no such file or directory`);
  if (statSync(ref).isDirectory()) return loadHfDir(ref);
  if (ref.endsWith('.bin')) return loadLlama2c(ref);
  throw new ModelLoadError(`${ref}: unsupported model file (expected a llama2.c .bin, a Hugging Face directory, or dummy:<preset>)`);
}
