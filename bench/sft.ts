// SFT training throughput through the real SFTTrainer: a SmolLM2-135M-shaped model (its real config, random
// weights written once by tools/make-model.ts, the same directory as bench/model.ts), LoRA r=16 on every
// linear layer, a pre-tokenized dataset ({input_ids} rows of random ids, 50-400 tokens) packed into rows of
// 512 tokens (packing, max_length 512, per_device_train_batch_size 1), with gradient checkpointing (TRL's
// default) and without. One warm-up step, then BENCH_STEPS (default 3) timed ones; tokens/s and the peak GPU
// bytes come from the trainer's own logs (logging_steps 1: tokens_per_second, peak_gpu_bytes).
// Runs under Deno (`deno run -A bench/sft.ts`: wgpu; llvmpipe without a GPU) and Node
// (`node --import tsx bench/sft.ts`: Dawn; SwiftShader without a GPU). Writes bench/results/sft-*.json.
// BENCH_TOKENS (default 512) shrinks the packed length for a quick look; BENCH_STEPS sets the timed steps.
//
// The SFTTrainer always needs a tokenizer (the pad token for the collator, eos checks), even for
// pre-tokenized rows, and this model directory has none: the fixture tokenizer (tools/tokenizer-fixture.ts)
// is passed as processing_class. Its vocabulary is not the model's; nothing here encodes or decodes text.
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AutoTokenizer, deviceInfo, getDevice, SFTTrainer, type TrainerCallback } from "../src/index.ts";
import { makeModel } from "../tools/make-model.ts";
import { makeTokenizerFiles } from "../tools/tokenizer-fixture.ts";
import { median } from "./util.ts";

const env = (k: string) => (globalThis as { Deno?: { env: { get(k: string): string | undefined } } }).Deno?.env.get(k) ?? globalThis.process?.env[k];
const T = Number(env("BENCH_TOKENS") ?? 512);
const STEPS = Math.max(1, Number(env("BENCH_STEPS") ?? 3));
const MiB = (b: number) => +(b / 2 ** 20).toFixed(1);
const VOCAB = 49152;

await getDevice();
const info = deviceInfo();
const adapter = info.adapter.description || `${info.adapter.vendor} ${info.adapter.architecture}`.trim();
console.log(`SFT bench on ${info.host}, ${adapter}: SmolLM2-135M shape, random weights, SFTTrainer + LoRA r=16 all-linear, packing to ${T} tokens`);

// The model files, made once per machine (≈ 540 MB of f32 weights), shared with bench/model.ts.
const dir = join(tmpdir(), "webtune-bench-smollm2-135m");
if (!existsSync(join(dir, "model.safetensors"))) {
  console.log(`writing the model to ${dir} …`);
  await makeModel(dir, { arch: "smollm2-135m", seed: 1, tokenizer: false });
}
// The fixture tokenizer, only for its special tokens (the collator's pad id).
const tokDir = join(tmpdir(), "webtune-bench-fixture-tokenizer");
mkdirSync(tokDir, { recursive: true });
for (const [name, text] of Object.entries(makeTokenizerFiles())) writeFileSync(join(tokDir, name), text);
const tokenizer = await AutoTokenizer.from_pretrained(tokDir);

/**
 * Pre-tokenized rows {input_ids} of random ids < 49152, in groups whose lengths (each within [50, 400],
 * fewer when T is small) add up to exactly T, so that packing fills every row to T tokens.
 */
function dataset(rowsOfT: number, seed: number): { input_ids: number[] }[] {
  let s = seed >>> 0;
  const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const hi = Math.min(400, T);
  const lo = Math.min(50, Math.floor(T / 2));
  const rows: { input_ids: number[] }[] = [];
  const row = (n: number) => rows.push({ input_ids: Array.from({ length: n }, () => 1 + Math.floor(rand() * (VOCAB - 1))) });
  for (let g = 0; g < rowsOfT; g++) {
    let left = T;
    while (left > hi) {
      const n = lo + Math.floor(rand() * (Math.min(hi, left - lo) - lo + 1));
      row(n);
      left -= n;
    }
    row(left);
  }
  return rows;
}

interface StepLog {
  step: number;
  seconds: number;
  tokens: number;
  tokens_per_s: number;
  peak_gpu_bytes: number;
  loss: number;
}

