// SFTTrainer end to end on a tiny Llama (the fixture preset: hidden 32, 2 layers, vocab 400) with the fixture
// tokenizer, on whatever WebGPU adapter Node's Dawn finds (SwiftShader in CI): memorisation, gradient
// accumulation against one big batch, determinism, exact resume from filesystem checkpoints (LoRA dropout,
// accumulation, packing), incomplete checkpoints and rotation, stopping on NaN/Inf, the saved adapter and the
// merged model read back, evaluation, and the logged values' meaning (TRL's semantics).
import assert from "node:assert/strict";
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import {
  AutoModelForCausalLM, FACTS, no_grad, PeftModel, SafetensorsFile, SFTTrainer, tidy,
  type LlamaForCausalLM, type LoraConfig, type SFTConfig, type TrainerCallback,
} from "../../src/index.ts";
import { loadDataset, type DatasetSource } from "../../src/data/sources.ts";
import { openSource } from "../../src/io/open.ts";
import { gpu } from "../../src/gpu/device.ts";
import { makeModel } from "../../tools/make-model.ts";
import { setup } from "../helpers.ts";

let root = "";
let modelDir = "";
let n = 0;
const outDir = () => join(root, `out-${n++}`);

before(async () => {
  await setup();
  root = await mkdtemp(join(tmpdir(), "webtune-trainer-"));
  modelDir = join(root, "model");
  await makeModel(modelDir, { arch: "llama", seed: 7 });
});
after(() => rm(root, { recursive: true, force: true }));

const LORA: LoraConfig = { r: 8, lora_alpha: 16, target_modules: "all-linear" };

/** Args every run shares: small, quiet, no checkpoints unless asked. */
function args(over: Partial<SFTConfig>): Partial<SFTConfig> {
  return {
    output_dir: outDir(),
    per_device_train_batch_size: 4,
    learning_rate: 1e-2,
    logging_steps: 1,
    save_strategy: "no",
    gradient_checkpointing: false,
    report_to: "none",
    max_length: 64,
    ...over,
  };
}

interface Run {
  trainer: SFTTrainer;
  model: LlamaForCausalLM;
  /** The per-step training logs (those with loss and grad_norm). */
  logs: Record<string, number>[];
  warnings: string[];
}

/** A fresh model from disk, a trainer, train(); the caller disposes run.model. */
async function train(o: {
  args: Partial<SFTConfig>;
  rows?: readonly Record<string, unknown>[];
  /** The train_dataset as given (default: `rows` as an array). */
  dataset?: DatasetSource;
  peft?: LoraConfig | null;
  callbacks?: TrainerCallback[];
  resume?: boolean | string;
  eval_rows?: readonly Record<string, unknown>[];
  /** Called with the trainer before train(). */
  onTrainer?: (t: SFTTrainer) => void;
}): Promise<Run> {
  const model = await AutoModelForCausalLM.from_pretrained(modelDir);
  const warnings: string[] = [];
  const trainer = new SFTTrainer({
    model,
    args: o.args,
    train_dataset: o.dataset ?? ([...(o.rows ?? FACTS.slice(0, 8))] as Record<string, unknown>[]),
    ...(o.eval_rows ? { eval_dataset: [...o.eval_rows] as Record<string, unknown>[] } : {}),
    ...(o.peft === null ? {} : { peft_config: o.peft ?? LORA }),
    callbacks: o.callbacks ?? [],
    warn: (m) => warnings.push(m),
  });
  o.onTrainer?.(trainer);
  try {
    await trainer.train(o.resume === undefined ? {} : { resume_from_checkpoint: o.resume });
  } catch (e) {
    model.dispose();
    throw e;
  }
  const logs = trainer.state.log_history.filter((l) => "loss" in l && "grad_norm" in l);
  return { trainer, model, logs, warnings };
}

/** The [1, T, V] logits of one row, read back. */
async function logitsOf(model: { forward: LlamaForCausalLM["forward"] }, ids: number[]): Promise<Float32Array> {
  const t = tidy(() => no_grad(() => model.forward({ input_ids: [ids] }).logits!));
  const out = (await t.toArray()) as Float32Array;
  t.dispose();
  return out;
}

const PROBE = [5, 17, 42, 99, 123, 7, 250, 31, 64, 2];

/** The LoRA weights of a trainer's model, by name, read back. */
async function loraWeights(t: SFTTrainer): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [name, w] of t.named_trainable()) out.set(name, (await w.toArray()) as Float32Array);
  return out;
}

/** Every file of a directory (recursively), name → bytes. */
async function snapshot(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (e.isFile()) {
      const p = join(e.parentPath, e.name);
      out.set(p.slice(dir.length), await readFile(p));
    }
  }
  return out;
}

