// GGUF files (llama.cpp's model format, https://github.com/ggml-org/ggml/blob/master/docs/gguf.md), read the way
// transformers 5.18 reads them (modeling_gguf_pytorch_utils.load_gguf_checkpoint; the tokenizer:
// integrations/gguf/gguf_tokenizer_mapping.py): the container (GGUFFile), the config.json its metadata implies
// (ggufConfig), its tensors under transformers' names as f32 values (GGUFWeights; auto.ts's loadGGUF uploads them
// one at a time), and its tokenizer as tokenizer.json + tokenizer_config.json (ggufTokenizer: byte-level and
// SentencePiece BPE).
//
// The container (v2 and v3; little-endian; v3 only added big-endian files, which are refused):
//   "GGUF" u32 version, u64 tensor_count, u64 kv_count,
//   kv_count × (string key, u32 value type, value)      string = u64 byte length + UTF-8 bytes (no NUL)
//   tensor_count × (string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset)
//   padding to general.alignment (u32, default 32), then the data section; each tensor's bytes start at its
//   offset (a multiple of the alignment) from the data section's start. ne[0] is the innermost (row) length: the
//   shape transformers/numpy see is ne reversed.
// Value types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool, 8 string, 9 array (u32 item type, u64
// count, items), 10 u64, 11 i64, 12 f64.
//
// Reading is streaming: the header is parsed from ranged reads of growing chunks (1 MiB, doubling to 16 MiB),
// so a model's header (its vocabulary included) costs a few reads and a tensor one read of its own bytes.
// Everything is validated before any tensor byte is read, as the safetensors reader does: every count and
// length is checked against the bytes left in the file (and a hard cap) before anything is allocated for it,
// so a header that lies fails at once with an error naming the file and the key or tensor; types must be known;
// every tensor must lie inside the file (a truncated download is caught from the header and the size alone),
// its byte size must follow from its type and dims, and no two may overlap.
//
// The model (transformers 5.18's GGUF_CONFIG_MAPPING and TENSOR_PROCESSORS, for the architectures webtune has):
//   - general.architecture → model_type: llama (Mistral when general.name is exactly "mistral", as transformers
//     tests it), qwen2, qwen3, gemma2, gemma3 (→ gemma3_text), phi3; {arch}.block_count, context_length,
//     embedding_length, feed_forward_length, attention.head_count(_kv), attention.layer_norm_rms_epsilon,
//     rope.freq_base, vocab_size (else the length of tokenizer.ggml.tokens) → their config.json keys;
//     llama: rope.dimension_count → head_dim; gemma2/3: attention.key_length → head_dim, attention.sliding_window
//     → sliding_window; tokenizer.ggml.{bos,eos,padding}_token_id → {bos,eos,pad}_token_id; tie_word_embeddings
//     iff there is no output.weight. One deviation: qwen3's attention.key_length → head_dim (transformers' table
//     lacks it and falls back to Qwen3Config's 128, which breaks every Qwen3 whose head_dim is not 128).
//     Keys transformers does not map are not read either (rope scaling, Gemma 2's soft-caps: the config
//     class's defaults hold), so a file gives the model transformers gives.
//   - tensor names: llama.cpp's (token_embd, blk.N.attn_q, ffn_norm, output_norm, output, …; gguf-py's
//     tensor_mapping.py) to transformers', per architecture (Gemma's four norms per layer map differently);
//     rope_freqs / rope_factors_* (llama.cpp's RoPE factor tensors) are skipped, as transformers skips them.
//   - values: llama.cpp stores llama's (and Mistral's) q_proj / k_proj rows permuted for its RoPE
//     (convert_hf_to_gguf LlamaModel.permute, per head: rows (2, d/2) → (d/2, 2)); LlamaTensorProcessor's
//     reverse_permute undoes it (k with num_key_value_heads). llama.cpp stores Gemma's norms as 1 + w;
//     Gemma2TensorProcessor subtracts 1 from every *norm.weight (in f32).
//   - types: F32, F16, BF16 widened exactly; the block formats src/tensor/quant.ts decodes (Q8_0, Q4_0, Q4_1,
//     Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) dequantized to f32 as gguf.quants does; any other type an error naming it.
import type { ByteFile } from "../io/source.ts";
import { f16ToF32 } from "../tensor/half.ts";
import { dequantize, GGML_TYPE_FORMATS, isPackedFormat, type PackedFormat } from "../tensor/quant.ts";
import { bf16ToF32 } from "./safetensors.ts";

export const GGUF_MAGIC = "GGUF";
/** general.alignment when absent. */
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** Bounds no real file comes near; a header past them is refused before anything is allocated for it. */
export const GGUF_LIMITS = {
  /** Tensors in one file (real ones: hundreds to a few thousand). */
  tensors: 1 << 20,
  /** Metadata keys in one file. */
  kvs: 1 << 20,
  /** A metadata key's length (the spec: at most 65535 bytes). */
  keyBytes: 65535,
  /** A tensor name's length (llama.cpp's GGML_MAX_NAME is 64). */
  nameBytes: 64,
  /** One metadata string (chat templates are kilobytes). */
  stringBytes: 16 * 1024 * 1024,
  /** Items of one metadata array (vocabularies and merges are under a million). */
  arrayItems: 1 << 24,
  /** Nesting of arrays of arrays. */
  arrayDepth: 4,
  /** ggml's GGML_MAX_DIMS. */
  dims: 4,
};

/** GGUF metadata value types, by their number in the file. */
export const GGUF_VALUE_TYPES = ["u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"] as const;
export type GGUFValueTypeName = (typeof GGUF_VALUE_TYPES)[number];

/** Byte size of each fixed-size value type (strings and arrays: their minimum, an empty one). */
const VALUE_BYTES = [1, 1, 2, 2, 4, 4, 4, 1, 8, 12, 8, 8, 8];

/** A metadata value: numbers (u64/i64 beyond 2^53 as bigint), booleans, strings, arrays (numeric ones typed). */
export type GGUFValue = number | bigint | boolean | string | GGUFArray;
export type GGUFArray =
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array | Float32Array | Float64Array
  | BigUint64Array | BigInt64Array | boolean[] | string[] | GGUFArray[];