async function run(gradient_checkpointing: boolean) {
  const logs: Record<string, number>[] = [];
  let last = 0;
  const stamps: number[] = [];
  const cb: TrainerCallback = {
    on_train_begin: () => void (last = performance.now()),
    on_step_end: (_a, state) => {
      const now = performance.now();
      stamps.push(now - last);
      last = now;
      console.log(`  step ${state.global_step}${state.global_step === 1 ? " (warm-up)" : ""}: ${(stamps[stamps.length - 1]! / 1000).toFixed(2)} s`);
    },
    on_log: (_a, _s, _c, l) => void logs.push(l),
  };
  const trainer = new SFTTrainer({
    model: dir,
    processing_class: tokenizer,
    train_dataset: dataset(STEPS + 2, 7),
    peft_config: { r: 16, lora_alpha: 32, lora_dropout: 0, target_modules: "all-linear" },
    args: {
      output_dir: join(tmpdir(), "webtune-bench-sft-output"),
      packing: true,
      max_length: T,
      per_device_train_batch_size: 1,
      gradient_accumulation_steps: 1,
      max_steps: STEPS + 1,
      learning_rate: 1e-4,
      logging_steps: 1,
      save_strategy: "no",
      gradient_checkpointing,
      report_to: "none",
    },
    callbacks: [cb],
  });
  let t0 = performance.now();
  await trainer.setup();
  const setup_s = (performance.now() - t0) / 1000;
  const [trainable] = trainer.peft!.get_nb_trainable_parameters();
  t0 = performance.now();
  const out = await trainer.train();
  const train_s = (performance.now() - t0) / 1000;
  let seen = 0;
  const steps: StepLog[] = logs
    .filter((l) => l.tokens_per_second !== undefined)
    .map((l) => {
      const tokens = l.num_tokens! - seen;
      seen = l.num_tokens!;
      return {
        step: l.step!,
        seconds: +(tokens / l.tokens_per_second!).toFixed(3),
        tokens,
        tokens_per_s: +l.tokens_per_second!.toPrecision(4),
        peak_gpu_bytes: l.peak_gpu_bytes!,
        loss: +l.loss!.toFixed(4),
      };
    });
  const timed = steps.slice(1); // step 1 compiles the pipelines
  const tokens = timed.reduce((s, x) => s + x.tokens, 0);
  const secs = timed.reduce((s, x) => s + x.seconds, 0);
  const result = {
    gradient_checkpointing,
    trainable_parameters: trainable,
    setup_seconds: +setup_s.toFixed(2),
    train_seconds: +train_s.toFixed(2),
    timed_steps: timed.length,
    tokens_per_step: timed.map((x) => x.tokens),
    tokens_per_s: +(tokens / secs).toPrecision(4),
    median_step_seconds: +median(timed.map((x) => x.seconds)).toFixed(3),
    peak_mib: MiB(Math.max(...timed.map((x) => x.peak_gpu_bytes))),
    warmup_step_seconds: steps[0]?.seconds ?? null,
    training_loss: +out.training_loss.toFixed(4),
    steps,
  };
  // Free the model, its adapters and the optimizer's moments before the next run (the peak is per run).
  trainer.optimizer.dispose();
  trainer.model.dispose();
  console.log(`  ${result.tokens_per_s} tokens/s (median step ${result.median_step_seconds} s), peak ${result.peak_mib} MiB, setup ${result.setup_seconds} s`);
  return result;
}

console.log(`with gradient checkpointing (TRL's default), 1 warm-up + ${STEPS} timed steps:`);
const ckpt = await run(true);
console.log("without gradient checkpointing:");
const plain = await run(false);

const record = {
  date: new Date().toISOString(),
  host: info.host,
  adapter,
  model: "SmolLM2-135M config, random weights (f32)",
  trainer: {
    peft: { r: 16, lora_alpha: 32, target_modules: "all-linear" },
    packing: true,
    max_length: T,
    per_device_train_batch_size: 1,
    dataset: "pre-tokenized {input_ids}, random ids < 49152, lengths 50-400",
  },
  gradient_checkpointing: ckpt,
  no_gradient_checkpointing: plain,
};
mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
const slug = adapter.replace(/[^a-z0-9.]+/gi, "-").replace(/^-|-$/g, "").toLowerCase();
const name = `sft-${info.host}-${slug}-${new Date().toISOString().slice(0, 10)}.json`;
writeFileSync(new URL(`./results/${name}`, import.meta.url), JSON.stringify(record, null, 2) + "\n");
console.log(`wrote bench/results/${name}`);
globalThis.process?.exit?.(0);
