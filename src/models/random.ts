// Hugging Face model files with seeded random weights, and PEFT LoRA adapters for them, made in memory on any
// host (browser, Deno, Node): the embedded tiny model (src/models/tiny.ts), and the models the loader,
// trainer and benchmark tests run on (tools/make-model.ts writes them to disk, streaming big ones), which
// tools/fixtures/models.py loads with transformers + peft to write the reference outputs.
//
// randomModel(options) lays out config.json, generation_config.json, model.safetensors (or, with
// `shards: n`, model-0000i-of-0000n.safetensors + model.safetensors.index.json, as transformers writes
// them) and the fixture tokenizer's files (src/data/bpe.ts); each file's bytes come chunk by chunk, so a
// real-size model (smollm2-135m) can be streamed without a big buffer. randomModelFiles(options) holds them
// all in memory. randomAdapter(options) makes adapter_config.json + adapter_model.safetensors of a PEFT LoRA
// adapter for such a model, with a nonzero random B (PEFT initialises B to 0; here gradients of A are then
// non-trivial).
//
// Every value is a pure function of (seed, tensor name, element index): a xoshiro128** stream per tensor
// seeded from the seed and the name, integer arithmetic and + - * / only (no Math.log/sin), so the same
// seed gives the same bytes on every host, whatever the dtype rounding, sharding or tensor order.
import { makeTokenizerFiles } from "../data/bpe.ts";
import { f32ToF16 } from "../tensor/half.ts";
import { f32ToBF16, SAFETENSORS_DTYPE_BYTES, writeSafetensors, type SafetensorsDType } from "./safetensors.ts";

export { f32ToBF16 };

export type Arch = "llama" | "llama3" | "qwen2" | "qwen3" | "mistral" | "smollm2-135m";
export const ARCHS: readonly Arch[] = ["llama", "llama3", "qwen2", "qwen3", "mistral", "smollm2-135m"];
/** The tiny presets (hidden 32, 2 layers, vocab 400), whose token ids match the fixture tokenizer. */
export const TINY_ARCHS: readonly Arch[] = ["llama", "llama3", "qwen2", "qwen3", "mistral"];

/** Storage dtype of the weights (config.json's torch_dtype). */
export type StorageDType = "float32" | "float16" | "bfloat16";
const SAFETENSORS_DTYPE: Record<StorageDType, SafetensorsDType> = { float32: "F32", float16: "F16", bfloat16: "BF16" };

export type ModelConfig = Record<string, unknown>;

export interface RandomModelOptions {
  /** The preset (default "llama"). */
  arch?: Arch;
  /** Keys merged into the preset's config.json (a key set to undefined is removed). */
  config?: ModelConfig;
  /** u32 seed of the weights (default 0). */
  seed?: number;
  /** Storage dtype (default "float32"). */
  dtype?: StorageDType;
  /** Number of safetensors shards (default 1: a single model.safetensors). */
  shards?: number;
  /** Include the fixture tokenizer's files (default true). */
  tokenizer?: boolean;
}

/** One file of a random model: its size and a fresh iterator over its bytes (the chunks are only valid until the next one). */
export interface RandomModelFile {
  /** The path relative to the model directory. */
  name: string;
  size: number;
  chunks(): Iterable<Uint8Array>;
}

export interface RandomModel {
  config: ModelConfig;
  /** Every file, in the order written (config.json, generation_config.json, weights, index, tokenizer). */
  files: RandomModelFile[];
  /** The tensors, in file order (sorted by name). */
  tensors: TensorSpec[];
}

export interface TensorSpec {
  name: string;
  shape: number[];
  /** How the values are drawn: see tensorValues. */
  init: "linear" | "embedding" | "norm" | "bias";
  /** fan_in of a linear weight (its bound is 1.5 / sqrt(fan_in)). */
  fanIn?: number;
}

// ---------------------------------------------------------------------------------------------------------
// Presets: the keys of the real Hub configs (legacy rope_theta / rope_scaling / torch_dtype spelling, which
// is what most Hub checkpoints have and transformers 5 still reads).

