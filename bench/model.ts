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
import { mkdirSync, writeFileSync } from "node:fs";
import { AdamW, AutoModelForCausalLM, get_peft_model, getDevice, memoryStats, sync, type Tensor } from "../src/index.ts";
import { gpu } from "../src/gpu/device.ts";
import { parameterCount, presetOf, type ModelPreset } from "../src/models/presets.ts";
import { adapterOf, env, intEnv, MiB, modelDir, trainSteps } from "./util.ts";

const T = intEnv("BENCH_TOKENS", 512, 1);
const NEW_TOKENS = intEnv("BENCH_NEW_TOKENS", 32, 0);
const STEPS = 2;
const PRESETS = (env("BENCH_MODEL") ?? "smollm2-135m").split(",").map((s) => s.trim()).filter(Boolean).map(presetOf);

await getDevice();
const info = adapterOf();
const { adapter, slug: adapterSlug } = info;

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

  const train = (checkpointing: boolean) => trainSteps(model, peft, opt, ids, checkpointing, STEPS);

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
    lora_training: { r: 16, target_modules: "all-linear", tokens: T, trainable_parameters: trainable, ...stepRecord(lora) },
    lora_training_checkpointing: stepRecord(ckpt),
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

/** The step figures as the results have always recorded them (no raw byte count). */
function stepRecord({ ms_per_step, tokens_per_s, peak_mib }: { ms_per_step: number; tokens_per_s: number; peak_mib: number }) {
  return { ms_per_step, tokens_per_s, peak_mib };
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