/** ggml tensor types (enum ggml_type): name, elements per block, bytes per block (gguf's GGML_QUANT_SIZES). */
export const GGML_TYPES: Readonly<Record<number, { name: string; blockSize: number; typeSize: number }>> = Object.fromEntries(
  (
    [
      [0, "F32", 1, 4], [1, "F16", 1, 2], [2, "Q4_0", 32, 18], [3, "Q4_1", 32, 20], [6, "Q5_0", 32, 22], [7, "Q5_1", 32, 24],
      [8, "Q8_0", 32, 34], [9, "Q8_1", 32, 40], [10, "Q2_K", 256, 84], [11, "Q3_K", 256, 110], [12, "Q4_K", 256, 144],
      [13, "Q5_K", 256, 176], [14, "Q6_K", 256, 210], [15, "Q8_K", 256, 292], [16, "IQ2_XXS", 256, 66], [17, "IQ2_XS", 256, 74],
      [18, "IQ3_XXS", 256, 98], [19, "IQ1_S", 256, 50], [20, "IQ4_NL", 32, 18], [21, "IQ3_S", 256, 110], [22, "IQ2_S", 256, 82],
      [23, "IQ4_XS", 256, 136], [24, "I8", 1, 1], [25, "I16", 1, 2], [26, "I32", 1, 4], [27, "I64", 1, 8], [28, "F64", 1, 8],
      [29, "IQ1_M", 256, 56], [30, "BF16", 1, 2], [34, "TQ1_0", 256, 54], [35, "TQ2_0", 256, 66], [39, "MXFP4", 32, 17],
    ] as const
  ).map(([id, name, blockSize, typeSize]) => [id, { name, blockSize, typeSize }]),
);

/** The ggml types webtune reads into f32. */
function readableTypes(): string[] {
  return Object.keys(GGML_TYPE_FORMATS).map((id) => GGML_TYPES[Number(id)]!.name);
}

/** One tensor of a GGUF file. */
export interface GGUFTensorInfo {
  name: string;
  /** ggml's ne: ne[0] is the row length. */
  dims: number[];
  /** ne reversed: the shape numpy, torch and transformers see ([out, in] for a linear weight). */
  shape: number[];
  /** The ggml type number and name (F32, F16, Q4_K, …). */
  type: number;
  typeName: string;
  /** The offset from the start of the data section, as stored. */
  offset: number;
  /** The absolute byte range [start, end) in the file. */
  start: number;
  end: number;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const UTF8 = new TextDecoder("utf-8", { fatal: true });

/** An in-memory ByteFile (tests, or bytes a page already holds): reads are views. */
export function bytesFile(bytes: Uint8Array): ByteFile {
  const range = (s = 0, e = bytes.length): [number, number] => {
    if (!Number.isSafeInteger(s) || !Number.isSafeInteger(e) || s < 0 || e < s || e > bytes.length) {
      throw new Error(`bytes [${s}, ${e}) asked for, but there are ${bytes.length}`);
    }
    return [s, e];
  };
  return {
    size: async () => bytes.length,
    read: async (s, e) => bytes.subarray(...range(s, e)),
    head: async (n) => bytes.subarray(0, Math.min(n, bytes.length)),
    async *stream(chunk: number) {
      for (let p = 0; p < bytes.length; p += chunk) yield bytes.subarray(p, Math.min(bytes.length, p + chunk));
    },
  };
}

/** The header cursor: ranged reads into a window, every length checked against the file's size first. */
class Cursor {
  private buf: Uint8Array = new Uint8Array(0);
  private view: DataView = new DataView(new ArrayBuffer(0));
  /** File offset of buf[0]. */
  private base = 0;
  pos = 0;
  private chunk = 1 << 20;

  constructor(
    private readonly file: ByteFile,
    readonly size: number,
    readonly label: string,
  ) {}

  fail(why: string): never {
    throw new Error(`${this.label}: ${why}`);
  }

  /** Bytes left in the file after the cursor. */
  get left(): number {
    return this.size - this.pos;
  }

  /** Makes bytes [pos, pos + n) available; a truncated file is an error saying what was being read. */
  async need(n: number, what: string): Promise<void> {
    if (this.pos + n <= this.base + this.buf.length) return;
    if (this.pos + n > this.size) {
      this.fail(`the file ends at byte ${this.size} in the middle of ${what} (at byte ${this.pos}, ${n} bytes needed): a truncated download, or not a GGUF file`);
    }
    const end = Math.min(this.size, this.pos + Math.max(n, this.chunk));
    this.chunk = Math.min(this.chunk * 2, 16 << 20);
    const got = await this.file.read(this.pos, end);
    if (got.length !== end - this.pos) this.fail(`asked for bytes [${this.pos}, ${end}), the reader gave ${got.length}`);
    this.buf = got;
    this.view = new DataView(got.buffer, got.byteOffset, got.byteLength);
    this.base = this.pos;
  }

  private at(n: number): number {
    const o = this.pos - this.base;
    this.pos += n;
    return o;
  }

  async u32(what: string): Promise<number> {
    await this.need(4, what);
    return this.view.getUint32(this.at(4), true);
  }

  /** A u64 as a number; `max` bounds it (a larger one is `tooBig`'s error). */
  async u64(what: string, max: number, tooBig: (n: bigint) => string): Promise<number> {
    await this.need(8, what);
    const n = this.view.getBigUint64(this.at(8), true);
    if (n > BigInt(max)) this.fail(tooBig(n));
    return Number(n);
  }

  /** `n` bytes (a copy the caller owns). */
  async bytes(n: number, what: string): Promise<Uint8Array<ArrayBuffer>> {
    await this.need(n, what);
    const o = this.at(n);
    return this.buf.slice(o, o + n);
  }

  /**
   * A string whose length and bytes are already in the window, read without awaiting (most of a vocabulary's
   * strings); undefined (nothing consumed) when they are not, or the length needs the checks of string().
   */
  stringNow(maxBytes: number): string | undefined {
    const o = this.pos - this.base;
    if (o + 8 > this.buf.length) return undefined;
    const n = this.view.getBigUint64(o, true);
    if (n > BigInt(maxBytes) || o + 8 + Number(n) > this.buf.length) return undefined;
    const len = Number(n);
    let text: string;
    try {
      text = UTF8.decode(this.buf.subarray(o + 8, o + 8 + len));
    } catch {
      return undefined;
    }
    this.pos += 8 + len;
    return text;
  }

  async string(what: string, maxBytes: number): Promise<string> {
    const n = await this.u64(`the length of ${what}`, maxBytes, (n) => `${what} claims ${n} bytes, more than the ${maxBytes} allowed (a corrupt header)`);
    if (n > this.left) this.fail(`${what} claims ${n} bytes, more than the ${this.left} left in the file (a corrupt header, or a truncated file)`);
    await this.need(n, what);
    const o = this.at(n);
    try {
      return UTF8.decode(this.buf.subarray(o, o + n));
    } catch {
      return this.fail(`${what} is not valid UTF-8 (a corrupt header)`);
    }
  }