test("memorisation: LoRA on 8 facts, the loss falls by at least 80% from step 1 to step 15", async () => {
  const STEPS = 15;
  const r = await train({
    args: args({ per_device_train_batch_size: 8, max_steps: STEPS, lr_scheduler_type: "constant", logging_steps: 1, learning_rate: 1e-2 }),
    peft: { r: 16, lora_alpha: 32, target_modules: "all-linear" },
  });
  try {
    const first = r.logs[0]!.loss!;
    const last = r.logs[r.logs.length - 1]!.loss!;
    assert.equal(r.trainer.state.global_step, STEPS);
    assert.equal(r.logs.length, STEPS);
    assert.ok(Number.isFinite(first) && first > 1, `first logged loss ${first}`);
    assert.ok(last <= 0.2 * first, `loss ${first} → ${last}: fell by ${(100 * (1 - last / first)).toFixed(1)}%, want ≥ 80%`);
    assert.ok(last < 0.5, `final loss ${last}: the 8 facts are not memorised`);
  } finally {
    r.model.dispose();
  }
});

test("gradient accumulation 4 × batch 2 makes the same update as one batch of 8", async () => {
  // adam_epsilon 1 makes AdamW's first update ≈ lr·g/(|g| + 1): linear in the gradient, not its sign, so the
  // weights compare the gradients themselves. init_lora_weights false: A and B both get gradients.
  const peft: LoraConfig = { r: 4, lora_alpha: 8, target_modules: "all-linear", init_lora_weights: false };
  const common = { max_steps: 1, learning_rate: 1, adam_epsilon: 1, max_grad_norm: 0, lr_scheduler_type: "constant" as const };
  const big = await train({ args: args({ ...common, per_device_train_batch_size: 8, gradient_accumulation_steps: 1 }), peft });
  const acc = await train({ args: args({ ...common, per_device_train_batch_size: 2, gradient_accumulation_steps: 4 }), peft });
  try {
    const [lb, la] = [big.logs[0]!, acc.logs[0]!];
    assert.ok(Math.abs(lb.loss! - la.loss!) <= 1e-5 * lb.loss!, `loss: batch 8 ${lb.loss}, 4 × 2 ${la.loss}`);
    assert.ok(Math.abs(lb.grad_norm! - la.grad_norm!) <= 1e-5 * lb.grad_norm!, `grad_norm: batch 8 ${lb.grad_norm}, 4 × 2 ${la.grad_norm}`);
    assert.equal(lb.num_tokens, la.num_tokens);
    const wb = await loraWeights(big.trainer);
    const wa = await loraWeights(acc.trainer);
    const init = await (async () => {
      const m = await AutoModelForCausalLM.from_pretrained(modelDir);
      const t = new SFTTrainer({ model: m, args: args({ ...common }), train_dataset: [...FACTS.slice(0, 8)], peft_config: peft, warn: () => {} });
      await t.setup();
      const w = await loraWeights(t);
      m.dispose();
      return w;
    })();
    assert.equal(wb.size, 28);
    let moved = 0;
    for (const [name, b] of wb) {
      const a = wa.get(name)!;
      const w0 = init.get(name)!;
      for (let i = 0; i < b.length; i++) {
        assert.ok(Math.abs(a[i]! - b[i]!) <= 1e-5, `${name}[${i}]: batch 8 ${b[i]}, 4 × 2 ${a[i]}`);
        moved = Math.max(moved, Math.abs(b[i]! - w0[i]!));
      }
    }
    assert.ok(moved > 1e-3, `the step moved the weights by at most ${moved}`);
  } finally {
    big.model.dispose();
    acc.model.dispose();
  }
});

