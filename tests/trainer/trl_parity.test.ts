// webtune's SFTTrainer against TRL's own (tools/fixtures/trl_sft.py → tests/fixtures/trl_sft.json): the
// same tiny model, the same LoRA init, 8 prompt/completion rows in one batch, constant lr, 5 steps, packing
// off and on. Per-step loss, grad_norm, learning_rate, entropy, mean_token_accuracy and num_tokens agree
// to 1e-4 relative (TRL ran in float64, webtune in f32).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { AutoModelForCausalLM, PeftModel, SFTTrainer } from "../../src/index.ts";
import { makeAdapter, makeModel, type MakeModelOptions } from "../../tools/make-model.ts";
import { setup } from "../helpers.ts";

interface Run {
  sft_config: { packing: boolean; packing_strategy: "bfd"; padding_free: boolean; max_length: number };
  logs: Record<string, number>[];
}
const fx = JSON.parse(readFileSync(new URL("../fixtures/trl_sft.json", import.meta.url), "utf8")) as {
  model: MakeModelOptions;
  adapter: { seed: number; r: number; alpha: number; targets: "all-linear"; dropout: number };
  rows: { prompt: string; completion: string }[];
  config: Record<string, unknown>;
  runs: Record<"padded" | "packed", Run>;
};

let root = "";
before(async () => {
  await setup();
  root = await mkdtemp(join(tmpdir(), "webtune-trl-"));
  await makeModel(join(root, "model"), fx.model);
  await makeAdapter(join(root, "adapter"), { model: join(root, "model"), ...fx.adapter });
});
after(() => rm(root, { recursive: true, force: true }));

const KEYS = ["loss", "grad_norm", "learning_rate", "entropy", "mean_token_accuracy", "num_tokens"] as const;

/** Each run's per-step logs, for comparing the packed run with the padded one. */
const seen: Partial<Record<"padded" | "packed", Record<string, number>[]>> = {};

for (const name of ["padded", "packed"] as const) {
  test(`SFTTrainer matches TRL step by step (${name})`, async () => {
    const run = fx.runs[name];
    const model = await AutoModelForCausalLM.from_pretrained(join(root, "model"));
    try {
      const peft = await PeftModel.from_pretrained(model, join(root, "adapter"), { is_trainable: true });
      const c = fx.config;
      const trainer = new SFTTrainer({
        model: peft,
        args: {
          output_dir: join(root, `out-${name}`),
          per_device_train_batch_size: c.per_device_train_batch_size as number,
          gradient_accumulation_steps: 1,
          max_steps: 5,
          learning_rate: c.learning_rate as number,
          lr_scheduler_type: "constant",
          logging_steps: 1,
          save_strategy: "no",
          gradient_checkpointing: false,
          report_to: "none",
          ...run.sft_config,
        },
        train_dataset: fx.rows,
        warn: () => {},
      });
      await trainer.train();
      const logs = trainer.state.log_history.filter((l) => "loss" in l && "grad_norm" in l);
      assert.equal(logs.length, 5);
      logs.forEach((got, i) => {
        const want = run.logs[i]!;
        for (const k of KEYS) {
          const tol = 1e-4 * Math.abs(want[k]!) + 1e-7;
          assert.ok(Math.abs(got[k]! - want[k]!) <= tol, `step ${i + 1} ${k}: webtune ${got[k]}, TRL ${want[k]}`);
        }
        assert.equal(got.epoch, want.epoch, `step ${i + 1} epoch`);
      });
      seen[name] = logs;
    } finally {
      model.dispose();
    }
  });
}

test("the packed batch trains to the same losses as the padded batch", () => {
  const [padded, packed] = [seen.padded, seen.packed];
  assert.ok(padded && packed, "both runs ran");
  padded.forEach((p, i) => {
    for (const k of ["loss", "grad_norm", "num_tokens"] as const) {
      assert.ok(Math.abs(p[k]! - packed[i]![k]!) <= 1e-5 * Math.abs(p[k]!), `step ${i + 1} ${k}: padded ${p[k]}, packed ${packed[i]![k]}`);
    }
  });
});
