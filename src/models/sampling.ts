// Choosing the next token from one row of logits (read back from the GPU), as transformers' generate does:
// greedy search, or sampling after its logits warpers in its order — temperature, then top-k, then top-p
// (nucleus) — from the renormalised softmax, with a small seeded PRNG so that a seed replays its tokens.
// CPU only; all arithmetic in float64.

export interface SamplingOptions {
  /** false (default): greedy, the first index of the largest logit. true: sample. */
  do_sample?: boolean;
  /** Divides the logits before sampling; > 0. Default 1. */
  temperature?: number;
  /** Keep the k largest logits (ties with the k-th kept, as transformers does); 0 or >= V: off. Default 50, as transformers' GenerationConfig. */
  top_k?: number;
  /** Keep the smallest set of most probable tokens whose probability sums to >= top_p (at least one); 1: off. Default 1. */
  top_p?: number;
}

/** A deterministic pseudo-random generator (xoshiro128**, seeded through splitmix32). */
export interface Rng {
  /** The next 32 random bits, as an unsigned integer. */
  nextU32(): number;
  /** A uniform float in [0, 1) with 53 random bits. */
  nextFloat(): number;
  /** An independent copy at the same point of the sequence. */
  clone(): Rng;
}

/** xoshiro128** with its state filled by splitmix32 from a u32 seed: the same seed, the same sequence. */
export function createRng(seed: number): Rng {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new Error(`createRng: seed must be an integer from 0 to 2^32 - 1, got ${seed}`);
  }
  // splitmix32's first four outputs from state `seed`.
  return xoshiro128(Uint32Array.from([0, 1, 2, 3], (k) => splitmix32((seed + k * 0x9e3779b9) >>> 0)));
}

/** One splitmix32 step: the output for state x (which then advances by the golden ratio 0x9e3779b9). */
export function splitmix32(x: number): number {
  x = (x + 0x9e3779b9) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** A seeded permutation of 0..n-1 (Fisher–Yates over a splitmix32 stream): the same seed, the same order. */
export function permutation(n: number, seed: number): number[] {
  let s = seed >>> 0;
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = splitmix32(s) % (i + 1);
    s = (s + 0x9e3779b9) >>> 0;
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}

/** xoshiro128** from the state `s` (four u32 words, taken over); the all-zero state, which it never leaves, becomes [1, 0, 0, 0]. */
export function xoshiro128(s: Uint32Array): Rng {
  if (s[0]! === 0 && s[1]! === 0 && s[2]! === 0 && s[3]! === 0) s[0] = 1;
  const rotl = (v: number, k: number) => (v << k) | (v >>> (32 - k));
  const rng: Rng = {
    nextU32() {
      const result = Math.imul(rotl(Math.imul(s[1]!, 5), 7), 9) >>> 0;
      const t = s[1]! << 9;
      s[2]! ^= s[0]!;
      s[3]! ^= s[1]!;
      s[1]! ^= s[2]!;
      s[0]! ^= s[3]!;
      s[2]! ^= t;
      s[3] = rotl(s[3]!, 11);
      return result;
    },
    nextFloat() {
      const hi = rng.nextU32() >>> 5; // 27 bits
      const lo = rng.nextU32() >>> 6; // 26 bits
      return (hi * 67108864 + lo) / 9007199254740992; // 2^26, 2^53
    },
    clone() {
      return xoshiro128(Uint32Array.from(s));
    },
  };
  return rng;
}

/** The options with defaults filled in, checked: errors name the option. */
export function samplingOptions(options: SamplingOptions = {}): Required<SamplingOptions> {
  const o = { do_sample: false, temperature: 1, top_k: 50, top_p: 1, ...options };
  if (typeof o.do_sample !== "boolean") throw new Error(`sampling: do_sample must be true or false, got ${o.do_sample}`);
  if (typeof o.temperature !== "number" || !(o.temperature > 0) || !Number.isFinite(o.temperature)) {
    throw new Error(`sampling: temperature must be a finite number > 0, got ${o.temperature}`);
  }
  if (!Number.isInteger(o.top_k) || o.top_k < 0) throw new Error(`sampling: top_k must be an integer >= 0 (0 = off), got ${o.top_k}`);
  if (typeof o.top_p !== "number" || !(o.top_p > 0 && o.top_p <= 1)) {
    throw new Error(`sampling: top_p must be a number with 0 < top_p <= 1 (1 = off), got ${o.top_p}`);
  }
  return o;
}

/** The first index of the largest logit (NaN is never chosen). */
export function argmax(logits: ArrayLike<number>): number {
  if (logits.length === 0) throw new Error("sampling: empty logits");
  let best = -1;
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i]!;
    if (v > max || (best < 0 && v === -Infinity)) {
      max = v;
      best = i;
    }
  }
  if (best < 0) throw new Error("sampling: every logit is NaN");
  return best;
}

/**
 * The distribution sampling draws from: logits / temperature, top-k, top-p, then softmax over what is left
 * (0 for removed tokens), in float64. Ignores do_sample.
 */
export function samplingDistribution(logits: ArrayLike<number>, options: SamplingOptions = {}): Float64Array {
  const o = samplingOptions(options);
  const V = logits.length;
  if (V === 0) throw new Error("sampling: empty logits");
  // Temperature.
  const x = new Float64Array(V);
  for (let i = 0; i < V; i++) x[i] = Number.isNaN(logits[i]!) ? -Infinity : logits[i]! / o.temperature;
  // Token order by logit, largest first, lower index first among equals.
  const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => x[b]! - x[a]! || a - b);
  if (x[order[0]!] === -Infinity) throw new Error("sampling: every logit is -Infinity or NaN");
  // Top-k: remove what is below the k-th largest (transformers keeps ties with it).
  if (o.top_k > 0 && o.top_k < V) {
    const kth = x[order[o.top_k - 1]!]!;
    for (let i = 0; i < V; i++) if (x[i]! < kth) x[i] = -Infinity;
  }
  const softmax = () => {
    const m = x[order[0]!]!;
    const p = new Float64Array(V);
    let sum = 0;
    for (let i = 0; i < V; i++) sum += p[i] = x[i] === -Infinity ? 0 : Math.exp(x[i]! - m);
    for (let i = 0; i < V; i++) p[i]! /= sum;
    return p;
  };
  let p = softmax();
  // Top-p, as transformers writes it: from the least probable up, remove tokens while the cumulative
  // probability stays <= 1 - top_p; the most probable token always stays.
  if (o.top_p < 1) {
    let cum = 0;
    let removed = false;
    for (let r = V - 1; r >= 1; r--) {
      const i = order[r]!;
      cum += p[i]!;
      if (cum > 1 - o.top_p) break;
      if (x[i] !== -Infinity) removed = true;
      x[i] = -Infinity;
    }
    if (removed) p = softmax();
  }
  return p;
}

/**
 * The next token from one row of logits: greedy unless do_sample, else a draw from samplingDistribution
 * with `rng` (required when sampling). One rng.nextFloat() per sampled token.
 */
export function sampleToken(logits: ArrayLike<number>, options: SamplingOptions = {}, rng?: Rng): number {
  const o = samplingOptions(options);
  if (!o.do_sample) return argmax(logits);
  if (!rng) throw new Error("sampleToken: do_sample needs an rng (createRng(seed))");
  const p = samplingDistribution(logits, o);
  let u = rng.nextFloat();
  let last = -1;
  for (let i = 0; i < p.length; i++) {
    if (p[i] === 0) continue;
    last = i;
    u -= p[i]!;
    if (u < 0) return i;
  }
  return last; // rounding left u >= 0 past the last kept token
}
