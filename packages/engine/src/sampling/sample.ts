import { addon } from '../addon.js';
import { argmaxReference } from './reference.js';
import type { Rng } from './rng.js';

export interface SamplingParams {
  /** 0 = greedy. */
  temperature: number;
  /** 0 or negative = disabled. */
  topK: number;
  /** 1 = disabled. */
  topP: number;
  /** 0 = disabled. */
  minP: number;
}

/** Checks ranges; returns the name of the first bad field and why, or null. */
export function validateSampling(p: SamplingParams): string | null {
  if (!Number.isFinite(p.temperature) || p.temperature < 0) return `temperature must be a finite number >= 0, got ${p.temperature}`;
  if (!Number.isInteger(p.topK) || p.topK < 0) return `top_k must be an integer >= 0, got ${p.topK}`;
  if (!(p.topP > 0 && p.topP <= 1)) return `top_p must be in (0, 1], got ${p.topP}`;
  if (!(p.minP >= 0 && p.minP <= 1)) return `min_p must be in [0, 1], got ${p.minP}`;
  return null;
}

/**
 * Index of the largest logit; the lowest index wins ties, so greedy decoding is deterministic
 * (argmaxReference, sampling/reference.ts, defines it). A Float32Array goes to the native kernels:
 * the event loop runs this for every greedy token of every stream, and the JavaScript loop took
 * 0.1–0.2 ms of it over a 49,152-token vocabulary.
 */
export function argmax(logits: ArrayLike<number>): number {
  // (below 64 values the JavaScript loop is quicker than a call into the addon)
  return logits instanceof Float32Array && logits.length >= 64 ? addon().argmax(logits) : argmaxReference(logits);
}

/**
 * Samples a token: temperature scaling, then top-k, top-p (nucleus) and min-p filtering of the
 * softmax distribution, in vLLM's order. Temperature 0 is greedy.
 *
 * What it computes, step by step (reference.ts holds this as a plain implementation that sorts
 * the whole vocabulary, and sample.test.ts checks this one against it token for token):
 * - the order: tokens by logit, largest first, the lower id first among equal logits;
 * - w(i) = exp((logit(i) - max logit) / temperature), the native kernels' float32 (expWeights:
 *   within ~1e-5 of the exact value, 0 for a -Infinity logit);
 * - top-k keeps the first k of the order; top-p then keeps the shortest prefix whose running sum
 *   of w / (sum of w over what top-k kept) reaches top_p; min-p cuts that prefix before the first
 *   token with w < min_p × w(first);
 * - a draw u = rng × (sum of w over what is kept) walks the kept tokens in id order, subtracting
 *   w, and takes the token where u drops below 0 (the last one with w > 0 if rounding never gets
 *   there).
 * Every sum of w runs over token ids in increasing order.
 *
 * The order is sorted only as far as top-k, top-p and min-p look into it (SortedPrefix), and not
 * at all without them: the draw needs no order. Sorting all 49,152 ids of a smol135 vocabulary
 * with a comparator took ~29 ms a token on the event loop, which every stream of a worker shares,
 * and V8's Math.exp over them ~0.9 ms.
 */
export function sample(logits: Float32Array, p: SamplingParams, rng: Rng): number {
  if (p.temperature === 0) return argmax(logits);
  const n = logits.length;
  let max = logits[argmax(logits)] as number;
  if (Number.isNaN(max)) {
    // (argmax's rule returns a NaN at 0: the largest of the rest, the slow way)
    max = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < n; i++) if ((logits[i] as number) > max) max = logits[i] as number;
  }
  if (!Number.isFinite(max)) return argmax(logits); // no finite logit to weigh: nothing to draw from
  if (weights.length < n) weights = new Float32Array(n);
  const w = weights;
  addon().expWeights(logits, max, p.temperature, w);
  const order = new SortedPrefix(logits, max);

  // Kept: the first `keep` tokens of the order, i.e. the ids i with kept(i).
  let keep = n;
  let edge = Number.NEGATIVE_INFINITY; // the last kept token's logit and id
  let last = n;
  const kept = (i: number) => keep === n || (logits[i] as number) > edge || ((logits[i] as number) === edge && i <= last);
  const cut = (count: number) => {
    keep = count;
    last = order.at(count - 1);
    edge = logits[last] as number;
  };
  const keptSum = () => {
    let s = 0;
    for (let i = 0; i < n; i++) if (kept(i)) s += w[i] as number;
    return s;
  };
  if (p.topK > 0 && p.topK < n) cut(p.topK);
  const keep0 = keep;
  const total0 = keptSum();
  if (p.topP < 1) {
    let cum = 0;
    for (let pos = 0; pos < keep; pos++) {
      cum += (w[order.at(pos)] as number) / total0;
      if (cum >= p.topP) {
        if (pos + 1 < keep) cut(pos + 1);
        break;
      }
    }
  }
  if (p.minP > 0) {
    const threshold = (w[order.at(0)] as number) * p.minP;
    for (let pos = 0; pos < keep; pos++) {
      if ((w[order.at(pos)] as number) < threshold) {
        if (pos > 0) cut(pos);
        break;
      }
    }
  }
  let u = rng.next() * (keep === keep0 ? total0 : keptSum()); // (the same sum, when nothing was cut since)
  let lastPositive = -1; // (the top token is kept and has w = 1: the walk sets this)
  for (let i = 0; i < n; i++) {
    if (!kept(i) || !((w[i] as number) > 0)) continue;
    lastPositive = i;
    u -= w[i] as number;
    if (u < 0) return i;
  }
  return lastPositive;
}