/** The fixture tokenizer's special token ids (bos <|endoftext|>, eos <|im_end|>, pad <|endoftext|>). */
export function fixtureTokenIds(): { bos: number; eos: number; pad: number } {
  const files = makeTokenizerFiles();
  const tok = JSON.parse(files["tokenizer.json"]!) as { added_tokens: { id: number; content: string }[]; model: { vocab: Record<string, number> } };
  const cfg = JSON.parse(files["tokenizer_config.json"]!) as { eos_token?: string | null; pad_token?: string | null };
  const id = (content: string): number => {
    const t = tok.added_tokens.find((a) => a.content === content);
    const v = t?.id ?? tok.model.vocab[content];
    if (v === undefined) throw new Error(`fixture tokenizer has no token ${content}`);
    return v;
  };
  return { bos: id("<|endoftext|>"), eos: id(cfg.eos_token ?? "<|im_end|>"), pad: id(cfg.pad_token ?? "<|endoftext|>") };
}

const TINY = {
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 400,
  max_position_embeddings: 256,
  rms_norm_eps: 1e-6,
};

/** config.json of a preset, before the options' overrides and torch_dtype. */
export function presetConfig(arch: Arch): ModelConfig {
  if (arch === "smollm2-135m") {
    return {
      architectures: ["LlamaForCausalLM"],
      attention_bias: false,
      attention_dropout: 0.0,
      bos_token_id: 0,
      eos_token_id: 0,
      hidden_act: "silu",
      hidden_size: 576,
      initializer_range: 0.041666666666666664,
      intermediate_size: 1536,
      is_llama_config: true,
      max_position_embeddings: 8192,
      mlp_bias: false,
      model_type: "llama",
      num_attention_heads: 9,
      num_hidden_layers: 30,
      num_key_value_heads: 3,
      pretraining_tp: 1,
      rms_norm_eps: 1e-5,
      rope_interleaved: false,
      rope_scaling: null,
      rope_theta: 100000,
      tie_word_embeddings: true,
      transformers_version: "4.42.3",
      use_cache: true,
      vocab_size: 49152,
    };
  }
  const ids = fixtureTokenIds();
  const tokens = { bos_token_id: ids.bos, eos_token_id: ids.eos, pad_token_id: ids.pad };
  switch (arch) {
    case "llama":
      return {
        architectures: ["LlamaForCausalLM"],
        attention_bias: false,
        attention_dropout: 0.0,
        ...tokens,
        hidden_act: "silu",
        initializer_range: 0.02,
        mlp_bias: false,
        model_type: "llama",
        pretraining_tp: 1,
        rope_scaling: null,
        rope_theta: 10000.0,
        tie_word_embeddings: true,
        transformers_version: "4.46.0",
        use_cache: true,
        ...TINY,
      };
    case "llama3":
      return {
        architectures: ["LlamaForCausalLM"],
        attention_bias: false,
        attention_dropout: 0.0,
        ...tokens,
        head_dim: 8,
        hidden_act: "silu",
        initializer_range: 0.02,
        mlp_bias: false,
        model_type: "llama",
        pretraining_tp: 1,
        rope_scaling: { factor: 8.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 64, rope_type: "llama3" },
        rope_theta: 500000.0,
        tie_word_embeddings: false,
        transformers_version: "4.46.0",
        use_cache: true,
        ...TINY,
      };
    case "qwen2":
      // No attention_bias key: Qwen2's q/k/v always have biases (as in the real Qwen2 / Qwen2.5 configs).
      return {
        architectures: ["Qwen2ForCausalLM"],
        attention_dropout: 0.0,
        ...tokens,
        hidden_act: "silu",
        initializer_range: 0.02,
        max_window_layers: 2,
        model_type: "qwen2",
        rope_theta: 1000000.0,
        sliding_window: 256,
        tie_word_embeddings: true,
        transformers_version: "4.46.0",
        use_cache: true,
        use_sliding_window: false,
        ...TINY,
      };
    case "qwen3":
      return {
        architectures: ["Qwen3ForCausalLM"],
        attention_bias: false,
        attention_dropout: 0.0,
        ...tokens,
        head_dim: 16,
        hidden_act: "silu",
        initializer_range: 0.02,
        max_window_layers: 2,
        model_type: "qwen3",
        rope_scaling: null,
        rope_theta: 1000000,
        sliding_window: null,
        tie_word_embeddings: true,
        transformers_version: "4.51.0",
        use_cache: true,
        use_sliding_window: false,
        ...TINY,
      };
    case "mistral":
      return {
        architectures: ["MistralForCausalLM"],
        attention_dropout: 0.0,
        ...tokens,
        hidden_act: "silu",
        initializer_range: 0.02,
        model_type: "mistral",
        rope_theta: 1000000.0,
        sliding_window: null,
        tie_word_embeddings: false,
        transformers_version: "4.46.0",
        use_cache: true,
        ...TINY,
      };
  }
  throw new Error(`makeModel: unknown arch "${arch as string}" (one of ${ARCHS.join(", ")})`);
}

