// An independent, plain forward pass in float64: the oracle the native engine is tested
// against. No cache, no batching, no SIMD: every position recomputes attention over the
// prefix, exactly as the equations read.
import type { NativeModelConfig } from '@kcache/models';

export type WeightSource = (name: string) => ArrayLike<number>;

function rmsnorm(x: Float64Array, w: ArrayLike<number>, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const inv = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * inv * (w[i] as number));
}

/** y = W x (+ b), W row-major (rows × cols). */
function matvec(w: ArrayLike<number>, x: Float64Array, rows: number, bias?: ArrayLike<number>): Float64Array {
  const cols = x.length;
  const y = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let acc = bias ? (bias[r] as number) : 0;
    const o = r * cols;
    for (let c = 0; c < cols; c++) acc += (w[o + c] as number) * (x[c] as number);
    y[r] = acc;
  }
  return y;
}

function invFreq(cfg: NativeModelConfig, i: number): number {
  const r = cfg.rope;
  const f = 1 / r.theta ** ((2 * i) / cfg.headDim);
  if (!r.llama3Factor) return f;
  const orig = r.llama3OriginalMaxPos ?? 8192;
  const lo = r.llama3LowFreqFactor ?? 1;
  const hi = r.llama3HighFreqFactor ?? 4;
  const wavelen = (2 * Math.PI) / f;
  if (wavelen < orig / hi) return f;
  if (wavelen > orig / lo) return f / r.llama3Factor;
  const smooth = (orig / wavelen - lo) / (hi - lo);
  return ((1 - smooth) * f) / r.llama3Factor + smooth * f;
}

function rope(v: Float64Array, nHeads: number, pos: number, cfg: NativeModelConfig): void {
  const hd = cfg.headDim;
  const half = hd / 2;
  for (let h = 0; h < nHeads; h++) {
    for (let i = 0; i < half; i++) {
      const a = h * hd + (cfg.rope.style === 'interleaved' ? 2 * i : i);
      const b = h * hd + (cfg.rope.style === 'interleaved' ? 2 * i + 1 : i + half);
      const ang = pos * invFreq(cfg, i);
      const c = Math.cos(ang);
      const s = Math.sin(ang);
      const x0 = v[a] as number;
      const x1 = v[b] as number;
      v[a] = x0 * c - x1 * s;
      v[b] = x0 * s + x1 * c;
    }
  }
}

/**
 * KCache attention in the reference: at layers >= fullLayers, each query head keeps its topN
 * largest scores (ties: the earlier position) and sums only those values, with the weights
 * renormalised over the kept scores or left as their share of the full softmax.
 */
export interface ReferenceKCache {
  topN: number;
  /** > 0: N = ceil(topNFraction × context) instead. */
  topNFraction?: number;
  fullLayers: number;
  renormalize: boolean;
  /**
   * Filled with, per position, the smallest relative gap between the N-th and (N+1)-th largest
   * score over every top-N layer and head (Infinity where nothing was dropped): where it is tiny,
   * float32 rounding may keep the other key, and the logits may rightly differ.
   */
  boundaryGaps?: number[];
}

/**
 * Logits (vocab) after each token of `tokens`, computed from scratch in float64. Every token is a
 * decode step (it attends to all earlier tokens), so with `kcache` every position uses top-N.
 */
