import assert from "node:assert/strict";
import { test } from "node:test";
import { argmax, createRng, sampleToken, samplingDistribution, type SamplingOptions } from "../../src/models/sampling.ts";

const softmax = (x: number[]) => {
  const m = Math.max(...x);
  const e = x.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
};

/** Frequencies of each token over n draws. */
function frequencies(logits: number[], options: SamplingOptions, n: number, seed: number): number[] {
  const rng = createRng(seed);
  const counts = new Array<number>(logits.length).fill(0);
  for (let i = 0; i < n; i++) counts[sampleToken(Float32Array.from(logits), { ...options, do_sample: true }, rng)]!++;
  return counts.map((c) => c / n);
}

function assertClose(got: ArrayLike<number>, want: number[], tol: number, what: string): void {
  assert.equal(got.length, want.length, what);
  for (let i = 0; i < want.length; i++) {
    assert.ok(Math.abs(got[i]! - want[i]!) <= tol, `${what}: [${i}] got ${got[i]}, want ${want[i]} (tol ${tol}); all: ${Array.from(got)}`);
  }
}

test("greedy: argmax, first index on ties; ignores the warpers", () => {
  assert.equal(sampleToken(Float32Array.from([0.5, 3, -1, 3, 2])), 1);
  assert.equal(sampleToken(Float32Array.from([7, 7, 7])), 0);
  assert.equal(sampleToken(Float32Array.from([-Infinity, -5, NaN, -5])), 1);
  assert.equal(sampleToken(Float32Array.from([1, 2, 9]), { do_sample: false, temperature: 0.1, top_k: 1, top_p: 0.1 }), 2);
  assert.equal(argmax([-Infinity, -Infinity]), 0);
});

test("top_k = 1 and a tiny top_p both sample the greedy token", () => {
  const rng = createRng(7);
  for (let trial = 0; trial < 50; trial++) {
    const logits = Float32Array.from({ length: 37 }, () => rng.nextFloat() * 4 - 2);
    logits[(trial * 5) % 37] = 2.5; // one clear maximum
    const greedy = sampleToken(logits);
    assert.equal(sampleToken(logits, { do_sample: true, top_k: 1, temperature: 1.7 }, rng), greedy);
    assert.equal(sampleToken(logits, { do_sample: true, top_k: 0, top_p: 1e-6, temperature: 0.6 }, rng), greedy);
  }
  // Ties: top_k keeps every token tied with the k-th (as transformers); top_p keeps the first of the tied.
  const tied = [1, 3, 3, 0];
  assertClose(samplingDistribution(tied, { top_k: 1 }), [0, 0.5, 0.5, 0], 1e-12, "top_k 1 with a tie");
  assertClose(samplingDistribution(tied, { top_k: 0, top_p: 1e-6 }), [0, 1, 0, 0], 1e-12, "tiny top_p with a tie");
});

test("the same seed gives the same tokens; another seed others", () => {
  const logits = Float32Array.from({ length: 100 }, (_, i) => Math.sin(i) * 2);
  const options: SamplingOptions = { do_sample: true, temperature: 0.9, top_k: 40, top_p: 0.95 };
  const run = (seed: number) => {
    const rng = createRng(seed);
    return Array.from({ length: 200 }, () => sampleToken(logits, options, rng));
  };
  assert.deepEqual(run(1234), run(1234));
  assert.notDeepEqual(run(1234), run(1235));
  assert.ok(new Set(run(1234)).size > 5, "sampling should spread over several tokens");
  // The generator itself: fixed values (a change in it would silently change every seeded generation).
  const rng = createRng(0);
  const first = [rng.nextU32(), rng.nextU32(), rng.nextU32()];
  const again = createRng(0);
  assert.deepEqual([again.nextU32(), again.nextU32(), again.nextU32()], first);
  const c = rng.clone();
  assert.equal(c.nextU32(), rng.nextU32());
  for (let i = 0; i < 1000; i++) {
    const u = rng.nextFloat();
    assert.ok(u >= 0 && u < 1, `nextFloat ${u} outside [0, 1)`);
  }
});

// Expected distributions are written out (float64), and each test also checks that the wrong warper order
// or a missing renormalisation would be further off than the tolerance.
const N = 5000;
const TOL = 0.025; // ~3.5 standard deviations of a frequency at p = 0.5 over 5000 draws

