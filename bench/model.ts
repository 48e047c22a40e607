// Real-size models (a preset's published config.json from src/models/presets.ts, random weights written by
// tools/make-model.ts): load time and peak GPU bytes, a LoRA training step (r 16 on every linear layer, 512
// tokens: forward + backward + AdamW) in tokens/s with and without gradient checkpointing, and greedy
// generation in tokens/s. Vocabulary-sized weights larger than one buffer binding (Gemma 3's 262,144 x 640
// embedding, Qwen3's 151,936 x 1024 on most adapters) load as row blocks: the result says how many and their
// bytes, beside the peaks.
// Runs under Deno (`deno run -A bench/model.ts`: wgpu; llvmpipe without a GPU) and Node
// (`node --import tsx bench/model.ts`: Dawn; SwiftShader without a GPU). Writes
// bench/results/model-<preset>-<host>-<adapter>-<date>.json, one file per model.
//
// BENCH_MODEL: comma-separated preset names or Hub ids (default "smollm2-135m"; e.g.
// "gemma-3-270m,qwen3-0.6b"); one failing model (an architecture not described yet, out of memory) is reported
// and the others still run, the exit status saying so. BENCH_TOKENS (default 512) and BENCH_NEW_TOKENS
// (default 32; 0 skips generation) shrink it for a quick look. The f32 model files are made once per machine
// under the OS temp directory (webtune-bench-<preset>, about 4 bytes a parameter) and re-made when the
// preset's config changes.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AdamW, AutoModelForCausalLM, deviceInfo, get_peft_model, getDevice, memoryStats, sync, tidy, type Tensor } from "../src/index.ts";
import { gpu } from "../src/gpu/device.ts";
import { parameterCount, presetConfig, presetOf, type ModelPreset } from "../src/models/presets.ts";
import { jsonText, TINY_LLAMA_CONFIG } from "../src/models/tiny.ts";
import { makeModel, randomModel, type MakeModelOptions } from "../tools/make-model.ts";
import { median } from "./util.ts";

const env = (k: string) => (globalThis as { Deno?: { env: { get(k: string): string | undefined } } }).Deno?.env.get(k) ?? globalThis.process?.env[k];
const T = Number(env("BENCH_TOKENS") ?? 512);
const NEW_TOKENS = Number(env("BENCH_NEW_TOKENS") ?? 32);
const STEPS = 2;
const MiB = (b: number) => +(b / 2 ** 20).toFixed(1);
for (const [k, v] of [["BENCH_TOKENS", T], ["BENCH_NEW_TOKENS", NEW_TOKENS]] as const) {
  if (!Number.isInteger(v) || v < (k === "BENCH_TOKENS" ? 1 : 0)) throw new Error(`${k} must be a ${k === "BENCH_TOKENS" ? "positive" : "non-negative"} integer (got ${env(k)})`);
}
const PRESETS = (env("BENCH_MODEL") ?? "smollm2-135m").split(",").map((s) => s.trim()).filter(Boolean).map(presetOf);

await getDevice();
const info = deviceInfo();
const adapter = info.adapter.description || `${info.adapter.vendor} ${info.adapter.architecture}`.trim();
const adapterSlug = adapter.replace(/[^a-z0-9.]+/gi, "-").replace(/^-|-$/g, "").toLowerCase();

/**
 * make-model options giving the preset's config.json with f32 weights: its keys over the tiny Llama preset's,
 * every tiny key it does not have removed (so config.json is the published file, torch_dtype apart).
 */
function modelOptions(preset: ModelPreset): MakeModelOptions {
  const drop = Object.fromEntries(Object.keys(TINY_LLAMA_CONFIG).map((k) => [k, undefined]));
  return { arch: "llama", seed: 1, tokenizer: false, dtype: "float32", config: { ...drop, ...presetConfig(preset.id), torch_dtype: "float32" } };
}

