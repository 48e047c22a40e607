import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { attention, no_grad, Tensor } from "../../src/index.ts";
import { gpu } from "../../src/gpu/device.ts";
import { cachedAttentionPlan, firstPosition, forceCachedAttentionChunk } from "../../src/kernels/kv_cache.ts";
import { attention_cached, kv_cache_write } from "../../src/ops/kv_cache.ts";
import { expectAllClose, rand, setup, type Tol } from "../helpers.ts";
import * as R from "../reference/kv_cache.ts";

before(setup);
after(() => forceCachedAttentionChunk(null));

// f32 dots of D <= 16 terms, f32 exp, online softmax over <= 50 positions (inputs in [-1, 1]).
const FWD: Tol = { atol: 1e-6, rtol: 1e-5 };

const f32 = (n: number, seed: number) => Float32Array.from(rand(n, seed));

/** Mask (B, L) with `pads[b]` leading zeros in row b. */
function leftPadded(B: number, L: number, pads: number[]): Int32Array {
  const m = new Int32Array(B * L).fill(1);
  for (let b = 0; b < B; b++) for (let j = 0; j < pads[b]!; j++) m[b * L + j] = 0;
  return m;
}

interface Case extends R.CachedCase {
  name: string;
}

function makeCase(
  B: number, S: number, past: number, H: number, KVH: number, D: number, pads?: number[],
  extra: { slidingWindow?: number; softcap?: number; scale?: number } = {},
): Case {
  const L = past + S;
  const more = [
    extra.slidingWindow !== undefined ? ` window ${extra.slidingWindow}` : "",
    extra.softcap !== undefined ? ` softcap ${extra.softcap} scale ${extra.scale}` : "",
  ].join("");
  const c: Case = { name: `B${B} S${S} past${past} H${H} KVH${KVH} D${D}${pads ? ` left pads ${pads}` : ""}${more}`, B, S, H, KVH, D, past, cap: L + 5, ...extra };
  if (pads) c.mask = leftPadded(B, L, pads);
  return c;
}

const CASES: Case[] = [
  makeCase(1, 1, 0, 4, 2, 8),
  makeCase(1, 1, 5, 3, 1, 16),
  makeCase(1, 1, 33, 4, 2, 16),
  makeCase(2, 1, 33, 4, 2, 8, [4, 0]),
  makeCase(2, 1, 33, 3, 1, 16, [0, 30]),
  makeCase(2, 3, 5, 4, 2, 16, [2, 0]),
  makeCase(1, 3, 33, 3, 1, 8),
  makeCase(1, 17, 0, 3, 1, 8),
  makeCase(2, 17, 0, 4, 2, 16, [5, 0]),
  makeCase(2, 17, 5, 3, 1, 8, [7, 1]),
  makeCase(2, 17, 33, 4, 2, 16, [20, 0]),
  // The head_dim extremes: 256 (256 threads a workgroup), 4 (one column, 32 rows a workgroup).
  makeCase(1, 2, 9, 2, 1, 256),
  makeCase(2, 3, 4, 2, 2, 4, [1, 0]),
  // Sliding windows: decode past the window (the split covers only the window's positions), decodes whose
  // window of 5 reaches into left padding (30 and 31 pads of 34 positions: 4 and 3 real ones), prefill and
  // multi-token steps whose rows' windows start at different positions, and a window wider than the cache.
  makeCase(1, 1, 33, 3, 1, 16, undefined, { slidingWindow: 5 }),
  makeCase(2, 1, 33, 4, 2, 8, [30, 0], { slidingWindow: 5 }),
  makeCase(2, 1, 33, 6, 2, 8, [31, 0], { slidingWindow: 5 }),
  makeCase(1, 17, 0, 3, 1, 8, undefined, { slidingWindow: 5 }),
  makeCase(2, 17, 0, 6, 2, 16, [7, 0], { slidingWindow: 5 }),
  makeCase(2, 3, 33, 3, 1, 16, [4, 0], { slidingWindow: 5 }),
  makeCase(1, 3, 5, 3, 1, 8, undefined, { slidingWindow: 40 }),
  // Soft-capping, alone and with a window (|scale·q·k| up to ~4 against caps of 1.5).
  makeCase(1, 1, 33, 3, 1, 16, undefined, { softcap: 1.5, scale: 0.6 }),
  makeCase(2, 17, 5, 6, 2, 8, [7, 1], { softcap: 1.5, scale: 0.6 }),
  makeCase(2, 3, 33, 3, 1, 16, [20, 0], { softcap: 1.5, scale: 0.6, slidingWindow: 5 }),
];

