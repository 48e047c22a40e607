// Frozen weights stored as f16 (shader-f16 adapters): matmul and lora_linear widen them to f32 as they load
// them, so with weights that f16 holds exactly, every result equals the f32-weight path to f32 rounding.
// Node's Dawn + SwiftShader has no shader-f16 (those tests skip there and the error path is checked instead);
// Deno's wgpu on llvmpipe has it:
//   XDG_RUNTIME_DIR=/tmp node_modules/.bin/deno test -A --no-check tests/ops/f16_weights.test.ts
import assert from "node:assert/strict";
import { after, before, test, type TestContext } from "node:test";
import {
  configFits,
  configName,
  forceMatmulConfig,
  forceMatvecConfig,
  MATMUL_CONFIGS,
  MATVEC_CONFIGS,
  matvecConfigFits,
  type MatmulConfig,
  type MatvecConfig,
} from "../../src/kernels/matmul.ts";
import { deviceInfo, lora_linear, matmul, Tensor } from "../../src/index.ts";
import { f16ToF32, f32ToF16 } from "../../src/tensor/half.ts";
import { expectAllClose, rand, setup } from "../helpers.ts";

before(setup);
after(() => forceMatmulConfig(null));

// The same f32 arithmetic on the same values: equal to f32 rounding (in practice to the bit).
const SAME = { atol: 1e-7, rtol: 1e-5 };

const hasF16 = () => deviceInfo().features.shader_f16;
const NO_F16 = "adapter has no shader-f16";

/** n values in [-1, 1) that f16 holds exactly (rounded through f16), as f32. */
const f16Exact = (n: number, seed: number) => f16ToF32(f32ToF16(Float32Array.from(rand(n, seed))));
const f32Values = (n: number, seed: number) => Float32Array.from(rand(n, seed));

/** Every config of both kernels that fits this adapter: the register-blocked and the tiled variant. */
const configs = (): MatmulConfig[] => [...MATMUL_CONFIGS.cpu, ...MATMUL_CONFIGS.gpu].filter((c) => configFits(c, deviceInfo()));

interface Case {
  batch?: number[];
  M: number;
  K: number;
  N: number;
  ta?: boolean;
  tb?: boolean;
}

const caseName = (c: Case) =>
  `${c.batch ? `[${c.batch}] × ` : ""}M ${c.M}, K ${c.K}, N ${c.N}${c.ta ? ", transpose_a" : ""}${c.tb ? ", transpose_b" : ""}`;

/**
 * op(a)·op(W) and da with W stored as f16 against the same with W as f32 (same values), for every config:
 * a [..., M, K] (or [..., K, M]) requires grad, W [K, N] (or [N, K]) is frozen and shared by a's batch.
 */
async function checkMatmul(t: TestContext, c: Case, list: MatmulConfig[] = configs(), label?: string): Promise<void> {
  if (!hasF16()) return t.skip(NO_F16);
  const ta = c.ta ?? false;
  const tb = c.tb ?? false;
  const aShape = [...(c.batch ?? []), ...(ta ? [c.K, c.M] : [c.M, c.K])];
  const wShape = tb ? [c.N, c.K] : [c.K, c.N];
  const aVals = f32Values(aShape.reduce((p, q) => p * q, 1), 1);
  const wVals = f16Exact(c.K * c.N, 2);
  const dyVals = f32Values((aVals.length / (c.M * c.K)) * c.M * c.N, 3);
  for (const config of list) {
    forceMatmulConfig(config);
    const run = async (dtype: "f32" | "f16") => {
      const a = Tensor.fromArray(aVals, aShape, { requires_grad: true });
      const w = Tensor.fromArray(wVals, wShape, { dtype });
      assert.equal(w.dtype, dtype);
      const y = matmul(a, w, { transpose_a: ta, transpose_b: tb });
      y.backward(Tensor.fromArray(dyVals, y.shape));
      assert.equal(w.grad, null);
      const out = { y: await y.toArray(), da: await a.grad!.toArray() };
      for (const x of [a, w, y, a.grad!]) x.dispose();
      return out;
    };
    const want = await run("f32");
    const got = await run("f16");
    const what = `${caseName(c)}, ${label ?? configName(config)}`;
    expectAllClose(got.y, want.y, SAME, `${what}: y`);
    expectAllClose(got.da, want.da, SAME, `${what}: da`);
  }
  forceMatmulConfig(null);
}