export function sortKeys(o: unknown): unknown {
  if (Array.isArray(o)) return o.map(sortKeys);
  if (o && typeof o === "object") {
    return Object.fromEntries(
      Object.keys(o)
        .sort()
        .map((k) => [k, sortKeys((o as Record<string, unknown>)[k])]),
    );
  }
  return o;
}

/** JSON as transformers and PEFT write it: sorted keys, indent 2, a final newline. */
export function jsonText(o: unknown): string {
  return JSON.stringify(sortKeys(o), null, 2) + "\n";
}

function num(config: ModelConfig, key: string): number {
  const v = config[key];
  if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) throw new Error(`makeModel: config.${key} must be a positive integer (got ${JSON.stringify(v)})`);
  return v;
}

/** The model's sizes as the modeling code derives them from config.json. */
export function modelDims(config: ModelConfig) {
  const hidden = num(config, "hidden_size");
  const heads = num(config, "num_attention_heads");
  const kvHeads = config.num_key_value_heads == null ? heads : num(config, "num_key_value_heads");
  const headDim = config.head_dim == null ? hidden / heads : num(config, "head_dim");
  if (!Number.isInteger(headDim)) throw new Error(`makeModel: hidden_size ${hidden} is not a multiple of num_attention_heads ${heads}`);
  return {
    hidden,
    intermediate: num(config, "intermediate_size"),
    layers: num(config, "num_hidden_layers"),
    heads,
    kvHeads,
    headDim,
    vocab: num(config, "vocab_size"),
    tied: config.tie_word_embeddings === true,
    modelType: String(config.model_type),
  };
}

/**
 * The tensors of the model's state dict (transformers' names), in module order: embed_tokens, each layer,
 * norm, lm_head (absent when tied). Qwen2 has q/k/v biases; Llama has biases where attention_bias /
 * mlp_bias say; Qwen3 has q_norm / k_norm [head_dim].
 */
