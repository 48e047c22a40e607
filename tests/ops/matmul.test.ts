import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { gpu, isCpuAdapter } from "../../src/gpu/device.ts";
import {
  configFits,
  configName,
  forceMatmulConfig,
  forceMatvecConfig,
  MATMUL_CONFIGS,
  MATVEC_CONFIGS,
  MATVEC_MAX_M,
  matmulConfig,
  matmulInto,
  matvecConfig,
  matvecConfigFits,
  type MatmulConfig,
  type MatvecConfig,
} from "../../src/kernels/matmul.ts";
import { linear } from "../../src/ops/matmul.ts";
import { deviceInfo, matmul, Tensor, tuneMatmul } from "../../src/index.ts";
import { checkOp, expectAllClose, rand, setup } from "../helpers.ts";
import * as R from "../reference/matmul.ts";

before(setup);
after(() => {
  forceMatmulConfig(null);
  forceMatvecConfig(null);
});

// f32 products of K terms in [-1, 1]: rounding grows like sqrt(K)·eps; 1e-4 relative holds to K ~ 300.
const TOL = { atol: 1e-5, rtol: 1e-4 };

const fits = (c: MatmulConfig) => configFits(c, deviceInfo());

interface Case {
  /** Batch dims of a and b ([] for a 2-D operand). */
  batchA?: number[];
  batchB?: number[];
  M: number;
  K: number;
  N: number;
  ta?: boolean;
  tb?: boolean;
}

function name(c: Case): string {
  const s = (batch: number[] | undefined, r: number, q: number) => `[${[...(batch ?? []), r, q].join(",")}]`;
  const ta = c.ta ?? false;
  const tb = c.tb ?? false;
  const a = s(c.batchA, ta ? c.K : c.M, ta ? c.M : c.K) + (ta ? "ᵀ" : "");
  const b = s(c.batchB, tb ? c.N : c.K, tb ? c.K : c.N) + (tb ? "ᵀ" : "");
  return `${a} · ${b}`;
}

/** Forward and backward (or the forward only) against the float64 reference. */
function check(c: Case, seed = 1, backward = true): Promise<void> {
  const ta = c.ta ?? false;
  const tb = c.tb ?? false;
  const batchA = c.batchA ?? [];
  const batchB = c.batchB ?? [];
  const batch = Math.max(batchA.reduce((x, y) => x * y, 1), batchB.reduce((x, y) => x * y, 1));
  return checkOp({
    name: name(c),
    shapes: [
      [...batchA, ...(ta ? [c.K, c.M] : [c.M, c.K])],
      [...batchB, ...(tb ? [c.N, c.K] : [c.K, c.N])],
    ],
    gpu: ([a, b]) => matmul(a!, b!, { transpose_a: ta, transpose_b: tb }),
    ref: ([a, b]) => R.matmul(a!, b!, batch, c.M, c.K, c.N, ta, tb),
    refGrad: backward ? ([a, b], dy) => R.matmulGrad(a!, b!, dy, batch, c.M, c.K, c.N, ta, tb) : undefined,
    fwd: TOL,
    seed,
  });
}

const TRANSPOSES: [boolean, boolean][] = [
  [false, false],
  [false, true],
  [true, false],
  [true, true],
];

// Odd sizes, none a multiple of 4 or of any tile: every load takes the scalar path and every tile an edge.
for (const [ta, tb] of TRANSPOSES) {
  test(`matmul M=65 K=33 N=129 ta=${ta} tb=${tb}`, () => check({ M: 65, K: 33, N: 129, ta, tb }));
}
// Multiples of 4 but not of the tiles: vec4 loads, edge tiles.
for (const [ta, tb] of TRANSPOSES) {
  test(`matmul M=68 K=36 N=132 ta=${ta} tb=${tb} (vec4 loads)`, () => check({ M: 68, K: 36, N: 132, ta, tb }));
}

for (const [M, K, N] of [
  [1, 1, 1],
  [1, 3, 17],
  [3, 17, 1],
  [17, 1, 3],
  [1, 129, 65],
  [129, 65, 1],
  [33, 17, 3],
]) {
  test(`matmul M=${M} K=${K} N=${N}`, () => check({ M: M!, K: K!, N: N!, tb: true }));
}

