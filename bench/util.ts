// Shared by the benchmark scripts: seeded inputs, the median, and the agreement check between two results; and the
// model benchmarks' parts (bench/model.ts, bench/quant.ts): settings from the environment, the adapter's name, the
// preset's f32 model directory (made once per machine) and the timed LoRA step.
import { existsSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deviceInfo, memoryStats, sync, tidy, type AdamW, type LlamaForCausalLM, type PeftModel } from "../src/index.ts";
import { gpu } from "../src/gpu/device.ts";
import { parameterCount, presetConfig, type ModelPreset } from "../src/models/presets.ts";
import { jsonText, TINY_LLAMA_CONFIG } from "../src/models/tiny.ts";
import { makeModel, randomModel, type MakeModelOptions } from "../tools/make-model.ts";

/** n values uniform in [-amplitude, amplitude), from a seeded LCG (the same on every host). */
export function random(n: number, seed: number, amplitude = 0.5): Float32Array {
  let s = seed;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = amplitude * (2 * (s / 2 ** 32) - 1);
  }
  return out;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((p, q) => p - q);
  const h = s.length >> 1;
  return s.length % 2 ? s[h]! : (s[h - 1]! + s[h]!) / 2;
}

/** max |got - want| relative to max |want|. */
export function maxRelDiff(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let diff = 0;
  let top = 0;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i]! - want[i]!));
    top = Math.max(top, Math.abs(want[i]!));
  }
  return diff / (top || 1);
}

// ---------------------------------------------------------------------------------------------------------
// The model benchmarks' shared parts.

/** An environment variable under Deno or Node. */
export const env = (k: string): string | undefined =>
  (globalThis as { Deno?: { env: { get(k: string): string | undefined } } }).Deno?.env.get(k) ?? globalThis.process?.env[k];

/** A whole-number setting from the environment, at least `min`, or a clear error. */
export function intEnv(k: string, fallback: number, min: number): number {
  const v = Number(env(k) ?? fallback);
  if (!Number.isInteger(v) || v < min) throw new Error(`${k} must be an integer of at least ${min} (got ${env(k)})`);
  return v;
}

export const MiB = (b: number): number => +(b / 2 ** 20).toFixed(1);

/** The device's host, adapter description and the adapter as a file-name slug (the device must be initialised). */
export function adapterOf(): { host: string; adapter: string; slug: string; shader_f16: boolean } {
  const info = deviceInfo();
  const adapter = info.adapter.description || `${info.adapter.vendor} ${info.adapter.architecture}`.trim();
  const slug = adapter.replace(/[^a-z0-9.]+/gi, "-").replace(/^-|-$/g, "").toLowerCase();
  return { host: info.host, adapter, slug, shader_f16: info.features.shader_f16 };
}

/**
 * make-model options giving the preset's config.json with f32 weights: its keys over the tiny Llama preset's,
 * every tiny key it does not have removed (so config.json is the published file, torch_dtype apart).
 */
export function modelOptions(preset: ModelPreset): MakeModelOptions {
  const drop = Object.fromEntries(Object.keys(TINY_LLAMA_CONFIG).map((k) => [k, undefined]));
  return { arch: "llama", seed: 1, tokenizer: false, dtype: "float32", config: { ...drop, ...presetConfig(preset.id), torch_dtype: "float32" } };
}

/** The preset's model directory under the OS temp directory, made unless one with the same config.json is there. */
export async function modelDir(preset: ModelPreset): Promise<string> {
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

export interface StepResult {
  ms_per_step: number;
  tokens_per_s: number;
  /** The GPU pool's peak over the steps (from a reset just before them). */
  peak_mib: number;
  peak_bytes: number;
  /** Set when no step was timed after the warm-up (steps 0): the figures are the warm-up's, compilation included. */
  warm_up_only?: true;
}

/**
 * `steps` LoRA training steps (forward + backward + AdamW, each waited for) after one warm-up step that
 * compiles the pipelines, with or without gradient checkpointing: the median ms per step, tokens/s and the
 * GPU pool's peak over all of them. steps 0 runs the warm-up alone (for the peak; its time includes compiling).
 */
export async function trainSteps(
  model: LlamaForCausalLM,
  peft: PeftModel,
  opt: AdamW,
  ids: number[][],
  checkpointing: boolean,
  steps: number,
): Promise<StepResult> {
  if (checkpointing) model.gradient_checkpointing_enable();
  else model.gradient_checkpointing_disable();
  const T = ids.reduce((s, r) => s + r.length, 0);
  const times: number[] = [];
  gpu().pool.resetPeak();
  for (let i = 0; i <= steps; i++) {
    const t = performance.now();
    tidy(() => {
      const { loss } = peft.forward({ input_ids: ids, labels: ids });
      loss!.backward();
    });
    opt.step();
    opt.zero_grad();
    await sync();
    if (i > 0 || steps === 0) times.push(performance.now() - t); // the first step compiles pipelines
    console.log(`  step ${i}${i === 0 ? " (warm-up)" : ""}: ${((performance.now() - t) / 1000).toFixed(2)} s`);
  }
  const ms = median(times);
  const peak = memoryStats().peakBytes;
  const result: StepResult = { ms_per_step: +ms.toFixed(1), tokens_per_s: +((T * 1000) / ms).toFixed(1), peak_mib: MiB(peak), peak_bytes: peak };
  if (steps === 0) result.warm_up_only = true;
  return result;
}