test("the same seed twice: identical loss and grad_norm sequences; what is logged means what TRL's logs mean", async () => {
  const rows = FACTS.slice(0, 6);
  // 6 rows, batch 2: 3 micro-batches per epoch, 4 steps cross an epoch; dropout makes the seed matter.
  const a = { per_device_train_batch_size: 2, max_steps: 4, learning_rate: 4e-3, lr_scheduler_type: "linear" as const, seed: 11, max_grad_norm: 0.5 };
  const peft = { ...LORA, lora_dropout: 0.2 };
  const r1 = await train({ args: args(a), rows, peft });
  const r2 = await train({ args: args(a), rows, peft });
  // The same run logged every other step.
  const r3 = await train({ args: args({ ...a, logging_steps: 2 }), rows, peft });
  // A Dataset of rows in memory (what a non-streaming Hub dataset is) is held and shuffled as the array is.
  const r4 = await train({ args: args(a), dataset: loadDataset([...rows]), peft });
  // shuffle_dataset (TRL's): the prepared rows shuffled once with the seed: other batches, so other losses.
  const r5 = await train({ args: args({ ...a, shuffle_dataset: true }), rows, peft });
  try {
    const loss = (r: Run) => r.logs.map((l) => l.loss);
    assert.equal(r1.logs.length, 4);
    assert.deepEqual(loss(r1), loss(r2));
    assert.deepEqual(loss(r4), loss(r1), "an in-memory Dataset trains as its array does (held, shuffled each epoch)");
    assert.notDeepEqual(loss(r5), loss(r1), "shuffle_dataset changes the order the rows are seen in");
    assert.equal(r5.logs.length, 4);
    const streamed = new SFTTrainer({
      model: modelDir, args: args({ ...a, shuffle_dataset: true }), train_dataset: async function* () { yield* rows; } as never, peft_config: LORA, warn: () => {},
    });
    await assert.rejects(streamed.train(), /shuffle_dataset needs the dataset in memory/);
    r1.logs.forEach((l, i) => {
      assert.ok(l.loss === r2.logs[i]!.loss && l.grad_norm === r2.logs[i]!.grad_norm, `step ${i + 1}: ${l.loss}/${l.grad_norm} vs ${r2.logs[i]!.loss}/${r2.logs[i]!.grad_norm}`);
    });
    assert.notEqual(r1.logs[1]!.loss, r1.logs[2]!.loss);
    // learning_rate: the rate the step used (linear decay from step 0); epoch: micro-batches done / per epoch.
    assert.deepEqual(r1.logs.map((l) => l.learning_rate), [4e-3, 3e-3, 2e-3, 1e-3]);
    assert.deepEqual(r1.logs.map((l) => l.epoch), [1 / 3, 2 / 3, 1, 1 + 1 / 3]);
    // num_tokens: cumulative non-pad input tokens of the batches the steps saw.
    const tok = r1.trainer.processing_class;
    const lens = rows.map((f) => tok.encode(f.prompt + f.completion).length + 1); // + eos
    const total = lens.reduce((s, x) => s + x, 0);
    assert.equal(r1.logs[2]!.num_tokens, total, "after one epoch every row was seen once");
    assert.ok(r1.logs[0]!.num_tokens! > 0 && r1.logs[0]!.num_tokens! < total);
    assert.equal(r1.trainer.state.num_input_tokens_seen, r1.logs[3]!.num_tokens);
    // The loss logged every 2 steps is the mean of those steps' losses; grad_norm is the last step's.
    assert.equal(r3.logs.length, 2);
    assert.equal(r3.logs[0]!.loss, (r1.logs[0]!.loss! + r1.logs[1]!.loss!) / 2);
    assert.equal(r3.logs[1]!.loss, (r1.logs[2]!.loss! + r1.logs[3]!.loss!) / 2);
    assert.equal(r3.logs[1]!.grad_norm, r1.logs[3]!.grad_norm);
    // grad_norm is the norm before clipping to max_grad_norm 0.5.
    assert.ok(r1.logs.some((l) => l.grad_norm! > 0.5), `grad norms ${r1.logs.map((l) => l.grad_norm)} are all ≤ max_grad_norm`);
    for (const l of r1.logs) for (const k of ["entropy", "mean_token_accuracy"]) assert.ok(Number.isFinite(l[k]), `${k} logged`);
  } finally {
    for (const r of [r1, r2, r3, r4, r5]) r.model.dispose();
  }
});

const stopAfter = (k: number): TrainerCallback => ({
  on_step_end(_a, state, control) {
    if (state.global_step === k) control.should_training_stop = true;
  },
});

/**
 * N steps with checkpoints every K, against: stop after K (a callback), then train({resume_from_checkpoint:
 * true}) in a new trainer on a freshly loaded model. Steps K+1..N must log the same values, bit for bit.
 */
async function resumeCase(
  over: Partial<SFTConfig>, rows: readonly Record<string, unknown>[], peft: LoraConfig, N: number, K: number,
  /** Changes checkpoint-K before the resumed run. */
  edit?: (checkpoint: string) => Promise<void>,
) {
  const runArgs = (dir: string) => args({ ...over, output_dir: dir, max_steps: N, save_strategy: "steps", save_steps: K });
  const full = await train({ args: runArgs(outDir()), rows, peft });
  const dir = outDir();
  const first = await train({ args: runArgs(dir), rows, peft, callbacks: [stopAfter(K)] });
  first.model.dispose();
  assert.equal(first.trainer.state.global_step, K);
  assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith("checkpoint-")), [`checkpoint-${K}`], "a stop a callback asks for saves nothing more");
  // Checkpoints interrupted mid-write: a directory without the manifest (even a newer step), and a temp dir.
  await mkdir(join(dir, `checkpoint-${N + 10}`));
  await writeFile(join(dir, `checkpoint-${N + 10}`, "adapter_model.safetensors"), "partial");
  await mkdir(join(dir, `.checkpoint-${N + 20}.tmp-0123abcd`));
  await edit?.(join(dir, `checkpoint-${K}`));
  const second = await train({ args: runArgs(dir), rows, peft, resume: true });
  try {
    assert.ok(
      second.warnings.some((w) => w.includes(`skipping ${dir}/checkpoint-${N + 10}`) && /webtune_checkpoint\.json is missing/.test(w) && w.includes(`resuming from checkpoint-${K}`)),
      `a newer damaged checkpoint is skipped with a warning: ${second.warnings.join("\n")}`,
    );
    assert.equal(second.trainer.state.global_step, N);
    const want = full.logs.filter((l) => l.step! > K);
    const got = second.logs.filter((l) => l.step! > K);
    assert.equal(want.length, N - K);
    assert.equal(got.length, N - K);
    got.forEach((g, i) => {
      const w = want[i]!;
      for (const k of ["step", "loss", "grad_norm", "learning_rate", "num_tokens", "epoch", "mean_token_accuracy", "entropy"]) {
        assert.ok(g[k] === w[k], `step ${w.step} ${k}: resumed ${g[k]}, uninterrupted ${w[k]}`);
      }
    });
    // The resumed run's final weights are the uninterrupted run's.
    const [a, b] = [await loraWeights(full.trainer), await loraWeights(second.trainer)];
    for (const [name, x] of a) assert.deepEqual(b.get(name), x, name);
  } finally {
    full.model.dispose();
    second.model.dispose();
  }
}

