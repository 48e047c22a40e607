// torch.optim.AdamW (src/nn/adamw.ts) against torch (tools/fixtures/adamw.py → tests/fixtures/adamw.json, with
// clip_grad_norm_) and the float64 reference, its state_dict round trip, and its argument checks.
import assert from "node:assert/strict";
import { before, test } from "node:test";
import { AdamW, clip_grad_norm_, Tensor } from "../../src/index.ts";
import { fixtures, tensorOf, type FixtureCase } from "../fixtures.ts";
import { expectAllClose, setup } from "../helpers.ts";
import * as R from "../reference/adamw.ts";
import * as N from "../reference/grad_norm.ts";

before(setup);

const NAMES = ["w", "b", "s", "e"] as const;
const LR = 0.1;
const BETAS: [number, number] = [0.9, 0.999];
const EPS = 1e-8;
// f32 params (|p| <= 1.3, ulp 1.2e-7) after up to 3 updates: a couple of ulp of rounding (max seen 2.2e-7), so
// params near 0 need the atol.
const PARAM_TOL = { atol: 3e-7, rtol: 1e-6 };
// The torch fixture's outputs are rounded to 10 significant digits.
const REF_TOL = { atol: 1e-12, rtol: 1e-9 };

const fromFixture = (c: FixtureCase, key: string) => {
  const t = tensorOf(c, key);
  return Tensor.fromArray(Float32Array.from(t.data), t.shape);
};

/** The fixture's optimizer: w, b decay with 0.1; s, e do not and have their own lr. */
function fixtureOptimizer(p: Record<(typeof NAMES)[number], Tensor>): AdamW {
  return new AdamW(
    [
      { params: [p.w, p.b], weight_decay: 0.1 },
      { params: [p.s, p.e], weight_decay: 0, lr: 0.05 },
    ],
    { lr: LR, betas: BETAS, eps: EPS, weight_decay: 0.01 },
  );
}

for (const [name, c] of Object.entries(fixtures("adamw"))) {
  test(`AdamW + clip_grad_norm_ match torch for 3 steps: ${name}`, async () => {
    const p = Object.fromEntries(NAMES.map((n) => [n, fromFixture(c, n)])) as Record<(typeof NAMES)[number], Tensor>;
    const opt = fixtureOptimizer(p);
    const wd = { w: 0.1, b: 0.1, s: 0, e: 0 };
    const group = { w: 0, b: 0, s: 1, e: 1 };
    const ref = Object.fromEntries(
      NAMES.map((n) => {
        const size = p[n].size;
        return [n, { p: Float64Array.from(tensorOf(c, n).data), m: new Float64Array(size), v: new Float64Array(size), t: 0 }];
      }),
    );
    const maxNorm = c.max_norm as number;
    for (let t = 1; t <= 3; t++) {
      const lrs = c[`lr${t}`] as number[];
      opt.param_groups.forEach((g, i) => (g.lr = lrs[i]!));
      const grads: Partial<Record<string, number[]>> = {};
      for (const n of NAMES) {
        const key = `grad${t}.${n}`;
        if (key in c) {
          p[n].grad = fromFixture(c, key);
          grads[n] = tensorOf(c, key).data;
        }
      }
      const norm = clip_grad_norm_(Object.values(p), maxNorm);
      opt.step();

      const refNorm = N.gradNorm(Object.values(grads) as number[][]);
      const clip = N.clipCoef(refNorm, maxNorm);
      if (name === "clipped") assert.ok(clip < 0.01, `clip factor ${clip}`);
      for (const n of NAMES) {
        const g = grads[n];
        const r = ref[n]!;
        if (!g) continue;
        R.adamwStep(r.p, g, r.m, r.v, ++r.t, { lr: lrs[group[n]]!, beta1: BETAS[0], beta2: BETAS[1], eps: EPS, weight_decay: wd[n] }, clip);
      }
      expectAllClose([refNorm], [c[`norm${t}`] as number], REF_TOL, `reference norm, step ${t}`);
      expectAllClose([await norm.item()], [c[`norm${t}`] as number], { atol: 0, rtol: 1e-6 }, `norm, step ${t}`);
      for (const n of NAMES) {
        const want = tensorOf(c, `param${t}.${n}`).data;
        expectAllClose(ref[n]!.p, want, REF_TOL, `reference ${n}, step ${t}`);
        expectAllClose(await p[n].toArray(), want, PARAM_TOL, `${n}, step ${t}`);
      }
      norm.dispose();
      opt.zero_grad();
    }
    for (const n of NAMES) {
      const s = opt.state.get(p[n])!;
      assert.equal(s.step, c[`step.${n}`], `step of ${n}`);
      const m = tensorOf(c, `exp_avg.${n}`).data;
      const v = tensorOf(c, `exp_avg_sq.${n}`).data;
      expectAllClose(ref[n]!.m, m, REF_TOL, `reference exp_avg ${n}`);
      expectAllClose(ref[n]!.v, v, REF_TOL, `reference exp_avg_sq ${n}`);
      const mMax = Math.max(...m.map(Math.abs));
      const vMax = Math.max(...v);
      expectAllClose(await s.exp_avg.toArray(), m, { atol: 1e-6 * mMax, rtol: 1e-5 }, `exp_avg ${n}`);
      expectAllClose(await s.exp_avg_sq.toArray(), v, { atol: 1e-6 * vMax, rtol: 1e-5 }, `exp_avg_sq ${n}`);
    }
  });
}

