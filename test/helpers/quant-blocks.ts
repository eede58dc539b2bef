// GGML's block layouts written from ggml-common.h's struct definitions: each generator picks a
// block's logical contents (f16 scales, small integers) at random and packs them into the bytes
// the format defines, and computes the values the format says those bytes hold (float64, then
// rounded once to f32 where the format's arithmetic rounds). Independent of kcache's C++ code,
// which the tests compare against it.
import type { QuantDType } from '@kcache/models';
import { f16ToF32, f32ToF16 } from './half.js';

export interface Row {
  bytes: Uint8Array;
  values: Float32Array;
}

type Rand = () => number;
const int = (r: Rand, lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
/** An f16 scale: its bits, and its value. */
function halfScale(r: Rand, lo: number, hi: number): [number, number] {
  const bits = f32ToF16(lo + (hi - lo) * r());
  return [bits, f16ToF32(bits)];
}
const putHalf = (b: Uint8Array, at: number, bits: number) => {
  b[at] = bits & 0xff;
  b[at + 1] = bits >> 8;
};
const f = Math.fround;

/** Packs a Q4_K/Q5_K scales[12] field: six-bit scale and minimum of each of 8 sub-blocks. */
function packKScales(sc: number[], m: number[]): Uint8Array {
  const s = new Uint8Array(12);
  for (let j = 0; j < 8; j++) {
    const ls = sc[j] as number;
    const lm = m[j] as number;
    if (j < 4) {
      s[j] = ls;
      s[j + 4] = lm;
    } else {
      s[j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
      s[j - 4] = (s[j - 4] as number) | ((ls >> 4) << 6);
      s[j] = (s[j] as number) | ((lm >> 4) << 6);
    }
  }
  return s;
}

/** One block of `type` with random contents. */
function block(type: QuantDType, r: Rand, s: number): Row {
  const half = (r: Rand, lo: number, hi: number) => halfScale(r, lo * s, hi * s);
  switch (type) {
    case 'q8_0': {
      // { f16 d; int8 qs[32] }
      const b = new Uint8Array(34);
      const [dBits, d] = half(r, 0.001, 0.05);
      putHalf(b, 0, dBits);
      const v = new Float32Array(32);
      for (let j = 0; j < 32; j++) {
        const q = int(r, -128, 127);
        b[2 + j] = q & 0xff;
        v[j] = q * d;
      }
      return { bytes: b, values: v };
    }
    case 'q4_0':
    case 'q4_1': {
      // { f16 d; [f16 m;] u8 qs[16] }: value j in the low nibble of qs[j], value j+16 in the high
      const withMin = type === 'q4_1';
      const b = new Uint8Array(withMin ? 20 : 18);
      const [dBits, d] = half(r, 0.001, 0.1);
      const [mBits, m] = half(r, -0.5, 0.5);
      putHalf(b, 0, dBits);
      if (withMin) putHalf(b, 2, mBits);
      const q = Array.from({ length: 32 }, () => int(r, 0, 15));
      const qs = withMin ? 4 : 2;
      for (let j = 0; j < 16; j++) b[qs + j] = (q[j] as number) | ((q[j + 16] as number) << 4);
      const v = Float32Array.from(q, (x) => (withMin ? f(x * d + m) : (x - 8) * d));
      return { bytes: b, values: v };
    }
    case 'q5_0':
    case 'q5_1': {
      // { f16 d; [f16 m;] u32 qh; u8 qs[16] }: bit j of qh is the fifth bit of value j
      const withMin = type === 'q5_1';
      const b = new Uint8Array(withMin ? 24 : 22);
      const [dBits, d] = half(r, 0.001, 0.1);
      const [mBits, m] = half(r, -0.5, 0.5);
      putHalf(b, 0, dBits);
      if (withMin) putHalf(b, 2, mBits);
      const q = Array.from({ length: 32 }, () => int(r, 0, 31));
      const qhAt = withMin ? 4 : 2;
      let qh = 0;
      q.forEach((x, j) => {
        qh = (qh | ((x >> 4) << j)) >>> 0;
      });
      new DataView(b.buffer).setUint32(qhAt, qh, true);
      for (let j = 0; j < 16; j++) b[qhAt + 4 + j] = ((q[j] as number) & 0xf) | (((q[j + 16] as number) & 0xf) << 4);
      const v = Float32Array.from(q, (x) => (withMin ? f(x * d + m) : (x - 16) * d));
      return { bytes: b, values: v };
    }
    case 'q4_k':
    case 'q5_k': {
      // { f16 d, dmin; u8 scales[12]; [u8 qh[32];] u8 qs[128] }: each 64 values share 32 qs
      // bytes (first 32 in low nibbles, sub-block 2i; next 32 in high nibbles, sub-block 2i+1);
      // the fifth bit of value l + 64i is bit 2i of qh[l], of value l + 32 + 64i bit 2i+1
      const five = type === 'q5_k';
      const b = new Uint8Array(five ? 176 : 144);
      const [dBits, d] = half(r, 0.0005, 0.01);
      const [mBits, dmin] = half(r, 0.0005, 0.01);
      putHalf(b, 0, dBits);
      putHalf(b, 2, mBits);
      const sc = Array.from({ length: 8 }, () => int(r, 0, 63));
      const mn = Array.from({ length: 8 }, () => int(r, 0, 63));
      b.set(packKScales(sc, mn), 4);
      const q = Array.from({ length: 256 }, () => int(r, 0, five ? 31 : 15));
      const qsAt = five ? 48 : 16;
      for (let i = 0; i < 4; i++) {
        for (let l = 0; l < 32; l++) {
          const lo = q[64 * i + l] as number;
          const hi = q[64 * i + 32 + l] as number;
          b[qsAt + 32 * i + l] = (lo & 0xf) | ((hi & 0xf) << 4);
          if (five) b[16 + l] = (b[16 + l] as number) | ((lo >> 4) << (2 * i)) | ((hi >> 4) << (2 * i + 1));
        }
      }
      const v = Float32Array.from(q, (x, e) => {
        const s = Math.floor(e / 32);
        return f(d * (sc[s] as number) * x - dmin * (mn[s] as number));
      });
      return { bytes: b, values: v };
    }
    case 'q6_k': {
      // { u8 ql[128]; u8 qh[64]; int8 scales[16]; f16 d }: per 128 values (half n), value
      // l + 32i takes 4 low bits from ql (l or l+32; low nibble for i = 0, 1, high for 2, 3) and
      // 2 high bits from qh[l] (bits 2i), minus 32, times d * scales[8n + l/16 + 2i]
      const b = new Uint8Array(210);
      const [dBits, d] = half(r, 0.0005, 0.01);
      putHalf(b, 208, dBits);
      const sc = Array.from({ length: 16 }, () => int(r, -128, 127));
      sc.forEach((s, i) => {
        b[192 + i] = s & 0xff;
      });
      const q = Array.from({ length: 256 }, () => int(r, 0, 63));
      const v = new Float32Array(256);
      for (let n = 0; n < 2; n++) {
        for (let l = 0; l < 32; l++) {
          const [q1, q2, q3, q4] = [0, 1, 2, 3].map((i) => q[128 * n + 32 * i + l] as number) as [number, number, number, number];
          b[64 * n + l] = (q1 & 0xf) | ((q3 & 0xf) << 4);
          b[64 * n + 32 + l] = (q2 & 0xf) | ((q4 & 0xf) << 4);
          b[128 + 32 * n + l] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
          for (let i = 0; i < 4; i++) {
            const s = sc[8 * n + Math.floor(l / 16) + 2 * i] as number;
            v[128 * n + 32 * i + l] = f(d * s * ((q[128 * n + 32 * i + l] as number) - 32));
          }
        }
      }
      return { bytes: b, values: v };
    }
  }
}

export const BLOCK_VALUES: Record<QuantDType, number> = {
  q8_0: 32,
  q4_0: 32,
  q4_1: 32,
  q5_0: 32,
  q5_1: 32,
  q4_k: 256,
  q5_k: 256,
  q6_k: 256,
};
export const QUANT_TYPES = Object.keys(BLOCK_VALUES) as QuantDType[];

/** A row of `k` values (a whole number of blocks) of random blocks; `s` scales every block's scales. */
export function randomRow(type: QuantDType, k: number, r: Rand, s = 1): Row {
  const blocks = Array.from({ length: k / BLOCK_VALUES[type] }, () => block(type, r, s));
  const bytes = new Uint8Array(blocks.reduce((n, x) => n + x.bytes.length, 0));
  const values = new Float32Array(k);
  let at = 0;
  blocks.forEach((x, i) => {
    bytes.set(x.bytes, at);
    at += x.bytes.length;
    values.set(x.values, i * BLOCK_VALUES[type]);
  });
  return { bytes, values };
}

/** Deterministic uniform [0, 1) (mulberry32). */
export function rng(seed: number): Rand {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