test("matmul K=300 (accumulation error)", () => check({ M: 20, K: 300, N: 24, tb: true }));

test("matmul batched [2,3] × [2,3]", () => check({ batchA: [2, 3], batchB: [2, 3], M: 17, K: 33, N: 9, ta: true }));
test("matmul batched, vec4 loads", () => check({ batchA: [3], batchB: [3], M: 12, K: 20, N: 8, tb: true }));
test("matmul b shared by a's batch (x·Wᵀ, batch folded into M)", () =>
  check({ batchA: [2, 3], M: 17, K: 33, N: 9, tb: true }));
test("matmul b shared by a's batch, a transposed (dW summed inside the kernel)", () =>
  check({ batchA: [3], M: 17, K: 33, N: 9, ta: true }));
test("matmul b shared, a and b transposed", () => check({ batchA: [3], M: 17, K: 33, N: 9, ta: true, tb: true }));
test("matmul a shared by b's batch", () => check({ batchB: [3], M: 17, K: 33, N: 9 }));

test("matmul with a frozen weight computes no weight gradient", async () => {
  const x = Tensor.fromArray(Float32Array.from(rand(5 * 7, 1)), [5, 7], { requires_grad: true });
  const w = Tensor.fromArray(Float32Array.from(rand(3 * 7, 2)), [3, 7]);
  const y = matmul(x, w, { transpose_b: true });
  const counters = gpu().batch.counters;
  const before = counters.dispatches;
  y.backward(Tensor.fromArray(new Float32Array(15).fill(1), [5, 3]));
  assert.equal(counters.dispatches - before, 1, "backward ran one product (dx) and nothing for the frozen weight");
  assert.equal(w.grad, null);
  const want = new Float64Array(35);
  const wv = rand(21, 2);
  // dx = dy·W with dy = 1: dx[i, k] = sum_j W[j, k].
  for (let i = 0; i < 5; i++) for (let k = 0; k < 7; k++) for (let j = 0; j < 3; j++) want[i * 7 + k]! += wv[j * 7 + k]!;
  const got = await x.grad!.toArray();
  got.forEach((v, i) => assert.ok(Math.abs(v - want[i]!) < 1e-5, `dx[${i}] = ${v}, want ${want[i]}`));
});

// linear(x, weight, bias): the product and the one bias add (axpy), with dx, dW and db.
for (const [lead, I, O] of [[[10], 7, 9], [[2, 5], 33, 17], [[1], 32, 20]] as [number[], number, number][]) {
  test(`linear x [${[...lead, I]}] · W [${O}, ${I}]ᵀ + b [${O}]`, () => {
    const T = lead.reduce((a, b) => a * b, 1);
    return checkOp({
      name: `linear [${[...lead, I]}]`,
      shapes: [[...lead, I], [O, I], [O]],
      gpu: ([x, w, b]) => linear(x!, w!, b!),
      ref: ([x, w, b]) => R.linear(x!, w!, b!, T, I, O),
      refGrad: ([x, w], dy) => R.linearGrad(x!, w!, dy, T, I, O),
      fwd: TOL,
    });
  });
}

test("linear without a bias is matmul with transpose_b; a bias that is not [out] is refused", async () => {
  const x = Tensor.fromArray(Float32Array.from(rand(4 * 6, 1)), [4, 6]);
  const w = Tensor.fromArray(Float32Array.from(rand(5 * 6, 2)), [5, 6]);
  expectAllClose(await linear(x, w).toArray(), await matmul(x, w, { transpose_b: true }).toArray(), { atol: 0, rtol: 0 }, "no bias");
  assert.throws(() => linear(x, w, Tensor.empty([6])), /linear: weight \[5, 6\] needs a 2-D weight \[out, in\] and an f32 bias \[out\], got bias \[6\]/);
});

