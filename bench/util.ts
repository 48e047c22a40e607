// Shared by the benchmark scripts: seeded inputs, the median, and the agreement check between two results.

/** n values uniform in [-amplitude, amplitude), from a seeded LCG (the same on every host). */
export function random(n: number, seed: number, amplitude = 0.5): Float32Array {
  let s = seed;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = amplitude * (2 * (s / 2 ** 32) - 1);
  }
  return out;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((p, q) => p - q);
  const h = s.length >> 1;
  return s.length % 2 ? s[h]! : (s[h - 1]! + s[h]!) / 2;
}

/** max |got - want| relative to max |want|. */
export function maxRelDiff(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let diff = 0;
  let top = 0;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i]! - want[i]!));
    top = Math.max(top, Math.abs(want[i]!));
  }
  return diff / (top || 1);
}