/** The model directory, made unless one with the same config.json is there. */
async function modelDir(preset: ModelPreset): Promise<string> {
  const dir = join(tmpdir(), `webtune-bench-${preset.name}`);
  const options = modelOptions(preset);
  const want = jsonText(randomModel(options).config); // nothing is generated until read
  const have = existsSync(join(dir, "config.json")) ? readFileSync(join(dir, "config.json"), "utf8") : null;
  if (have !== want || !existsSync(join(dir, "model.safetensors"))) {
    const gb = (parameterCount(preset.config).bytes.float32 / 1e9).toFixed(2);
    console.log(`writing the model to ${dir} (${gb} GB of f32 weights) …`);
    const t = performance.now();
    await makeModel(dir, options);
    console.log(`  written in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  }
  return dir;
}

/** Row blocks of a vocabulary-sized weight ([V, C] or its blocks): how many and their bytes. */
function vocabStorage(w: unknown): { row_blocks: number; mib: number } | null {
  const blocks = (Array.isArray(w) ? w : w ? [w] : []) as Tensor[];
  if (!blocks.length || !blocks.every((b) => Array.isArray(b?.shape))) return null;
  const bytes = blocks.reduce((s, b) => s + 4 * b.shape.reduce((x, y) => x * y, 1), 0);
  return { row_blocks: Array.isArray(w) ? blocks.length : 1, mib: MiB(bytes) };
}

async function bench(preset: ModelPreset): Promise<void> {
  const size = parameterCount(preset.config);
  console.log(`\n${preset.id}: ${size.parameters.toLocaleString("en-US")} parameters, random weights, on ${info.host}, ${adapter}`);
  const dir = await modelDir(preset);

  await sync();
  gpu().pool.trim();
  gpu().pool.resetPeak();
  let t0 = performance.now();
  const model = await AutoModelForCausalLM.from_pretrained(dir);
  await sync();
  const load_s = (performance.now() - t0) / 1000;
  const load_peak = memoryStats().peakBytes;
  const m = model as unknown as { embed_tokens?: unknown; lm_head?: unknown };
  const embedding = vocabStorage(m.embed_tokens);
  const lm_head = m.lm_head === m.embed_tokens ? "tied" : vocabStorage(m.lm_head);
  console.log(`load: ${load_s.toFixed(2)} s, peak ${MiB(load_peak)} MiB on the GPU; embedding ${embedding ? `${embedding.mib} MiB in ${embedding.row_blocks} row block(s)` : "?"}`);

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
  model.gradient_checkpointing_disable();

  // Generation: prefill up to 32 tokens, then NEW_TOKENS greedy steps with the KV cache (the adapter applied).
  let generation = null;
  if (NEW_TOKENS > 0) {
    peft.eval();
    const prompt = ids[0]!.slice(0, 32);
    await peft.generate(prompt, { max_new_tokens: 2, eos_token_id: null }); // compile
    const stamps: number[] = [];
    t0 = performance.now();
    await peft.generate(prompt, { max_new_tokens: NEW_TOKENS, eos_token_id: null, on_token: () => stamps.push(performance.now()) });
    const total = performance.now() - t0;
    const decode = stamps.length > 1 ? (stamps[stamps.length - 1]! - stamps[0]!) / (stamps.length - 1) : NaN;
    generation = {
      prompt_tokens: prompt.length,
      new_tokens: NEW_TOKENS,
      tokens_per_s: +((NEW_TOKENS * 1000) / total).toFixed(2),
      decode_ms_per_token: +decode.toFixed(1),
      first_token_ms: +(stamps[0]! - t0).toFixed(1),
    };
    console.log(`generate: ${generation.tokens_per_s} tokens/s (${generation.decode_ms_per_token} ms per decoded token, first token ${generation.first_token_ms} ms)`);
  }

  const result = {
    host: info.host,
    adapter,
    model: `${preset.id} config, random weights`,
    preset: preset.name,
    parameters: size.parameters,
    weights_mib: MiB(size.bytes.float32),
    load: { seconds: +load_s.toFixed(2), peak_mib: MiB(load_peak), embedding, lm_head },
    lora_training: { r: 16, target_modules: "all-linear", tokens: T, trainable_parameters: trainable, ...lora },
    lora_training_checkpointing: ckpt,
    generation,
  };
  mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
  const name = `model-${preset.name}-${info.host}-${adapterSlug}-${new Date().toISOString().slice(0, 10)}.json`;
  writeFileSync(new URL(`./results/${name}`, import.meta.url), JSON.stringify(result, null, 2) + "\n");
  console.log(`wrote bench/results/${name}`);
  opt.dispose();
  model.dispose();
  await sync();
}

let failed = 0;
for (const preset of PRESETS) {
  try {
    await bench(preset);
  } catch (e) {
    failed++;
    console.error(`${preset.id}: ${e instanceof Error ? e.message : String(e)}`);
  }
}
if (failed) console.error(`${failed} of ${PRESETS.length} model(s) failed`);
globalThis.process?.exit?.(failed ? 1 : 0);
(globalThis as { Deno?: { exit(code: number): never } }).Deno?.exit(failed ? 1 : 0);
