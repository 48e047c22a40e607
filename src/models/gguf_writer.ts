// Writing GGUF (v3, little-endian), byte for byte as the `gguf` Python package's GGUFWriter writes it, and
// llama.cpp LoRA adapters in it as llama.cpp's convert_lora_to_gguf.py writes them (`llama-cli --lora`,
// Ollama's ADAPTER).
//
// The file (gguf-py 0.19, GGUFWriter.write_header_to_file / write_kv_data_to_file / write_tensors_to_file):
//   u32 magic "GGUF" (0x46554747) · u32 version 3 · u64 n_tensors · u64 n_kv
//   n_kv × { string key · u32 value type · value }     string = u64 byte length + UTF-8 bytes;
//                                                      array = u32 item type + u64 count + items
//   n_tensors × { string name · u32 n_dims · u64 ne[n_dims] (numpy shape reversed: ne[0] is the row length)
//                 · u32 ggml type · u64 offset into the data section (each tensor's bytes padded to the
//                 alignment, so offsets are multiples of it) }
//   zero padding to the alignment (32, or general.alignment when set), then each tensor's bytes + zero
//   padding to the alignment (the last one too).
// Keys keep the order they were first added in (adding a key again overwrites its value in place, as the
// Python dict does); general.architecture is always the first (GGUFWriter's constructor adds it).
//
// A LoRA adapter (loraGGUF) is, as convert_lora_to_gguf.py writes it with its default --outtype f32:
//   general.architecture (llama.cpp's name of the base: llama, qwen2, qwen3, gemma2, gemma3, phi3, smollm3),
//   general.type = "adapter", adapter.type = "lora", general.name (when given), adapter.lora.alpha (f32),
//   general.quantization_version = 2; then for each adapted linear, in the order of the PEFT names sorted
//   (the order safetensors' load_file hands them over), blk.N.<llama.cpp name>.weight.lora_a [r, in] and
//   .lora_b [out, r] (numpy order; ne reversed), F32 (convert_hf_to_gguf keeps tensors whose names do not
//   end in ".weight" in F32 whatever the outtype).
// Names are llama.cpp's (gguf-py's TENSOR_MAPPINGS): q_proj → attn_q, k_proj → attn_k, v_proj → attn_v,
// o_proj → attn_output, qkv_proj → attn_qkv (Phi-3), gate_proj → ffn_gate, up_proj → ffn_up, down_proj →
// ffn_down, gate_up_proj → ffn_up (Phi-3's fused gate/up; llama.cpp splits it at run time).
// For the architectures convert_hf_to_gguf converts with LlamaModel (Llama, Mistral, SmolLM3: undo_permute),
// the base's q_proj/k_proj rows are permuted from Hugging Face's half-split RoPE layout to llama.cpp's
// interleaved one (LlamaModel.permute: reshape [heads, 2, head_dim/2, in], swap axes 1 and 2); a LoRA
// delta B·A must follow its base, and LoraTorchTensor applies that row permutation to lora_b (lora_a is
// untouched). k_proj uses num_key_value_heads.
// Scale: llama.cpp computes scale = adapter.lora.alpha / r (r from the tensors), which is PEFT's
// lora_alpha / r. With use_rslora PEFT scales by lora_alpha / sqrt(r); convert_lora_to_gguf.py ignores
// use_rslora (a wrong scale), so here adapter.lora.alpha = lora_alpha · sqrt(r), which makes llama.cpp's
// alpha / r equal PEFT's scale.
// What llama.cpp's adapter format cannot hold is an error: DoRA (use_dora), modules_to_save, per-module
// rank_pattern/alpha_pattern, LoRA on embeddings or the LM head (webtune does not make those).
import { f32ToF16 } from "../tensor/half.ts";
import { rowBytes, type PackedFormat } from "../tensor/quant.ts";
import { bytesToF32, parseSafetensorsHeader } from "./safetensors.ts";
import { GGUF_DEFAULT_ALIGNMENT, llamaCppModuleName } from "./gguf.ts";