  /** A scalar of value type `t` (not string/array). */
  async scalar(t: number, what: string): Promise<number | bigint | boolean> {
    const n = VALUE_BYTES[t]!;
    await this.need(n, what);
    const o = this.at(n);
    const v = this.view;
    switch (t) {
      case 0: return v.getUint8(o);
      case 1: return v.getInt8(o);
      case 2: return v.getUint16(o, true);
      case 3: return v.getInt16(o, true);
      case 4: return v.getUint32(o, true);
      case 5: return v.getInt32(o, true);
      case 6: return v.getFloat32(o, true);
      case 7: {
        const b = v.getUint8(o);
        if (b > 1) this.fail(`${what} is a bool of value ${b} (must be 0 or 1; a corrupt header)`);
        return b === 1;
      }
      case 10: {
        const x = v.getBigUint64(o, true);
        return x <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(x) : x;
      }
      case 11: {
        const x = v.getBigInt64(o, true);
        return x <= BigInt(Number.MAX_SAFE_INTEGER) && x >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(x) : x;
      }
      default: return v.getFloat64(o, true);
    }
  }
}

const TYPED = [Uint8Array, Int8Array, Uint16Array, Int16Array, Uint32Array, Int32Array, Float32Array] as const;

function valueTypeName(t: number, what: string, label: string): GGUFValueTypeName {
  const name = GGUF_VALUE_TYPES[t];
  if (name === undefined) {
    throw new Error(`${label}: ${what} has value type ${t}, which GGUF does not define (0..12: ${GGUF_VALUE_TYPES.join(", ")}); a corrupt header, or a newer GGUF than webtune knows`);
  }
  return name;
}

/** One metadata value of type `t`; `type` collects its type's name (array<…> for arrays). */
async function readValue(c: Cursor, t: number, what: string, depth: number): Promise<{ value: GGUFValue; type: string }> {
  const name = valueTypeName(t, what, c.label);
  if (name === "string") return { value: await c.string(what, GGUF_LIMITS.stringBytes), type: name };
  if (name !== "array") return { value: await c.scalar(t, what), type: name };
  if (depth >= GGUF_LIMITS.arrayDepth) c.fail(`${what} nests arrays ${depth + 1} deep, more than the ${GGUF_LIMITS.arrayDepth} allowed (a corrupt header)`);
  const it = await c.u32(`the item type of ${what}`);
  const itName = valueTypeName(it, `an item of ${what}`, c.label);
  const itemBytes = VALUE_BYTES[it]!;
  const left = c.left - 8;
  const count = await c.u64(`the length of ${what}`, GGUF_LIMITS.arrayItems, (n) =>
    `${what} claims ${n} items, more than the ${GGUF_LIMITS.arrayItems} allowed (a corrupt header)`,
  );
  if (count * itemBytes > left) {
    c.fail(`${what} claims ${count} ${itName} items (at least ${count * itemBytes} bytes), more than the ${left} bytes left in the file (a corrupt header, or a truncated file)`);
  }
  const type = `array<${itName === "array" ? "array" : itName}>`;
  if (it <= 6) {
    const raw = await c.bytes(count * itemBytes, what);
    const Ctor = TYPED[it]!;
    if (!LITTLE_ENDIAN) c.fail("this host is big-endian; webtune reads little-endian GGUF files on little-endian hosts only");
    return { value: new Ctor(raw.buffer, 0, count), type };
  }
  if (it === 10 || it === 11 || it === 12) {
    const raw = await c.bytes(count * 8, what);
    return { value: it === 10 ? new BigUint64Array(raw.buffer, 0, count) : it === 11 ? new BigInt64Array(raw.buffer, 0, count) : new Float64Array(raw.buffer, 0, count), type };
  }
  const out: (boolean | string | GGUFArray)[] = [];
  for (let i = 0; i < count; i++) {
    // (The fast path for strings builds no message and awaits nothing.)
    if (it === 8) out.push(c.stringNow(GGUF_LIMITS.stringBytes) ?? (await c.string(`item ${i} of ${what}`, GGUF_LIMITS.stringBytes)));
    else if (it === 7) out.push((await c.scalar(7, `item ${i} of ${what}`)) as boolean);
    else out.push((await readValue(c, it, `item ${i} of ${what}`, depth + 1)).value as GGUFArray);
  }
  return { value: out as GGUFArray, type };
}

/** A parsed, validated GGUF file: its metadata and tensor infos; tensors read one ranged read each. */
export class GGUFFile {
  private constructor(
    /** The file's name in messages (a path, a URL, "the file x.gguf"). */
    readonly name: string,
    readonly file: ByteFile,
    readonly size: number,
    readonly version: number,
    readonly alignment: number,
    /** Where the data section starts (the end of the header, padded to the alignment). */
    readonly dataStart: number,
    /** The metadata, in the file's order. */
    readonly metadata: Map<string, GGUFValue>,
    /** Each key's value type: u32, f32, string, array<string>, … */
    readonly types: Map<string, string>,
    /** The tensors, in the file's order. */
    readonly tensors: Map<string, GGUFTensorInfo>,
  ) {}