test("matmul shape errors name both shapes and the transposes", () => {
  const a = Tensor.empty([2, 5, 7]);
  const b = Tensor.empty([6, 3]);
  assert.throws(
    () => matmul(a, b, { transpose_b: true }),
    /a \[2, 5, 7\] \(transpose_a=false\) and b \[6, 3\] \(transpose_b=true\): inner dims differ \(K=7 from a, K=3 from b\)/,
  );
  assert.throws(() => matmul(a, Tensor.empty([3, 7, 4])), /batch dims \[2\] and \[3\] differ/);
  assert.throws(() => matmul(Tensor.empty([7]), b), /a \[7\] .*at least 2 dims/);
});

// Every config the autotuner can choose on any adapter, forced, so one that this adapter does not pick is
// still checked: odd sizes (scalar loads; the backward runs the other transposes but both-transposed) and
// aligned sizes (vec4 loads), both transposed.
for (const config of [...MATMUL_CONFIGS.cpu, ...MATMUL_CONFIGS.gpu]) {
  test(`matmul config ${configName(config)}`, async (t) => {
    if (!fits(config)) return t.skip("exceeds this adapter's workgroup limits");
    forceMatmulConfig(config);
    try {
      await check({ M: 37, K: 19, N: 45, tb: true }, 3);
      await check({ batchA: [2], batchB: [2], M: 36, K: 20, N: 68, ta: true, tb: true }, 4, false);
    } finally {
      forceMatmulConfig(null);
    }
  });
}

interface IntoCase {
  M: number;
  K: number;
  N: number;
  ta?: boolean;
  tb?: boolean;
  /** Batches Z: each has its own A, B and C. */
  batch?: number;
  /** Products S summed into each C (the kernel's sum over s). */
  sum?: number;
  alpha: number;
  /** Default true: C = alpha·Σ A'B' + C0; false: C = alpha·Σ A'B' over whatever C held. */
  accumulate?: boolean;
}

/** Elements after C that no store may touch. */
const GUARD = 7;
const SENTINEL = 12345;

/**
 * matmulInto straight on buffers: C [Z, M, N] starts as C0 (random) and must become alpha·Σ_s A'B' (+ C0),
 * against the float64 reference; the elements past C must keep their sentinel. Operand (z, s) sits at
 * offset (z·S + s) times its size.
 */
async function checkInto(c: IntoCase, config?: MatmulConfig | MatvecConfig, seed = 11): Promise<void> {
  config ??= c.M <= MATVEC_MAX_M ? matvecConfig(c.M) : matmulConfig();
  const { M, K, N, alpha } = c;
  const ta = c.ta ?? false;
  const tb = c.tb ?? false;
  const Z = c.batch ?? 1;
  const S = c.sum ?? 1;
  const accumulate = c.accumulate ?? true;
  const av = rand(Z * S * M * K, seed);
  const bv = rand(Z * S * K * N, seed + 1);
  const c0 = rand(Z * M * N, seed + 2);
  const a = Tensor.fromArray(Float32Array.from(av), [Z * S * M * K]);
  const b = Tensor.fromArray(Float32Array.from(bv), [Z * S * K * N]);
  const out = Tensor.fromArray(Float32Array.from([...c0, ...new Array<number>(GUARD).fill(SENTINEL)]), [Z * M * N + GUARD]);
  matmulInto(a, b, out, {
    M, N, K, transA: ta, transB: tb, batch: Z, sum: S,
    a_z: S * M * K, b_z: S * K * N, c_z: M * N, a_s: M * K, b_s: K * N, accumulate, alpha,
  }, config);
  const got = (await out.toArray()) as Float32Array;
  for (const t of [a, b, out]) t.dispose();
  const products = R.matmul(av, bv, Z * S, M, K, N, ta, tb); // [Z·S, M, N]
  const want = new Float64Array(Z * M * N);
  for (let z = 0; z < Z; z++) {
    for (let i = 0; i < M * N; i++) {
      let p = 0;
      for (let s = 0; s < S; s++) p += products[(z * S + s) * M * N + i]!;
      want[z * M * N + i] = alpha * p + (accumulate ? c0[z * M * N + i]! : 0);
    }
  }
  const what = `${configName(config)}: M=${M} K=${K} N=${N} ta=${ta} tb=${tb} Z=${Z} S=${S} alpha=${alpha}`;
  // |alpha| up to 2.5 and S products per element: the rounding scales with both.
  const scale = Math.max(1, Math.abs(alpha)) * S;
  expectAllClose(got.subarray(0, Z * M * N), want, { atol: TOL.atol * scale, rtol: TOL.rtol }, what);
  assert.deepEqual([...got.subarray(Z * M * N)], new Array<number>(GUARD).fill(SENTINEL), `${what}: stores past C`);
}