export const GGUF_MAGIC = 0x46554747;
export const GGUF_VERSION = 3;

/** gguf-py's GGUFValueType. */
export const GGUFValueType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;
export type GGUFValueType = (typeof GGUFValueType)[keyof typeof GGUFValueType];

/**
 * The ggml tensor types this writer writes (GGMLQuantizationType's values): F32 and F16 from values, the block
 * formats (Q4_0 … Q6_K, BF16) from their packed bytes in ggml's block layouts (block_q4_0 … block_q6_K), as
 * src/tensor/quant.ts's quantize() makes them and models/gguf.ts reads them.
 */
export const GGMLType = { F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q5_0: 6, Q5_1: 7, Q8_0: 8, Q4_K: 12, Q5_K: 13, Q6_K: 14, BF16: 30 } as const;
export type GGMLTypeName = keyof typeof GGMLType;

/** The block types' formats in src/tensor/quant.ts (F32 / F16 are written from values). */
export const GGML_BLOCK_FORMATS: Readonly<Partial<Record<GGMLTypeName, PackedFormat>>> = {
  Q4_0: "q4_0", Q4_1: "q4_1", Q5_0: "q5_0", Q5_1: "q5_1", Q8_0: "q8_0", Q4_K: "q4_k", Q5_K: "q5_k", Q6_K: "q6_k", BF16: "bf16",
};

export type GGUFScalar = number | bigint | boolean | string;
export type GGUFValue = GGUFScalar | readonly GGUFScalar[];

interface KV {
  value: GGUFValue;
  type: GGUFValueType;
  sub_type?: GGUFValueType;
}

interface TensorEntry {
  /** numpy order (row-major, last dimension contiguous). */
  shape: number[];
  type: GGMLTypeName;
  bytes: Uint8Array;
}

/** Growable little-endian byte buffer. */
class Bytes {
  private buf = new Uint8Array(256);
  private view = new DataView(this.buf.buffer);
  length = 0;
  private need(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.length + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v: number): void { this.need(1); this.view.setUint8(this.length, v); this.length += 1; }
  i8(v: number): void { this.need(1); this.view.setInt8(this.length, v); this.length += 1; }
  u16(v: number): void { this.need(2); this.view.setUint16(this.length, v, true); this.length += 2; }
  i16(v: number): void { this.need(2); this.view.setInt16(this.length, v, true); this.length += 2; }
  u32(v: number): void { this.need(4); this.view.setUint32(this.length, v, true); this.length += 4; }
  i32(v: number): void { this.need(4); this.view.setInt32(this.length, v, true); this.length += 4; }
  f32(v: number): void { this.need(4); this.view.setFloat32(this.length, v, true); this.length += 4; }
  f64(v: number): void { this.need(8); this.view.setFloat64(this.length, v, true); this.length += 8; }
  u64(v: number | bigint): void { this.need(8); this.view.setBigUint64(this.length, BigInt(v), true); this.length += 8; }
  i64(v: number | bigint): void { this.need(8); this.view.setBigInt64(this.length, BigInt(v), true); this.length += 8; }
  raw(b: Uint8Array): void { this.need(b.length); this.buf.set(b, this.length); this.length += b.length; }
  zeros(n: number): void { this.need(n); this.buf.fill(0, this.length, this.length + n); this.length += n; }
  bytes(): Uint8Array { return this.buf.slice(0, this.length); }
}

const utf8 = new TextEncoder();

function pad(x: number, n: number): number {
  return Math.ceil(x / n) * n;
}

/** GGUFValueType.get_type for an array item: str → STRING, bool → BOOL, integer → INT32, else FLOAT32. */
function itemType(v: GGUFScalar): GGUFValueType {
  if (typeof v === "string") return GGUFValueType.STRING;
  if (typeof v === "boolean") return GGUFValueType.BOOL;
  if (typeof v === "bigint" || Number.isInteger(v)) return GGUFValueType.INT32;
  return GGUFValueType.FLOAT32;
}