test("temperature 0.7 then top_k 3: frequencies match the renormalised softmax", () => {
  const logits = [2.0, 1.0, 0.5, 0.2, -1.0];
  const options = { temperature: 0.7, top_k: 3 };
  // softmax([2, 1, 0.5] / 0.7)
  const want = [0.736935857641613, 0.1766074420749215, 0.08645670028346554, 0, 0];
  assertClose(want.slice(0, 3), softmax([2 / 0.7, 1 / 0.7, 0.5 / 0.7]), 1e-12, "hand-written expectation");
  assertClose(samplingDistribution(logits, options), want, 1e-12, "distribution");
  assertClose(frequencies(logits, options, N, 42), want, TOL, "frequencies");
  // Without the temperature, or without renormalising after top_k, the first token would be off by > 0.1.
  assert.ok(Math.abs(softmax([2, 1, 0.5])[0]! - want[0]!) > 4 * TOL, "temperature should matter");
  assert.ok(softmax(logits.map((x) => x / 0.7))[3]! > 2 * TOL, "without top_k, token 3 would be drawn");
});

test("temperature before top_p: top_p 0.75 on the tempered distribution keeps 4 tokens", () => {
  const logits = [1.0, 0.6, 0.3, 0.0, -0.5];
  const options = { temperature: 2, top_k: 0, top_p: 0.75 };
  // softmax(logits / 2) = [0.2776, 0.2273, 0.1956, 0.1684, 0.1311]: cumulative 0.2776, 0.5049, 0.7005, 0.8689
  // -> the 4 largest stay. (On the untempered softmax, cumulative 0.7857 at 3 would keep 3.)
  const p = softmax(logits.map((x) => x / 2));
  const kept = p[0]! + p[1]! + p[2]! + p[3]!;
  const want = [p[0]! / kept, p[1]! / kept, p[2]! / kept, p[3]! / kept, 0];
  assertClose(samplingDistribution(logits, options), want, 1e-12, "distribution");
  assertClose(frequencies(logits, options, N, 43), want, TOL, "frequencies");
  assert.ok(want[3]! > 4 * TOL, "top_p before temperature would never draw token 3");
});

test("top_k before top_p: top_p 0.7 on the top-3 renormalised distribution keeps 2 tokens", () => {
  const logits = [1.0, 0.6, 0.3, 0.0, -0.5];
  const options = { temperature: 1, top_k: 3, top_p: 0.7 };
  // After top_k 3: softmax([1, 0.6, 0.3]) = [0.4615, 0.3093, 0.2292], cumulative 0.4615, 0.7708 -> 2 stay.
  // (top_p first, on the full softmax, cumulative 0.3626, 0.6056, 0.7857, would keep 3.)
  const p = softmax([1.0, 0.6]);
  const want = [p[0]!, p[1]!, 0, 0, 0];
  assertClose(samplingDistribution(logits, options), want, 1e-12, "distribution");
  assertClose(frequencies(logits, options, N, 44), want, TOL, "frequencies");
  assert.ok(Math.abs(softmax([1.0, 0.6, 0.3])[0]! - want[0]!) > 4 * TOL, "top_p first would keep 3 tokens");
});

test("top_k 0 or >= V and top_p 1 are off; plain temperature-1 sampling follows the softmax", () => {
  const logits = [0.3, -0.2, 0.9, 0.1];
  const full = softmax(logits);
  for (const top_k of [0, 4, 1000]) assertClose(samplingDistribution(logits, { top_k, top_p: 1 }), full, 1e-12, `top_k ${top_k}`);
  assertClose(frequencies(logits, { top_k: 0 }, N, 45), full, TOL, "frequencies");
});

test("option errors name the option", () => {
  const l = [1, 2, 3];
  const r = createRng(1);
  assert.throws(() => sampleToken(l, { do_sample: true, temperature: 0 }, r), /temperature must be a finite number > 0, got 0/);
  assert.throws(() => sampleToken(l, { do_sample: true, temperature: -1 }, r), /temperature/);
  assert.throws(() => sampleToken(l, { do_sample: true, temperature: NaN }, r), /temperature/);
  assert.throws(() => sampleToken(l, { do_sample: true, top_k: 1.5 }, r), /top_k must be an integer >= 0/);
  assert.throws(() => sampleToken(l, { do_sample: true, top_k: -1 }, r), /top_k/);
  assert.throws(() => sampleToken(l, { do_sample: true, top_p: 0 }, r), /top_p must be a number with 0 < top_p <= 1/);
  assert.throws(() => sampleToken(l, { do_sample: true, top_p: 1.01 }, r), /top_p/);
  assert.throws(() => sampleToken(l, { do_sample: true }), /needs an rng/);
  assert.throws(() => createRng(-1), /seed must be an integer/);
  assert.throws(() => createRng(2 ** 32), /seed/);
  assert.throws(() => sampleToken([]), /empty logits/);
  assert.throws(() => sampleToken([-Infinity, NaN], { do_sample: true }, r), /every logit/);
});
