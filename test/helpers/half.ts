// Half-precision encoders/decoders for building test models. The decoders are plain arithmetic,
// independent of the engine's bit-twiddling C++ conversions they are compared against.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function f32ToBf16(v: number): number {
  f32[0] = v;
  const x = u32[0] as number;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bf16ToF32(h: number): number {
  u32[0] = h << 16;
  return f32[0] as number;
}

export function f32ToF16(v: number): number {
  // Round to nearest even via the spacing of half values around |v| (normal and subnormal).
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  if (a === 0) return sign;
  if (a >= 65520) return sign | 0x7c00;
  let e = Math.max(Math.floor(Math.log2(a)), -14);
  if (2 ** e > a) e -= 1; // guard log2 rounding
  e = Math.max(e, -14);
  const ulp = 2 ** (e - 10);
  let m = a / ulp; // in [1024, 2048) for normals, [0, 1024) for subnormals
  const r = Math.round(m);
  m = Math.abs(m - Math.trunc(m) - 0.5) < 1e-12 ? (Math.trunc(m) % 2 === 0 ? Math.trunc(m) : Math.trunc(m) + 1) : r;
  if (m >= 2048) {
    m /= 2;
    e += 1;
  }
  if (m < 1024) return sign | m; // subnormal (e == -14)
  return sign | ((e + 15) << 10) | (m - 1024);
}

export function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? Number.NaN : s * Number.POSITIVE_INFINITY;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}