test("resume is exact: LoRA dropout, gradient accumulation 2, checkpoint mid-epoch; incomplete checkpoints are skipped", async () => {
  // 14 rows, batch 2 → 7 micro-batches an epoch → 4 steps (the 4th has one); checkpoint after step 3.
  await resumeCase(
    { per_device_train_batch_size: 2, gradient_accumulation_steps: 2, lr_scheduler_type: "linear", learning_rate: 5e-3, seed: 3 },
    FACTS.slice(0, 14), { ...LORA, lora_dropout: 0.1 }, 6, 3,
  );
});

test("resume is exact with packing (bfd, padding-free)", async () => {
  await resumeCase(
    { per_device_train_batch_size: 2, packing: true, max_length: 64, lr_scheduler_type: "cosine", warmup_steps: 2, learning_rate: 5e-3 },
    FACTS.slice(16, 32), { ...LORA, lora_dropout: 0.1 }, 5, 2,
  );
});

test("a checkpoint of webtune 0.1 (AdamW's steps apart in optimizer.json) resumes exactly", async () => {
  await resumeCase(
    { per_device_train_batch_size: 2, learning_rate: 5e-3, seed: 5 }, FACTS.slice(0, 8), LORA, 4, 2,
    async (checkpoint) => {
      // 0.1 wrote {param_groups, steps: {index: step}}; the moments were named state.<index>.exp_avg(_sq) as now.
      const path = join(checkpoint, "optimizer.json");
      const now = JSON.parse(await readFile(path, "utf8")) as { state: Record<string, { step: number }>; param_groups: unknown[] };
      const steps = Object.fromEntries(Object.entries(now.state).map(([i, s]) => [i, s.step]));
      assert.ok(Object.keys(steps).length > 0);
      const text = JSON.stringify({ param_groups: now.param_groups, steps }, null, 2);
      await writeFile(path, text);
      const manifest = join(checkpoint, "webtune_checkpoint.json");
      const m = JSON.parse(await readFile(manifest, "utf8")) as { files: Record<string, number> };
      m.files["optimizer.json"] = new TextEncoder().encode(text).length;
      await writeFile(manifest, JSON.stringify(m));
    },
  );
});

/** Rewrites `file` of the checkpoint directory `checkpoint` and fixes its size in the manifest (so only the content is wrong). */
async function rewrite(checkpoint: string, file: string, text: string): Promise<void> {
  await writeFile(join(checkpoint, file), text);
  const manifest = join(checkpoint, "webtune_checkpoint.json");
  const m = JSON.parse(await readFile(manifest, "utf8")) as { files: Record<string, number> };
  m.files[file] = new TextEncoder().encode(text).length;
  await writeFile(manifest, JSON.stringify(m));
}

test("resume_from_checkpoint: a path to another run's checkpoint loads exactly that one, not output_dir's of the same name", async () => {
  const runArgs = (dir: string, lr: number) => args({ output_dir: dir, per_device_train_batch_size: 2, max_steps: 2, learning_rate: lr, save_strategy: "steps", save_steps: 1 });
  const other = outDir();
  const a = await train({ args: runArgs(other, 1e-2), rows: FACTS.slice(0, 4) });
  const wantWeights = await loraWeights(a.trainer);
  a.model.dispose();
  const own = outDir();
  const b = await train({ args: runArgs(own, 3e-3), rows: FACTS.slice(0, 4) });
  b.model.dispose();
  // output_dir has its own checkpoint-2; the path names the other run's.
  const r = await train({ args: runArgs(own, 3e-3), rows: FACTS.slice(0, 4), resume: join(other, "checkpoint-2") });
  try {
    assert.deepEqual(r.logs.map((l) => l.loss), a.logs.map((l) => l.loss), "the log history is the other run's");
    const got = await loraWeights(r.trainer);
    for (const [name, w] of wantWeights) assert.deepEqual(got.get(name), w, name);
  } finally {
    r.model.dispose();
  }
  await assert.rejects(train({ args: runArgs(own, 3e-3), rows: FACTS.slice(0, 4), resume: join(other, "checkpoint-9") }), (e: Error) => e.message.includes(`"${join(other, "checkpoint-9")}" is not a complete checkpoint in ${other}`));
});

