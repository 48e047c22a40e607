// Divergence (issue 14, defect 2): a non-finite loss, gradient or weight stops training with an error naming
// the step and what went non-finite; nothing non-finite is saved (every checkpoint is checked as it is
// written, save_model refuses); the last good checkpoint is named and resumes; the CLI exits non-zero without
// "done". AdamW reports the largest |value| it wrote (read with the step's one readback). A loss stuck at
// ln V while the weights blow up gives one warning. On the fixture Llama (hidden 32, 2 layers, vocab 400).
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { AdamW, AutoModelForCausalLM, FACTS, SFTTrainer, Tensor, type SFTConfig, type TrainerCallback } from "../../src/index.ts";
import { gpu } from "../../src/gpu/device.ts";
import { sftMain } from "../../src/trainer/cli.ts";
import { makeModel } from "../../tools/make-model.ts";
import { setup } from "../helpers.ts";

let root = "";
let modelDir = "";
let data = "";
let n = 0;
const outDir = () => join(root, `out-${n++}`);

before(async () => {
  await setup();
  root = await mkdtemp(join(tmpdir(), "webtune-divergence-"));
  modelDir = join(root, "model");
  await makeModel(modelDir, { arch: "llama", seed: 7 });
  data = join(root, "facts.jsonl");
  await writeFile(data, FACTS.slice(0, 4).map((r) => JSON.stringify(r)).join("\n") + "\n");
});
after(() => rm(root, { recursive: true, force: true }));

function args(over: Partial<SFTConfig>): Partial<SFTConfig> {
  return {
    output_dir: outDir(), per_device_train_batch_size: 2, learning_rate: 1e-2, logging_steps: 1, save_strategy: "steps", save_steps: 1,
    gradient_checkpointing: false, report_to: "none", max_length: 64, ...over,
  };
}

async function trainer(a: Partial<SFTConfig>, callbacks: TrainerCallback[] = [], warnings: string[] = []) {
  const model = await AutoModelForCausalLM.from_pretrained(modelDir);
  const t = new SFTTrainer({
    model, args: a, train_dataset: [...FACTS.slice(0, 4)] as Record<string, unknown>[],
    peft_config: { r: 8, lora_alpha: 16, target_modules: "all-linear" }, callbacks, warn: (m) => warnings.push(m),
  });
  return { t, model };
}

/** The first tensor of a .safetensors file with a NaN or Inf (every value read as f32 bits), or null. */
function nonFinite(bytes: Buffer): string | null {
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString("utf8")) as Record<string, { dtype: string; data_offsets: [number, number] }>;
  for (const [name, e] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    assert.equal(e.dtype, "F32", name);
    for (let o = 8 + n + e.data_offsets[0]; o < 8 + n + e.data_offsets[1]; o += 4) if (!Number.isFinite(bytes.readFloatLE(o))) return name;
  }
  return null;
}

/** Every .safetensors file under `dir` (recursively) → its first non-finite tensor; asserts there is none. */
async function assertAllFinite(dir: string): Promise<string[]> {
  const files = (await readdir(dir, { recursive: true })).filter((f) => f.endsWith(".safetensors"));
  for (const f of files) assert.equal(nonFinite(await readFile(join(dir, f))), null, `${f} holds a non-finite value`);
  return files;
}

const checkpoints = async (dir: string) => (await readdir(dir).catch(() => [] as string[])).filter((f) => f.startsWith("checkpoint-")).sort();

test("AdamW's update_stats: the largest |param| and |moment| a step wrote, NaN or Inf once one is non-finite", async () => {
  const p = Tensor.fromArray(new Float32Array([0.5, -2, 0.25]), [3]);
  const q = Tensor.fromArray(new Float32Array([1, 3]), [2]);
  const opt = new AdamW([p, q], { lr: 0.1, weight_decay: 0 });
  assert.equal(opt.update_stats, null);
  p.grad = Tensor.fromArray(new Float32Array([1, -1, 4]), [3]);
  q.grad = Tensor.fromArray(new Float32Array([-2, 0.5]), [2]);
  opt.step();
  const [maxW, maxM] = (await opt.update_stats!.toArray()) as Float32Array;
  const after = [...(await p.toArray()), ...(await q.toArray())].map(Math.abs);
  assert.equal(maxW, Math.fround(Math.max(...after)));
  // m = 0.1 g, v = 0.001 g^2: the largest is |m| of g = 4 (0.4) over v of g = 4 (0.016).
  assert.ok(Math.abs(maxM! - 0.4) < 1e-6, `max moment ${maxM}`);
  // An infinite step size (lr 3e38 / (1 - 0.9)) makes a weight NaN or Inf; the next step() starts over.
  opt.param_groups[0]!.lr = 3e38;
  opt.step();
  const [w2] = (await opt.update_stats!.toArray()) as Float32Array;
  assert.ok(!Number.isFinite(w2!), `max |param| ${w2}`);
  opt.zero_grad();
  opt.dispose();
  assert.equal(opt.update_stats, null);
  p.dispose();
  q.dispose();
});