  /**
   * Reads and validates the header of a GGUF file (a ByteFile, or its bytes). `name` labels errors. Rejects, with
   * an error naming the file and what is wrong: a file that is not GGUF, v1 or a version newer than 3, big-endian
   * files, truncated headers, unknown value or tensor types, counts and lengths the file cannot hold, duplicate
   * keys or tensors, a bad alignment, tensors off the alignment, past the end of the file, or overlapping.
   */
  static async open(source: ByteFile | Uint8Array, name = "GGUF file"): Promise<GGUFFile> {
    const file = source instanceof Uint8Array ? bytesFile(source) : source;
    const size = await file.size();
    const c = new Cursor(file, size, name);
    if (size < 24) c.fail(`the file is ${size} bytes, too short for a GGUF header (24 bytes: magic, version, tensor and metadata counts); not a GGUF file, or an empty download`);
    const magic = new TextDecoder().decode(await c.bytes(4, "the magic"));
    if (magic !== GGUF_MAGIC) {
      c.fail(`starts with ${JSON.stringify(magic)}, not "GGUF": not a GGUF file${magic.startsWith("ggjt") || magic === "lmgg" || magic === "ggml" ? " (an old GGML/GGJT file: convert it to GGUF with llama.cpp)" : ""}`);
    }
    const version = await c.u32("the version");
    if (version === 1) c.fail("is GGUF version 1 (2023, 32-bit counts), which webtune does not read; re-convert it with a current llama.cpp");
    if (version === 0x02000000 || version === 0x03000000) c.fail("is a big-endian GGUF file; webtune reads little-endian ones (the default; re-convert without --bigendian)");
    if (version !== 2 && version !== 3) c.fail(`is GGUF version ${version}; webtune reads versions 2 and 3`);
    // The smallest tensor info: 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset); a KV: 8 (key length) + 4 + 1.
    const tensorCount = await c.u64("the tensor count", GGUF_LIMITS.tensors, (n) => `claims ${n} tensors, more than the ${GGUF_LIMITS.tensors} allowed (a corrupt header)`);
    const kvCount = await c.u64("the metadata count", GGUF_LIMITS.kvs, (n) => `claims ${n} metadata keys, more than the ${GGUF_LIMITS.kvs} allowed (a corrupt header)`);
    if (tensorCount * 24 + kvCount * 13 > c.left) {
      c.fail(`claims ${tensorCount} tensors and ${kvCount} metadata keys, more than its ${size} bytes can hold (a corrupt header, or a truncated file)`);
    }
    const metadata = new Map<string, GGUFValue>();
    const types = new Map<string, string>();
    for (let i = 0; i < kvCount; i++) {
      const key = await c.string(`the key of metadata entry ${i}`, GGUF_LIMITS.keyBytes);
      if (metadata.has(key)) c.fail(`metadata key "${key}" appears twice (a corrupt header)`);
      const t = await c.u32(`the value type of metadata "${key}"`);
      const { value, type } = await readValue(c, t, `metadata "${key}"`, 0);
      metadata.set(key, value);
      types.set(key, type);
    }
    let alignment = GGUF_DEFAULT_ALIGNMENT;
    if (metadata.has("general.alignment")) {
      const a = metadata.get("general.alignment");
      if (types.get("general.alignment") !== "u32" || typeof a !== "number" || a <= 0 || (a & (a - 1)) !== 0) {
        c.fail(`general.alignment is ${types.get("general.alignment")} ${String(a)}; it must be a u32 power of two`);
      }
      alignment = a as number;
    }
    const infos: Omit<GGUFTensorInfo, "start" | "end">[] = [];
    const seen = new Set<string>();
    for (let i = 0; i < tensorCount; i++) {
      const tname = await c.string(`the name of tensor ${i}`, GGUF_LIMITS.nameBytes);
      const where = `tensor "${tname}"`;
      if (seen.has(tname)) c.fail(`${where} appears twice (a corrupt header)`);
      seen.add(tname);
      const nd = await c.u32(`the number of dims of ${where}`);
      if (nd > GGUF_LIMITS.dims) c.fail(`${where} claims ${nd} dims; ggml tensors have at most ${GGUF_LIMITS.dims} (a corrupt header)`);
      const dims: number[] = [];
      for (let d = 0; d < nd; d++) {
        dims.push(await c.u64(`dim ${d} of ${where}`, Number.MAX_SAFE_INTEGER, (n) => `${where} has dim ${d} = ${n}, larger than any file (a corrupt header)`));
      }
      const type = await c.u32(`the type of ${where}`);
      const offset = await c.u64(`the offset of ${where}`, Number.MAX_SAFE_INTEGER, (n) => `${where} has offset ${n}, past the end of the ${size}-byte file (a corrupt header)`);
      infos.push({ name: tname, dims, shape: [...dims].reverse(), type, typeName: GGML_TYPES[type]?.name ?? `type ${type}`, offset });
    }
    const dataStart = Math.ceil(c.pos / alignment) * alignment;
    const tensors = new Map<string, GGUFTensorInfo>();
    for (const t of infos) {
      const where = `tensor "${t.name}" [${t.shape.join(", ")}]`;
      const traits = GGML_TYPES[t.type];
      if (!traits) {
        c.fail(`${where} has ggml type ${t.type}, which webtune does not know (a corrupt header, or a type newer than webtune; it reads ${readableTypes().join(", ")})`);
      }
      let elems = 1n;
      for (const d of t.dims) elems *= BigInt(d);
      const row = t.dims[0] ?? 1;
      if (row % traits.blockSize !== 0) c.fail(`${where} is ${traits.name}, but its rows of ${row} elements are not whole blocks of ${traits.blockSize} (a corrupt header)`);
      const bytes = (elems / BigInt(traits.blockSize)) * BigInt(traits.typeSize);
      if (t.offset % alignment !== 0) c.fail(`${where} starts at data offset ${t.offset}, not a multiple of the alignment ${alignment} (a corrupt header)`);
      const end = BigInt(dataStart) + BigInt(t.offset) + bytes;
      if (end > BigInt(size)) {
        c.fail(`${where} (${traits.name}, ${bytes} bytes at data offset ${t.offset}) ends at byte ${end}, past the end of the ${size}-byte file (the file is truncated: download it again)`);
      }
      tensors.set(t.name, { ...t, typeName: traits.name, start: dataStart + t.offset, end: Number(end) });
    }
    const byStart = [...tensors.values()].filter((t) => t.end > t.start).sort((a, b) => a.start - b.start);
    for (let i = 1; i < byStart.length; i++) {
      const p = byStart[i - 1]!;
      const t = byStart[i]!;
      if (t.start < p.end) {
        c.fail(`tensor "${t.name}" (data offset ${t.offset}) overlaps tensor "${p.name}" (bytes [${p.offset}, ${p.end - dataStart}) of the data section); a corrupt header`);
      }
    }
    return new GGUFFile(name, file, size, version, alignment, dataStart, metadata, types, tensors);
  }

  /** Tensor names in the file's order. */
  get names(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  /** general.architecture; an error when absent. */
  get architecture(): string {
    const a = this.metadata.get("general.architecture");
    if (typeof a !== "string") throw new Error(`${this.name}: no general.architecture string in the metadata (${this.types.get("general.architecture") ?? "absent"}); every GGUF model file has one`);
    return a;
  }

  /** A tensor's info; an error naming the file when there is no such tensor. */
  info(name: string): GGUFTensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`no tensor "${name}" in ${this.name} (${this.tensors.size} tensors: ${this.names.slice(0, 5).join(", ")}${this.tensors.size > 5 ? ", …" : ""})`);
    return t;
  }

  /** One tensor's raw bytes as stored (one ranged read). */
  async readBytes(name: string): Promise<Uint8Array> {
    const t = this.info(name);
    const bytes = await this.file.read(t.start, t.end);
    if (bytes.length !== t.end - t.start) {
      throw new Error(`${this.name}: tensor "${name}": read ${bytes.length} bytes of ${t.end - t.start} (the file changed or the reader is broken)`);
    }
    return bytes;
  }