test("resume validates everything before changing anything: corrupt JSON names the file, other LoRA targets or r name the tensor, another base is refused", async () => {
  const dir = outDir();
  const runArgs = (d: string) => args({ output_dir: d, per_device_train_batch_size: 2, max_steps: 2, save_strategy: "steps", save_steps: 2 });
  const first = await train({ args: runArgs(dir), rows: FACTS.slice(0, 4) });
  first.model.dispose();
  const good = join(dir, "checkpoint-2");
  const state = JSON.parse(await readFile(join(good, "webtune_state.json"), "utf8"));
  assert.match(state.base_model.config_sha256, /^[0-9a-f]{64}$/);
  assert.equal(state.base_model.weights_from, "safetensors");
  /** A trainer on a fresh model, set up; its trainable weights read back. */
  const fresh = async (o: { peft?: LoraConfig; model?: string; ignore?: boolean } = {}) => {
    const model = await AutoModelForCausalLM.from_pretrained(o.model ?? modelDir);
    const t = new SFTTrainer({ model, args: runArgs(outDir()), train_dataset: [...FACTS.slice(0, 4)] as Record<string, unknown>[], peft_config: o.peft ?? LORA, warn: () => {}, ...(o.ignore ? { ignore_base_model_mismatch: true } : {}) });
    await t.setup();
    return { t, model, before: await loraWeights(t) };
  };
  const refuses = async (what: string, checkpoint: string, pattern: RegExp, o: Parameters<typeof fresh>[0] = {}) => {
    const { t, model, before } = await fresh(o);
    try {
      await assert.rejects(t.train({ resume_from_checkpoint: checkpoint }), (e: Error) => {
        assert.doesNotMatch(e.name, /SyntaxError/, what);
        assert.match(e.message, pattern, `${what}: ${e.message}`);
        return true;
      });
      const after = await loraWeights(t);
      for (const [name, w] of before) assert.deepEqual(after.get(name), w, `${what}: ${name} was changed by the failed resume`);
      assert.equal(t.state.global_step, 0, what);
    } finally {
      model.dispose();
    }
  };
  let n = 0;
  const broken = async (file: string, text: string) => {
    const copy = join(root, `broken-${n++}`, "checkpoint-2");
    await cp(good, copy, { recursive: true });
    await rewrite(copy, file, text);
    return copy;
  };
  for (const file of ["optimizer.json", "trainer_state.json", "webtune_state.json"]) {
    const copy = await broken(file, '{"state": {"0": {"step": 2}}, "param_gr');
    await refuses(`corrupt ${file}`, copy, new RegExp(`${copy.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}/${file.replace(".", "\\.")} is not valid JSON`));
  }
  await refuses("trainer_state.json without global_step", await broken("trainer_state.json", '{"log_history": []}'), /trainer_state\.json: "global_step" is undefined/);
  await refuses("webtune_state.json with a bad data_position", await broken("webtune_state.json", '{"data_position": {"epoch": -1, "batches": 0}}'), /webtune_state\.json: "data_position"/);
  // Fewer LoRA targets, and another r: the tensor is named, nothing is overwritten.
  await refuses("fewer LoRA targets", good, /adapter_model\.safetensors has \d+ weight\(s\) the model does not train \(".*lora_[AB]\.weight"/, { peft: { ...LORA, target_modules: ["q_proj", "v_proj"] } });
  await refuses("another r", good, /"base_model\.model\.model\.layers\.0\..*lora_A\.weight" is \[8,32\], the model's is \[4,32\]/, { peft: { ...LORA, r: 4 } });
  // Another base model of the same shapes (other seed): refused, unless asked for.
  const otherBase = join(root, "model-seed-8");
  await makeModel(otherBase, { arch: "llama", seed: 8 });
  await refuses("another base", good, /trained on another base model .*weights \(a fingerprint of sampled values\) differ/, { model: otherBase });
  const { t, model } = await fresh({ model: otherBase, ignore: true });
  try {
    await t.train({ resume_from_checkpoint: good });
    assert.equal(t.state.global_step, 2);
  } finally {
    model.dispose();
  }
});

test("loss_type dft: the logged loss is TRL's dft_loss (each label's -p·log p, p held constant), and nll the cross-entropy", async () => {
  // Pre-tokenized rows (no eos added, labels = input_ids) in one batch; LoRA's B starts at 0, so step 1's forward is
  // the base model's. The reference comes from the base model's logits, row by row, in float64.
  const rows = [[5, 17, 42, 99, 123], [7, 250, 31], [64, 2, 9, 11, 300, 18, 77]].map((input_ids) => ({ input_ids }));
  const sums = { nll: 0, dft: 0 };
  let count = 0;
  const base = await AutoModelForCausalLM.from_pretrained(modelDir);
  for (const { input_ids } of rows) {
    const logits = await logitsOf(base, input_ids);
    const V = logits.length / input_ids.length;
    for (let t = 0; t + 1 < input_ids.length; t++) {
      const z = logits.subarray(t * V, (t + 1) * V);
      const m = z.reduce((a, b) => Math.max(a, b), -Infinity);
      const lse = m + Math.log(z.reduce((s, v) => s + Math.exp(v - m), 0));
      const logp = z[input_ids[t + 1]!]! - lse;
      sums.nll -= logp;
      sums.dft -= Math.exp(logp) * logp;
      count++;
    }
  }
  base.dispose();
  assert.ok(Math.abs(sums.dft - sums.nll) > 0.1 * sums.nll, "the two losses must differ for this test to tell them apart");
  for (const loss_type of ["nll", "dft"] as const) {
    const run = await train({ args: args({ loss_type, max_steps: 1, per_device_train_batch_size: 3 }), rows });
    run.model.dispose();
    const got = run.logs[0]!.loss!;
    const want = sums[loss_type] / count;
    assert.ok(Math.abs(got - want) <= 1e-4 * want, `loss_type ${loss_type}: logged ${got}, reference ${want}`);
  }
});

test("save_total_limit keeps the newest checkpoints; a checkpoint id or path resumes", async () => {
  const dir = outDir();
  const r = await train({ args: args({ output_dir: dir, per_device_train_batch_size: 2, max_steps: 4, save_strategy: "steps", save_steps: 1, save_total_limit: 2 }), rows: FACTS.slice(0, 4) });
  r.model.dispose();
  assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith("checkpoint-")).sort(), ["checkpoint-3", "checkpoint-4"]);
  const state = JSON.parse(await readFile(join(dir, "checkpoint-4", "trainer_state.json"), "utf8"));
  assert.equal(state.global_step, 4);
  // Resuming from a path to a checkpoint that is already at max_steps trains nothing more.
  const again = await train({ args: args({ output_dir: dir, per_device_train_batch_size: 2, max_steps: 4, save_strategy: "steps", save_steps: 1, save_total_limit: 2 }), rows: FACTS.slice(0, 4), resume: join(dir, "checkpoint-4") });
  again.model.dispose();
  assert.equal(again.trainer.state.global_step, 4);
  assert.equal(again.logs.length, 4, "the log history comes back from the checkpoint");
  await assert.rejects(
    train({ args: args({ output_dir: outDir(), max_steps: 1 }), rows: FACTS.slice(0, 2), resume: true }),
    /no complete checkpoint/,
  );
});