function packScalar(out: Bytes, v: GGUFScalar, type: GGUFValueType, key: string): void {
  const num = (): number => {
    if (typeof v !== "number") throw new Error(`GGUFWriter: ${key} needs a number for type ${type}, got ${typeof v}`);
    return v;
  };
  switch (type) {
    case GGUFValueType.UINT8: return out.u8(num());
    case GGUFValueType.INT8: return out.i8(num());
    case GGUFValueType.UINT16: return out.u16(num());
    case GGUFValueType.INT16: return out.i16(num());
    case GGUFValueType.UINT32: return out.u32(num());
    case GGUFValueType.INT32: return out.i32(num());
    case GGUFValueType.FLOAT32: return out.f32(num());
    case GGUFValueType.FLOAT64: return out.f64(num());
    case GGUFValueType.UINT64: return out.u64(typeof v === "bigint" ? v : num());
    case GGUFValueType.INT64: return out.i64(typeof v === "bigint" ? v : num());
    case GGUFValueType.BOOL: return out.u8(v ? 1 : 0);
    case GGUFValueType.STRING: {
      if (typeof v !== "string") throw new Error(`GGUFWriter: ${key} needs a string, got ${typeof v}`);
      const b = utf8.encode(v);
      out.u64(b.length);
      return out.raw(b);
    }
    default:
      throw new Error(`GGUFWriter: ${key}: value type ${type} is not a scalar type`);
  }
}

function checkInteger(key: string, v: number, lo: number, hi: number, what: string): void {
  if (!Number.isInteger(v) || v < lo || v > hi) throw new Error(`GGUFWriter: ${key} must be a ${what}, got ${v}`);
}

/**
 * gguf-py's GGUFWriter, in memory: add keys and tensors, then write() the whole file. Same byte layout as
 * the Python writer (little-endian, one file, no splits).
 */
export class GGUFWriter {
  readonly arch: string;
  data_alignment = GGUF_DEFAULT_ALIGNMENT;
  private kv = new Map<string, KV>();
  private tensors = new Map<string, TensorEntry>();

  constructor(arch: string) {
    this.arch = arch;
    this.add_architecture();
  }

  add_key_value(key: string, value: GGUFValue, type: GGUFValueType, sub_type?: GGUFValueType): void {
    this.kv.set(key, { value, type, sub_type });
  }

  add_uint8(key: string, v: number): void { checkInteger(key, v, 0, 0xff, "u8"); this.add_key_value(key, v, GGUFValueType.UINT8); }
  add_int8(key: string, v: number): void { checkInteger(key, v, -0x80, 0x7f, "i8"); this.add_key_value(key, v, GGUFValueType.INT8); }
  add_uint16(key: string, v: number): void { checkInteger(key, v, 0, 0xffff, "u16"); this.add_key_value(key, v, GGUFValueType.UINT16); }
  add_int16(key: string, v: number): void { checkInteger(key, v, -0x8000, 0x7fff, "i16"); this.add_key_value(key, v, GGUFValueType.INT16); }
  add_uint32(key: string, v: number): void { checkInteger(key, v, 0, 0xffffffff, "u32"); this.add_key_value(key, v, GGUFValueType.UINT32); }
  add_int32(key: string, v: number): void { checkInteger(key, v, -0x80000000, 0x7fffffff, "i32"); this.add_key_value(key, v, GGUFValueType.INT32); }
  add_uint64(key: string, v: number | bigint): void { this.add_key_value(key, v, GGUFValueType.UINT64); }
  add_int64(key: string, v: number | bigint): void { this.add_key_value(key, v, GGUFValueType.INT64); }
  add_float32(key: string, v: number): void { this.add_key_value(key, v, GGUFValueType.FLOAT32); }
  add_float64(key: string, v: number): void { this.add_key_value(key, v, GGUFValueType.FLOAT64); }
  add_bool(key: string, v: boolean): void { this.add_key_value(key, v, GGUFValueType.BOOL); }