  /** One tensor's values as f32, in the stored element order (rows of ne[0]): F32, F16, BF16 and the block formats quant.ts decodes. */
  async readF32(name: string): Promise<Float32Array> {
    const t = this.info(name);
    const format = GGML_TYPE_FORMATS[t.type];
    if (format === undefined) {
      throw new Error(
        `${this.name}: tensor "${name}" is ${t.typeName}, which webtune cannot read yet (it reads ${readableTypes().join(", ")}); ` +
          `re-quantize the model to one of those (llama-quantize), or convert it with --outtype f16`,
      );
    }
    const bytes = await this.readBytes(name);
    const n = t.dims.reduce((a, b) => a * b, 1);
    // Typed views need an aligned buffer of their own: a fresh read is one, a view into other bytes is copied.
    const own = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer ? bytes : bytes.slice();
    if (format === "f32") return new Float32Array(own.buffer, 0, n);
    if (format === "f16") return f16ToF32(new Uint16Array(own.buffer, 0, n));
    if (format === "bf16") return bf16ToF32(new Uint16Array(own.buffer, 0, n));
    if (!isPackedFormat(format)) throw new Error(`${this.name}: tensor "${name}": no decoder for ${t.typeName}`);
    return dequantize(format, bytes, n);
  }
}

// ---------------------------------------------------------------------------------------------------------
// The model: config.json from the metadata, transformers' tensor names and values.

/** general.architecture → config.json's model_type and architectures class, for what webtune runs. */
const GGUF_ARCHITECTURES: Record<string, { model_type: string; cls: string }> = {
  llama: { model_type: "llama", cls: "LlamaForCausalLM" },
  mistral: { model_type: "mistral", cls: "MistralForCausalLM" },
  qwen2: { model_type: "qwen2", cls: "Qwen2ForCausalLM" },
  qwen3: { model_type: "qwen3", cls: "Qwen3ForCausalLM" },
  gemma2: { model_type: "gemma2", cls: "Gemma2ForCausalLM" },
  gemma3: { model_type: "gemma3_text", cls: "Gemma3ForCausalLM" },
  phi3: { model_type: "phi3", cls: "Phi3ForCausalLM" },
};

/** llama.cpp architectures of models webtune runs from safetensors that transformers' GGUF loader does not read. */
const NOT_IN_TRANSFORMERS: Record<string, string> = { smollm3: "SmolLM3" };

const COMMON_KEYS: Record<string, string> = {
  context_length: "max_position_embeddings",
  block_count: "num_hidden_layers",
  feed_forward_length: "intermediate_size",
  embedding_length: "hidden_size",
  "rope.freq_base": "rope_theta",
  "attention.head_count": "num_attention_heads",
  "attention.head_count_kv": "num_key_value_heads",
  "attention.layer_norm_rms_epsilon": "rms_norm_eps",
  vocab_size: "vocab_size",
};

/** transformers' GGUF_CONFIG_MAPPING for each architecture (+ qwen3's key_length, see the header). */
const CONFIG_KEYS: Record<string, Record<string, string>> = {
  llama: { ...COMMON_KEYS, "rope.dimension_count": "head_dim" },
  mistral: { ...COMMON_KEYS, "rope.dimension_count": "head_dim" },
  qwen2: COMMON_KEYS,
  qwen3: { ...COMMON_KEYS, "attention.key_length": "head_dim" },
  gemma2: { ...COMMON_KEYS, "attention.key_length": "head_dim", "attention.sliding_window": "sliding_window" },
  gemma3: { ...COMMON_KEYS, "attention.key_length": "head_dim", "attention.sliding_window": "sliding_window" },
  phi3: COMMON_KEYS,
};

const TOKEN_KEYS: Record<string, string> = {
  "tokenizer.ggml.bos_token_id": "bos_token_id",
  "tokenizer.ggml.eos_token_id": "eos_token_id",
  "tokenizer.ggml.unknown_token_id": "unk_token_id",
  "tokenizer.ggml.padding_token_id": "pad_token_id",
};

/** The architecture transformers reads a file as: llama is Mistral when general.name is exactly "mistral". */
function ggufArchitecture(g: GGUFFile): { gguf: string; arch: string } {
  const gguf = g.architecture;
  const name = g.metadata.get("general.name");
  // transformers: `"mistral" in model_name`, model_name being the list [general.name]: equality, not a substring.
  const arch = gguf.includes("llama") && name === "mistral" ? "mistral" : gguf;
  if (!GGUF_ARCHITECTURES[arch]) {
    const also = NOT_IN_TRANSFORMERS[arch] ? ` (webtune runs ${NOT_IN_TRANSFORMERS[arch]} from safetensors, but transformers' GGUF loader does not read "${arch}" files either: use the model's safetensors checkpoint)` : "";
    throw new Error(
      `${g.name}: GGUF architecture "${gguf}" is not supported; webtune reads GGUF files of ${Object.keys(GGUF_ARCHITECTURES).filter((a) => a !== "mistral").join(", ")} models${also}`,
    );
  }
  return { gguf, arch };
}

function num(v: GGUFValue | undefined): unknown {
  if (typeof v === "bigint") return Number(v);
  if (ArrayBuffer.isView(v) || Array.isArray(v)) {
    const a = Array.from(v as ArrayLike<number | bigint>, (x) => (typeof x === "bigint" ? Number(x) : x));
    return a.length === 1 ? a[0] : a;
  }
  return v;
}

/**
 * The config.json transformers makes of a GGUF file's metadata (load_gguf_checkpoint's "config"), with the
 * `architectures` class webtune's parseConfig picks the description by; an error naming an architecture
 * webtune lacks.
 */
export function ggufConfig(g: GGUFFile): Record<string, unknown> {
  const { gguf, arch } = ggufArchitecture(g);
  const { model_type, cls } = GGUF_ARCHITECTURES[arch]!;
  const cfg: Record<string, unknown> = { architectures: [cls], model_type };
  const keys = CONFIG_KEYS[arch]!;
  // Which metadata key each config key came from: parseConfig's errors (its bounds on every size) name both.
  const origin: Record<string, string> = {};
  for (const [key, value] of g.metadata) {
    const dot = key.indexOf(".");
    const prefix = key.slice(0, dot);
    const rest = key.slice(dot + 1);
    const to = prefix === gguf && keys[rest] ? keys[rest]! : TOKEN_KEYS[key];
    if (!to) continue;
    cfg[to] = num(value);
    origin[to] = key;
  }
  Object.defineProperty(cfg, Symbol.for("webtune.config_key_origin"), { value: origin, enumerable: false });
  if (cfg.vocab_size === undefined) {
    const tokens = g.metadata.get("tokenizer.ggml.tokens");
    if (Array.isArray(tokens)) cfg.vocab_size = tokens.length;
    else if (g.has("token_embd.weight")) cfg.vocab_size = g.info("token_embd.weight").shape[0];
  }
  cfg.tie_word_embeddings = !g.has("output.weight");
  return cfg;
}