test("fractional save_steps and logging_steps are shares of the total steps, as in transformers", async () => {
  // transformers' TrainerState.compute_steps over 5 steps: save_steps 0.5 → ceil(2.5) = 3, logging_steps 0.25
  // → ceil(1.25) = 2. Its Trainer (checked with transformers 5.18) saves checkpoint-3 and, at max_steps,
  // checkpoint-5, and logs the loss at steps 2 and 4; webtune logs the last step too (as for any logging_steps).
  const dir = outDir();
  const r = await train({
    args: args({ output_dir: dir, per_device_train_batch_size: 2, max_steps: 5, save_strategy: "steps", save_steps: 0.5, logging_steps: 0.25 }),
    rows: FACTS.slice(0, 4),
  });
  r.model.dispose();
  assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith("checkpoint-")).sort(), ["checkpoint-3", "checkpoint-5"]);
  assert.deepEqual(r.logs.map((l) => l.step), [2, 4, 5]);
  assert.equal(r.trainer.state.save_steps, 3);
  assert.equal(r.trainer.state.logging_steps, 2);

  // webtune 0.1 kept the fractions themselves in trainer_state.json: resuming such a checkpoint turns them into
  // steps too (else step % 0.5 would save at every step).
  await rm(join(dir, "checkpoint-5"), { recursive: true });
  const statePath = join(dir, "checkpoint-3", "trainer_state.json");
  const state = JSON.parse(await readFile(statePath, "utf8")) as Record<string, unknown>;
  const text = JSON.stringify({ ...state, save_steps: 0.5, logging_steps: 0.25 });
  await writeFile(statePath, text);
  const manifest = join(dir, "checkpoint-3", "webtune_checkpoint.json");
  const m = JSON.parse(await readFile(manifest, "utf8")) as { files: Record<string, number> };
  m.files["trainer_state.json"] = new TextEncoder().encode(text).length;
  await writeFile(manifest, JSON.stringify(m));
  const again = await train({
    args: args({ output_dir: dir, per_device_train_batch_size: 2, max_steps: 5, save_strategy: "steps", save_steps: 0.5, logging_steps: 0.25 }),
    rows: FACTS.slice(0, 4),
    resume: true,
  });
  again.model.dispose();
  assert.equal(again.trainer.state.save_steps, 3);
  assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith("checkpoint-")).sort(), ["checkpoint-3", "checkpoint-5"]);
});

/** Runs to a NaN/Inf stop; checks the stop, the log, and that the last checkpoint is byte for byte as saved. */
async function nanCase(over: Partial<SFTConfig>, expect: { stopStep?: number; what: RegExp }, onTrainer?: (t: SFTTrainer) => void) {
  const dir = outDir();
  const saved = new Map<string, Map<string, Buffer>>();
  const snap: TrainerCallback = {
    async on_save(_a, _s, _c, id) {
      saved.set(id, await snapshot(join(dir, id)));
    },
  };
  // train() stops with a TrainingDivergedError (issue 14: a non-finite run must fail, not end as if done).
  let trainer!: SFTTrainer;
  let error: Error | null = null;
  await train({ args: args({ output_dir: dir, per_device_train_batch_size: 2, save_strategy: "steps", ...over }), rows: FACTS.slice(0, 4), callbacks: [snap], onTrainer: (t) => {
    trainer = t;
    onTrainer?.(t);
  } }).then((r) => r.model.dispose(), (e: Error) => (error = e));
  assert.ok(error, "train() throws on a NaN/Inf step");
  const r = { trainer, error: error as Error };
  assert.equal(r.error.name, "TrainingDivergedError");
  const bad = r.trainer.state.log_history.find((l) => "nan_or_inf_step" in l);
  assert.ok(bad, "a log names the NaN/Inf step");
  const s = bad.nan_or_inf_step!;
  if (expect.stopStep !== undefined) assert.equal(s, expect.stopStep);
  assert.ok(s < over.max_steps!, `training went on to step ${s}`);
  assert.equal(r.trainer.state.global_step, s - 1, "the bad step is not counted");
  assert.ok(!Number.isFinite(bad.loss!) || !Number.isFinite(bad.grad_norm!));
  const m = r.error.message;
  assert.ok(new RegExp(`step ${s}: `).test(m) && expect.what.test(m) && /training stopped/.test(m), m);
  const ids = (await readdir(dir)).filter((f) => f.startsWith("checkpoint-"));
  const last = `checkpoint-${(over.save_steps ?? 1) * Math.floor((s - 1) / (over.save_steps ?? 1))}`;
  assert.deepEqual(ids.sort(), [...saved.keys()].sort(), "no checkpoint after the bad step");
  assert.ok(ids.includes(last), `${last} in ${ids}`);
  assert.ok(m.includes(`The last good checkpoint is ${join(dir, last)}`), m);
  assert.deepEqual(await snapshot(join(dir, last)), saved.get(last), `${last} changed after it was saved`);
  return r;
}