/** sample's w, reused from token to token (the event loop runs one sample at a time). */
let weights = new Float32Array(0);

/** The weights w(i) of a sampling step (see sample), in a new array. */
export function expWeights(logits: Float32Array, max: number, temperature: number): Float32Array {
  const w = new Float32Array(logits.length);
  addon().expWeights(logits, max, temperature, w);
  return w;
}

/**
 * The order (logit descending, id ascending), sorted lazily. Each token falls in one of 1,024
 * equal bins between the largest and the smallest finite logit (-Infinity and NaN in one more
 * bin after them); a count per bin says how many bins hold the positions a caller asks for, and
 * only those tokens are sorted, at least 64 and twice as many as the time before. The bin is
 * monotone in the logit, so every such set is a prefix of the order (equal logits are in or out
 * together), and positions already handed out never change.
 *
 * Sorting is on numbers, not with a comparator: each token's key is its logit's bits mapped to an
 * unsigned integer that orders like the logit (largest first), times 2^20, plus its id (ids below
 * 2^20, keys below 2^52: exact in a double), so that Float64Array's native sort gives the order.
 */
class SortedPrefix {
  private ids = new Int32Array(0);
  private bins: Uint16Array | null = null;
  private readonly counts = new Int32Array(BINS + 1);
  private readonly bits = new Uint32Array(1);
  private readonly f32 = new Float32Array(this.bits.buffer);

  constructor(
    private readonly logits: Float32Array,
    private readonly max: number,
  ) {
    if (logits.length > ID_LIMIT) throw new RangeError(`sample: a vocabulary of ${logits.length} tokens is over ${ID_LIMIT}`);
  }

  /** The id at position `pos` of the order (pos < the vocabulary's size). */
  at(pos: number): number {
    if (pos >= this.ids.length) this.reach(pos + 1);
    return this.ids[pos] as number;
  }

  /** Sorts at least the first `count` positions. */
  private reach(count: number): void {
    const n = this.logits.length;
    const bins = this.bins ?? this.binTokens();
    const target = Math.min(n, Math.max(count, 2 * this.ids.length, 64));
    let m = 0;
    let top = 0; // the last bin sorted
    for (; top < BINS; top++) {
      m += this.counts[top] as number;
      if (m >= target) break;
    }
    if (top === BINS) m = n;
    const keys = new Float64Array(m);
    let j = 0;
    for (let i = 0; i < n; i++) if ((bins[i] as number) <= top) keys[j++] = this.key(i) * ID_LIMIT + i;
    keys.sort();
    this.ids = new Int32Array(m);
    for (let k = 0; k < m; k++) this.ids[k] = (keys[k] as number) % ID_LIMIT;
  }

  private binTokens(): Uint16Array {
    const n = this.logits.length;
    let min = this.max;
    for (let i = 0; i < n; i++)
      if ((this.logits[i] as number) < min && (this.logits[i] as number) > Number.NEGATIVE_INFINITY) min = this.logits[i] as number;
    const scale = min < this.max ? BINS / (this.max - min) : 0;
    const bins = new Uint16Array(n);
    for (let i = 0; i < n; i++) {
      const v = this.logits[i] as number;
      const b = v >= min ? Math.min(BINS - 1, Math.floor((this.max - v) * scale)) : BINS; // (-Infinity, NaN: the last bin)
      bins[i] = b;
      this.counts[b] = (this.counts[b] as number) + 1;
    }
    this.bins = bins;
    return bins;
  }

  /** An unsigned integer that is smaller the larger the logit (-0 and +0 alike; NaN largest). */
  private key(i: number): number {
    if (Number.isNaN(this.logits[i])) return 0xffffffff;
    this.f32[0] = (this.logits[i] as number) === 0 ? 0 : (this.logits[i] as number);
    const b = this.bits[0] as number;
    const ascending = b & 0x80000000 ? ~b >>> 0 : (b | 0x80000000) >>> 0;
    return 0xffffffff - ascending;
  }
}

const BINS = 1024;
const ID_LIMIT = 2 ** 20;