for (const [ta, tb] of TRANSPOSES) {
  for (const alpha of [1, -0.75]) {
    test(`matmul accumulate M=65 K=33 N=129 ta=${ta} tb=${tb} alpha=${alpha}`, () => checkInto({ M: 65, K: 33, N: 129, ta, tb, alpha }));
  }
  test(`matmul accumulate M=68 K=36 N=132 ta=${ta} tb=${tb} alpha=2.5 (vec4 loads)`, () =>
    checkInto({ M: 68, K: 36, N: 132, ta, tb, alpha: 2.5 }));
}
test("matmul accumulate, batched", () => checkInto({ batch: 3, M: 17, K: 33, N: 9, ta: true, alpha: 0.5 }));
test("matmul accumulate, batched, vec4 loads", () => checkInto({ batch: 2, M: 12, K: 20, N: 8, tb: true, alpha: -1.5 }));
test("matmul accumulate, products summed over s (a shared weight's gradient)", () =>
  checkInto({ sum: 3, M: 17, K: 33, N: 9, ta: true, alpha: 1.5 }));
test("matmul alpha without accumulate overwrites C with alpha·A'B'", async () => {
  for (const [ta, tb] of TRANSPOSES) await checkInto({ M: 65, K: 33, N: 129, ta, tb, alpha: -0.75, accumulate: false });
});

// Every config, as above: odd sizes, aligned batches both transposed, and summed products.
for (const config of [...MATMUL_CONFIGS.cpu, ...MATMUL_CONFIGS.gpu]) {
  test(`matmul accumulate, config ${configName(config)}`, async (t) => {
    if (!fits(config)) return t.skip("exceeds this adapter's workgroup limits");
    for (const [ta, tb] of TRANSPOSES) await checkInto({ M: 65, K: 33, N: 129, ta, tb, alpha: -2 }, config, 3);
    await checkInto({ batch: 2, M: 36, K: 20, N: 68, ta: true, tb: true, alpha: 0.5 }, config, 4);
    await checkInto({ sum: 2, M: 37, K: 19, N: 45, ta: true, alpha: 1 }, config, 5);
  });
}

// ---- Small M (token-by-token decoding): M <= MATVEC_MAX_M takes MATVEC_CONFIGS (the matrix-vector kernels). ----

// Through the op, forward and backward (dA' = dC·B'ᵀ is small-M again; dB' is not): every transpose, odd K and N.
for (const M of [1, 3, 8]) {
  for (const [ta, tb] of TRANSPOSES) {
    test(`matmul small M=${M} K=33 N=65 ta=${ta} tb=${tb}`, () => check({ M, K: 33, N: 65, ta, tb }, M));
  }
  for (const [K, N] of [[17, 65], [65, 17], [65, 33]] as const) {
    test(`matmul small M=${M} K=${K} N=${N} tb=true`, () => check({ M, K, N, tb: true }, M + K));
  }
}
test("matmul small M, vec4 loads (K and N multiples of 4)", async () => {
  for (const M of [1, 2, 5]) for (const tb of [true, false]) await check({ M, K: 64, N: 36, tb }, M);
});
test("matmul small M batched [2] × [2]ᵀ", () => check({ batchA: [2], batchB: [2], M: 1, K: 33, N: 17, tb: true }));
test("matmul small M batched, a transposed", () => check({ batchA: [3], batchB: [3], M: 3, K: 17, N: 33, ta: true }));
test("matmul small M, b shared by a's batch (decoding 2×3 sequences: M = 6 after folding)", () =>
  check({ batchA: [2, 3], M: 1, K: 33, N: 17, tb: true }));
test("matmul small M, b shared by a's batch, a transposed", () => check({ batchA: [3], M: 1, K: 33, N: 17, ta: true }));
test("matmul small M, a shared by b's batch", () => check({ batchB: [3], M: 1, K: 33, N: 17 }));

