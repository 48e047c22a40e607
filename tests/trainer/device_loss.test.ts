// A lost GPU device in the middle of SFTTrainer.train(): `device.destroy()` from a callback at step k, as a
// driver reset or a browser reclaiming the GPU would end it. The trainer gets a new device, loads the model again
// (from its files: a loaded model's source, or the model id), restores the newest checkpoint up to step k and
// continues; the run then logs and ends exactly as an uninterrupted one (resume is exact: tests/trainer/
// trainer.test.ts), with the recovery in the warnings and in log_history. Without a checkpoint it starts over
// (a warning says so); past max_device_recoveries (default 3) the loss is an error.
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { AutoModelForCausalLM, FACTS, SFTTrainer, type LoraConfig, type SFTConfig, type TrainerCallback } from "../../src/index.ts";
import { DeviceLostError, gpu } from "../../src/gpu/device.ts";
import { makeModel } from "../../tools/make-model.ts";
import { setup } from "../helpers.ts";

let root = "";
let modelDir = "";
let n = 0;
const outDir = () => join(root, `out-${n++}`);

before(async () => {
  await setup();
  root = await mkdtemp(join(tmpdir(), "webtune-device-loss-"));
  modelDir = join(root, "model");
  await makeModel(modelDir, { arch: "llama", seed: 7 });
});
after(() => rm(root, { recursive: true, force: true }));

const LORA: LoraConfig = { r: 4, lora_alpha: 8, target_modules: "all-linear", lora_dropout: 0.1 };
const ROWS = FACTS.slice(0, 8) as unknown as Record<string, unknown>[];
const STEPS = 5;

function args(over: Partial<SFTConfig>): Partial<SFTConfig> {
  return {
    output_dir: outDir(), per_device_train_batch_size: 2, learning_rate: 5e-3, lr_scheduler_type: "linear", logging_steps: 1,
    max_steps: STEPS, save_strategy: "steps", save_steps: 1, gradient_checkpointing: false, report_to: "none", max_length: 64, seed: 3,
    ...over,
  };
}

/** Destroys the device at the end of each step in `steps` (once each), as a lost GPU would. */
function destroyAt(...steps: number[]): TrainerCallback & { destroyed: number[] } {
  const destroyed: number[] = [];
  return {
    destroyed,
    on_step_end(_args, state) {
      if (steps.includes(state.global_step) && !destroyed.includes(state.global_step)) {
        destroyed.push(state.global_step);
        gpu().device.destroy();
      }
    },
  };
}

async function run(o: { args: Partial<SFTConfig>; callbacks?: TrainerCallback[]; byId?: boolean; max_device_recoveries?: number }) {
  const model = o.byId ? null : await AutoModelForCausalLM.from_pretrained(modelDir);
  const warnings: string[] = [];
  const trainer = new SFTTrainer({
    model: model ?? modelDir, args: o.args, train_dataset: [...ROWS], peft_config: LORA, callbacks: o.callbacks ?? [],
    warn: (m) => warnings.push(m), ...(o.max_device_recoveries === undefined ? {} : { max_device_recoveries: o.max_device_recoveries }),
  });
  const out = await trainer.train();
  const logs = trainer.state.log_history.filter((l) => "loss" in l && "grad_norm" in l);
  const weights = new Map<string, Float32Array>();
  for (const [name, w] of trainer.named_trainable()) weights.set(name, (await w.toArray()) as Float32Array);
  trainer.model.dispose();
  return { trainer, out, logs, warnings, weights };
}

type Result = Awaited<ReturnType<typeof run>>;

/** Every logged value of every step, and the final adapter, bit for bit. */
function assertSameRun(got: Result, want: Result): void {
  assert.equal(got.logs.length, want.logs.length);
  got.logs.forEach((g, i) => {
    const w = want.logs[i]!;
    for (const k of ["step", "loss", "grad_norm", "learning_rate", "num_tokens", "epoch", "mean_token_accuracy", "entropy"]) {
      assert.ok(Object.is(g[k], w[k]), `step ${w.step} ${k}: after the recovery ${g[k]}, uninterrupted ${w[k]}`);
    }
  });
  assert.equal(got.weights.size, want.weights.size);
  for (const [name, x] of want.weights) assert.deepEqual(got.weights.get(name), x, name);
}

let uninterrupted: Result;

test("device.destroy() at step 3: a new device, checkpoint-2 restored, the run ends as an uninterrupted one, bit for bit", async () => {
  uninterrupted = await run({ args: args({}) });
  assert.equal(uninterrupted.out.global_step, STEPS);
  const dir = outDir();
  const lose = destroyAt(3);
  const before = gpu();
  const r = await run({ args: args({ output_dir: dir }), callbacks: [lose] });
  assert.deepEqual(lose.destroyed, [3]);
  assert.notEqual(gpu(), before, "training ended on a new device");
  assert.equal(r.out.global_step, STEPS);
  // Checkpoint 3 was never written (the device went before the save); 2 was restored and 3.. saved again.
  assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith("checkpoint-")).sort(), ["checkpoint-1", "checkpoint-2", "checkpoint-3", "checkpoint-4", "checkpoint-5"]);
  const said = r.warnings.filter((w) => /GPU device was lost/.test(w));
  assert.equal(said.length, 1, r.warnings.join("\n"));
  assert.match(said[0]!, /lost at step 3 .*recovery 1 of at most 3.*continues from checkpoint-2 \(step 2\)/);
  const entries = r.trainer.state.log_history.filter((l) => "device_lost_recovery" in l);
  assert.deepEqual(entries, [{ device_lost_recovery: 1, lost_at_step: 3, resumed_from_step: 2, step: 2 }]);
  assertSameRun(r, uninterrupted);
  assert.equal(r.out.training_loss, r.logs.slice(2).reduce((s, l) => s + l.loss!, 0) / (STEPS - 2), "train_loss: the steps since the checkpoint, as a resumed run");
});

test("no checkpoint to go back to (save_strategy no, a model id): the run starts over on the new device, with a warning, and ends the same", async () => {
  const lose = destroyAt(2);
  const r = await run({ args: args({ save_strategy: "no" }), callbacks: [lose], byId: true });
  assert.deepEqual(lose.destroyed, [2]);
  assert.ok(r.warnings.some((w) => /lost at step 2 .*continues from the start: no checkpoint/.test(w)), r.warnings.join("\n"));
  assert.equal(r.trainer.state.log_history.filter((l) => "device_lost_recovery" in l).length, 1);
  assertSameRun(r, uninterrupted);
});

// Last: it leaves the device lost (no recovery is allowed, so no new device is made: each costs every pipeline's
// compilation again, seconds on a CPU adapter).
test("a loss past max_device_recoveries is an error naming the limit and how to resume", async () => {
  const lose = destroyAt(2);
  await assert.rejects(
    run({ args: args({}), callbacks: [lose], max_device_recoveries: 0 }),
    (e: Error) => {
      assert.match(e.message, /GPU device was lost at step 2 .*after 0 recoveries in this run \(max_device_recoveries 0\).*resume_from_checkpoint: true/);
      assert.ok(e.cause instanceof DeviceLostError, String(e.cause));
      return true;
    },
  );
  assert.deepEqual(lose.destroyed, [2]);
});
