// The optimizer interface (src/nn/optimizer.ts) and registry (src/nn/optim.ts): transformers' `optim` names,
// the error for any other, clip_grad_norm_ honoured by an optimizer that is not AdamW, and a state_dict()
// stored as named tensors plus JSON and loaded back.
import assert from "node:assert/strict";
import { before, test } from "node:test";
import { AdamW, clip_grad_norm_, mul, no_grad, Optimizer, scale as scaled, sub, tidy, Tensor, type ParamGroup } from "../../src/index.ts";
import { gpu } from "../../src/gpu/device.ts";
import { createOptimizer, optimizerNames } from "../../src/nn/optim.ts";
import { joinStateDict, splitStateDict } from "../../src/nn/optimizer.ts";
import { expectAllClose, rand, setup } from "../helpers.ts";
import * as R from "../reference/grad_norm.ts";

before(setup);

const ARGS = { learning_rate: 0.02, adam_beta1: 0.8, adam_beta2: 0.95, adam_epsilon: 1e-6 };

test("optim picks from the registry: the AdamW names build AdamW from the Trainer's arguments; any other name is an error listing them", () => {
  assert.deepEqual(optimizerNames(), ["adamw_torch", "adamw_torch_fused"]);
  const [w, b] = [Tensor.fromArray([1, 2]), Tensor.fromArray([3])];
  for (const name of optimizerNames()) {
    const opt = createOptimizer(name, [{ params: [w], weight_decay: 0.1 }, { params: [b], weight_decay: 0 }], ARGS);
    assert.ok(opt instanceof AdamW, name);
    assert.deepEqual(
      opt.param_groups.map(({ params, ...h }) => ({ ...h, params: params.length })),
      [
        { lr: 0.02, betas: [0.8, 0.95], eps: 1e-6, weight_decay: 0.1, params: 1 },
        { lr: 0.02, betas: [0.8, 0.95], eps: 1e-6, weight_decay: 0, params: 1 },
      ],
    );
  }
  for (const name of ["paged_adamw_8bit", "adafactor", "toString", "__proto__"]) {
    assert.throws(
      () => createOptimizer(name, [{ params: [w], weight_decay: 0 }], ARGS),
      new RegExp(`optim "${name}" is not implemented in webtune; the implemented ones: "adamw_torch", "adamw_torch_fused"`),
    );
  }
  w.dispose();
  b.dispose();
});

interface SGDGroup extends ParamGroup {}

/** Plain SGD (p -= lr * g) written only against the interface, with public ops: no clip handling of its own. */
class SGD extends Optimizer<SGDGroup, { step: number }> {
  constructor(params: Tensor[], lr: number) {
    super("SGD", params, { lr });
  }
  protected checkGroup(g: SGDGroup): void {
    if (!(g.lr >= 0)) throw new Error(`SGD: invalid learning rate: ${g.lr}`);
  }
  protected update(p: Tensor, grad: Tensor, scale: Tensor, group: SGDGroup): void {
    const s = this.state.get(p) ?? { step: 0 };
    s.step++;
    this.state.set(p, s);
    tidy(() =>
      no_grad(() => {
        const next = sub(p, scaled(mul(grad, scale), group.lr));
        gpu().batch.copy(next.buffer, 0, p.buffer, 0, p.size * 4);
      }),
    );
  }
}