export function referenceLogits(
  cfg: NativeModelConfig,
  W: WeightSource,
  tokens: readonly number[],
  kcache?: ReferenceKCache,
): Float64Array[] {
  const { dim, nLayers, nHeads, nKvHeads, headDim: hd, hiddenDim, vocabSize, normEps } = cfg;
  const kvDim = nKvHeads * hd;
  const group = nHeads / nKvHeads;
  const emb = W('tok_embeddings');
  const keys: Float64Array[][] = Array.from({ length: nLayers }, () => []);
  const values: Float64Array[][] = Array.from({ length: nLayers }, () => []);
  const out: Float64Array[] = [];
  tokens.forEach((tok, pos) => {
    let x = Float64Array.from({ length: dim }, (_, i) => emb[tok * dim + i] as number);
    for (let l = 0; l < nLayers; l++) {
      const p = `layers.${l}.`;
      const xb = rmsnorm(x, W(`${p}attention_norm`), normEps);
      const q = matvec(W(`${p}wq`), xb, nHeads * hd, cfg.qkvBias ? W(`${p}bq`) : undefined);
      const k = matvec(W(`${p}wk`), xb, kvDim, cfg.qkvBias ? W(`${p}bk`) : undefined);
      const v = matvec(W(`${p}wv`), xb, kvDim, cfg.qkvBias ? W(`${p}bv`) : undefined);
      rope(q, nHeads, pos, cfg);
      rope(k, nKvHeads, pos, cfg);
      (keys[l] as Float64Array[]).push(k);
      (values[l] as Float64Array[]).push(v);
      const att = new Float64Array(nHeads * hd);
      for (let h = 0; h < nHeads; h++) {
        const kvh = Math.floor(h / group);
        const scores = (keys[l] as Float64Array[]).map((kt) => {
          let s = 0;
          for (let i = 0; i < hd; i++) s += (q[h * hd + i] as number) * (kt[kvh * hd + i] as number);
          return s / Math.sqrt(hd);
        });
        const m = Math.max(...scores);
        let e = scores.map((s) => Math.exp(s - m));
        let z = e.reduce((a, b) => a + b, 0);
        const topN = kcache?.topNFraction ? Math.max(1, Math.ceil(kcache.topNFraction * scores.length)) : kcache?.topN;
        if (kcache && topN !== undefined && l >= kcache.fullLayers && topN < scores.length) {
          const order = scores.map((s, t) => [s, t] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
          const kept = new Set(order.slice(0, topN).map(([, t]) => t));
          if (kcache.boundaryGaps) {
            const [a, b] = [(order[topN - 1] as readonly [number, number])[0], (order[topN] as readonly [number, number])[0]];
            kcache.boundaryGaps[pos] = Math.min(kcache.boundaryGaps[pos] ?? Number.POSITIVE_INFINITY, (a - b) / Math.abs(a));
          }
          e = e.map((w, t) => (kept.has(t) ? w : 0));
          if (kcache.renormalize) z = e.reduce((a, b) => a + b, 0);
        }
        (values[l] as Float64Array[]).forEach((vt, t) => {
          for (let i = 0; i < hd; i++)
            att[h * hd + i] = (att[h * hd + i] as number) + ((e[t] as number) / z) * (vt[kvh * hd + i] as number);
        });
      }
      const o = matvec(W(`${p}wo`), att, dim);
      x = x.map((val, i) => val + (o[i] as number));
      const xf = rmsnorm(x, W(`${p}ffn_norm`), normEps);
      const g = matvec(W(`${p}w1`), xf, hiddenDim);
      const u = matvec(W(`${p}w3`), xf, hiddenDim);
      const hb = g.map((gv, i) => (gv / (1 + Math.exp(-gv))) * (u[i] as number));
      const d = matvec(W(`${p}w2`), hb, dim);
      x = x.map((val, i) => val + (d[i] as number));
    }
    const xn = rmsnorm(x, W('norm'), normEps);
    out.push(matvec(safeOutput(W), xn, vocabSize));
  });
  return out;
}

function safeOutput(W: WeightSource): ArrayLike<number> {
  try {
    return W('output');
  } catch {
    return W('tok_embeddings');
  }
}

/** max |a - b| / max |b|: the relative error of a whole logit vector. */
export function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num = Math.max(num, Math.abs((a[i] as number) - (b[i] as number)));
    den = Math.max(den, Math.abs(b[i] as number));
  }
  return num / den;
}

/** The largest relError over positions from..ref.length - 1 of per-position logits. */
export function worstRelError(got: readonly ArrayLike<number>[], ref: readonly ArrayLike<number>[], from = 0): number {
  let worst = 0;
  for (let i = from; i < ref.length; i++) worst = Math.max(worst, relError(got[i] as ArrayLike<number>, ref[i] as ArrayLike<number>));
  return worst;
}
