// A SmolLM2-135M-shaped model (its real config, random weights written by tools/make-model.ts): load time
// and peak GPU bytes, a LoRA training step (r 16 on every linear layer, 512 tokens: forward + backward +
// AdamW) in tokens/s with and without gradient checkpointing, and greedy generation in tokens/s.
// Runs under Deno (`deno run -A bench/model.ts`: wgpu; llvmpipe without a GPU) and Node
// (`node --import tsx bench/model.ts`: Dawn; SwiftShader without a GPU). Writes bench/results/model-*.json.
// BENCH_TOKENS (default 512) and BENCH_NEW_TOKENS (default 32) shrink it for a quick look.
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AdamW, AutoModelForCausalLM, deviceInfo, get_peft_model, getDevice, memoryStats, sync, tidy } from "../src/index.ts";
import { gpu } from "../src/gpu/device.ts";
import { makeModel } from "../tools/make-model.ts";
import { median } from "./util.ts";

const env = (k: string) => (globalThis as { Deno?: { env: { get(k: string): string | undefined } } }).Deno?.env.get(k) ?? globalThis.process?.env[k];
const T = Number(env("BENCH_TOKENS") ?? 512);
const NEW_TOKENS = Number(env("BENCH_NEW_TOKENS") ?? 32);
const STEPS = 2;
const MiB = (b: number) => +(b / 2 ** 20).toFixed(1);

await getDevice();
const info = deviceInfo();
const adapter = info.adapter.description || `${info.adapter.vendor} ${info.adapter.architecture}`.trim();
console.log(`model bench on ${info.host}, ${adapter}: SmolLM2-135M shape, random weights`);

// The model files, made once per machine (≈ 540 MB of f32 weights).
const dir = join(tmpdir(), "webtune-bench-smollm2-135m");
if (!existsSync(join(dir, "model.safetensors"))) {
  console.log(`writing the model to ${dir} …`);
  await makeModel(dir, { arch: "smollm2-135m", seed: 1, tokenizer: false });
}

gpu().pool.resetPeak();
let t0 = performance.now();
const model = await AutoModelForCausalLM.from_pretrained(dir);
await sync();
const load_s = (performance.now() - t0) / 1000;
const load_peak = memoryStats().peakBytes;
console.log(`load: ${load_s.toFixed(2)} s, peak ${MiB(load_peak)} MiB on the GPU`);

const peft = get_peft_model(model, { r: 16, lora_alpha: 32, target_modules: "all-linear" });
const [trainable] = peft.get_nb_trainable_parameters();
const opt = new AdamW(peft.parameters(), { lr: 1e-4 });
const V = model.config.vocab_size;
const ids = [Array.from({ length: T }, (_, i) => (i * 7919 + 13) % V)];
peft.train();

/** forward + backward + optimizer step, waited for; returns ms per step (median) and the peak bytes. */
async function train(checkpointing: boolean) {
  if (checkpointing) model.gradient_checkpointing_enable();
  else model.gradient_checkpointing_disable();
  const times: number[] = [];
  gpu().pool.resetPeak();
  for (let i = 0; i <= STEPS; i++) {
    const t = performance.now();
    tidy(() => {
      const { loss } = peft.forward({ input_ids: ids, labels: ids });
      loss!.backward();
    });
    opt.step();
    opt.zero_grad();
    await sync();
    if (i > 0) times.push(performance.now() - t); // the first step compiles pipelines
    console.log(`  step ${i}${i === 0 ? " (warm-up)" : ""}: ${((performance.now() - t) / 1000).toFixed(2)} s`);
  }
  const ms = median(times);
  return { ms_per_step: +ms.toFixed(1), tokens_per_s: +((T * 1000) / ms).toFixed(1), peak_mib: MiB(memoryStats().peakBytes) };
}

console.log(`LoRA r=16 all-linear (${trainable.toLocaleString("en-US")} trainable), ${T} tokens, forward + backward + AdamW:`);
const lora = await train(false);
console.log(`  ${lora.tokens_per_s} tokens/s, peak ${lora.peak_mib} MiB`);
console.log("the same with gradient checkpointing:");
const ckpt = await train(true);
console.log(`  ${ckpt.tokens_per_s} tokens/s, peak ${ckpt.peak_mib} MiB`);

// Generation: prefill 32 tokens, then NEW_TOKENS greedy steps with the KV cache (the adapter applied).
peft.eval();
const prompt = ids[0]!.slice(0, 32);
await peft.generate(prompt, { max_new_tokens: 2, eos_token_id: null }); // compile
const stamps: number[] = [];
t0 = performance.now();
await peft.generate(prompt, { max_new_tokens: NEW_TOKENS, eos_token_id: null, on_token: () => stamps.push(performance.now()) });
const total = performance.now() - t0;
const decode = (stamps[stamps.length - 1]! - stamps[0]!) / (stamps.length - 1);
const generation = {
  prompt_tokens: prompt.length,
  new_tokens: NEW_TOKENS,
  tokens_per_s: +((NEW_TOKENS * 1000) / total).toFixed(2),
  decode_ms_per_token: +decode.toFixed(1),
  first_token_ms: +(stamps[0]! - t0).toFixed(1),
};
console.log(`generate: ${generation.tokens_per_s} tokens/s (${generation.decode_ms_per_token} ms per decoded token, first token ${generation.first_token_ms} ms)`);

const result = {
  host: info.host,
  adapter,
  model: "SmolLM2-135M config, random weights",
  load: { seconds: +load_s.toFixed(2), peak_mib: MiB(load_peak) },
  lora_training: { r: 16, target_modules: "all-linear", tokens: T, trainable_parameters: trainable, ...lora },
  lora_training_checkpointing: ckpt,
  generation,
};
mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
const name = `model-${info.host}-${adapter.replace(/[^a-z0-9.]+/gi, "-").replace(/^-|-$/g, "").toLowerCase()}-${new Date().toISOString().slice(0, 10)}.json`;
writeFileSync(new URL(`./results/${name}`, import.meta.url), JSON.stringify(result, null, 2) + "\n");
console.log(`wrote bench/results/${name}`);
model.dispose();
globalThis.process?.exit?.(0);