/** q and caches for a case; cache positions past L (up to the capacity) hold values that must never be read. */
function inputs(c: Case) {
  const q = f32(c.B * c.S * c.H * c.D, 11);
  const kc = f32(c.B * c.cap * c.KVH * c.D, 12);
  const vc = f32(c.B * c.cap * c.KVH * c.D, 13);
  const L = c.past + c.S;
  for (let b = 0; b < c.B; b++) {
    for (let j = L; j < c.cap; j++) {
      const at = (b * c.cap + j) * c.KVH * c.D;
      kc.fill(1e4, at, at + c.KVH * c.D);
      vc.fill(1e4, at, at + c.KVH * c.D);
    }
  }
  return { q, kc, vc };
}

async function runCase(c: Case): Promise<Float32Array> {
  const { q, kc, vc } = inputs(c);
  const tq = Tensor.fromArray(q, [c.B, c.S, c.H, c.D]);
  const tk = Tensor.fromArray(kc, [c.B, c.cap, c.KVH, c.D]);
  const tv = Tensor.fromArray(vc, [c.B, c.cap, c.KVH, c.D]);
  const o = no_grad(() =>
    attention_cached(tq, tk, tv, {
      past: c.past,
      attention_mask: c.mask && Int32Array.from(c.mask),
      scale: c.scale,
      sliding_window: c.slidingWindow,
      softcap: c.softcap,
    }),
  );
  const got = (await o.toArray()) as Float32Array;
  for (const t of [tq, tk, tv, o]) t.dispose();
  return got;
}

// Each case three ways: the automatic plan, one chunk (no split), and chunks of a few positions (split-K
// with chunks that end mid-step and chunks a row tile never reaches).
const MODES: [string, number | null][] = [["auto", null], ["one chunk", Infinity], ["chunks of 7", 7]];
for (const c of CASES) {
  test(`attention_cached ${c.name} = float64 reference`, async () => {
    const want = R.attentionCached(...Object.values(inputs(c)) as [Float32Array, Float32Array, Float32Array], c);
    for (const [mode, chunk] of MODES) {
      forceCachedAttentionChunk(chunk);
      expectAllClose(await runCase(c), want, FWD, `${c.name} (${mode})`);
    }
    forceCachedAttentionChunk(null);
  });
}

test("attention_cached: a padded query with nothing to attend outputs 0", async () => {
  const c = makeCase(1, 6, 0, 2, 1, 8, [3]);
  const got = await runCase(c);
  for (let i = 0; i < 3 * c.H * c.D; i++) assert.equal(got[i], 0);
  assert.ok(got.slice(3 * c.H * c.D).some((x) => x !== 0), "real queries should not be 0");
  // The same mask as an i32 tensor.
  const { q, kc, vc } = inputs(c);
  const mask = Tensor.fromArray(Int32Array.from(c.mask!), [1, 6], { dtype: "i32" });
  const o = no_grad(() =>
    attention_cached(Tensor.fromArray(q, [1, 6, 2, 8]), Tensor.fromArray(kc, [1, c.cap, 1, 8]), Tensor.fromArray(vc, [1, c.cap, 1, 8]), {
      past: 0,
      attention_mask: mask,
    }),
  );
  assert.deepEqual(Array.from(await o.toArray()), Array.from(got));
  assert.ok(!mask.isDisposed, "a mask tensor given stays the caller's");
  assert.throws(
    () => no_grad(() => attention_cached(Tensor.fromArray(q, [1, 6, 2, 8]), Tensor.empty([1, c.cap, 1, 8]), Tensor.empty([1, c.cap, 1, 8]), { past: 1, attention_mask: mask })),
    /attention_mask must be an i32 tensor \[B, past \+ S\] = \[1, 7\], got i32 \[1, 6\]/,
  );
});