export function modelTensors(config: ModelConfig): TensorSpec[] {
  const d = modelDims(config);
  const qOut = d.heads * d.headDim;
  const kvOut = d.kvHeads * d.headDim;
  const attnBias = d.modelType === "qwen2" || config.attention_bias === true;
  const oBias = d.modelType !== "qwen2" && config.attention_bias === true;
  const mlpBias = config.mlp_bias === true;
  const out: TensorSpec[] = [{ name: "model.embed_tokens.weight", shape: [d.vocab, d.hidden], init: "embedding" }];
  const linear = (name: string, outF: number, inF: number, bias: boolean) => {
    out.push({ name: `${name}.weight`, shape: [outF, inF], init: "linear", fanIn: inF });
    if (bias) out.push({ name: `${name}.bias`, shape: [outF], init: "bias" });
  };
  for (let i = 0; i < d.layers; i++) {
    const p = `model.layers.${i}`;
    out.push({ name: `${p}.input_layernorm.weight`, shape: [d.hidden], init: "norm" });
    linear(`${p}.self_attn.q_proj`, qOut, d.hidden, attnBias);
    linear(`${p}.self_attn.k_proj`, kvOut, d.hidden, attnBias);
    linear(`${p}.self_attn.v_proj`, kvOut, d.hidden, attnBias);
    linear(`${p}.self_attn.o_proj`, d.hidden, qOut, oBias);
    if (d.modelType === "qwen3") {
      out.push({ name: `${p}.self_attn.q_norm.weight`, shape: [d.headDim], init: "norm" });
      out.push({ name: `${p}.self_attn.k_norm.weight`, shape: [d.headDim], init: "norm" });
    }
    out.push({ name: `${p}.post_attention_layernorm.weight`, shape: [d.hidden], init: "norm" });
    linear(`${p}.mlp.gate_proj`, d.intermediate, d.hidden, mlpBias);
    linear(`${p}.mlp.up_proj`, d.intermediate, d.hidden, mlpBias);
    linear(`${p}.mlp.down_proj`, d.hidden, d.intermediate, mlpBias);
  }
  out.push({ name: "model.norm.weight", shape: [d.hidden], init: "norm" });
  if (!d.tied) out.push({ name: "lm_head.weight", shape: [d.vocab, d.hidden], init: "linear", fanIn: d.hidden });
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// The random stream.

/** FNV-1a of the UTF-8 bytes of `s`, continued from `h`. */
function fnv1a(s: string, h = 0x811c9dc5): number {
  for (const b of new TextEncoder().encode(s)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h;
}

function splitmix32(x: number): number {
  x = (x + 0x9e3779b9) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0;
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

/** xoshiro128** over 32-bit words, seeded from (seed, stream name). */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number, stream: string) {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new Error(`seed must be a u32 (got ${seed})`);
    let x = fnv1a(stream, splitmix32(seed));
    this.s0 = x = splitmix32(x);
    this.s1 = x = splitmix32(x);
    this.s2 = x = splitmix32(x);
    this.s3 = x = splitmix32(x);
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** The next u32. */
  next(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 = (this.s2 ^ this.s0) >>> 0;
    this.s3 = (this.s3 ^ this.s1) >>> 0;
    this.s1 = (this.s1 ^ this.s2) >>> 0;
    this.s0 = (this.s0 ^ this.s3) >>> 0;
    this.s2 = (this.s2 ^ t) >>> 0;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [-1, 1), in steps of 2^-31 (exact in float64). */
  symmetric(): number {
    return this.next() / 2147483648 - 1;
  }

  /** Mean 0, variance 1: the sum of four uniforms (Irwin–Hall), scaled; bounded by ±2√3. */
  normal(): number {
    return (this.symmetric() + this.symmetric() + this.symmetric() + this.symmetric()) * 0.8660254037844386;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/**
 * Fills `out` with elements [start, start + out.length) of the tensor's values, given a stream already
 * advanced to `start` (tensorValues does it all at once):
 *   linear weight: uniform(±1.5/sqrt(fan_in)); embedding: 0.5·N(0,1); norm weight: 1 + 0.1·N(0,1);
 *   bias: 0.1·N(0,1) — each rounded to float32.
 */
function fill(rng: Rng, spec: TensorSpec, out: Float32Array): void {
  switch (spec.init) {
    case "linear": {
      const bound = 1.5 / Math.sqrt(spec.fanIn ?? 1);
      for (let i = 0; i < out.length; i++) out[i] = rng.symmetric() * bound;
      return;
    }
    case "embedding":
      for (let i = 0; i < out.length; i++) out[i] = 0.5 * rng.normal();
      return;
    case "norm":
      for (let i = 0; i < out.length; i++) out[i] = 1 + 0.1 * rng.normal();
      return;
    case "bias":
      for (let i = 0; i < out.length; i++) out[i] = 0.1 * rng.normal();
      return;
  }
}

/** The float32 values of one tensor of a model made with `seed` (before the storage dtype's rounding). */
export function tensorValues(seed: number, spec: TensorSpec): Float32Array {
  const out = new Float32Array(spec.shape.reduce((a, b) => a * b, 1));
  fill(new Rng(seed, spec.name), spec, out);
  return out;
}

function encode(values: Float32Array, dtype: SafetensorsDType): Uint8Array {
  const words = dtype === "F32" ? values : dtype === "F16" ? f32ToF16(values) : f32ToBF16(values);
  return new Uint8Array(words.buffer, words.byteOffset, words.byteLength);
}

/** Elements generated at a time (4 MiB of float32). */
const CHUNK = 1 << 20;

function elements(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** A safetensors header (8-byte length + JSON padded with spaces to a multiple of 8), as writeSafetensors lays it out. */
function safetensorsHeader(specs: TensorSpec[], dtype: SafetensorsDType, metadata: Record<string, string>): { head: Uint8Array; dataBytes: number } {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const s of specs) {
    const bytes = elements(s.shape) * SAFETENSORS_DTYPE_BYTES[dtype];
    header[s.name] = { dtype, shape: s.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const raw = new TextEncoder().encode(JSON.stringify(header));
  const padded = raw.length + ((8 - (raw.length % 8)) % 8);
  const head = new Uint8Array(8 + padded).fill(0x20, 8);
  new DataView(head.buffer).setBigUint64(0, BigInt(padded), true);
  head.set(raw, 8);
  return { head, dataBytes: offset };
}

/** One safetensors file of `specs` (in that order) and its bytes: the header, then each tensor chunk by chunk. */
function safetensorsFile(name: string, specs: TensorSpec[], seed: number, dtype: SafetensorsDType): RandomModelFile {
  const { head, dataBytes } = safetensorsHeader(specs, dtype, { format: "pt" });
  return {
    name,
    size: head.length + dataBytes,
    *chunks() {
      yield head;
      for (const s of specs) {
        const rng = new Rng(seed, s.name);
        const n = elements(s.shape);
        const buf = new Float32Array(Math.min(n, CHUNK));
        for (let at = 0; at < n; at += CHUNK) {
          const chunk = buf.subarray(0, Math.min(CHUNK, n - at));
          fill(rng, s, chunk);
          yield encode(chunk, dtype);
        }
      }
    },
  };
}

function textFile(name: string, text: string): RandomModelFile {
  const bytes = new TextEncoder().encode(text);
  return { name, size: bytes.length, chunks: () => [bytes] };
}

/** Splits the tensors (module order) into `n` non-empty contiguous groups of about equal bytes. */
function splitShards(specs: TensorSpec[], n: number): TensorSpec[][] {
  if (!Number.isInteger(n) || n < 1) throw new Error(`makeModel: shards must be a positive integer (got ${n})`);
  if (n > specs.length) throw new Error(`makeModel: ${n} shards for ${specs.length} tensors`);
  const sizes = specs.map((s) => elements(s.shape));
  const total = sizes.reduce((a, b) => a + b, 0);
  const groups: TensorSpec[][] = Array.from({ length: n }, () => []);
  let cum = 0;
  let prev = 0;
  specs.forEach((s, i) => {
    const want = Math.floor(((cum + sizes[i]! / 2) * n) / total);
    const shard = Math.min(n - 1, Math.max(prev, n - (specs.length - i), Math.min(want, i === 0 ? 0 : prev + 1)));
    groups[shard]!.push(s);
    prev = shard;
    cum += sizes[i]!;
  });
  return groups;
}

function byName(a: TensorSpec, b: TensorSpec): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** The resolved config.json of randomModel(options) (and makeModel). */
export function modelConfig(options: RandomModelOptions = {}): ModelConfig {
  const dtype = options.dtype ?? "float32";
  if (!(dtype in SAFETENSORS_DTYPE)) throw new Error(`makeModel: dtype must be float32, float16 or bfloat16 (got ${dtype})`);
  const config: ModelConfig = { ...presetConfig(options.arch ?? "llama"), torch_dtype: dtype, ...(options.config ?? {}) };
  for (const k of Object.keys(config)) if (config[k] === undefined) delete config[k];
  return sortKeys(config) as ModelConfig;
}

/** generation_config.json of a model with `config`: transformers' _from_model_config copy of the token ids. */
export function generationConfig(config: ModelConfig): ModelConfig {
  const gen: ModelConfig = { _from_model_config: true, transformers_version: config.transformers_version };
  for (const k of ["bos_token_id", "eos_token_id", "pad_token_id"]) if (config[k] != null) gen[k] = config[k];
  return gen;
}

/** The files of a Hugging Face model directory with seeded random weights (see the header); nothing is generated until read. */
export function randomModel(options: RandomModelOptions = {}): RandomModel {
  const seed = options.seed ?? 0;
  const config = modelConfig(options);
  const dtype = SAFETENSORS_DTYPE[config.torch_dtype as StorageDType] ?? SAFETENSORS_DTYPE[options.dtype ?? "float32"];
  const specs = modelTensors(config);
  new Rng(seed, ""); // validates the seed before anything is made
  const files: RandomModelFile[] = [textFile("config.json", jsonText(config)), textFile("generation_config.json", jsonText(generationConfig(config)))];

  const shards = options.shards ?? 1;
  if (shards === 1) {
    files.push(safetensorsFile("model.safetensors", [...specs].sort(byName), seed, dtype));
  } else {
    const groups = splitShards(specs, shards);
    const weightMap: Record<string, string> = {};
    let totalSize = 0;
    let totalParams = 0;
    for (let i = 0; i < groups.length; i++) {
      const file = `model-${String(i + 1).padStart(5, "0")}-of-${String(shards).padStart(5, "0")}.safetensors`;
      files.push(safetensorsFile(file, [...groups[i]!].sort(byName), seed, dtype));
      for (const s of groups[i]!) {
        weightMap[s.name] = file;
        totalParams += elements(s.shape);
        totalSize += elements(s.shape) * SAFETENSORS_DTYPE_BYTES[dtype];
      }
    }
    files.push(textFile("model.safetensors.index.json", jsonText({ metadata: { total_parameters: totalParams, total_size: totalSize }, weight_map: weightMap })));
  }

  if (options.tokenizer ?? true) {
    for (const [name, text] of Object.entries(makeTokenizerFiles())) files.push(textFile(name, text));
  }
  return { config, files, tensors: [...specs].sort(byName) };
}

/** Every file of randomModel(options), in memory (name → bytes). */
export function randomModelFiles(options: RandomModelOptions = {}): Record<string, Uint8Array> {
  return Object.fromEntries(randomModel(options).files.map((f) => [f.name, fileBytes(f)]));
}

/** The bytes of one file of a random model, in one buffer. */
export function fileBytes(file: RandomModelFile): Uint8Array {
  const out = new Uint8Array(file.size);
  let at = 0;
  for (const chunk of file.chunks()) {
    out.set(chunk, at);
    at += chunk.length;
  }
  if (at !== file.size) throw new Error(`${file.name}: ${at} bytes made for ${file.size} announced`);
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// LoRA adapters.

export const ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] as const;

export interface RandomAdapterOptions {
  /** The model's config.json. */
  model: ModelConfig;
  /** u32 seed of A and B (default 1). */
  seed?: number;
  /** LoRA rank (default 4). */
  r?: number;
  /** lora_alpha (default 2·r). */
  alpha?: number;
  /** "all-linear" (q, k, v, o, gate, up, down; default) or module names. */
  targets?: "all-linear" | readonly string[];
  /** lora_dropout (default 0). */
  dropout?: number;
  /** use_rslora (default false). */
  rslora?: boolean;
  /** base_model_name_or_path (default null). */
  base_model_name_or_path?: string | null;
}

export interface RandomAdapter {
  /** adapter_config.json, as an object. */
  config: Record<string, unknown>;
  /** The adapter's tensors (file names), sorted. */
  tensors: { name: string; shape: number[] }[];
  /** adapter_config.json and adapter_model.safetensors. */
  files: Record<string, Uint8Array>;
}

/** adapter_config.json as PEFT 0.21 saves a LoraConfig (inference_mode true, as save_pretrained writes it). */
export function adapterConfig(options: Omit<RandomAdapterOptions, "model" | "seed">): Record<string, unknown> {
  const r = options.r ?? 4;
  return sortKeys({
    alora_invocation_tokens: null,
    alpha_pattern: {},
    arrow_config: null,
    auto_mapping: null,
    base_model_name_or_path: options.base_model_name_or_path ?? null,
    bias: "none",
    corda_config: null,
    ensure_weight_tying: false,
    eva_config: null,
    exclude_modules: null,
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    kasa_config: null,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: null,
    loftq_config: {},
    lora_alpha: options.alpha ?? 2 * r,
    lora_bias: false,
    lora_dropout: options.dropout ?? 0.0,
    lora_ga_config: null,
    megatron_config: null,
    megatron_core: "megatron.core",
    modules_to_save: null,
    monteclora_config: null,
    peft_type: "LORA",
    peft_version: "0.21.0",
    qalora_group_size: 16,
    r,
    rank_pattern: {},
    revision: null,
    target_modules: targetModules(options.targets),
    target_parameters: null,
    task_type: "CAUSAL_LM",
    trainable_token_indices: null,
    use_bdlora: null,
    use_dora: false,
    use_qalora: false,
    use_rslora: options.rslora ?? false,
    velora_config: null,
  }) as Record<string, unknown>;
}

function targetModules(targets: RandomAdapterOptions["targets"]): string[] {
  const list = targets === undefined || targets === "all-linear" ? [...ALL_LINEAR] : [...targets];
  for (const t of list) if (!(ALL_LINEAR as readonly string[]).includes(t)) throw new Error(`makeAdapter: unknown target module "${t}" (one of ${ALL_LINEAR.join(", ")})`);
  return [...new Set(list)].sort();
}

/**
 * A PEFT LoRA adapter for a model of config `options.model`: adapter_config.json and
 * adapter_model.safetensors ({"format": "pt"}, F32) with base_model.model.<module>.lora_A.weight [r, in]
 * ~ uniform(±1/sqrt(in)) (PEFT's kaiming-uniform bound) and lora_B.weight [out, r] ~ uniform(±0.5/sqrt(r)).
 */
export function randomAdapter(options: RandomAdapterOptions): RandomAdapter {
  const seed = options.seed ?? 1;
  new Rng(seed, "");
  const r = options.r ?? 4;
  if (!Number.isInteger(r) || r < 1) throw new Error(`makeAdapter: r must be a positive integer (got ${r})`);
  const config = adapterConfig(options);
  const targets = config.target_modules as string[];
  const d = modelDims(options.model);
  const shapes: Record<string, [number, number, string]> = {
    q_proj: [d.heads * d.headDim, d.hidden, "self_attn"],
    k_proj: [d.kvHeads * d.headDim, d.hidden, "self_attn"],
    v_proj: [d.kvHeads * d.headDim, d.hidden, "self_attn"],
    o_proj: [d.hidden, d.heads * d.headDim, "self_attn"],
    gate_proj: [d.intermediate, d.hidden, "mlp"],
    up_proj: [d.intermediate, d.hidden, "mlp"],
    down_proj: [d.hidden, d.intermediate, "mlp"],
  };
  const entries: { name: string; shape: number[]; bound: number }[] = [];
  for (let i = 0; i < d.layers; i++) {
    for (const t of targets) {
      const [outF, inF, block] = shapes[t]!;
      const p = `base_model.model.model.layers.${i}.${block}.${t}`;
      entries.push({ name: `${p}.lora_A.weight`, shape: [r, inF], bound: 1 / Math.sqrt(inF) });
      entries.push({ name: `${p}.lora_B.weight`, shape: [outF, r], bound: 0.5 / Math.sqrt(r) });
    }
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
  for (const e of entries) {
    const rng = new Rng(seed, e.name);
    const data = new Float32Array(elements(e.shape));
    for (let k = 0; k < data.length; k++) data[k] = rng.symmetric() * e.bound;
    tensors[e.name] = { dtype: "F32", shape: e.shape, data };
  }
  return {
    config,
    tensors: entries.map(({ name, shape }) => ({ name, shape })),
    files: {
      "adapter_config.json": new TextEncoder().encode(jsonText(config)),
      "adapter_model.safetensors": writeSafetensors(tensors, { format: "pt" }),
    },
  };
}