  /** A string value; an empty string is not written (as GGUFWriter.add_string). */
  add_string(key: string, v: string): void {
    if (!v) return;
    this.add_key_value(key, v, GGUFValueType.STRING);
  }

  /**
   * An array; an empty one is not written (as GGUFWriter.add_array). The item type is `sub_type`, else
   * inferred as GGUFValueType.get_type does (strings, bools, integers as INT32, other numbers as FLOAT32),
   * and every item must have it.
   */
  add_array(key: string, values: readonly GGUFScalar[], sub_type?: GGUFValueType): void {
    if (values.length === 0) return;
    if (sub_type === undefined) {
      const t = itemType(values[0]!);
      if (!values.every((v) => itemType(v) === t)) throw new Error(`GGUFWriter: all items of the array ${key} must have the same type`);
    }
    this.add_key_value(key, values, GGUFValueType.ARRAY, sub_type);
  }

  add_architecture(): void { this.add_string("general.architecture", this.arch); }
  add_type(type: string): void { this.add_string("general.type", type); }
  add_name(name: string): void { this.add_string("general.name", name); }
  add_file_type(ftype: number): void { this.add_uint32("general.file_type", ftype); }
  add_quantization_version(v: number): void { this.add_uint32("general.quantization_version", v); }

  /** A data alignment other than 32 (a power of two), written as general.alignment (u32). */
  add_custom_alignment(alignment: number): void {
    if (!Number.isInteger(alignment) || alignment <= 0 || (alignment & (alignment - 1)) !== 0) {
      throw new Error(`GGUFWriter: invalid alignment ${alignment}: must be a non-zero power of two`);
    }
    this.data_alignment = alignment;
    this.add_uint32("general.alignment", alignment);
  }

  /**
   * A tensor of `shape` (numpy order, as GGUFWriter.add_tensor takes it; the file stores it reversed).
   * F32 data is written as is; F16 from a Float32Array is rounded to nearest even (numpy's astype), from a
   * Uint16Array taken as the half words. A block type (Q4_K, Q5_0, Q8_0, …) takes the packed bytes of the
   * whole tensor (quant.ts quantize(format, values, shape[last])): every row whole blocks, so exactly
   * rows × rowBytes bytes (gguf-py's add_tensor with raw_dtype, the byte shape turned back into elements).
   */
  add_tensor(name: string, data: Float32Array | Uint16Array | Uint8Array, shape: readonly number[], type: GGMLTypeName = data instanceof Uint16Array ? "F16" : "F32"): void {
    if (this.tensors.has(name)) throw new Error(`GGUFWriter: duplicated tensor name ${JSON.stringify(name)}`);
    if (!Object.hasOwn(GGMLType, type)) throw new Error(`GGUFWriter: tensor ${name}: unknown ggml type ${JSON.stringify(type)}; one of ${Object.keys(GGMLType).join(", ")}`);
    const n = shape.reduce((a, b) => a * b, 1);
    if (!shape.every((d) => Number.isInteger(d) && d >= 0)) throw new Error(`GGUFWriter: tensor ${name} has a bad shape [${shape.join(", ")}]`);
    const block = GGML_BLOCK_FORMATS[type];
    if (block) {
      if (!(data instanceof Uint8Array)) throw new Error(`GGUFWriter: tensor ${name}: ${type} data must be its packed bytes (a Uint8Array from quantize("${block}", values, rowLength))`);
      const K = shape.length ? shape[shape.length - 1]! : 1;
      let want: number;
      try {
        want = (n / (K || 1)) * rowBytes(block, K);
      } catch (e) {
        throw new Error(`GGUFWriter: tensor ${name} [${shape.join(", ")}] cannot be ${type}: ${(e as Error).message}`);
      }
      if (data.length !== want) throw new Error(`GGUFWriter: tensor ${name} of shape [${shape.join(", ")}] in ${type} is ${want} bytes, got ${data.length}`);
      this.tensors.set(name, { shape: [...shape], type, bytes: data.slice() });
      return;
    }
    if (data instanceof Uint8Array) throw new Error(`GGUFWriter: tensor ${name}: bytes need a block type (Q4_K, Q8_0, …), not ${type}`);
    if (data.length !== n) throw new Error(`GGUFWriter: tensor ${name} of shape [${shape.join(", ")}] needs ${n} values, got ${data.length}`);
    let words: Float32Array | Uint16Array;
    if (type === "F32") {
      if (!(data instanceof Float32Array)) throw new Error(`GGUFWriter: tensor ${name}: F32 data must be a Float32Array`);
      words = data;
    } else {
      words = data instanceof Uint16Array ? data : f32ToF16(data);
    }
    const bytes = new Uint8Array(words.buffer.slice(words.byteOffset, words.byteOffset + words.byteLength) as ArrayBuffer);
    this.tensors.set(name, { shape: [...shape], type, bytes });
  }

