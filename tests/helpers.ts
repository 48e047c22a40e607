// Test helpers: a validating device, seeded data, tolerant comparison, and the forward/backward checker
// that compares an op with its float64 reference, the reference's analytic gradient, and finite differences.
import assert from "node:assert/strict";
import { getDevice, Tensor } from "../src/index.ts";
import { expectAllClose, rand, type Tol } from "./compare.ts";

export { expectAllClose, rand, type Tol };

/** The shared device, with every dispatch in its own error scope. */
export async function setup(): Promise<void> {
  await getDevice({ validate: true });
}

export interface OpCase {
  name: string;
  /** Input shapes. */
  shapes: number[][];
  /** Input value range per input (default [-1, 1]). */
  ranges?: [number, number][];
  /** The op on the GPU. */
  gpu: (xs: Tensor[]) => Tensor;
  /** The float64 reference forward: inputs -> flat output. */
  ref: (xs: Float64Array[]) => Float64Array;
  /** The float64 analytic gradient of sum(ref(xs) · dy) w.r.t. each input. */
  refGrad?: (xs: Float64Array[], dy: Float64Array) => Float64Array[];
  fwd: Tol;
  grad?: Tol;
  /** Finite-difference checks per input, at random indices (default 12). */
  fdSamples?: number;
  seed?: number;
}

/** Forward against the reference; backward against the analytic reference gradient and central differences. */
export async function checkOp(c: OpCase): Promise<void> {
  const seed = c.seed ?? 1234;
  const xs = c.shapes.map((s, i) => {
    const [lo, hi] = c.ranges?.[i] ?? [-1, 1];
    return rand(s.reduce((a, b) => a * b, 1), seed + 17 * i, lo, hi);
  });
  const ts = xs.map((x, i) => Tensor.fromArray(Float32Array.from(x), c.shapes[i], { requires_grad: !!c.refGrad }));
  const y = c.gpu(ts);
  const want = c.ref(xs);
  expectAllClose(await y.toArray(), want, c.fwd, `${c.name} forward`);
  if (c.refGrad) {
    const dy = rand(want.length, seed + 99);
    y.backward(Tensor.fromArray(Float32Array.from(dy), y.shape));
    const analytic = c.refGrad(xs, dy);
    const tol = c.grad ?? c.fwd;
    for (let i = 0; i < ts.length; i++) {
      const g = ts[i]!.grad;
      assert.ok(g, `${c.name}: input ${i} got no gradient`);
      const got = await g.toArray();
      expectAllClose(got, analytic[i]!, tol, `${c.name} grad[${i}] vs analytic reference`);
      const fd = finiteDifferences(c.ref, xs, dy, i, c.fdSamples ?? 12, seed);
      expectAllClose(fd.idx.map((k) => got[k]!), fd.values, tol, `${c.name} grad[${i}] vs finite differences`);
      expectAllClose(fd.idx.map((k) => analytic[i]![k]!), fd.values, { atol: 1e-6, rtol: 1e-5 }, `${c.name} reference grad[${i}]`);
    }
  }
  for (const t of [...ts, y]) {
    t.grad?.dispose();
    t.dispose();
  }
}

/** Central differences of sum(ref(xs) · dy) w.r.t. xs[which] at sampled indices, in float64. */
function finiteDifferences(
  ref: (xs: Float64Array[]) => Float64Array,
  xs: Float64Array[],
  dy: Float64Array,
  which: number,
  samples: number,
  seed: number,
): { idx: number[]; values: number[] } {
  const x = xs[which]!;
  const n = x.length;
  const picks = n <= samples ? [...Array(n).keys()] : [...rand(samples, seed + 5 * which, 0, n)].map(Math.floor);
  const values = picks.map((k) => {
    const h = 1e-6 * Math.max(1, Math.abs(x[k]!));
    const at = (v: number) => {
      const copy = xs.map((a) => a);
      const xi = Float64Array.from(x);
      xi[k] = v;
      copy[which] = xi;
      const y = ref(copy);
      let s = 0;
      for (let j = 0; j < y.length; j++) s += y[j]! * dy[j]!;
      return s;
    };
    return (at(x[k]! + h) - at(x[k]! - h)) / (2 * h);
  });
  return { idx: picks, values };
}

/** Awaits `p` (or calls it), expects it to reject, checks the message against every pattern, and returns the error. */
export async function rejects(p: Promise<unknown> | (() => Promise<unknown>), ...patterns: RegExp[]): Promise<Error> {
  let error: Error | null = null;
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    error = e as Error;
  }
  assert.ok(error, `expected an error matching ${patterns.join(", ")}`);
  for (const re of patterns) assert.match(error.message, re);
  return error;
}
