// float64 reference for the LoRA linear layer, and the Philox4x32-10 bits its dropout mask and init come from.
//   h = x ∘ m (m = keep / (1 - p), or 1), u = h Aᵀ, y = x Wᵀ + b + s · u Bᵀ
// with x [T, I], W [O, I], b [O], A [R, I], B [O, R]. Gradients of sum(y · dy):
//   dx = dy W + (s · dy B A) ∘ m, dW = dyᵀ x, db = Σ_t dy, dA = s (dy B)ᵀ h, dB = s dyᵀ u.

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

/** [hi, lo] 32-bit words of the 64-bit product a·b. */
function mulhilo(a: number, b: number): [number, number] {
  const p = BigInt(a) * BigInt(b);
  return [Number(p >> 32n), Number(p & 0xffffffffn)];
}

/** Philox4x32-10 (Random123): counter [4] and key [2] u32 words to 4 random u32 words. */
export function philox(counter: readonly number[], key: readonly number[]): number[] {
  let [c0, c1, c2, c3] = counter as [number, number, number, number];
  let [k0, k1] = key as [number, number];
  for (let r = 0; r < 10; r++) {
    const [hi0, lo0] = mulhilo(M0, c0);
    const [hi1, lo1] = mulhilo(M1, c2);
    [c0, c1, c2, c3] = [(hi1 ^ c1 ^ k0) >>> 0, lo1, (hi0 ^ c3 ^ k1) >>> 0, lo0];
    k0 = (k0 + W0) >>> 0;
    k1 = (k1 + W1) >>> 0;
  }
  return [c0, c1, c2, c3];
}

/** The 32 random bits of element i: word i % 4 of philox((i / 4, step, stream, 0), (seed, 0)). */
function bits(n: number, seed: number, step: number, stream: number): Uint32Array {
  const out = new Uint32Array(n);
  for (let g = 0; 4 * g < n; g++) {
    const w = philox([g, step, stream, 0], [seed, 0]);
    for (let j = 0; j < 4 && 4 * g + j < n; j++) out[4 * g + j] = w[j]!;
  }
  return out;
}

/** Dropout's multipliers: 0 where dropped (bits < round(p · 2^32)), f32(1 / (1 - p)) where kept. */
export function dropoutMask(n: number, p: number, seed: number, step: number): Float64Array {
  const threshold = Math.min(2 ** 32 - 1, Math.round(p * 2 ** 32));
  const scale = Math.fround(1 / (1 - p));
  return Float64Array.from(bits(n, seed, step, 0), (b) => (b >= threshold ? scale : 0));
}

/** initLoraWeights' A: f32(bound) · (2u - 1) with u = (bits >> 8) · 2^-24, rounded to f32 as the GPU does. */
export function uniformInit(n: number, bound: number, seed: number): Float64Array {
  const b = Math.fround(bound);
  return Float64Array.from(bits(n, seed, 0, 1), (w) => Math.fround(b * (2 * ((w >>> 8) / 2 ** 24) - 1)));
}

export interface LoraDims {
  T: number;
  I: number;
  O: number;
  R: number;
  scaling: number;
}

/** Row-major C [M, N] = A [M, K] · B [K, N] with A and B read through index functions. */
function mm(M: number, N: number, K: number, a: (i: number, k: number) => number, b: (k: number, j: number) => number): Float64Array {
  const c = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a(i, k) * b(k, j);
      c[i * N + j] = s;
    }
  }
  return c;
}

function masked(x: Float64Array, mask: Float64Array | null): Float64Array {
  return mask ? x.map((v, i) => v * mask[i]!) : x;
}

/** y [T, O]; `bias` may be null and `mask` (dropout's multipliers, [T, I]) null for no dropout. */
export function loraLinear(
  x: Float64Array,
  w: Float64Array,
  bias: Float64Array | null,
  A: Float64Array,
  B: Float64Array,
  d: LoraDims,
  mask: Float64Array | null,
): Float64Array {
  const { T, I, O, R, scaling } = d;
  const h = masked(x, mask);
  const u = mm(T, R, I, (t, i) => h[t * I + i]!, (i, r) => A[r * I + i]!);
  const base = mm(T, O, I, (t, i) => x[t * I + i]!, (i, o) => w[o * I + i]!);
  const lora = mm(T, O, R, (t, r) => u[t * R + r]!, (r, o) => B[o * R + r]!);
  return base.map((v, k) => v + (bias ? bias[k % O]! : 0) + scaling * lora[k]!);
}

/** [dx, dW, db (null without bias), dA, dB]. */
export function loraLinearGrad(
  x: Float64Array,
  w: Float64Array,
  bias: Float64Array | null,
  A: Float64Array,
  B: Float64Array,
  dy: Float64Array,
  d: LoraDims,
  mask: Float64Array | null,
): [Float64Array, Float64Array, Float64Array | null, Float64Array, Float64Array] {
  const { T, I, O, R, scaling: s } = d;
  const h = masked(x, mask);
  const u = mm(T, R, I, (t, i) => h[t * I + i]!, (i, r) => A[r * I + i]!);
  const du = mm(T, R, O, (t, o) => s * dy[t * O + o]!, (o, r) => B[o * R + r]!);
  const dh = mm(T, I, R, (t, r) => du[t * R + r]!, (r, i) => A[r * I + i]!);
  const dxBase = mm(T, I, O, (t, o) => dy[t * O + o]!, (o, i) => w[o * I + i]!);
  const dx = dxBase.map((v, k) => v + dh[k]! * (mask ? mask[k]! : 1));
  const dW = mm(O, I, T, (o, t) => dy[t * O + o]!, (t, i) => x[t * I + i]!);
  const db = bias ? mm(1, O, T, () => 1, (t, o) => dy[t * O + o]!) : null;
  const dA = mm(R, I, T, (r, t) => du[t * R + r]!, (t, i) => h[t * I + i]!);
  const dB = mm(O, R, T, (o, t) => s * dy[t * O + o]!, (t, r) => u[t * R + r]!);
  return [dx, dW, db, dA, dB];
}
