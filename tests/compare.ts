// Comparison helpers with no host imports, shared by the Node/Deno tests and the in-browser smoke test.

/** Deterministic uniform values in [lo, hi), rounded to f32 so the reference sees what the GPU sees. */
export function rand(n: number, seed: number, lo = -1, hi = 1): Float64Array {
  let s = seed >>> 0 || 1;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const u = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    out[i] = Math.fround(lo + (hi - lo) * u);
  }
  return out;
}

export interface Tol {
  atol: number;
  rtol: number;
}

/** |got - want| <= atol + rtol |want| everywhere; the message gives the max difference and first bad index. */
export function expectAllClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: Tol, what = "values"): void {
  if (got.length !== want.length) throw new Error(`${what}: length ${got.length} != ${want.length}`);
  let maxDiff = 0;
  let firstBad = -1;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i]! - want[i]!);
    const bad = !(d <= tol.atol + tol.rtol * Math.abs(want[i]!)) && !(Number.isNaN(got[i]!) && Number.isNaN(want[i]!));
    if (d > maxDiff || Number.isNaN(d)) maxDiff = Number.isNaN(d) ? NaN : d;
    if (bad && firstBad < 0) firstBad = i;
  }
  if (firstBad >= 0) {
    throw new Error(
      `${what}: max |diff| ${maxDiff} exceeds atol ${tol.atol} + rtol ${tol.rtol}; first bad index ${firstBad}: ` +
        `got ${got[firstBad]}, want ${want[firstBad]}`,
    );
  }
}