  /** The whole file. */
  write(): Uint8Array {
    const out = new Bytes();
    out.u32(GGUF_MAGIC);
    out.u32(GGUF_VERSION);
    out.u64(this.tensors.size);
    out.u64(this.kv.size);
    for (const [key, { value, type, sub_type }] of this.kv) {
      packScalar(out, key, GGUFValueType.STRING, key);
      out.u32(type);
      if (type === GGUFValueType.ARRAY) {
        if (!Array.isArray(value)) throw new Error(`GGUFWriter: ${key} is an ARRAY but its value is not a list`);
        const items = value as readonly GGUFScalar[];
        const t = sub_type ?? itemType(items[0]!);
        out.u32(t);
        out.u64(items.length);
        for (const v of items) packScalar(out, v, t, key);
      } else {
        packScalar(out, value as GGUFScalar, type, key);
      }
    }
    let offset = 0;
    for (const [name, t] of this.tensors) {
      packScalar(out, name, GGUFValueType.STRING, name);
      out.u32(t.shape.length);
      for (let j = t.shape.length - 1; j >= 0; j--) out.u64(t.shape[j]!);
      out.u32(GGMLType[t.type]);
      out.u64(offset);
      offset += pad(t.bytes.length, this.data_alignment);
    }
    out.zeros(pad(out.length, this.data_alignment) - out.length);
    for (const t of this.tensors.values()) {
      out.raw(t.bytes);
      out.zeros(pad(t.bytes.length, this.data_alignment) - t.bytes.length);
    }
    return out.bytes();
  }
}

// ---------------------------------------------------------------------------------------------------------
// llama.cpp LoRA adapters

/** config.json's architectures → llama.cpp's architecture name, and whether its q/k rows are permuted. */
export const LLAMA_CPP_ARCHS: Readonly<Record<string, { arch: string; permute_qk: boolean }>> = {
  LlamaForCausalLM: { arch: "llama", permute_qk: true },
  MistralForCausalLM: { arch: "llama", permute_qk: true },
  SmolLM3ForCausalLM: { arch: "smollm3", permute_qk: true },
  Qwen2ForCausalLM: { arch: "qwen2", permute_qk: false },
  Qwen3ForCausalLM: { arch: "qwen3", permute_qk: false },
  Gemma2ForCausalLM: { arch: "gemma2", permute_qk: false },
  Gemma3ForCausalLM: { arch: "gemma3", permute_qk: false },
  Phi3ForCausalLM: { arch: "phi3", permute_qk: false },
};