test("a NaN/Inf loss or gradient stops training, says which, and leaves the last good checkpoint intact", async () => {
  // learning_rate 1e30: the first update throws the weights out of range; a later step overflows.
  await nanCase({ max_steps: 6, save_steps: 1, learning_rate: 1e30, max_grad_norm: 0 }, { what: /the (loss|gradient norm) is (NaN|-?Infinity)/ });
  // A LoRA weight poisoned with NaN (a Tensor upload) after step 3, checkpoints every 2: step 4 is bad. (The
  // loss itself may stay finite: attention turns NaN scores into zeros; the gradient norm is NaN either way.)
  await nanCase({ max_steps: 6, save_steps: 2 }, { stopStep: 4, what: /the (loss|gradient norm) is NaN/ }, (t) => {
    t.callbacks.push({
      on_step_end(_a, state) {
        if (state.global_step !== 3) return;
        const [, w] = t.named_trainable()[0]!;
        gpu().batch.upload(w.buffer, 0, new Float32Array(w.size).fill(NaN));
      },
    });
  });
});

test("save_model: a PEFT adapter directory that loads back with identical logits; merge: a whole model within 1e-5", async () => {
  const r = await train({ args: args({ per_device_train_batch_size: 4, max_steps: 3 }), rows: FACTS.slice(0, 4) });
  const loaded: LlamaForCausalLM[] = [];
  try {
    const peft = r.trainer.peft!;
    peft.eval();
    const trained = await logitsOf(peft, PROBE);
    const dir = join(root, "adapter");
    await r.trainer.save_model(dir);
    const files = (await readdir(dir)).sort();
    for (const f of ["adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json"]) assert.ok(files.includes(f), `${f} in ${files}`);
    const cfgText = await readFile(join(dir, "adapter_config.json"), "utf8");
    const cfg = JSON.parse(cfgText) as Record<string, unknown>;
    assert.deepEqual(Object.keys(cfg), Object.keys(cfg).sort(), "sorted keys");
    assert.match(cfgText, /^\{\n {2}"/, "indent 2");
    for (const k of ["alpha_pattern", "base_model_name_or_path", "bias", "fan_in_fan_out", "inference_mode", "init_lora_weights", "layers_pattern",
      "layers_to_transform", "lora_alpha", "lora_dropout", "modules_to_save", "peft_type", "r", "rank_pattern", "revision", "target_modules", "task_type",
      "use_dora", "use_rslora"]) assert.ok(k in cfg, `adapter_config.json has ${k}`);
    assert.equal(cfg.peft_type, "LORA");
    assert.equal(cfg.task_type, "CAUSAL_LM");
    assert.equal(cfg.r, 8);
    assert.equal(cfg.lora_alpha, 16);
    assert.deepEqual(cfg.target_modules, ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]);
    const st = await SafetensorsFile.open(await openSource(dir), "adapter_model.safetensors");
    assert.deepEqual(st.metadata, { format: "pt" });
    assert.equal(st.names.length, 2 * 7 * 2);
    const dims: Record<string, [number, number]> = { q_proj: [32, 32], k_proj: [16, 32], v_proj: [16, 32], o_proj: [32, 32], gate_proj: [64, 32], up_proj: [64, 32], down_proj: [32, 64] };
    for (let i = 0; i < 2; i++) {
      for (const [m, [out, inp]] of Object.entries(dims)) {
        const mod = `base_model.model.model.layers.${i}.${m === "gate_proj" || m === "up_proj" || m === "down_proj" ? "mlp" : "self_attn"}.${m}`;
        assert.deepEqual(st.info(`${mod}.lora_A.weight`).shape, [8, inp], mod);
        assert.deepEqual(st.info(`${mod}.lora_B.weight`).shape, [out, 8], mod);
        assert.equal(st.info(`${mod}.lora_A.weight`).dtype, "F32");
      }
    }
    // Back with PEFT's loader on a freshly loaded base: the same logits, bit for bit.
    const base = await AutoModelForCausalLM.from_pretrained(modelDir);
    loaded.push(base);
    const baseLogits = await logitsOf(base, PROBE);
    const back = await PeftModel.from_pretrained(base, dir);
    assert.deepEqual(await logitsOf(back, PROBE), trained);
    const moved = trained.reduce((m, x, i) => Math.max(m, Math.abs(x - baseLogits[i]!)), 0);
    assert.ok(moved > 1e-3, `training moved the logits by only ${moved}`);

    // merge: config.json + model.safetensors + tokenizer files; our loader reads it back.
    const mdir = join(root, "merged");
    await r.trainer.save_model(mdir, { merge: true });
    const mfiles = (await readdir(mdir)).sort();
    for (const f of ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]) assert.ok(mfiles.includes(f), `${f} in ${mfiles}`);
    assert.ok(!mfiles.includes("adapter_config.json"));
    const merged = await AutoModelForCausalLM.from_pretrained(mdir);
    loaded.push(merged);
    assert.ok(merged.linears().every((l) => !l.lora));
    const ml = await logitsOf(merged, PROBE);
    ml.forEach((x, i) => assert.ok(Math.abs(x - trained[i]!) <= 1e-5, `merged logit ${i}: ${x} vs ${trained[i]}`));
    assert.deepEqual(await logitsOf(peft, PROBE), trained, "the trainer's model keeps its adapters");
  } finally {
    for (const m of loaded) m.dispose();
    r.model.dispose();
  }
});

