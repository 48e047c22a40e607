// AutoModelForCausalLM.from_pretrained: config.json + safetensors weights → a model on the GPU, streaming
// one tensor at a time from the files to the device.
import { deviceInfo, getDevice } from "../gpu/device.ts";
import { sync } from "../tensor/memory.ts";
import { keep } from "../tensor/scope.ts";
import { Tensor } from "../tensor/tensor.ts";
import { parseConfig, type LlamaFamilyConfig } from "./config.ts";
import { openSource, type ModelLocation, type ModelSource, type SourceOptions } from "./files.ts";
import { splitRows } from "../ops/row_blocks.ts";
import { LlamaForCausalLM, type VocabWeight } from "./llama.ts";
import { openWeights } from "./safetensors.ts";

export interface PretrainedOptions extends SourceOptions {
  /** The GPUDevice to use (default: webtune's shared device, requested on first use), or "webgpu". */
  device?: GPUDevice | "webgpu";
  /**
   * How weights are stored on the GPU; compute is always f32. "auto" and "float32": f32 (F16/BF16 files are
   * widened as they load). "float16": the decoder's linear weights (the bulk of a model) are stored as f16,
   * halving their memory, which suits LoRA (they stay frozen); norms, biases, the embedding and the LM head
   * stay f32. Needs the adapter's shader-f16 feature.
   */
  dtype?: "auto" | "float32" | "float16";
  /**
   * Store a weight larger than this many bytes as row blocks (vocabulary-sized weights) or refuse it
   * (others); default and maximum: the adapter's maxStorageBufferBindingSize.
   */
  max_tensor_bytes?: number;
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

/** Bytes for a message: 8.0 KiB, 544.5 MiB, 1.20 GiB. */
function MiB(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  return `${(n / 2 ** 10).toFixed(1)} KiB`;
}

/** Reads config.json and the weights of `source` onto the GPU (the device must be initialised). */
export async function loadCausalLM(
  source: ModelSource,
  options: { max_tensor_bytes?: number; dtype?: PretrainedOptions["dtype"] } = {},
): Promise<LlamaForCausalLM> {
  const half = options.dtype === "float16";
  const cfg = parseConfig(await source.json<Record<string, unknown>>("config.json"), `config.json in ${source.name}`);
  const weights = await openWeights(source);
  // Qwen2's configs have no attention_bias key, and other checkpoints may disagree with theirs: the weights decide.
  cfg.attention_bias = weights.has("model.layers.0.self_attn.q_proj.bias");
  if (!cfg.tie_word_embeddings && !weights.has("lm_head.weight") && weights.has("model.embed_tokens.weight")) {
    throw new Error(`${source.name}: config.json has tie_word_embeddings false but the weights have no lm_head.weight`);
  }
  const expected = expectedWeights(cfg);
  const limit = bindingLimit(options.max_tensor_bytes);
  checkFits(cfg, expected, source.name, limit);
  const missing = expected.filter(([n]) => !weights.has(n)).map(([n]) => n);
  if (missing.length) {
    throw new Error(
      `${source.name}: the weights lack ${missing.length} tensor(s) a ${cfg.architecture} with this config.json needs: ` +
        `${missing.slice(0, 5).join(", ")}${missing.length > 5 ? ", …" : ""}`,
    );
  }
  const params = new Map<string, Tensor>();
  const vocab = new Map<string, VocabWeight>();
  const all: Tensor[] = [];
  try {
    for (const [name, shape] of expected) {
      const info = weights.info(name);
      if (info.shape.join() !== shape.join()) {
        throw new Error(`${info.file} in ${source.name}: tensor "${name}" is [${info.shape.join(", ")}] but config.json implies [${shape.join(", ")}]`);
      }
      const data = await weights.readF32(name);
      if (VOCAB_WEIGHTS.includes(name) && 4 * data.length > limit) {
        // Larger than one binding: row blocks, each its own buffer (embedding and cross-entropy take them).
        const [, C] = shape as [number, number];
        const blocks: Tensor[] = [];
        let row = 0;
        for (const rows of splitRows(shape[0]!, C, limit)) {
          blocks.push(keep(Tensor.fromArray(data.subarray(row * C, (row + rows) * C), [rows, C])));
          row += rows;
        }
        all.push(...blocks);
        vocab.set(name, blocks);
      } else {
        const t = keep(
          half && LINEAR.test(name) ? Tensor.fromArray(data, shape, { dtype: "f16" }) : Tensor.fromArray(data, shape),
        );
        all.push(t);
        if (VOCAB_WEIGHTS.includes(name)) vocab.set(name, t);
        else params.set(name, t);
      }
    }
    // Surface an out-of-memory from the uploads here, with the sizes, rather than at the first step.
    await sync();
  } catch (e) {
    for (const t of all) t.dispose();
    if (e instanceof Error && /out of memory|OutOfMemory|allocation/i.test(e.message)) {
      throw new Error(`${source.name}: ${oomMessage(expected)} (${e.message})`, { cause: e });
    }
    throw e;
  }
  const model = new LlamaForCausalLM(cfg, params, { embed_tokens: vocab.get(VOCAB_WEIGHTS[0])!, lm_head: vocab.get(VOCAB_WEIGHTS[1]) });
  model.name_or_path = source.name;
  model.source = source;
  if (await source.exists("generation_config.json")) model.generation_config = await source.json("generation_config.json");
  return model;
}

/** The decoder's linear weights: what dtype "float16" stores as f16. */
const LINEAR = /^model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight$/;

/** The [V, C] weights, stored as row blocks when one buffer binding cannot hold them. */
const VOCAB_WEIGHTS = ["model.embed_tokens.weight", "lm_head.weight"];

function totalBytes(expected: [string, number[]][]): number {
  return expected.reduce((s, [, shape]) => s + 4 * shape.reduce((a, b) => a * b, 1), 0);
}

function oomMessage(expected: [string, number[]][]): string {
  const l = deviceInfo().limits;
  return `the weights need ${MiB(totalBytes(expected))} of GPU memory in f32, more than this adapter could allocate (maxBufferSize ${MiB(l.maxBufferSize)}); use a smaller model`;
}

/** The most bytes one tensor may have: the adapter's binding limit (or a smaller one asked for). */
function bindingLimit(asked?: number): number {
  const l = deviceInfo().limits;
  const limit = Math.min(l.maxStorageBufferBindingSize, l.maxBufferSize);
  return asked ? Math.min(asked, limit) : limit;
}

/** Every tensor but the vocabulary-sized ones (which are split) must fit one buffer binding. */
function checkFits(cfg: LlamaFamilyConfig, expected: [string, number[]][], where: string, limit: number): void {
  const l = deviceInfo().limits;
  const big = expected.filter(([n, s]) => !VOCAB_WEIGHTS.includes(n) && 4 * s.reduce((a, b) => a * b, 1) > limit);
  if (big.length) {
    const [name, shape] = big[0]!;
    const bytes = 4 * shape.reduce((a, b) => a * b, 1);
    throw new Error(
      `${where}: ${cfg.architecture} tensor "${name}" [${shape.join(", ")}] needs ${MiB(bytes)} in f32, but this adapter binds at most ${MiB(limit)} ` +
        `(maxStorageBufferBindingSize ${MiB(l.maxStorageBufferBindingSize)}, maxBufferSize ${MiB(l.maxBufferSize)}); the whole model needs ${MiB(totalBytes(expected))}. ` +
        `Use a smaller model, or an adapter with higher limits.`,
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
    if (dtype !== "auto" && dtype !== "float32" && dtype !== "float16") {
      throw new Error(`from_pretrained: dtype "${String(dtype)}" is not supported; use "float32", "float16" (f16 storage of the frozen linear weights) or "auto"`);
    }
    await getDevice(options.device && options.device !== "webgpu" ? { device: options.device } : {});
    if (dtype === "float16" && !deviceInfo().features.shader_f16) {
      throw new Error(`from_pretrained: dtype "float16" needs the adapter's shader-f16 feature, which ${deviceInfo().adapter.description || "this adapter"} lacks; use dtype "float32"`);
    }
    return loadCausalLM(await openSource(location, options), options);
  },
};
