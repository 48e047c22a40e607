// AutoModelForCausalLM.from_pretrained: config.json + safetensors weights → a model on the GPU, streaming
// one tensor at a time from the files to the device.
import { deviceInfo, getDevice } from "../gpu/device.ts";
import { sync } from "../tensor/memory.ts";
import { keep } from "../tensor/scope.ts";
import { Tensor } from "../tensor/tensor.ts";
import { parseConfig, type LlamaFamilyConfig } from "./config.ts";
import { openSource, type ModelLocation, type ModelSource, type SourceOptions } from "./files.ts";
import { LlamaForCausalLM } from "./llama.ts";
import { openWeights } from "./safetensors.ts";

export interface PretrainedOptions extends SourceOptions {
  /** The GPUDevice to use (default: webtune's shared device, requested on first use), or "webgpu". */
  device?: GPUDevice | "webgpu";
  /**
   * How weights are stored on the GPU. Compute is always f32; "auto" and "float32" store f32 (weights in
   * F16/BF16 files are widened as they load).
   */
  dtype?: "auto" | "float32";
}

/** The weights a config implies, with their shapes, in transformers' order. */
export function expectedWeights(cfg: LlamaFamilyConfig): [string, number[]][] {
  const { hidden_size: C, intermediate_size: I, num_attention_heads: H, num_key_value_heads: KVH, head_dim: D, vocab_size: V } = cfg;
  const out: [string, number[]][] = [["model.embed_tokens.weight", [V, C]]];
  for (let i = 0; i < cfg.num_hidden_layers; i++) {
    const p = `model.layers.${i}`;
    out.push([`${p}.self_attn.q_proj.weight`, [H * D, C]]);
    if (cfg.attention_bias) out.push([`${p}.self_attn.q_proj.bias`, [H * D]]);
    out.push([`${p}.self_attn.k_proj.weight`, [KVH * D, C]]);
    if (cfg.attention_bias) out.push([`${p}.self_attn.k_proj.bias`, [KVH * D]]);
    out.push([`${p}.self_attn.v_proj.weight`, [KVH * D, C]]);
    if (cfg.attention_bias) out.push([`${p}.self_attn.v_proj.bias`, [KVH * D]]);
    out.push([`${p}.self_attn.o_proj.weight`, [C, H * D]]);
    if (cfg.qk_norm) out.push([`${p}.self_attn.q_norm.weight`, [D]], [`${p}.self_attn.k_norm.weight`, [D]]);
    out.push([`${p}.mlp.gate_proj.weight`, [I, C]], [`${p}.mlp.up_proj.weight`, [I, C]], [`${p}.mlp.down_proj.weight`, [C, I]]);
    out.push([`${p}.input_layernorm.weight`, [C]], [`${p}.post_attention_layernorm.weight`, [C]]);
  }
  out.push(["model.norm.weight", [C]]);
  if (!cfg.tie_word_embeddings) out.push(["lm_head.weight", [V, C]]);
  return out;
}

const MiB = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;

/** Reads config.json and the weights of `source` onto the GPU (the device must be initialised). */
export async function loadCausalLM(source: ModelSource): Promise<LlamaForCausalLM> {
  const cfg = parseConfig(await source.json<Record<string, unknown>>("config.json"), `config.json in ${source.name}`);
  const weights = await openWeights(source);
  // Qwen2's configs have no attention_bias key, and other checkpoints may disagree with theirs: the weights decide.
  cfg.attention_bias = weights.has("model.layers.0.self_attn.q_proj.bias");
  if (!cfg.tie_word_embeddings && !weights.has("lm_head.weight") && weights.has("model.embed_tokens.weight")) {
    throw new Error(`${source.name}: config.json has tie_word_embeddings false but the weights have no lm_head.weight`);
  }
  const expected = expectedWeights(cfg);
  checkFits(cfg, expected, source.name);
  const missing = expected.filter(([n]) => !weights.has(n)).map(([n]) => n);
  if (missing.length) {
    throw new Error(
      `${source.name}: the weights lack ${missing.length} tensor(s) a ${cfg.architecture} with this config.json needs: ` +
        `${missing.slice(0, 5).join(", ")}${missing.length > 5 ? ", …" : ""}`,
    );
  }
  const params = new Map<string, Tensor>();
  try {
    for (const [name, shape] of expected) {
      const info = weights.info(name);
      if (info.shape.join() !== shape.join()) {
        throw new Error(`${info.file} in ${source.name}: tensor "${name}" is [${info.shape.join(", ")}] but config.json implies [${shape.join(", ")}]`);
      }
      params.set(name, keep(Tensor.fromArray(await weights.readF32(name), shape)));
    }
    // Surface an out-of-memory from the uploads here, with the sizes, rather than at the first step.
    await sync();
  } catch (e) {
    for (const t of params.values()) t.dispose();
    if (e instanceof Error && /out of memory|OutOfMemory|allocation/i.test(e.message)) {
      throw new Error(`${source.name}: ${oomMessage(expected)} (${e.message})`, { cause: e });
    }
    throw e;
  }
  const model = new LlamaForCausalLM(cfg, params);
  model.name_or_path = source.name;
  if (await source.exists("generation_config.json")) model.generation_config = await source.json("generation_config.json");
  return model;
}

function totalBytes(expected: [string, number[]][]): number {
  return expected.reduce((s, [, shape]) => s + 4 * shape.reduce((a, b) => a * b, 1), 0);
}

function oomMessage(expected: [string, number[]][]): string {
  const l = deviceInfo().limits;
  return `the weights need ${MiB(totalBytes(expected))} of GPU memory in f32, more than this adapter could allocate (maxBufferSize ${MiB(l.maxBufferSize)}); use a smaller model`;
}

/** Every tensor must fit one buffer binding of this adapter. */
function checkFits(cfg: LlamaFamilyConfig, expected: [string, number[]][], where: string): void {
  const l = deviceInfo().limits;
  const limit = Math.min(l.maxStorageBufferBindingSize, l.maxBufferSize);
  const big = expected.filter(([, s]) => 4 * s.reduce((a, b) => a * b, 1) > limit);
  if (big.length) {
    const [name, shape] = big[0]!;
    const bytes = 4 * shape.reduce((a, b) => a * b, 1);
    throw new Error(
      `${where}: ${cfg.architecture} tensor "${name}" [${shape.join(", ")}] needs ${MiB(bytes)} in f32, but this adapter binds at most ${MiB(l.maxStorageBufferBindingSize)} ` +
        `(maxStorageBufferBindingSize; maxBufferSize ${MiB(l.maxBufferSize)}); the whole model needs ${MiB(totalBytes(expected))}. ` +
        `Use a model with a smaller vocabulary or hidden size, or an adapter with higher limits.`,
    );
  }
}

/** Like transformers' AutoModelForCausalLM: picks the class from config.json's `architectures`. */
export const AutoModelForCausalLM = {
  /**
   * Loads a Llama-family model from a local directory, a URL, a Hub id, or browser files (see openSource).
   * `AutoModelForCausalLM.from_pretrained("HuggingFaceTB/SmolLM2-135M", { progress_callback })`
   */
  async from_pretrained(location: ModelLocation, options: PretrainedOptions = {}): Promise<LlamaForCausalLM> {
    const dtype = options.dtype ?? "auto";
    if (dtype !== "auto" && dtype !== "float32") {
      throw new Error(`from_pretrained: dtype "${String(dtype)}" is not supported; use "float32" (or "auto"): webtune computes in f32`);
    }
    await getDevice(options.device && options.device !== "webgpu" ? { device: options.device } : {});
    return loadCausalLM(await openSource(location, options));
  },
};
