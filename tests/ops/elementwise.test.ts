import { before, test } from "node:test";
import assert from "node:assert/strict";
import { add, div, exp, gelu, log, mul, neg, scale, silu, sub, Tensor } from "../../src/index.ts";
import { softcap } from "../../src/ops/elementwise.ts";
import { checkOp, setup } from "../helpers.ts";
import * as R from "../reference/elementwise.ts";

before(setup);

const TOL = { atol: 1e-5, rtol: 1e-5 };
const binaries = { add, sub, mul, div } as const;

// [a shape, b shape]: equal, b broadcast over leading dims, a broadcast, scalars, odd sizes.
const pairs: [number[], number[]][] = [
  [[1], [1]],
  [[3, 17], [3, 17]],
  [[33, 65], [65]],
  [[5, 3, 129], [3, 129]],
  [[17], [4, 17]],
  [[7, 1, 9], [1]],
];

for (const op of Object.keys(binaries) as R.Binary[]) {
  for (const [sa, sb] of pairs) {
    test(`${op} [${sa}] [${sb}]`, () =>
      checkOp({
        name: op,
        shapes: [sa, sb],
        // keep divisors away from zero
        ranges: op === "div" ? [[-1, 1], [0.5, 2]] : undefined,
        gpu: ([a, b]) => binaries[op](a!, b!),
        ref: ([a, b]) => R.binary(op, a!, b!),
        refGrad: ([a, b], dy) => R.binaryGrad(op, a!, b!, dy),
        fwd: TOL,
        grad: { atol: 1e-4, rtol: 1e-4 },
      }));
  }
}

const unaries: Record<R.Unary, (x: Tensor) => Tensor> = { neg, exp, log, silu, gelu };
for (const op of Object.keys(unaries) as R.Unary[]) {
  for (const shape of [[1], [3, 17], [65, 33], [129, 65]]) {
    test(`${op} [${shape}]`, () =>
      checkOp({
        name: op,
        shapes: [shape],
        ranges: [op === "log" ? [0.1, 4] : [-6, 6]],
        gpu: ([x]) => unaries[op](x!),
        ref: ([x]) => R.map(x!, R.unaryFns[op].f),
        refGrad: ([x], dy) => [x!.map((v, i) => dy[i]! * R.unaryFns[op].df(v))],
        // f32 exp/log are within a few ulp (WGSL allows several); gelu's erf approximation is 1.5e-7 absolute.
        fwd: { atol: 2e-6, rtol: 2e-5 },
        grad: { atol: 1e-5, rtol: 1e-4 },
      }));
  }
}

test("scale [33, 17]", () =>
  checkOp({
    name: "scale",
    shapes: [[33, 17]],
    gpu: ([x]) => scale(x!, -2.5),
    ref: ([x]) => R.map(x!, (v) => -2.5 * v),
    refGrad: (_, dy) => [R.map(dy, (g) => -2.5 * g)],
    fwd: TOL,
  }));

// Gemma's logit soft-capping, cap · tanh(x / cap): tanh from exp(-2|u|) is within a few ulp; x up to 4 caps
// saturates it (d/dx ~ 1e-3), and 30 caps more (the derivative underflows to ~0 without NaN).
for (const [cap, lo, hi, shape] of [[30, -120, 120, [3, 33]], [15, -60, 60, [65]], [0.5, -15, 15, [17, 5]]] as const) {
  test(`softcap ${cap} [${shape}] in [${lo}, ${hi}]`, () =>
    checkOp({
      name: "softcap",
      shapes: [[...shape]],
      ranges: [[lo, hi]],
      gpu: ([x]) => softcap(x!, cap),
      ref: ([x]) => R.softcap(x!, cap),
      refGrad: ([x], dy) => [R.softcapGrad(x!, cap, dy)],
      fwd: { atol: 2e-6 * cap, rtol: 1e-5 },
      grad: { atol: 1e-5, rtol: 1e-4 },
    }));
}

test("softcap rejects a cap that is not a positive number", () => {
  const x = Tensor.fromArray(new Float32Array(3), [3]);
  assert.throws(() => softcap(x, 0), /softcap: cap must be a positive finite number, got 0/);
  assert.throws(() => softcap(x, -1), /got -1/);
  x.dispose();
});