/** What loraGGUF converts: the base's config.json, the adapter's adapter_config.json and its tensors. */
export interface LoraGGUFInput {
  /** The base model's config.json (architectures, num_attention_heads, num_key_value_heads). */
  config: Record<string, unknown>;
  /** adapter_config.json (r, lora_alpha, use_rslora, use_dora, modules_to_save, rank_pattern, alpha_pattern). */
  adapter_config: Record<string, unknown>;
  /** adapter_model.safetensors' tensors by their PEFT names (base_model.model.model.layers.N.….lora_A.weight). */
  tensors: Record<string, { shape: readonly number[]; data: Float32Array }>;
  /** general.name (convert_lora_to_gguf.py writes the model card's or directory's name; none when omitted). */
  name?: string;
}

function fail(msg: string): never {
  throw new Error(`loraGGUF: ${msg}`);
}

function positiveInt(config: Record<string, unknown>, key: string): number {
  const v = config[key];
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) fail(`config.json's ${key} must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
}

/**
 * LlamaModel.permute on the rows of a [rows, cols] row-major matrix: rows viewed as [heads, 2, rows/heads/2]
 * and the last two axes swapped, so new row h·d + 2i + j is old row h·d + j·d/2 + i (d = rows / heads).
 */
export function permuteRows(data: Float32Array, rows: number, cols: number, heads: number): Float32Array {
  if (rows % (2 * heads) !== 0) fail(`cannot permute ${rows} rows into ${heads} heads of an even size`);
  const half = rows / heads / 2;
  const out = new Float32Array(data.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const dst = h * 2 * half + i * 2 + j;
        const src = h * 2 * half + j * half + i;
        out.set(data.subarray(src * cols, (src + 1) * cols), dst * cols);
      }
    }
  }
  return out;
}

/** The architecture entry of a base config.json, or a clear error. */
export function llamaCppArch(config: Record<string, unknown>): { arch: string; permute_qk: boolean; hf: string } {
  const text = config.text_config as Record<string, unknown> | undefined;
  const archs = (text?.architectures ?? config.architectures) as unknown;
  const hf = Array.isArray(archs) && typeof archs[0] === "string" ? archs[0] : null;
  if (!hf) fail(`config.json has no "architectures" list; it names the model's class (e.g. ["LlamaForCausalLM"])`);
  const entry = LLAMA_CPP_ARCHS[hf];
  if (!entry) fail(`architecture ${hf} has no llama.cpp LoRA mapping here; supported: ${Object.keys(LLAMA_CPP_ARCHS).join(", ")}`);
  return { ...entry, hf };
}

/**
 * A llama.cpp LoRA adapter GGUF of a PEFT LoRA adapter, as convert_lora_to_gguf.py --outtype f32 writes it
 * (see the header: names, Q/K row permutation for Llama-converted archs, alpha, rslora's alpha).
 */