/** llama.cpp's layer tensor names → transformers' module paths under model.layers.N, per architecture. */
function layerNames(arch: string): Record<string, string> {
  const base: Record<string, string> = {
    attn_norm: "input_layernorm",
    attn_q: "self_attn.q_proj",
    attn_k: "self_attn.k_proj",
    attn_v: "self_attn.v_proj",
    attn_output: "self_attn.o_proj",
    attn_q_norm: "self_attn.q_norm",
    attn_k_norm: "self_attn.k_norm",
    ffn_gate: "mlp.gate_proj",
    ffn_up: "mlp.up_proj",
    ffn_down: "mlp.down_proj",
    ffn_norm: "post_attention_layernorm",
  };
  if (arch === "gemma2" || arch === "gemma3") {
    return { ...base, post_attention_norm: "post_attention_layernorm", ffn_norm: "pre_feedforward_layernorm", post_ffw_norm: "post_feedforward_layernorm" };
  }
  if (arch === "phi3") return { ...base, attn_qkv: "self_attn.qkv_proj", ffn_up: "mlp.gate_up_proj" };
  return base;
}

/**
 * The llama.cpp tensor stem (attn_q, ffn_up, …) of a decoder-layer module path (self_attn.q_proj, …) of `arch`:
 * the inverse of the reader's table, which the LoRA GGUF writer uses; undefined for a module llama.cpp lacks.
 */
export function llamaCppModuleName(arch: string, path: string): string | undefined {
  return Object.entries(layerNames(arch)).find(([, hf]) => hf === path)?.[0];
}

/** llama.cpp tensors transformers reads past (RoPE factor tables llama.cpp computes from the config). */
const SKIPPED = /^(rope_freqs|rope_factors_long|rope_factors_short)\.weight$/;

/** transformers' name of a llama.cpp tensor of `arch` (the name transformers reads as), or null when skipped; an error for an unknown name. */
export function ggufTensorName(arch: string, name: string, where = "GGUF file"): string | null {
  const top: Record<string, string> = { "token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight", "output.weight": "lm_head.weight" };
  if (top[name]) return top[name]!;
  if (SKIPPED.test(name)) return null;
  const m = /^blk\.(\d+)\.([a-z0-9_]+)\.(weight|bias)$/.exec(name);
  const path = m ? layerNames(arch)[m[2]!] : undefined;
  if (!m || !path) throw new Error(`${where}: tensor "${name}" is not one of the tensors of a ${arch} model webtune knows (token_embd, blk.N.attn_q, …, output_norm, output)`);
  return `model.layers.${Number(m[1])}.${path}.${m[3]}`;
}

/**
 * llama.cpp's q/k row permutation undone (LlamaTensorProcessor._reverse_permute_weights): [rows, cols] values,
 * or the bytes of a packed tensor's rows (rows move whole, so a block format is permuted without decoding).
 */
export function reversePermute<T extends Float32Array | Uint8Array>(data: T, rows: number, heads: number): T {
  const cols = data.length / rows;
  const dim = rows / heads / 2;
  if (!Number.isInteger(dim)) throw new Error(`reversePermute: ${rows} rows are not ${heads} heads of an even size`);
  const out = new (data.constructor as new (n: number) => T)(data.length);
  for (let h = 0; h < heads; h++) {
    for (let d = 0; d < dim; d++) {
      for (let j = 0; j < 2; j++) {
        const src = (h * dim + d) * 2 + j;
        const dst = (h * 2 + j) * dim + d;
        out.set(data.subarray(src * cols, (src + 1) * cols), dst * cols);
      }
    }
  }
  return out;
}

/** A GGUF file's tensors under transformers' names, as the loader reads weights (shape, f32 values). */
export class GGUFWeights {
  private constructor(
    readonly gguf: GGUFFile,
    readonly config: Record<string, unknown>,
    private readonly arch: string,
    private readonly byName: Map<string, string>,
  ) {}

  /** The weights of `g` for its config (ggufConfig(g)). */
  static of(g: GGUFFile, config: Record<string, unknown> = ggufConfig(g)): GGUFWeights {
    const { gguf } = ggufArchitecture(g);
    const byName = new Map<string, string>();
    for (const name of g.names) {
      const hf = ggufTensorName(gguf, name, g.name);
      if (hf !== null) byName.set(hf, name);
    }
    return new GGUFWeights(g, config, gguf, byName);
  }