// Every small-M config (the adapter's table, each kernel forced with a few shapes of its launch), straight on
// buffers: accumulate with alpha, overwrite, batches, summed products, vec4 and scalar loads.
const SMALL_M_CONFIGS: (MatvecConfig | MatmulConfig | null)[] = [
  null,
  { kernel: "vec", WG: 16, C: 4 },
  { kernel: "vec", WG: 8, C: 16 },
  { kernel: "vec", WG: 64, C: 12 },
  { kernel: "vec_wg", WG: 64 },
  { kernel: "vec_wg", WG: 8 },
  ...MATVEC_CONFIGS.cpu.filter((c) => c.kernel === "reg").filter((c, i, all) => all.indexOf(c) === i),
];
const smallFits = (c: MatvecConfig | MatmulConfig) => ("TM" in c ? fits(c) : matvecConfigFits(c, deviceInfo()));
for (const config of SMALL_M_CONFIGS) {
  test(`matmul small M accumulate, ${config ? configName(config) : "the adapter's choice by M"}`, async (t) => {
    if (config && !smallFits(config)) return t.skip("exceeds this adapter's workgroup limits");
    const at = (M: number) => config ?? matvecConfig(M);
    for (const [ta, tb] of TRANSPOSES) await checkInto({ M: 3, K: 33, N: 65, ta, tb, alpha: -0.75 }, at(3), 1);
    for (const M of [1, 8]) await checkInto({ M, K: 65, N: 17, tb: true, alpha: 2.5 }, at(M), M);
    await checkInto({ M: 8, K: 17, N: 33, ta: true, alpha: 0.5 }, at(8), 2);
    await checkInto({ M: 1, K: 17, N: 33, tb: true, alpha: 2.5, accumulate: false }, at(1), 3);
    for (const ta of [false, true]) await checkInto({ M: 4, K: 36, N: 68, ta, tb: !ta, alpha: 0.5 }, at(4), 4); // vec4 loads
    await checkInto({ batch: 3, M: 2, K: 33, N: 17, tb: true, alpha: 1.5 }, at(2), 6);
    await checkInto({ batch: 2, M: 1, K: 20, N: 12, tb: true, alpha: 1 }, at(1), 7);
    await checkInto({ sum: 3, M: 5, K: 17, N: 33, ta: true, alpha: -2 }, at(5), 8);
    await checkInto({ M: 1, K: 1, N: 1, alpha: 1 }, at(1), 9);
  });
}
test("matmul small M forced through the op (forceMatvecConfig), forward and backward", async () => {
  for (const config of SMALL_M_CONFIGS) {
    if (config && !smallFits(config)) continue;
    forceMatvecConfig(config);
    try {
      await check({ M: 3, K: 33, N: 65, tb: true }, 2);
      await check({ batchA: [2], batchB: [2], M: 1, K: 20, N: 36, ta: true, tb: true }, 3);
    } finally {
      forceMatvecConfig(null);
    }
  }
});
test("matmul small M: the small-M kernels refuse M past MATVEC_MAX_M", () => {
  const a = Tensor.empty([9, 4]);
  const b = Tensor.empty([4, 4]);
  const c = Tensor.empty([9, 4]);
  const dims = { M: 9, N: 4, K: 4, transA: false, transB: false, batch: 1, sum: 1, a_z: 0, b_z: 0, c_z: 0, a_s: 0, b_s: 0 };
  assert.throws(() => matmulInto(a, b, c, dims, { kernel: "vec", WG: 16 }), /at most 8 rows \(M = 9\)/);
  for (const t of [a, b, c]) t.dispose();
});

test("tuneMatmul picks one of its candidates and matmul then uses it", async () => {
  const tuning = await tuneMatmul();
  const candidates: readonly MatmulConfig[] = MATMUL_CONFIGS[isCpuAdapter(deviceInfo()) ? "cpu" : "gpu"];
  assert.ok(candidates.includes(tuning.config), configName(tuning.config));
  assert.equal(tuning.timings.length, candidates.filter(fits).length);
  assert.equal(matmulConfig(), tuning.config);
  await check({ M: 65, K: 33, N: 129, tb: true });
});
