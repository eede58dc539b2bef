// The block-quantized kernels of one SIMD variant (the test file sets KCACHE_SIMD first) against
// the formats' definitions (quant-blocks.ts) and a float64 matmul.
import { Engine, quantKernels } from '@kcache/engine';
import { type LoadQuantDType, resolveModel } from '@kcache/models';
import { describe, expect, test } from 'vitest';
import { randomIds } from './ids.js';
import { STORIES_260K } from './paths.js';
import { QUANT_TYPES, randomRow, rng } from './quant-blocks.js';

export function testQuantKernels(variant: string): void {
  describe(`block-quantized kernels (${variant})`, () => {
    test.each(QUANT_TYPES)('%s: dequantization gives the values the format defines, bit for bit', (type) => {
      const r = rng(11);
      for (const k of [256, 768]) {
        const row = randomRow(type, k, r);
        expect(Array.from(quantKernels.dequantizeRow(type, row.bytes, k))).toEqual(Array.from(row.values));
      }
    });

    // the x86 variants round activations to int8 per block of 32 (scale max|x| / 127), as llama.cpp
    // does; the generic one keeps them in f32: both stay within that rounding plus f32 sums
    // (k = 544: an odd number of 32-value blocks, which the VNNI path pairs with a zero block;
    // K-quant rows are whole 256-value super-blocks; 1, 3, 6 and 9 rows: each path of the widest
    // variant, compared bit for bit with each row alone)
    const shapes = QUANT_TYPES.flatMap((type) => (type.endsWith('_k') ? [512] : [512, 544]).map((k) => [type, k] as const));
    test.each(shapes)(
      '%s, k = %d: matmul matches float64 within activation rounding and f32 sums, and batching changes nothing',
      (type, k) => {
        const r = rng(23);
        const nOut = 37;
        const w = Array.from({ length: nOut }, () => randomRow(type, k, r));
        const wBytes = new Uint8Array(w.reduce((n, x) => n + x.bytes.length, 0));
        w.reduce((at, x) => {
          wBytes.set(x.bytes, at);
          return at + x.bytes.length;
        }, 0);
        for (const rows of [1, 3, 6, 9]) {
          const x = Float32Array.from({ length: rows * k }, () => 2 * r() - 1);
          const out = quantKernels.matmul(type, wBytes, nOut, k, x, rows);
          for (let t = 0; t < rows; t++) {
            for (let o = 0; o < nOut; o++) {
              let ref = 0;
              let mag = 0;
              let rounding = 0;
              const wv = (w[o] as { values: Float32Array }).values;
              for (let b = 0; b < k; b += 32) {
                let amax = 0;
                let wabs = 0;
                for (let i = b; i < b + 32; i++) {
                  const p = (wv[i] as number) * (x[t * k + i] as number);
                  ref += p;
                  mag += Math.abs(p);
                  amax = Math.max(amax, Math.abs(x[t * k + i] as number));
                  wabs += Math.abs(wv[i] as number);
                }
                rounding += (amax / 127 / 2) * wabs;
              }
              expect(Math.abs((out[t * nOut + o] as number) - ref)).toBeLessThanOrEqual(1.01 * rounding + 2e-6 * mag + 1e-30);
            }
            // the same row alone: bit-identical outputs
            const alone = quantKernels.matmul(type, wBytes, nOut, k, x.subarray(t * k, (t + 1) * k), 1);
            expect(Array.from(alone)).toEqual(Array.from(out.subarray(t * nOut, (t + 1) * nOut)));
          }
        }
      },
    );

    // A layer's q, k and v (or gate and up) go through one matmul_multi call: weights of mixed
    // types (a Q4_K_M file's layers mix Q4_K and Q6_K), float ones among them, and sizes that are
    // not whole tasks give each weight's outputs as its own matmul does, bit for bit.
    test('several weights of mixed types in one call equal one call each', () => {
      const r = rng(29);
      const k = 512;
      const weights = (
        [
          ['q4_0', 37],
          ['q6_k', 16],
          ['q8_0', 5],
          ['f32', 33],
          ['q4_k', 40],
          ['q4_0', 3],
        ] as const
      ).map(([dtype, nOut]) => {
        if (dtype === 'f32') return { dtype, nOut, w: new Uint8Array(Float32Array.from({ length: nOut * k }, () => 2 * r() - 1).buffer) };
        const rows = Array.from({ length: nOut }, () => randomRow(dtype, k, r).bytes);
        const w = new Uint8Array(rows.reduce((n, b) => n + b.length, 0));
        for (const [j, b] of rows.entries()) w.set(b, j * b.length);
        return { dtype, nOut, w };
      });
      for (const rows of [1, 3, 6, 9]) {
        const x = Float32Array.from({ length: rows * k }, () => 2 * r() - 1);
        const outs = quantKernels.matmulMany(weights, k, x, rows);
        expect(outs.length).toBe(weights.length);
        for (const [i, { dtype, w, nOut }] of weights.entries()) {
          expect(Array.from(outs[i] as Float32Array)).toEqual(Array.from(quantKernels.matmul(dtype, w, nOut, k, x, rows)));
        }
      }
    });

    // The x86 variants' integer path rounds each block of 32 activations to int8 (d = max|x| / 127,
    // q = x / d rounded half away from zero, in f32): a Q8_0 weight row that is 1 at one position
    // and 0 elsewhere, with scale 1, reads d * q of that activation back exactly.
    test.skipIf(variant === 'generic')(
      'activations are rounded to int8 as defined, bit for bit (read back through one-hot Q8_0 rows)',
      () => {
        const k = 64;
        const f = Math.fround;
        const r = rng(31);
        const rows = [
          Array.from({ length: k }, () => 2 * r() - 1),
          // ties: amax 127 makes d = 1, so x itself is rounded (half away from zero)
          [
            127,
            2.5,
            -3.5,
            0.5,
            -0.5,
            1.5,
            -1.5,
            126.5,
            -126.5,
            0,
            0.49999997,
            -0.49999997,
            ...Array.from({ length: 20 }, () => 254 * r() - 127),
          ].concat(
            // a block of zeros: d = 0, q = 0
            Array.from({ length: 32 }, () => 0),
          ),
          Array.from({ length: k }, (_, i) => (2 * r() - 1) * (i < 32 ? 1e-3 : 1e3)),
        ].map((v) => Float32Array.from(v));
        const expected: number[] = [];
        for (const v of rows) {
          for (let b = 0; b < k; b += 32) {
            let amax = 0;
            for (let i = b; i < b + 32; i++) amax = Math.max(amax, Math.abs(v[i] as number));
            const d = f(amax / 127);
            const id = d !== 0 ? f(1 / d) : 0;
            for (let i = b; i < b + 32; i++) {
              const p = f((v[i] as number) * id);
              let q = Math.trunc(p);
              const frac = p - q;
              q += (frac >= 0.5 ? 1 : 0) - (frac <= -0.5 ? 1 : 0);
              expected.push(f(d * q) + 0); // (+ 0: -0 is 0 here)
            }
          }
        }
        const w = new Uint8Array(k * (k / 32) * 34);
        for (let o = 0; o < k; o++)
          for (let b = 0; b < k / 32; b++) {
            const at = (o * (k / 32) + b) * 34;
            w[at + 1] = 0x3c; // f16 1.0, little-endian
            if (b === Math.floor(o / 32)) w[at + 2 + (o % 32)] = 1;
          }
        const x = new Float32Array(rows.length * k);
        for (const [t, v] of rows.entries()) x.set(v, t * k);
        const out = quantKernels.matmul('q8_0', w, k, k, x, rows.length);
        expect(Array.from(out, (v) => v + 0)).toEqual(expected);
      },
    );

    // quantize-on-load: every value within the format's step of the original, and a small RMS error
    const STEP: Record<LoadQuantDType, { step: (amax: number, range: number) => number; rms: number }> = {
      q8_0: { step: (amax) => amax / 127, rms: 0.01 },
      q4_0: { step: (amax) => amax / 8, rms: 0.12 },
      q5_0: { step: (amax) => amax / 16, rms: 0.06 },
      q4_k: { step: (_, range) => range / 15, rms: 0.1 },
    };
    test.each(Object.keys(STEP) as LoadQuantDType[])('%s quantizer: errors within a step of the format', (type) => {
      const r = rng(5);
      const k = 1024;
      const gauss = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
      const x = Float32Array.from({ length: k }, gauss);
      const y = quantKernels.dequantizeRow(type, quantKernels.quantizeRow(type, x), k);
      const block = type === 'q4_k' ? 256 : 32;
      let se = 0;
      let sx = 0;
      for (let b = 0; b < k; b += block) {
        const xs = Array.from(x.subarray(b, b + block));
        const amax = Math.max(...xs.map(Math.abs));
        const range = Math.max(...xs, 0) - Math.min(...xs, 0);
        for (let i = b; i < b + block; i++) {
          const e = Math.abs((y[i] as number) - (x[i] as number));
          expect(e).toBeLessThanOrEqual(STEP[type].step(amax, range) * 1.01);
          se += e * e;
          sx += (x[i] as number) ** 2;
        }
      }
      expect(Math.sqrt(se / sx)).toBeLessThan(STEP[type].rms);
    });

    // the KV cache's 16-bit rows are read by this variant's kernels as they are (q8_0 rows through
    // its dequantization): a 64-token sequence's logits against an f32 cache
    test.each([
      ['f16', 0.01],
      ['bf16', 0.06],
      ['q8_0', 0.2],
    ] as const)('%s KV cache: logits within %s of the largest against an f32 cache', async (kvDtype, tolerance) => {
      const spec = resolveModel(STORIES_260K);
      const ids = [1, ...randomIds(63, 512, 9)];
      const run = async (kv: 'f32' | typeof kvDtype) => {
        const e = await Engine.load(spec, { numBlocks: 8, threads: 2, kvDtype: kv });
        try {
          const [l] = await e.step([{ tokens: ids, startPos: 0, blockTable: [0, 1, 2, 3, 4], allLogits: true }]);
          return l as Float32Array;
        } finally {
          e.dispose();
        }
      };
      const ref = await run('f32');
      const got = await run(kvDtype);
      let worst = 0;
      let scale = 0;
      for (let i = 0; i < ref.length; i++) {
        worst = Math.max(worst, Math.abs((ref[i] as number) - (got[i] as number)));
        scale = Math.max(scale, Math.abs(ref[i] as number));
      }
      expect(worst / scale).toBeLessThan(tolerance);
    });
  });
}