test("state_dict() / load_state_dict() carry the state: a restored optimizer continues identically", async () => {
  const c = fixtures("adamw").clipped!;
  const make = () => Object.fromEntries(NAMES.map((n) => [n, fromFixture(c, n)])) as Record<(typeof NAMES)[number], Tensor>;
  const setGrads = (p: Record<string, Tensor>, t: number) => {
    for (const n of NAMES) if (`grad${t}.${n}` in c) p[n]!.grad = fromFixture(c, `grad${t}.${n}`);
  };
  const pa = make();
  const a = fixtureOptimizer(pa);
  for (const t of [1, 2]) {
    setGrads(pa, t);
    clip_grad_norm_(Object.values(pa), 1);
    a.step();
    a.zero_grad();
  }
  a.param_groups[0]!.lr = 0.04;
  const sd = a.state_dict();
  assert.deepEqual(
    sd.param_groups,
    [
      { lr: 0.04, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.1, params: [0, 1] },
      { lr: 0.05, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0, params: [2, 3] },
    ],
  );
  assert.deepEqual(Object.keys(sd.state), ["0", "1", "2", "3"]);
  assert.deepEqual(Object.values(sd.state).map((s) => s.step), [2, 2, 2, 1]);

  // A fresh optimizer over params holding a's values, then one more step on both.
  const pb = make();
  for (const n of NAMES) pb[n].dispose();
  for (const n of NAMES) pb[n] = Tensor.fromArray(await pa[n].toArray(), pa[n].shape);
  const b = fixtureOptimizer(pb);
  b.load_state_dict(sd);
  assert.equal(b.param_groups[0]!.lr, 0.04);
  for (const [p, o] of [[pa, a], [pb, b]] as const) {
    setGrads(p, 3);
    clip_grad_norm_(Object.values(p), 1);
    o.step();
    o.zero_grad();
  }
  for (const n of NAMES) assert.deepEqual(await pb[n].toArray(), await pa[n].toArray(), `${n} after the restored step`);
  assert.equal(b.state.get(pb.e)!.step, 2);

  assert.throws(() => new AdamW([pb.w]).load_state_dict(sd), /different number of parameter groups/);
  assert.throws(
    () => new AdamW([{ params: [pb.w] }, { params: [pb.s, pb.e] }]).load_state_dict(sd),
    /doesn't match the size of optimizer's group/,
  );
  // An incomplete state (a checkpoint missing a moment, or the step) is an error naming what is missing.
  const first = Object.keys(sd.state)[0]!;
  const without = (k: string) => ({ ...sd, state: { ...sd.state, [first]: Object.fromEntries(Object.entries(sd.state[+first]!).filter(([key]) => key !== k)) } });
  assert.throws(() => fixtureOptimizer(pb).load_state_dict(without("exp_avg_sq") as typeof sd), /state exp_avg_sq is missing/);
  assert.throws(() => fixtureOptimizer(pb).load_state_dict(without("step") as typeof sd), /state step must be a whole number, got undefined/);
});

test("AdamW checks its arguments as torch does", () => {
  const p = Tensor.fromArray([1]);
  assert.throws(() => new AdamW([]), /empty parameter list/);
  assert.throws(() => new AdamW([p], { lr: -1 }), /invalid learning rate: -1/);
  assert.throws(() => new AdamW([p], { betas: [0.9, 1] }), /invalid beta parameter at index 1: 1/);
  assert.throws(() => new AdamW([p], { eps: -1 }), /invalid epsilon value/);
  assert.throws(() => new AdamW([p], { weight_decay: -0.1 }), /invalid weight_decay value/);
  assert.throws(() => new AdamW([{ params: [p] }, { params: [p] }]), /more than one parameter group/);
  assert.throws(() => new AdamW([Tensor.fromArray(Int32Array.from([1]))]), /must be f32/);
  const opt = new AdamW([{ params: [p], lr: 0.5 }], { lr: 0.1 });
  assert.deepEqual(
    { ...opt.param_groups[0], params: opt.param_groups[0]!.params.length },
    { params: 1, lr: 0.5, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.01 },
  );
});