  /** transformers' names of the tensors, in the file's order. */
  get names(): string[] {
    return [...this.byName.keys()];
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  /** The GGUF tensor holding transformers' `name`. */
  ggufName(name: string): string {
    const g = this.byName.get(name);
    if (g === undefined) throw new Error(`no tensor for "${name}" in ${this.gguf.name} (${this.byName.size} tensors)`);
    return g;
  }

  info(name: string): { shape: number[]; file: string; type: string } {
    const t = this.gguf.info(this.ggufName(name));
    return { shape: [...t.shape], file: `tensor "${t.name}"`, type: t.typeName };
  }

  /** transformers' values of `name` (f32): dequantized, q/k un-permuted for llama, Gemma's norms minus 1. */
  async readF32(name: string): Promise<Float32Array> {
    const gname = this.ggufName(name);
    const t = this.gguf.info(gname);
    let data = this.unpermute(gname, t.shape[0]!, await this.gguf.readF32(gname));
    if ((this.arch === "gemma2" || this.arch === "gemma3") && gname.includes("norm.weight")) data = data.map((x) => x - 1);
    return data;
  }

  /**
   * A tensor stored in a packed weight format (the GGUF block formats, BF16) as its bytes, rows in transformers'
   * order (llama's q/k rows un-permuted whole), for the loader to keep packed on the GPU; null for F32/F16
   * tensors (read them with readF32).
   */
  async readPacked(name: string): Promise<{ format: PackedFormat; bytes: Uint8Array } | null> {
    const gname = this.ggufName(name);
    const t = this.gguf.info(gname);
    const format = GGML_TYPE_FORMATS[t.type];
    if (format === undefined || !isPackedFormat(format)) return null;
    return { format, bytes: this.unpermute(gname, t.shape[0]!, await this.gguf.readBytes(gname)) };
  }

  /** llama's attn_q / attn_k rows back in transformers' order (other tensors as they are). */
  private unpermute<T extends Float32Array | Uint8Array>(gname: string, rows: number, data: T): T {
    if (this.arch !== "llama" || !/\.attn_[qk]\./.test(gname)) return data;
    const heads = this.config.num_attention_heads;
    if (typeof heads !== "number") return data;
    const kv = (this.config.num_key_value_heads ?? heads) as number;
    return reversePermute(data, rows, gname.includes(".attn_q.") ? heads : kv);
  }
}

// ---------------------------------------------------------------------------------------------------------
// The tokenizer: tokenizer.json + tokenizer_config.json as transformers builds them from tokenizer.ggml.*
// (integrations/gguf/gguf_tokenizer_mapping.py, then the model type's tokenizer class around it):
//   - byte-level BPE (tokenizer.ggml.model "gpt2": GPT-2, Llama 3, Qwen2/3, SmolLM): the vocabulary (a token
//     outside the byte alphabet respelled from its UTF-8 bytes) and merges; GPT2Tokenizer's pipeline (ByteLevel
//     pre-tokenizer without prefix space, ByteLevel decoder), the pre-tokenizer replaced by Split(regex) +
//     ByteLevel when tokenizer.ggml.pre names one of transformers' GGUF_PRE_TOKENIZER_SPLITS;
//   - SentencePiece BPE ("llama": Llama 2, Mistral, Gemma, Phi-3): the vocabulary with byte fallback (<0xNN>),
//     merges from the file or, as transformers' generate_merges, from the vocabulary ranked by
//     tokenizer.ggml.scores (Gemma: by file order; its all-space tokens respelled as ▁s); LlamaTokenizer's
//     pipeline (Metaspace, prefix ▁ on the first word), GemmaTokenizer's (spaces → ▁ normalizer, split after
//     each, no prefix; its default <bos> <eos> <unk> <pad> <mask> added when the vocabulary lacks them) or
//     phi3_tokenizer's (Prepend + Replace normalizer); decoders Replace ▁ → space, ByteFallback, Fuse (+ Strip);
//   - either way: no BOS/EOS added by the post-processor (what transformers' GGUF tokenizers do), tokens typed
//     CONTROL (3) added as special tokens (byte-level: only those spelled in the byte alphabet), USER_DEFINED (4)
//     as plain added tokens; Gemma models' tokenizer class adds <mask> when absent; bos/eos/unk/pad tokens from
//     their ids; tokenizer.chat_template. Other vocabularies (WordPiece "bert", Unigram "t5", RWKV) are an error.

const QWEN2_SPLIT = String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
const QWEN35_SPLIT = String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
const LLAMA3_SPLIT = String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
const TEKKEN_SPLIT = String.raw`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
const GPT4O_SPLIT = String.raw`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`;

/** transformers' GGUF_PRE_TOKENIZER_SPLITS: tokenizer.ggml.pre → the regex its merges were learned with. */
export const GGUF_PRE_TOKENIZER_SPLITS: Readonly<Record<string, string>> = {
  llama3: LLAMA3_SPLIT, "llama-v3": LLAMA3_SPLIT, "llama-bpe": LLAMA3_SPLIT, falcon3: LLAMA3_SPLIT, "falcon-h1": LLAMA3_SPLIT,
  pixtral: LLAMA3_SPLIT, "midm-2.0": LLAMA3_SPLIT, lfm2: LLAMA3_SPLIT, "jina-v5-nano": LLAMA3_SPLIT, dbrx: LLAMA3_SPLIT,
  "smaug-bpe": LLAMA3_SPLIT, tekken: TEKKEN_SPLIT, qwen2: QWEN2_SPLIT, "deepseek-r1-qwen": QWEN2_SPLIT, kormo: QWEN2_SPLIT,
  f2llmv2: QWEN2_SPLIT, megrez: QWEN2_SPLIT, qwen35: QWEN35_SPLIT, "gpt-4o": GPT4O_SPLIT, llama4: GPT4O_SPLIT,
  kanana2: GPT4O_SPLIT, talkie: GPT4O_SPLIT, "minimax-m2": GPT4O_SPLIT,
};

/** GPT-2's bytes_to_unicode: each byte's printable stand-in. */
function byteAlphabet(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const out: string[] = new Array(256);
  bs.forEach((b, i) => (out[b] = String.fromCodePoint(cs[i]!)));
  return out;
}

/** transformers' generate_merges: the merges a vocabulary implies, best first by `scores` (token → score, in order). */
function generateMerges(vocab: Map<string, number>, scores: Map<string, number>): [string, string][] {
  const merges: { l: string; r: string; score: number; ll: number; rl: number }[] = [];
  for (const [merge, score] of scores) {
    const chars = Array.from(merge);
    const local: typeof merges = [];
    for (let i = 1; i < chars.length; i++) {
      const l = chars.slice(0, i).join("");
      const r = chars.slice(i).join("");
      if (vocab.has(l) && vocab.has(r)) local.push({ l, r, score, ll: i, rl: chars.length - i });
    }
    local.sort((a, b) => vocab.get(a.l)! - vocab.get(b.l)! || vocab.get(a.r)! - vocab.get(b.r)!);
    for (const m of local) merges.push(m);
  }
  // sorted(key=(score, len(l), len(r)), reverse=True): descending, ties in their order (both sorts are stable).
  merges.sort((a, b) => b.score - a.score || b.ll - a.ll || b.rl - a.rl);
  return merges.map((m) => [m.l, m.r]);
}

const SP_DECODER = [{ type: "Replace", pattern: { String: "\u2581" }, content: " " }, { type: "ByteFallback" }, { type: "Fuse" }];

/** The normalizer, pre-tokenizer, decoder and unk token of transformers' SentencePiece builders, by architecture. */
function sentencepiecePipeline(arch: string): Record<string, unknown> {
  const strip = { type: "Strip", content: " ", start: 1, stop: 0 };
  if (arch === "gemma" || arch === "gemma2" || arch === "gemma3") {
    // GemmaTokenizer: spaces become ▁ in the normalizer, split after each one; no prefix space, no strip.
    return {
      normalizer: { type: "Replace", pattern: { String: " " }, content: "\u2581" },
      pre_tokenizer: { type: "Split", pattern: { String: " " }, behavior: "MergedWithPrevious", invert: false },
      decoder: { type: "Sequence", decoders: SP_DECODER },
      unk_token: "<unk>",
    };
  }
  if (arch === "phi3") {
    // phi3_tokenizer: the prefix ▁ from a normalizer, no pre-tokenizer.
    return {
      normalizer: { type: "Sequence", normalizers: [{ type: "Prepend", prepend: "\u2581" }, { type: "Replace", pattern: { String: " " }, content: "\u2581" }] },
      pre_tokenizer: null,
      decoder: { type: "Sequence", decoders: [...SP_DECODER, strip] },
      unk_token: null,
    };
  }
  // LlamaTokenizer: Metaspace with a prefix ▁ on the first word.
  return {
    normalizer: null,
    pre_tokenizer: { type: "Metaspace", replacement: "\u2581", prepend_scheme: "first", split: false },
    decoder: { type: "Sequence", decoders: [...SP_DECODER, strip] },
    unk_token: null,
  };
}

/** The special tokens GemmaTokenizer's constructor adds when the vocabulary lacks them (its defaults), in order. */
const GEMMA_DEFAULT_SPECIALS = ["<bos>", "<eos>", "<unk>", "<pad>", "<mask>"];

/** tokenizer.json and tokenizer_config.json of a GGUF file's tokenizer.ggml.* metadata (see above). */
export function ggufTokenizer(g: GGUFFile): { tokenizer: Record<string, unknown>; config: Record<string, unknown> } {
  const m = g.metadata;
  const model = m.get("tokenizer.ggml.model");
  if (model === undefined) throw new Error(`${g.name}: no tokenizer.ggml.model in the metadata; the file has no tokenizer (load one from the model's repository)`);
  if (model !== "gpt2" && model !== "llama") {
    throw new Error(
      `${g.name}: tokenizer.ggml.model is ${JSON.stringify(model)}; webtune builds tokenizers from GGUF files of byte-level BPE ("gpt2": GPT-2, Llama 3, Qwen, SmolLM) ` +
        `and SentencePiece BPE ("llama": Llama 2, Gemma, Phi-3) vocabularies: load the tokenizer from the original model's tokenizer.json`,
    );
  }
  const tokens0 = m.get("tokenizer.ggml.tokens");
  if (!Array.isArray(tokens0) || !tokens0.every((t) => typeof t === "string")) throw new Error(`${g.name}: tokenizer.ggml.tokens is not an array of strings (${g.types.get("tokenizer.ggml.tokens") ?? "absent"})`);
  const arch = typeof m.get("general.architecture") === "string" ? (m.get("general.architecture") as string) : "";
  const gemma = arch === "gemma" || arch === "gemma2" || arch === "gemma3";
  const byteLevel = model === "gpt2";
  // gemma_tokenizer: a token of only (two or more) spaces is stored as spaces; GemmaTokenizer looks it up as ▁s.
  const tokens = !byteLevel && gemma ? (tokens0 as string[]).map((t) => (t.includes(" ") && t.trim() === "" ? "\u2581".repeat(t.length) : t)) : (tokens0 as string[]);
  const types = m.get("tokenizer.ggml.token_type");
  const typeOf = (i: number): number => (ArrayBuffer.isView(types) ? Number((types as Int32Array)[i] ?? 1) : 1);
  const alphabet = byteAlphabet();
  const spelled = new Set(alphabet);
  const inAlphabet = (t: string) => [...t].every((ch) => spelled.has(ch));
  const enc = new TextEncoder();
  const vocab = new Map<string, number>();
  tokens.forEach((t, i) => vocab.set(byteLevel && !inAlphabet(t) ? Array.from(enc.encode(t), (b) => alphabet[b]).join("") : t, i));
  const merges = m.get("tokenizer.ggml.merges");
  if (merges !== undefined && !(Array.isArray(merges) && merges.every((x) => typeof x === "string"))) throw new Error(`${g.name}: tokenizer.ggml.merges is not an array of strings`);
  let pairs: string[][];
  if (merges !== undefined) pairs = (merges as string[]).map((x) => x.split(" "));
  else if (byteLevel) throw new Error(`${g.name}: the byte-level BPE tokenizer has no tokenizer.ggml.merges`);
  else {
    // No merges (SentencePiece files): derived from the vocabulary, best first by score (Gemma: by file order).
    const scores = new Map<string, number>();
    const s = m.get("tokenizer.ggml.scores");
    if (gemma) tokens.forEach((t, i) => scores.set(t, -i));
    else if (s instanceof Float32Array && s.length === tokens.length) tokens.forEach((t, i) => scores.set(t, s[i]!));
    else throw new Error(`${g.name}: the SentencePiece vocabulary has neither tokenizer.ggml.merges nor one tokenizer.ggml.scores f32 per token`);
    pairs = generateMerges(vocab, scores);
  }
  const added: { id: number; content: string; single_word: boolean; lstrip: boolean; rstrip: boolean; normalized: boolean; special: boolean }[] = [];
  const addedIds = new Set<number>();
  let next = tokens.length;
  const add = (content: string, special: boolean, create: boolean) => {
    const have = vocab.get(content) ?? added.find((a) => a.content === content)?.id;
    if (have === undefined && !create) return;
    const id = have ?? next++;
    if (addedIds.has(id)) return;
    addedIds.add(id);
    added.push({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special });
  };
  // GemmaTokenizer's constructor (the SentencePiece builder's class) adds its default special tokens first.
  if (!byteLevel && gemma) for (const t of GEMMA_DEFAULT_SPECIALS) add(t, true, true);
  tokens.forEach((t, i) => {
    if (typeOf(i) === 3 && (!byteLevel || inAlphabet(t))) add(t, true, false);
  });
  tokens.forEach((t, i) => {
    if (typeOf(i) === 4) add(t, false, false);
  });
  // The tokenizer class of the model type wraps it with its own defaults: GemmaTokenizer's mask_token.
  if (gemma) add("<mask>", true, true);
  added.sort((a, b) => a.id - b.id);
  const pre = m.get("tokenizer.ggml.pre");
  const split = typeof pre === "string" ? GGUF_PRE_TOKENIZER_SPLITS[pre] : undefined;
  const post = { type: "TemplateProcessing", single: [{ Sequence: { id: "A", type_id: 0 } }], pair: [{ Sequence: { id: "A", type_id: 0 } }, { Sequence: { id: "B", type_id: 1 } }], special_tokens: {} };
  const bpe = { type: "BPE", dropout: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, unk_token: null as string | null, continuing_subword_prefix: "" as string | null, end_of_word_suffix: "" as string | null };
  let pipeline: Record<string, unknown>;
  if (byteLevel) {
    pipeline = {
      normalizer: null,
      pre_tokenizer: split
        ? { type: "Sequence", pretokenizers: [{ type: "Split", pattern: { Regex: split }, behavior: "Isolated", invert: false }, { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false }] }
        : { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
      decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    };
  } else {
    const { unk_token, ...rest } = sentencepiecePipeline(arch);
    pipeline = rest;
    Object.assign(bpe, { fuse_unk: true, byte_fallback: true, unk_token, continuing_subword_prefix: null, end_of_word_suffix: null });
  }
  const tokenizer = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: pipeline.normalizer,
    pre_tokenizer: pipeline.pre_tokenizer,
    post_processor: post,
    decoder: pipeline.decoder,
    model: { ...bpe, vocab: Object.fromEntries(vocab), merges: pairs },
  };
  const config: Record<string, unknown> = {};
  for (const [name, key] of [["bos_token", "bos_token_id"], ["eos_token", "eos_token_id"], ["unk_token", "unknown_token_id"], ["pad_token", "padding_token_id"]] as const) {
    const id = m.get(`tokenizer.ggml.${key}`);
    config[name] = typeof id === "number" && id >= 0 && id < tokens.length ? tokens0[id] : null;
  }
  const template = m.get("tokenizer.chat_template");
  if (typeof template === "string") config.chat_template = template;
  return { tokenizer, config };
}