const PREFILLS: [string, { sliding_window?: number; softcap?: number; scale?: number }][] = [
  ["", {}],
  [", window 5", { sliding_window: 5 }],
  [", window 5 + softcap 1.5", { sliding_window: 5, softcap: 1.5, scale: 0.6 }],
];
for (const [name, opts] of PREFILLS) test(`attention_cached prefill = training attention forward (left-padded mask${name})`, async () => {
  const [B, T, H, KVH, D] = [2, 19, 6, 2, 16];
  const mask = leftPadded(B, T, [6, 0]);
  const q = Tensor.fromArray(f32(B * T * H * D, 21), [B, T, H, D]);
  const k = Tensor.fromArray(f32(B * T * KVH * D, 22), [B, T, KVH, D]);
  const v = Tensor.fromArray(f32(B * T * KVH * D, 23), [B, T, KVH, D]);
  const want = await no_grad(() => attention(q, k, v, { attention_mask: mask, ...opts })).toArray();
  for (const [mode, chunk] of MODES) {
    forceCachedAttentionChunk(chunk);
    const o = no_grad(() => attention_cached(q, k, v, { past: 0, attention_mask: mask, ...opts }));
    expectAllClose(await o.toArray(), want, { atol: 1e-6, rtol: 1e-5 }, `prefill (${mode})`);
    o.dispose();
  }
  forceCachedAttentionChunk(null);
});

/** Training attention's options for a window and a cap, and cached attention's (the same names). */
interface Variant {
  name: string;
  T: number;
  P: number;
  pads: number[];
  sliding_window?: number;
  softcap?: number;
  scale?: number;
}

const DECODES: Variant[] = [
  { name: "", T: 12, P: 5, pads: [2, 0] },
  // Prompt shorter than the window, then decode far past it; row 0's window passes its left padding.
  { name: ", window 5", T: 17, P: 3, pads: [7, 0], sliding_window: 5 },
  { name: ", softcap 1.5", T: 17, P: 6, pads: [0, 3], softcap: 1.5, scale: 0.6 },
  { name: ", window 5 + softcap 1.5", T: 17, P: 8, pads: [2, 0], sliding_window: 5, softcap: 1.5, scale: 0.6 },
];

for (const t of DECODES) test(`prefill then token-by-token decode through kv_cache_write = training attention, row by row${t.name}`, async () => {
  const [B, T, H, KVH, D, P] = [2, t.T, 3, 1, 8, t.P]; // prompt of P, then T - P decode steps
  const cap = T + 3;
  const mask = leftPadded(B, T, t.pads);
  const opts = { sliding_window: t.sliding_window, softcap: t.softcap, scale: t.scale };
  const qa = f32(B * T * H * D, 31);
  const ka = f32(B * T * KVH * D, 32);
  const va = f32(B * T * KVH * D, 33);
  const q = Tensor.fromArray(qa, [B, T, H, D]);
  const k = Tensor.fromArray(ka, [B, T, KVH, D]);
  const v = Tensor.fromArray(va, [B, T, KVH, D]);
  const want = (await no_grad(() => attention(q, k, v, { attention_mask: mask, ...opts })).toArray()) as Float32Array;
  /** Tokens [t0, t1) of a (B, T, heads, D) array, as (B, t1 - t0, heads, D). */
  const part = (a: Float32Array, heads: number, t0: number, t1: number) => {
    const w = heads * D;
    const out = new Float32Array(B * (t1 - t0) * w);
    for (let b = 0; b < B; b++) out.set(a.subarray((b * T + t0) * w, (b * T + t1) * w), b * (t1 - t0) * w);
    return Tensor.fromArray(out, [B, t1 - t0, heads, D]);
  };
  const kc = Tensor.fromArray(new Float32Array(B * cap * KVH * D).fill(7), [B, cap, KVH, D]);
  const vc = Tensor.fromArray(new Float32Array(B * cap * KVH * D).fill(7), [B, cap, KVH, D]);
  const maskTo = (L: number) => Array.from({ length: B }, (_, b) => Array.from(mask.subarray(b * T, b * T + L)));
  let t0 = 0;
  for (const t1 of [P, ...Array.from({ length: T - P }, (_, i) => P + i + 1)]) {
    const o = no_grad(() => {
      kv_cache_write(kc, part(ka, KVH, t0, t1), t0);
      kv_cache_write(vc, part(va, KVH, t0, t1), t0);
      return attention_cached(part(qa, H, t0, t1), kc, vc, { past: t0, attention_mask: maskTo(t1), ...opts });
    });
    const ref = part(want, H, t0, t1);
    expectAllClose(await o.toArray(), await ref.toArray(), { atol: 1e-6, rtol: 1e-5 }, `tokens [${t0}, ${t1})`);
    t0 = t1;
  }
});