for (const c of [
  { M: 17, K: 33, N: 65, tb: true },
  { M: 17, K: 33, N: 65 },
  { M: 1, K: 33, N: 65, tb: true },
  { M: 1, K: 33, N: 65 },
  { M: 8, K: 32, N: 16, tb: true }, // vec4 loads of the f16 operand
  { M: 8, K: 32, N: 16 },
  { batch: [2], M: 9, K: 33, N: 65, tb: true }, // x·Wᵀ with x's batch folded into M
  { M: 17, K: 33, N: 65, ta: true, tb: true }, // da = W'·dyᵀ puts the f16 weight in the a slot
] satisfies Case[]) {
  test(`matmul with an f16 weight equals the f32 weight: ${caseName(c)}`, (t) => checkMatmul(t, c));
}

// M = 1 (decoding): the small-M kernels, each forced, read the f16 weight (vec4 loads where K % 4 == 0).
const smallConfigs = (): (MatvecConfig | MatmulConfig)[] =>
  [...new Set([...MATVEC_CONFIGS.cpu, ...MATVEC_CONFIGS.gpu, { kernel: "vec", WG: 16, C: 4 } as MatvecConfig])].filter((c) =>
    "TM" in c ? configFits(c, deviceInfo()) : matvecConfigFits(c, deviceInfo()));
for (const c of [
  { M: 1, K: 32, N: 20, tb: true },
  { M: 1, K: 33, N: 65, tb: true },
  { M: 1, K: 33, N: 65 },
  { batch: [3], M: 1, K: 36, N: 17, tb: true }, // three sequences decoding: M = 3 after folding
] satisfies Case[]) {
  test(`matmul small M with an f16 weight equals the f32 weight, each small-M kernel: ${caseName(c)}`, async (t) => {
    if (!hasF16()) return t.skip(NO_F16);
    try {
      for (const config of smallConfigs()) {
        forceMatvecConfig(config);
        await checkMatmul(t, c, [configs()[0]!], configName(config));
      }
    } finally {
      forceMatvecConfig(null);
    }
  });
}

test("matmul with an f16 a (frozen) and an f32 b that requires grad: y and db equal the f32 path", async (t) => {
  if (!hasF16()) return t.skip(NO_F16);
  const [M, K, N] = [17, 33, 65];
  const aVals = f16Exact(M * K, 4);
  const bVals = f32Values(K * N, 5);
  const dyVals = f32Values(M * N, 6);
  const run = async (dtype: "f32" | "f16") => {
    const a = Tensor.fromArray(aVals, [M, K], { dtype });
    const b = Tensor.fromArray(bVals, [K, N], { requires_grad: true });
    const y = matmul(a, b);
    y.backward(Tensor.fromArray(dyVals, [M, N]));
    return { y: await y.toArray(), db: await b.grad!.toArray() };
  };
  const want = await run("f32");
  const got = await run("f16");
  expectAllClose(got.y, want.y, SAME, "y");
  expectAllClose(got.db, want.db, SAME, "db");
});

test("an f16 weight takes half the bytes of its f32 copy", (t) => {
  const w32 = Tensor.fromArray(f16Exact(65 * 33, 2), [65, 33]);
  const w16 = Tensor.fromArray(f16Exact(65 * 33, 2), [65, 33], { dtype: "f16" });
  assert.equal(w16.storage.bytes * 2, w32.storage.bytes);
  w32.dispose();
  w16.dispose();
  if (!hasF16()) t.diagnostic(NO_F16);
});

interface LoraCase {
  lead: number[];
  I: number;
  O: number;
  R: number;
  dropout?: number;
}