test("evaluate(): eval_loss and TRL's metrics; eval_strategy steps logs eval_ entries", async () => {
  const evalRows = FACTS.slice(40, 44);
  const r = await train({
    args: args({ per_device_train_batch_size: 2, max_steps: 4, eval_strategy: "steps", eval_steps: 2, per_device_eval_batch_size: 8 }),
    rows: FACTS.slice(0, 4),
    eval_rows: evalRows,
  });
  try {
    const evals = r.trainer.state.log_history.filter((l) => "eval_loss" in l);
    assert.deepEqual(evals.map((l) => l.step), [2, 4]);
    const m = await r.trainer.evaluate();
    assert.ok(m.eval_loss! > 0 && Number.isFinite(m.eval_loss));
    assert.ok(m.eval_mean_token_accuracy! >= 0 && m.eval_mean_token_accuracy! <= 1);
    assert.ok(m.eval_entropy! > 0);
    assert.equal(m.eval_loss, evals[1]!.eval_loss, "no training between: the same eval_loss");
    // eval_loss is the model's mean completion-token loss over the 4 rows in one batch.
    const tok = r.trainer.processing_class;
    const eos = tok.convert_tokens_to_ids(tok.eos_token!) as number;
    const ex = evalRows.map((f) => {
      const p = tok.encode(f.prompt);
      const c = [...tok.encode(f.prompt + f.completion).slice(p.length), eos];
      return { ids: [...p, ...c], labels: [...p.map(() => -100), ...c] };
    });
    const T = Math.max(...ex.map((e) => e.ids.length));
    const pad = (xs: number[], v: number) => [...xs, ...new Array<number>(T - xs.length).fill(v)];
    const peft = r.trainer.peft!;
    peft.eval();
    const t = tidy(() =>
      no_grad(() => peft.forward({ input_ids: ex.map((e) => pad(e.ids, 0)), labels: ex.map((e) => pad(e.labels, -100)), attention_mask: ex.map((e) => pad(e.ids.map(() => 1), 0)) }).loss!),
    );
    const want = await t.item();
    t.dispose();
    assert.ok(Math.abs(m.eval_loss! - want) <= 1e-5 * want, `eval_loss ${m.eval_loss}, model loss ${want}`);
  } finally {
    r.model.dispose();
  }
});

test("chat_template_path: a .jinja file becomes the tokenizer's template (assistant-only loss through its {% generation %} blocks) and is saved as chat_template.jinja; another path is an error", async () => {
  const template =
    "{%- for m in messages %}{%- if m.role == 'assistant' %}{{- '<|im_start|>assistant\\n' }}{%- generation %}{{- m.content + '<|im_end|>' }}{%- endgeneration %}" +
    "{{- '\\n' }}{%- else %}{{- '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{%- endif %}{%- endfor %}";
  const path = join(root, "train.jinja");
  await writeFile(path, template);
  const rows = FACTS.slice(0, 4).map((f) => ({ messages: [{ role: "user", content: f.prompt }, { role: "assistant", content: f.completion }] }));
  const r = await train({ args: args({ max_steps: 1, assistant_only_loss: true, chat_template_path: path }), rows });
  try {
    assert.equal(r.trainer.processing_class.chat_template, template);
    assert.equal(r.logs.length, 1);
    const dir = join(root, "with-template");
    await r.trainer.save_model(dir);
    assert.equal(await readFile(join(dir, "chat_template.jinja"), "utf8"), template);
  } finally {
    r.model.dispose();
  }
  await assert.rejects(train({ args: args({ max_steps: 1, chat_template_path: "Qwen/Qwen3-0.6B" }) }), /chat_template_path "Qwen\/Qwen3-0.6B".*\.jinja or \.j2.*clone_chat_template/);
});