test("an optimizer written against the interface honours clip_grad_norm_: its update gets the clip factor", async () => {
  const LR = 0.5;
  const data = [rand(300, 1, -1, 1), rand(17, 2, -1, 1)];
  const grads = [rand(300, 3, -2, 2), rand(17, 4, -2, 2)];
  const params = data.map((d) => Tensor.fromArray(Float32Array.from(d)));
  const opt = new SGD(params, LR);
  const norm = R.gradNorm(grads);
  for (const maxNorm of [1, Infinity]) {
    const before = await Promise.all(params.map((p) => p.toArray()));
    params.forEach((p, i) => (p.grad = Tensor.fromArray(Float32Array.from(grads[i]!))));
    const got = clip_grad_norm_(params, maxNorm);
    opt.step();
    opt.zero_grad();
    expectAllClose([await got.item()], [norm], { atol: 0, rtol: 2e-6 }, "norm");
    got.dispose();
    const clip = R.clipCoef(norm, maxNorm);
    if (maxNorm === 1) assert.ok(clip < 0.1, `clip factor ${clip}`);
    for (const [i, p] of params.entries()) {
      const want = before[i]!.map((x, j) => x - LR * grads[i]![j]! * clip);
      expectAllClose(await p.toArray(), want, { atol: 1e-6, rtol: 1e-6 }, `param ${i}, max_norm ${maxNorm}`);
    }
  }
  assert.deepEqual(Object.values(opt.state_dict().state), [{ step: 2 }, { step: 2 }]);
  opt.dispose();
  for (const p of params) p.dispose();
});

test("a state_dict() is named tensors (state.<index>.<key>) plus JSON; the two load back into a fresh optimizer", async () => {
  const make = () => [Tensor.fromArray(Float32Array.from(rand(6, 5)), [2, 3]), Tensor.fromArray(Float32Array.from(rand(4, 6)))];
  const grads = [rand(6, 7), rand(4, 8)];
  const [pa, pb] = [make(), make()];
  const [a, b] = [new AdamW([{ params: [pa[0]!] }, { params: [pa[1]!], weight_decay: 0 }]), new AdamW([{ params: [pb[0]!] }, { params: [pb[1]!], weight_decay: 0 }])];
  const step = (ps: Tensor[], o: AdamW) => {
    ps.forEach((p, i) => (p.grad = Tensor.fromArray(Float32Array.from(grads[i]!), p.shape)));
    clip_grad_norm_(ps, 0.1).dispose();
    o.step();
    o.zero_grad();
  };
  step(pa, a);
  step(pa, a);
  a.param_groups[1]!.lr = 0.25;
  const { tensors, json } = splitStateDict(a.state_dict());
  assert.deepEqual(Object.keys(tensors), ["state.0.exp_avg", "state.0.exp_avg_sq", "state.1.exp_avg", "state.1.exp_avg_sq"]);
  assert.deepEqual(tensors["state.0.exp_avg"]!.shape, [2, 3]);
  const stored = JSON.parse(JSON.stringify(json));
  assert.deepEqual(stored, {
    state: { 0: { step: 2 }, 1: { step: 2 } },
    param_groups: [
      { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.01, params: [0] },
      { lr: 0.25, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0, params: [1] },
    ],
  });
  // b: a's weights and a's state, through the stored form (the tensors read back, as a checkpoint has them).
  for (const [i, p] of pb.entries()) gpu().batch.upload(p.buffer, 0, (await pa[i]!.toArray()) as Float32Array);
  const read = Object.fromEntries(await Promise.all(Object.entries(tensors).map(async ([k, t]) => [k, Tensor.fromArray(await t.toArray(), t.shape)] as const)));
  b.load_state_dict(joinStateDict(read, stored));
  for (const t of Object.values(read)) t.dispose();
  assert.equal(b.param_groups[1]!.lr, 0.25);
  step(pa, a);
  step(pb, b);
  for (const [i, p] of pb.entries()) assert.deepEqual(await p.toArray(), await pa[i]!.toArray(), `param ${i} after the restored step`);
  assert.throws(() => joinStateDict({ exp_avg: read["state.0.exp_avg"]! }, stored), /a tensor named "exp_avg"/);
  // dispose() frees the state: the next step starts over.
  a.dispose();
  assert.equal(a.state.size, 0);
  step(pa, a);
  assert.deepEqual(Object.values(a.state_dict().state).map((s) => s.step), [1, 1]);
  a.dispose();
  b.dispose();
  for (const p of [...pa, ...pb]) p.dispose();
});
