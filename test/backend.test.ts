// Which engine backend runs, and why. The native build compiles the CUDA backend whenever nvcc is
// present (CI has nvcc, no GPU): then "auto" falls back to the CPU naming the CUDA runtime's
// reason, and asking for CUDA explicitly is one clear error. The CUDA kernels themselves are
// checked against the CPU by native/test/conformance.cpp on a GPU (scripts/gpu-check.sh).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Engine } from '@kcache/engine';
import { resolveModel } from '@kcache/models';
import { describe, expect, test } from 'vitest';
import { REPO_ROOT } from './helpers/paths.js';

/** Whether `cmd args` runs and exits 0 on this machine. */
function runs(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const hasNvcc = runs('nvcc', ['--version']);
const hasGpu = runs('nvidia-smi', ['-L']);

describe('engine backend selection', () => {
  test('auto picks the CPU here and says why; cpu can be forced', async () => {
    const spec = resolveModel('dummy:tiny');
    const e = await Engine.load(spec, { numBlocks: 4, threads: 1 });
    const info = e.info();
    e.dispose();
    if (hasGpu) {
      expect(info.backend).toMatch(/^cuda\//);
      return;
    }
    expect(info.backend).toMatch(/^cpu\//);
    if (hasNvcc) {
      // built with CUDA: the fallback names what the CUDA runtime said
      expect(info.backendNote).toMatch(/^cpu: /);
      expect(info.backendNote).not.toBe('cpu: built without CUDA');
      // and the native conformance test and GPU benchmark were built beside the addon
      for (const bin of ['kcache_conformance', 'kcache_gpu_bench']) expect(existsSync(join(REPO_ROOT, 'native/build', bin))).toBe(true);
    } else {
      expect(info.backendNote).toBe('cpu: built without CUDA');
    }
    const cpu = await Engine.load(spec, { numBlocks: 4, threads: 1, backend: 'cpu' });
    expect(cpu.info().backendNote).toBe('cpu: requested');
    cpu.dispose();
  });

  test.skipIf(hasGpu)('backend cuda without a GPU is one clear error', async () => {
    await expect(Engine.load(resolveModel('dummy:tiny'), { numBlocks: 4, backend: 'cuda' })).rejects.toThrow(
      hasNvcc ? /dummy:tiny:f32: backend cuda: / : /no CUDA backend \(nvcc was not found at build time\)/,
    );
  });
});