for (const c of [
  { lead: [17], I: 33, O: 65, R: 8 },
  { lead: [1], I: 33, O: 65, R: 4 },
  { lead: [2, 9], I: 32, O: 16, R: 8 },
  { lead: [2, 9], I: 33, O: 65, R: 8, dropout: 0.25 },
] satisfies LoraCase[]) {
  const T = c.lead.reduce((p, q) => p * q, 1);
  test(
    `lora_linear with an f16 weight equals the f32 weight: x [${[...c.lead, c.I]}], out ${c.O}, r ${c.R}, bias` +
      `, dropout ${c.dropout ?? 0}: y, dx, dA, dB, db`,
    async (t) => {
      if (!hasF16()) return t.skip(NO_F16);
      const xVals = f32Values(T * c.I, 11);
      const wVals = f16Exact(c.O * c.I, 12);
      const bVals = f32Values(c.O, 13);
      const AVals = f32Values(c.R * c.I, 14);
      const BVals = f32Values(c.O * c.R, 15);
      const dyVals = f32Values(T * c.O, 16);
      for (const config of configs()) {
        forceMatmulConfig(config);
        const run = async (dtype: "f32" | "f16") => {
          const x = Tensor.fromArray(xVals, [...c.lead, c.I], { requires_grad: true });
          const w = Tensor.fromArray(wVals, [c.O, c.I], { dtype });
          const b = Tensor.fromArray(bVals, [c.O], { requires_grad: true });
          const A = Tensor.fromArray(AVals, [c.R, c.I], { requires_grad: true });
          const B = Tensor.fromArray(BVals, [c.O, c.R], { requires_grad: true });
          const y = lora_linear(x, w, b, A, B, { scaling: 16 / c.R, dropout: c.dropout ?? 0, seed: 7, step: 3 });
          y.backward(Tensor.fromArray(dyVals, y.shape));
          assert.equal(w.grad, null);
          const out = {
            y: await y.toArray(),
            dx: await x.grad!.toArray(),
            dA: await A.grad!.toArray(),
            dB: await B.grad!.toArray(),
            db: await b.grad!.toArray(),
          };
          for (const v of [x, w, b, A, B, y]) {
            v.grad?.dispose();
            v.dispose();
          }
          return out;
        };
        const want = await run("f32");
        const got = await run("f16");
        for (const k of ["y", "dx", "dA", "dB", "db"] as const) {
          expectAllClose(got[k], want[k], SAME, `${configName(config)}: ${k}`);
        }
      }
      forceMatmulConfig(null);
    },
  );
}

test("an f16 operand cannot require grad", () => {
  const x = Tensor.fromArray(f32Values(3 * 8, 1), [3, 8]);
  const w = Tensor.fromArray(f16Exact(5 * 8, 2), [5, 8], { dtype: "f16", requires_grad: true });
  const msg = /an f16 (operand|weight) cannot require grad; f16 storage is for frozen weights/;
  assert.throws(() => matmul(x, w, { transpose_b: true }), msg);
  assert.throws(() => matmul(w, x, { transpose_b: true }), /matmul: a \[5, 8\]: an f16 operand cannot require grad/);
  const A = Tensor.fromArray(f32Values(2 * 8, 3), [2, 8]);
  const B = Tensor.fromArray(f32Values(5 * 2, 4), [5, 2]);
  assert.throws(() => lora_linear(x, w, null, A, B, { scaling: 1 }), msg);
  // Other operands stay f32.
  const w16 = Tensor.fromArray(f16Exact(5 * 8, 2), [5, 8], { dtype: "f16" });
  const A16 = Tensor.fromArray(f16Exact(2 * 8, 3), [2, 8], { dtype: "f16" });
  assert.throws(() => lora_linear(x, w16, null, A16, B, { scaling: 1 }), /lora_A must be f32, got f16/);
  assert.throws(() => matmul(x, Tensor.fromArray(Int32Array.from([1, 2, 3, 4, 5, 6, 7, 8]), [1, 8]), { transpose_b: true }), /f32 or f16 operands only/);
});

test("an f16 operand on an adapter without shader-f16 is refused with a message saying so", (t) => {
  if (hasF16()) return t.skip("adapter has shader-f16 (the f16 paths are tested above)");
  const x = Tensor.fromArray(f32Values(3 * 8, 1), [3, 8]);
  const w = Tensor.fromArray(f16Exact(5 * 8, 2), [5, 8], { dtype: "f16" });
  assert.throws(() => matmul(x, w, { transpose_b: true }), /matmul: an f16 operand needs the adapter's shader-f16 feature, which this device does not have/);
  const A = Tensor.fromArray(f32Values(2 * 8, 3), [2, 8]);
  const B = Tensor.fromArray(f32Values(5 * 2, 4), [5, 2]);
  assert.throws(() => lora_linear(x, w, null, A, B, { scaling: 1 }), /lora_linear: weight must be f32, got f16: .*shader-f16/);
});