test("learning_rate 3e38, max_grad_norm 0, save_steps 1: step 1 stops with an error naming the weight; nothing is saved", async () => {
  const dir = outDir();
  const { t, model } = await trainer(args({ output_dir: dir, learning_rate: 3e38, max_grad_norm: 0, max_steps: 3, lr_scheduler_type: "constant" }));
  try {
    const e = await t.train().then(() => null, (x: Error) => x);
    assert.ok(e, "train() stops with an error");
    assert.equal(e.name, "TrainingDivergedError");
    assert.match(e.message, /^SFTTrainer: step 1: .*(not finite|NaN|infinite)/, e.message);
    assert.match(e.message, /No checkpoint was saved before it/);
    assert.equal((e as Error & { step: number }).step, 1);
    assert.deepEqual(await checkpoints(dir), [], "no checkpoint of a non-finite step");
    // save_model refuses: the weights in memory are not finite.
    await assert.rejects(t.save_model(join(root, "final-3e38")), /save_model: training went non-finite at step 1/);
    assert.deepEqual(await readdir(root).then((f) => f.filter((x) => x === "final-3e38")), []);
  } finally {
    model.dispose();
  }
});

test("a later divergence: the finite checkpoints stay, the error names the last good one, and it resumes", async () => {
  const dir = outDir();
  // learning_rate 3e38 from step 3 on: checkpoint-1 and -2 are good; step 3's update is not.
  const spike: TrainerCallback = {
    on_step_end(a, state) {
      if (state.global_step === 2) (a as { learning_rate: number }).learning_rate = 3e38;
    },
  };
  const { t, model } = await trainer(args({ output_dir: dir, max_grad_norm: 0, max_steps: 5, lr_scheduler_type: "constant" }), [spike]);
  let last = "";
  try {
    const e = (await t.train().then(() => null, (x: Error) => x)) as (Error & { step: number; last_checkpoint: string | null }) | null;
    assert.ok(e, "train() stops with an error");
    assert.equal(e.step, 3, e.message);
    assert.match(e.message, /^SFTTrainer: step 3: .*not finite|^SFTTrainer: step 3: its optimizer update made/, e.message);
    assert.equal(e.last_checkpoint, join(dir, "checkpoint-2"));
    assert.ok(e.message.includes(join(dir, "checkpoint-2")), e.message);
    last = e.last_checkpoint!;
    assert.deepEqual(await checkpoints(dir), ["checkpoint-1", "checkpoint-2"]);
    const files = await assertAllFinite(dir);
    assert.ok(files.includes(join("checkpoint-2", "adapter_model.safetensors")) && files.includes(join("checkpoint-2", "optimizer.safetensors")), files.join());
  } finally {
    model.dispose();
  }
  // Resume from the named checkpoint, at a sane learning rate: it continues to the end, every weight finite.
  const r = await trainer(args({ output_dir: dir, max_grad_norm: 0, max_steps: 5, lr_scheduler_type: "constant" }));
  try {
    const out = await r.t.train({ resume_from_checkpoint: last });
    assert.equal(out.global_step, 5);
    // The history of checkpoint-2 (steps 1, 2), then steps 3 to 5: nothing of the failed run's step 3.
    assert.deepEqual(r.t.state.log_history.filter((l) => "loss" in l).map((l) => l.step), [1, 2, 3, 4, 5]);
    assert.ok(r.t.state.log_history.every((l) => !("loss" in l) || Number.isFinite(l.loss)));
    assert.deepEqual(await checkpoints(dir), ["checkpoint-1", "checkpoint-2", "checkpoint-3", "checkpoint-4", "checkpoint-5"]);
    await assertAllFinite(dir);
  } finally {
    r.model.dispose();
  }
});