test("kv_cache_write writes every row at start.., leaves the rest, in one dispatch", async () => {
  const [B, cap, KVH, D, S, start] = [2, 9, 3, 5, 3, 4];
  const cache0 = f32(B * cap * KVH * D, 41);
  const x = f32(B * S * KVH * D, 42);
  const cache = Tensor.fromArray(cache0, [B, cap, KVH, D]);
  const tx = Tensor.fromArray(x, [B, S, KVH, D]);
  const before = gpu().batch.counters.dispatches;
  no_grad(() => kv_cache_write(cache, tx, start));
  assert.equal(gpu().batch.counters.dispatches - before, 1);
  assert.deepEqual(Array.from(await cache.toArray()), Array.from(R.cacheWrite(cache0, x, B, cap, S, start)));
  // The last position, exactly at capacity.
  const last = Tensor.fromArray(f32(B * KVH * D, 43), [B, 1, KVH, D]);
  no_grad(() => kv_cache_write(cache, last, cap - 1));
  const got = await cache.toArray();
  assert.deepEqual(Array.from(got), Array.from(R.cacheWrite(R.cacheWrite(cache0, x, B, cap, S, start), f32(B * KVH * D, 43), B, cap, 1, cap - 1)));
});

test("kv_cache_write errors: shape mismatch, overflow past capacity, grad", () => {
  const cache = Tensor.empty([1, 8, 2, 4]);
  assert.throws(() => no_grad(() => kv_cache_write(cache, Tensor.empty([1, 2, 3, 4]), 0)), /kv_cache_write: x must be \[1, S, 2, 4\]/);
  assert.throws(() => no_grad(() => kv_cache_write(cache, Tensor.empty([2, 2, 2, 4]), 0)), /x must be/);
  assert.throws(() => no_grad(() => kv_cache_write(cache, Tensor.empty([1, 3, 2, 4]), 6)), /3 positions at 6\.\.8 overflows the cache's capacity of 8/);
  assert.throws(() => no_grad(() => kv_cache_write(cache, Tensor.empty([1, 1, 2, 4]), -1)), /start must be a non-negative integer/);
  const x = Tensor.fromArray(new Float32Array(8), [1, 1, 2, 4], { requires_grad: true });
  assert.throws(() => kv_cache_write(cache, x, 0), /x requires grad.*no_grad/);
  no_grad(() => kv_cache_write(cache, x, 0)); // fine without grad
});

test("attention_cached errors: shapes, head_dim, capacity, mask, grad", () => {
  const q = Tensor.empty([1, 2, 4, 8]);
  const kc = Tensor.empty([1, 10, 2, 8]);
  const ng = <T>(f: () => T) => () => no_grad(f);
  assert.throws(ng(() => attention_cached(q, kc, kc, { past: 9 })), /past \+ S = 9 \+ 2 = 11 positions exceed the caches' capacity of 10/);
  assert.throws(ng(() => attention_cached(q, kc, Tensor.empty([1, 10, 2, 4]), { past: 0 })), /same shape/);
  assert.throws(ng(() => attention_cached(q, Tensor.empty([2, 10, 2, 8]), Tensor.empty([2, 10, 2, 8]), { past: 0 })), /B=1 but the caches have B=2/);
  assert.throws(ng(() => attention_cached(q, Tensor.empty([1, 10, 3, 8]), Tensor.empty([1, 10, 3, 8]), { past: 0 })), /multiple of the 3 kv heads/);
  const odd = Tensor.empty([1, 1, 2, 6]);
  const oddc = Tensor.empty([1, 4, 2, 6]);
  assert.throws(ng(() => attention_cached(odd, oddc, oddc, { past: 0 })), /head_dim must be a multiple of 4 from 4 to 256, got 6/);
  const big = Tensor.empty([1, 1, 1, 260]);
  const bigc = Tensor.empty([1, 4, 1, 260]);
  assert.throws(ng(() => attention_cached(big, bigc, bigc, { past: 0 })), /got 260/);
  assert.throws(ng(() => attention_cached(q, kc, kc, { past: 1, attention_mask: [[1, 1]] })), /attention_mask must be \[B, past \+ S\] = \[1, 3\]/);
  assert.throws(ng(() => attention_cached(q, kc, kc, { past: 1, attention_mask: [1, 2, 1] })), /attention_mask\[0\]\[1\] = 2/);
  assert.throws(ng(() => attention_cached(q, kc, kc, { past: -1 })), /past must be a non-negative integer/);
  const qg = Tensor.fromArray(new Float32Array(64), [1, 2, 4, 8], { requires_grad: true });
  assert.throws(() => attention_cached(qg, kc, kc, { past: 0 }), /q requires grad/);
  for (const w of [0, -3, 2.5]) {
    assert.throws(ng(() => attention_cached(q, kc, kc, { past: 0, sliding_window: w })), new RegExp(`attention_cached: sliding_window must be a positive integer .* got ${w}`));
  }
  for (const c of [-1, NaN, Infinity]) {
    assert.throws(ng(() => attention_cached(q, kc, kc, { past: 0, softcap: c })), new RegExp(`attention_cached: softcap must be a positive finite number .* got ${c}`));
  }
});

test("attention_cached: a decode step past the window reads only the window's positions", async () => {
  const [B, H, KVH, D, cap, W] = [1, 4, 2, 16, 300, 5];
  const d = { B, S: 1, H, KVH, D, cap, past: 299, scale: 1, window: W };
  assert.equal(firstPosition(d), 295);
  const plan = cachedAttentionPlan(d);
  assert.equal(plan.NC, 1, `a window of ${W} needs no split, got ${JSON.stringify(plan)}`);
  // Positions before the window hold values that would dominate any softmax they entered.
  const kc = f32(B * cap * KVH * D, 52).fill(30, 0, 295 * KVH * D);
  const vc = f32(B * cap * KVH * D, 53).fill(1e4, 0, 295 * KVH * D);
  const q = f32(B * H * D, 51).fill(1);
  const before = gpu().batch.counters.dispatches;
  const o = no_grad(() =>
    attention_cached(Tensor.fromArray(q, [B, 1, H, D]), Tensor.fromArray(kc, [B, cap, KVH, D]), Tensor.fromArray(vc, [B, cap, KVH, D]), {
      past: 299,
      sliding_window: W,
    }),
  );
  assert.equal(gpu().batch.counters.dispatches - before, 1);
  const c: R.CachedCase = { B, S: 1, H, KVH, D, cap, past: 299, slidingWindow: W };
  expectAllClose(await o.toArray(), R.attentionCached(q, kc, vc, c), FWD, "decode at 299, window 5");
});

test("attention_cached: decode over a long cache splits it and takes at most 3 dispatches; prefill 1", async () => {
  const [B, H, KVH, D, cap] = [1, 4, 2, 16, 300];
  const plan = cachedAttentionPlan({ B, S: 1, H, KVH, D, cap, past: 299, scale: 1 });
  assert.ok(plan.NC > 1, `decode should split the cache, got ${JSON.stringify(plan)}`);
  const q = Tensor.fromArray(f32(B * H * D, 51), [B, 1, H, D]);
  const kc = Tensor.fromArray(f32(B * cap * KVH * D, 52), [B, cap, KVH, D]);
  const vc = Tensor.fromArray(f32(B * cap * KVH * D, 53), [B, cap, KVH, D]);
  let before = gpu().batch.counters.dispatches;
  const o = no_grad(() => attention_cached(q, kc, vc, { past: 299 }));
  const used = gpu().batch.counters.dispatches - before;
  assert.ok(used <= 3, `decode took ${used} dispatches`);
  const c: R.CachedCase = { B, S: 1, H, KVH, D, cap, past: 299 };
  expectAllClose(await o.toArray(), R.attentionCached(await q.toArray(), await kc.toArray(), await vc.toArray(), c), FWD, "decode over 300");
  const qp = Tensor.fromArray(f32(B * 40 * H * D, 54), [B, 40, H, D]);
  forceCachedAttentionChunk(Infinity);
  before = gpu().batch.counters.dispatches;
  no_grad(() => attention_cached(qp, kc, vc, { past: 0 })).dispose();
  assert.equal(gpu().batch.counters.dispatches - before, 1);
  forceCachedAttentionChunk(null);
});