export function loraGGUF(input: LoraGGUFInput): Uint8Array {
  const c = input.adapter_config;
  const { arch, permute_qk } = llamaCppArch(input.config);
  if (c.peft_type !== undefined && c.peft_type !== "LORA") fail(`adapter_config.json's peft_type is ${JSON.stringify(c.peft_type)}; only LORA adapters convert`);
  if (c.use_dora) fail("use_dora (DoRA) adapters have a magnitude vector llama.cpp's LoRA format cannot hold; train a plain LoRA adapter");
  if (Array.isArray(c.modules_to_save) && c.modules_to_save.length) {
    fail(`modules_to_save (${c.modules_to_save.join(", ")}) are full weights, which llama.cpp's LoRA format cannot hold; merge the adapter and convert the whole model instead`);
  }
  for (const k of ["rank_pattern", "alpha_pattern"]) {
    const p = c[k];
    if (p && typeof p === "object" && Object.keys(p).length) fail(`${k} is not empty: llama.cpp's LoRA format has one alpha for all modules (alpha / each tensor's rank)`);
  }
  const r = c.r;
  const alpha = c.lora_alpha;
  if (typeof r !== "number" || !Number.isInteger(r) || r < 1) fail(`adapter_config.json's r must be a positive integer, got ${JSON.stringify(r)}`);
  if (typeof alpha !== "number" || !Number.isFinite(alpha)) fail(`adapter_config.json's lora_alpha must be a number, got ${JSON.stringify(alpha)}`);
  const cfg = { ...input.config, ...((input.config.text_config as Record<string, unknown> | undefined) ?? {}) };
  const nHead = positiveInt(cfg, "num_attention_heads");
  const nKV = cfg.num_key_value_heads == null ? nHead : positiveInt(cfg, "num_key_value_heads");

  // Pair lora_A / lora_B by base tensor name, in the sorted order of the PEFT names.
  const pairs = new Map<string, { A?: { shape: readonly number[]; data: Float32Array }; B?: { shape: readonly number[]; data: Float32Array } }>();
  for (const name of Object.keys(input.tensors).sort()) {
    const m = /^base_model\.model\.(.+)\.lora_([AB])\.weight$/.exec(name);
    if (!m) fail(`unexpected tensor "${name}": not a lora_A or lora_B weight (llama.cpp adapters hold LoRA pairs only)`);
    const base = m[1]!;
    const p = pairs.get(base) ?? {};
    p[m[2] as "A" | "B"] = input.tensors[name]!;
    pairs.set(base, p);
  }
  if (!pairs.size) fail("the adapter has no tensors");

  const w = new GGUFWriter(arch);
  w.add_type("adapter");
  w.add_string("adapter.type", "lora");
  if (input.name) w.add_name(input.name);
  w.add_float32("adapter.lora.alpha", c.use_rslora ? alpha * Math.sqrt(r) : alpha);
  w.add_quantization_version(2);
  for (const [base, { A, B }] of pairs) {
    if (!A || !B) fail(`${base} has lora_${A ? "A" : "B"} but no lora_${A ? "B" : "A"}`);
    const m = /^model\.layers\.(\d+)\.(.+)$/.exec(base);
    const llm = m ? llamaCppModuleName(arch, m[2]!) : undefined;
    if (!m || !llm) {
      fail(`${base} has no llama.cpp tensor name (LoRA on ${base.split(".").pop()} is not converted; adapt the decoder's linear layers)`);
    }
    const [rA, inF] = A.shape as [number, number];
    const [outF, rB] = B.shape as [number, number];
    if (A.shape.length !== 2 || B.shape.length !== 2 || rA !== rB) fail(`${base}: lora_A [${A.shape.join(", ")}] and lora_B [${B.shape.join(", ")}] do not pair as [r, in] and [out, r]`);
    let b = B.data;
    if (permute_qk && (llm === "attn_q" || llm === "attn_k")) b = permuteRows(b, outF, rB, llm === "attn_q" ? nHead : nKV);
    const stem = `blk.${m[1]}.${llm}.weight`;
    w.add_tensor(`${stem}.lora_a`, A.data, [rA, inF], "F32");
    w.add_tensor(`${stem}.lora_b`, b, [outF, rB], "F32");
  }
  return w.write();
}

/**
 * loraGGUF of an adapter directory's files, as convert_lora_to_gguf.py --base BASE ADAPTER reads them: the
 * base's config.json, adapter_config.json and adapter_model.safetensors (F32, F16 or BF16 tensors, widened
 * to f32 as LoraTorchTensor does).
 */
export function loraGGUFFromFiles(files: { config: Record<string, unknown>; adapter_config: Record<string, unknown>; safetensors: Uint8Array; name?: string }): Uint8Array {
  const header = parseSafetensorsHeader(files.safetensors, { file: "adapter_model.safetensors" });
  const tensors: LoraGGUFInput["tensors"] = {};
  for (const [name, t] of header.tensors) {
    tensors[name] = { shape: t.shape, data: bytesToF32(t.dtype, files.safetensors.slice(t.start, t.end)) };
  }
  return loraGGUF({ config: files.config, adapter_config: files.adapter_config, tensors, name: files.name });
}