test("the CLI: a run that goes non-finite exits 1 with the error, prints no \"done\" and saves no adapter", async () => {
  const dir = outDir();
  const out: string[] = [];
  const err: string[] = [];
  const host = { write: (s: string) => out.push(s), log: (s: string) => out.push(s), error: (s: string) => err.push(s), isTTY: false };
  const code = await sftMain(
    ["--model", modelDir, "--dataset", data, "--output_dir", dir, "--learning_rate", "3e38", "--max_grad_norm", "0", "--save_steps", "1",
      "--save_strategy", "steps", "--max_steps", "2", "--per_device_train_batch_size", "2", "--report_to", "none", "--lr_scheduler_type", "constant"],
    host,
  );
  assert.equal(code, 1, err.join("\n"));
  assert.ok(!out.some((l) => /\bdone\b/.test(l)), out.join("\n"));
  // The non-finite step is told by the error, not by a progress line of NaN and undefined.
  assert.ok(!out.some((l) => /NaN|undefined/.test(l)), out.join("\n"));
  assert.ok(err.some((l) => /^error: SFTTrainer: step 1: /.test(l)), err.join("\n"));
  const files = await readdir(dir).catch(() => [] as string[]);
  assert.ok(!files.includes("adapter_model.safetensors"), files.join());
  assert.deepEqual(files.filter((f) => f.startsWith("checkpoint-")), []);
});

test("the CLI at learning_rate 1e30: the loss sits at ln V while the weights explode; one warning says training diverged", async () => {
  const out: string[] = [];
  const err: string[] = [];
  const host = { write: (s: string) => out.push(s), log: (s: string) => out.push(s), error: (s: string) => err.push(s), isTTY: false };
  const code = await sftMain(
    ["--model", modelDir, "--dataset", data, "--output_dir", outDir(), "--learning_rate", "1e30", "--max_grad_norm", "0", "--save_strategy", "no",
      "--max_steps", "12", "--per_device_train_batch_size", "2", "--report_to", "none", "--lr_scheduler_type", "constant", "--logging_steps", "1"],
    host,
  );
  assert.equal(code, 0, out.join("\n") + err.join("\n"));
  const all = [...out, ...err];
  const found = all.filter((l) => /ln\(vocab size 400\)/.test(l));
  assert.equal(found.length, 1, all.join("\n"));
  assert.match(found[0]!, /for 10 steps while the largest trainable weight is \d\.\d\de\+\d+: training has diverged/);
  assert.ok(!out.some((l) => /NaN|undefined/.test(l)), out.join("\n"));
});

test("a loss stuck at ln V while the weights blow up: one warning naming ln V and the largest weight", async () => {
  // The frozen final norm zeroed: the logits are 0, the loss is ln 400 whatever LoRA does, and weight decay
  // at learning_rate 1e3 (decay factor 1 - 1e3 * 0.1 = -99 per step) blows the LoRA A matrices up, finite.
  const warnings: string[] = [];
  const { t, model } = await trainer(args({ save_strategy: "no", learning_rate: 1e3, weight_decay: 0.1, max_steps: 16, lr_scheduler_type: "constant" }), [], warnings);
  try {
    const norm = model.named_parameters().find(([name]) => name === "model.norm.weight")![1];
    gpu().batch.upload(norm.buffer, 0, new Float32Array(norm.size));
    await t.train();
    const lnV = Math.log(400);
    const losses = t.state.log_history.filter((l) => "loss" in l).map((l) => l.loss!);
    assert.ok(losses.every((l) => Math.abs(l - lnV) < 1e-4), losses.join());
    const found = warnings.filter((w) => /ln\(vocab size 400\)/.test(w));
    assert.equal(found.length, 1, warnings.join("\n"));
    assert.match(found[0]!, /for 10 steps while the largest trainable weight is \d\.\d\de\+\d+: training has diverged/);
    assert.match(found[0]!, /lower learning_rate \(1000\)/);
  } finally {
    model.dispose();
  }
});
