// The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian header
// length N, N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {str: str}},
// then the tensors' bytes, offsets relative to the end of the header.
import { f16ToF32, f32ToF16 } from "../tensor/half.ts";
import type { ModelSource } from "../io/source.ts";

/** The dtypes webtune reads and writes. */
export type SafetensorsDType = "F32" | "F16" | "BF16";

export const SAFETENSORS_DTYPE_BYTES: Record<SafetensorsDType, number> = { F32: 4, F16: 2, BF16: 2 };

/** One tensor to write: F32 data as a Float32Array, F16/BF16 as the raw 16-bit words. */
export interface SafetensorsEntry {
  dtype: SafetensorsDType;
  shape: readonly number[];
  data: Float32Array | Uint16Array;
}

/**
 * A safetensors file holding `tensors` (laid out in the order given) and string `metadata` (as PEFT writes
 * {"format": "pt"}). The header is padded with spaces to a multiple of 8 bytes, as the Rust writer does.
 */
export function writeSafetensors(tensors: Record<string, SafetensorsEntry>, metadata?: Record<string, string>): Uint8Array<ArrayBuffer> {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const elems = t.shape.reduce((a, b) => a * b, 1);
    const bytes = elems * SAFETENSORS_DTYPE_BYTES[t.dtype];
    if (t.data.byteLength !== bytes) {
      throw new Error(`writeSafetensors: tensor "${name}" has ${t.data.byteLength} bytes of data for ${t.dtype} [${t.shape.join(", ")}] (${bytes} expected)`);
    }
    if ((t.dtype === "F32") !== t.data instanceof Float32Array) {
      throw new Error(`writeSafetensors: tensor "${name}": ${t.dtype} data must be a ${t.dtype === "F32" ? "Float32Array" : "Uint16Array"}`);
    }
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const raw = new TextEncoder().encode(JSON.stringify(header));
  const head = new Uint8Array(raw.length + ((8 - (raw.length % 8)) % 8)).fill(0x20);
  head.set(raw);
  const out = new Uint8Array(8 + head.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let at = 8 + head.length;
  for (const t of Object.values(tensors)) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    at += t.data.byteLength;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Reading. The header is validated completely before any tensor byte is read: every range must lie inside
// the file (so a truncated download is caught from the header and the file size alone), sizes must match
// dtype × shape, and no two ranges may overlap. Tensors are then read one byte range at a time, so loading
// a model never holds a whole file in JS memory.

/** Headers larger than this are refused (real ones are well under 1 MB even for thousands of tensors). */
export const SAFETENSORS_MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** One tensor of a parsed header. */
export interface SafetensorsTensorInfo {
  dtype: SafetensorsDType;
  shape: number[];
  /** Absolute byte range of the tensor's data in the file, [start, end) (header included in the offsets). */
  start: number;
  end: number;
}

/** A validated safetensors header. */
export interface SafetensorsHeader {
  /** The file's label in messages. */
  file: string;
  /** The file's size in bytes. */
  size: number;
  /** Where the data section begins: 8 + the header length. */
  dataStart: number;
  /** The tensors in the header's order. */
  tensors: Map<string, SafetensorsTensorInfo>;
  /** `__metadata__` (string to string), {} when absent. */
  metadata: Record<string, string>;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const SUPPORTED = "webtune reads F32, F16 and BF16 tensors only";

function isDType(d: unknown): d is SafetensorsDType {
  return d === "F32" || d === "F16" || d === "BF16";
}

/**
 * The header length N from the first 8 bytes of a file of `size` bytes, checked: the file holds at least
 * 8 bytes, N is at most SAFETENSORS_MAX_HEADER_BYTES and the header does not run past the end of the file.
 * `file` labels the errors.
 */
export function safetensorsHeaderLength(first8: Uint8Array, size: number, file = "safetensors file"): number {
  if (size >= 8 && first8.length < 8) throw new Error(`safetensorsHeaderLength(${file}): needs the first 8 bytes, got ${first8.length}`);
  if (size < 8) {
    throw new Error(
      `${file}: the file is ${size} bytes, too short for the 8-byte header length every safetensors file begins with (not a safetensors file, or an empty/truncated download)`,
    );
  }
  const n = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(SAFETENSORS_MAX_HEADER_BYTES)) {
    throw new Error(
      `${file}: the header length is ${n} bytes, more than the ${SAFETENSORS_MAX_HEADER_BYTES}-byte limit (not a safetensors file, or a corrupt one)`,
    );
  }
  if (8n + n > BigInt(size)) {
    throw new Error(`${file}: the header length is ${n} bytes, which runs past the end of the ${size}-byte file (a truncated download, or not a safetensors file)`);
  }
  return Number(n);
}

/**
 * Parses and validates a safetensors header. `bytes` begins at the start of the file and holds at least the
 * 8 + N header bytes (the whole file is fine); `size` is the file's size (default `bytes.length`), against
 * which every tensor's range is checked. `file` labels the errors, which name the tensor where there is one.
 */
export function parseSafetensorsHeader(bytes: Uint8Array, options: { file?: string; size?: number } = {}): SafetensorsHeader {
  const file = options.file ?? "safetensors file";
  const size = options.size ?? bytes.length;
  const n = safetensorsHeaderLength(bytes.subarray(0, 8), size, file);
  if (bytes.length < 8 + n) {
    throw new Error(`parseSafetensorsHeader(${file}): got ${bytes.length} bytes, but the header needs the first ${8 + n}`);
  }
  return parseHeaderJson(bytes.subarray(8, 8 + n), size, file);
}

/** The header's JSON (the N bytes after the length) validated against a file of `size` bytes. */
function parseHeaderJson(json: Uint8Array, size: number, file: string): SafetensorsHeader {
  const dataStart = 8 + json.length;
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(json));
  } catch (e) {
    throw new Error(`${file}: the ${json.length}-byte header is not valid UTF-8 JSON (${(e as Error).message}); not a safetensors file, or a corrupt one`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new Error(`${file}: the header is JSON but not an object of tensors (it is ${Array.isArray(parsed) ? "an array" : String(parsed)})`);
  }
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, SafetensorsTensorInfo>();
  for (const [name, entry] of Object.entries(parsed as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
        throw new Error(`${file}: "__metadata__" must be an object of strings, not ${JSON.stringify(entry)}`);
      }
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== "string") throw new Error(`${file}: "__metadata__" value "${k}" is ${JSON.stringify(v)}; safetensors metadata values must be strings`);
        metadata[k] = v;
      }
      continue;
    }
    const where = `${file}: tensor "${name}"`;
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      throw new Error(`${where} is ${JSON.stringify(entry)}, not an object {dtype, shape, data_offsets}`);
    }
    const { dtype, shape, data_offsets } = entry as Record<string, unknown>;
    if (typeof dtype !== "string") throw new Error(`${where} has no dtype string (got ${JSON.stringify(dtype)})`);
    if (!isDType(dtype)) throw new Error(`${where} has dtype ${dtype}; ${SUPPORTED} (convert the checkpoint, e.g. with torch: model.to(torch.float32) then save_pretrained)`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new Error(`${where} has shape ${JSON.stringify(shape)}; a shape must be an array of non-negative integers`);
    }
    if (!Array.isArray(data_offsets) || data_offsets.length !== 2 || !data_offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      throw new Error(`${where} has data_offsets ${JSON.stringify(data_offsets)}; they must be two non-negative integers [begin, end]`);
    }
    const [begin, end] = data_offsets as [number, number];
    if (end < begin) throw new Error(`${where} has data_offsets [${begin}, ${end}], which end before they begin`);
    const elems = (shape as number[]).reduce((a, b) => a * b, 1);
    const bytes = elems * SAFETENSORS_DTYPE_BYTES[dtype];
    if (bytes !== end - begin) {
      throw new Error(`${where} claims ${dtype} [${shape.join(", ")}] (${bytes} bytes) but its data_offsets span ${end - begin} bytes (a corrupt header)`);
    }
    if (dataStart + end > size) {
      throw new Error(
        `${where}: its data_offsets [${begin}, ${end}] end at byte ${dataStart + end}, past the end of the ${size}-byte file (the file is truncated: download it again)`,
      );
    }
    tensors.set(name, { dtype, shape: [...(shape as number[])], start: dataStart + begin, end: dataStart + end });
  }
  const byStart = [...tensors].filter(([, t]) => t.end > t.start).sort((a, b) => a[1].start - b[1].start);
  for (let i = 1; i < byStart.length; i++) {
    const [pn, p] = byStart[i - 1]!;
    const [cn, c] = byStart[i]!;
    if (c.start < p.end) {
      const off = (t: SafetensorsTensorInfo) => `[${t.start - dataStart}, ${t.end - dataStart}]`;
      throw new Error(`${file}: tensor "${cn}" (data_offsets ${off(c)}) overlaps tensor "${pn}" (data_offsets ${off(p)}); a corrupt header`);
    }
  }
  return { file, size, dataStart, tensors, metadata };
}

// ---------------------------------------------------------------------------------------------------------
// Conversions. Typed-array views need aligned offsets (4 bytes for Float32Array, 2 for Uint16Array), and a
// view would alias whatever buffer the bytes live in; so bytes are viewed in place only when they are a
// whole buffer of their own (a fresh read), and copied otherwise.

function ownsBuffer(b: Uint8Array): boolean {
  return b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer;
}

function asF32(b: Uint8Array): Float32Array {
  const n = b.length >>> 2;
  if (!LITTLE_ENDIAN) {
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    return Float32Array.from({ length: n }, (_, i) => dv.getFloat32(4 * i, true));
  }
  const own = ownsBuffer(b) ? b : b.slice();
  return new Float32Array(own.buffer, own.byteOffset, n);
}

function asU16(b: Uint8Array): Uint16Array {
  const n = b.length >>> 1;
  if (!LITTLE_ENDIAN) {
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    return Uint16Array.from({ length: n }, (_, i) => dv.getUint16(2 * i, true));
  }
  const own = ownsBuffer(b) ? b : b.slice();
  return new Uint16Array(own.buffer, own.byteOffset, n);
}

/** bfloat16 words to float32 (exact: a bf16 is the top half of an f32). */
export function bf16ToF32(src: Uint16Array): Float32Array {
  const out = new Uint32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i]! << 16;
  return new Float32Array(out.buffer);
}

/** float32 to bfloat16 words, rounding to nearest even (NaN stays a quiet NaN). */
export function f32ToBF16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(Float32Array.from(src).buffer);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const x = bits[i]!;
    if ((x & 0x7fffffff) > 0x7f800000) out[i] = (x >>> 16) | 0x40;
    else out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** A tensor's little-endian bytes in `dtype` as float32 (F16 and BF16 converted exactly). */
export function bytesToF32(dtype: SafetensorsDType, bytes: Uint8Array): Float32Array {
  if (dtype === "F32") return asF32(bytes);
  return dtype === "F16" ? f16ToF32(asU16(bytes)) : bf16ToF32(asU16(bytes));
}

/** A tensor's little-endian bytes in `dtype` as IEEE half words (F32 and BF16 rounded to nearest even). */
export function bytesToF16(dtype: SafetensorsDType, bytes: Uint8Array): Uint16Array {
  if (dtype === "F16") return asU16(bytes);
  return f32ToF16(dtype === "F32" ? asF32(bytes) : bf16ToF32(asU16(bytes)));
}

// ---------------------------------------------------------------------------------------------------------
// Streaming reader over a ModelSource.

/** Up to `count` of `names` nearest to `name` (edit distance), for "did you mean" messages. */
function nearNames(name: string, names: Iterable<string>, count = 3): string[] {
  const dist = (a: string, b: string): number => {
    let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      const cur = [i];
      for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
    return prev[b.length]!;
  };
  return [...names]
    .map((n) => [n, dist(name, n)] as const)
    .sort((a, b) => a[1] - b[1])
    .slice(0, count)
    .map(([n]) => n);
}

function unknownTensor(name: string, where: string, names: string[]): Error {
  const near = nearNames(name, names);
  return new Error(`no tensor "${name}" in ${where} (${names.length} tensors${near.length ? `; nearest: ${near.map((n) => `"${n}"`).join(", ")}` : ""})`);
}

/** One safetensors file of a ModelSource: its validated header, and its tensors read one at a time. */
export class SafetensorsFile {
  private constructor(
    readonly source: ModelSource,
    /** The file's path in the source. */
    readonly file: string,
    readonly header: SafetensorsHeader,
  ) {}

  /** Reads and validates the header of `file` with two ranged reads (the 8-byte length, then the JSON). */
  static async open(source: ModelSource, file: string): Promise<SafetensorsFile> {
    const label = `${file} in ${source.name}`;
    const size = await source.size(file);
    const n = safetensorsHeaderLength(size >= 8 ? await source.read(file, 0, 8) : new Uint8Array(0), size, label);
    const json = await source.read(file, 8, 8 + n);
    if (json.length !== n) throw new Error(`${label}: asked for the ${n}-byte header, the source gave ${json.length} bytes`);
    return new SafetensorsFile(source, file, parseHeaderJson(json, size, label));
  }

  /** Tensor names in the header's order. */
  get names(): string[] {
    return [...this.header.tensors.keys()];
  }

  get metadata(): Record<string, string> {
    return this.header.metadata;
  }

  has(name: string): boolean {
    return this.header.tensors.has(name);
  }

  /** A tensor's dtype, shape and byte range; an error listing near names when there is no such tensor. */
  info(name: string): SafetensorsTensorInfo {
    const t = this.header.tensors.get(name);
    if (!t) throw unknownTensor(name, this.header.file, this.names);
    return t;
  }

  /** The raw little-endian bytes of one tensor (one ranged read). */
  async readBytes(name: string): Promise<Uint8Array> {
    const t = this.info(name);
    const bytes = await this.source.read(this.file, t.start, t.end);
    if (bytes.length !== t.end - t.start) {
      throw new Error(`${this.header.file}: tensor "${name}": read ${bytes.length} bytes of ${t.end - t.start} (the file changed or the source is broken)`);
    }
    return bytes;
  }

  /** One tensor as float32 (F16 and BF16 converted). */
  async readF32(name: string): Promise<Float32Array> {
    return bytesToF32(this.info(name).dtype, await this.readBytes(name));
  }

  /** One tensor as IEEE half words, for f16 storage (F32 and BF16 rounded to nearest even). */
  async readF16(name: string): Promise<Uint16Array> {
    return bytesToF16(this.info(name).dtype, await this.readBytes(name));
  }
}

/** A tensor of a model's weights: its dtype and shape, and the file that holds it. */
export interface WeightInfo {
  dtype: SafetensorsDType;
  shape: number[];
  file: string;
}

export const WEIGHTS_FILE = "model.safetensors";
export const WEIGHTS_INDEX_FILE = "model.safetensors.index.json";

/** The weights of a model directory, over one or several safetensors files, each header parsed once. */
export class ModelWeights {
  private constructor(
    readonly source: ModelSource,
    /** The safetensors files, in the order first named. */
    readonly files: SafetensorsFile[],
    private readonly where: Map<string, SafetensorsFile>,
  ) {}

  /**
   * The weights in `source`: `model.safetensors` when present, else the shards named by
   * `model.safetensors.index.json` (every shard must exist and hold the tensors the index puts in it);
   * an error when neither file is there.
   */
  static async open(source: ModelSource): Promise<ModelWeights> {
    if (await source.exists(WEIGHTS_FILE)) {
      const f = await SafetensorsFile.open(source, WEIGHTS_FILE);
      return new ModelWeights(source, [f], new Map(f.names.map((n) => [n, f])));
    }
    if (!(await source.exists(WEIGHTS_INDEX_FILE))) {
      throw new Error(
        `neither ${WEIGHTS_FILE} nor ${WEIGHTS_INDEX_FILE} found in ${source.name}: webtune loads safetensors weights only (a checkpoint with only pytorch_model.bin must be converted, e.g. save_pretrained(..., safe_serialization=True))`,
      );
    }
    const label = `${WEIGHTS_INDEX_FILE} in ${source.name}`;
    const index = await source.json<{ weight_map?: unknown }>(WEIGHTS_INDEX_FILE);
    const map = index?.weight_map;
    if (typeof map !== "object" || map === null || Array.isArray(map)) {
      throw new Error(`${label} has no "weight_map" object (tensor name -> shard file)`);
    }
    const byShard = new Map<string, string[]>();
    for (const [name, shard] of Object.entries(map)) {
      if (typeof shard !== "string" || shard === "" || shard.startsWith("/") || shard.split("/").includes("..")) {
        throw new Error(`${label}: tensor "${name}" maps to ${JSON.stringify(shard)}, not a file name in the model directory`);
      }
      byShard.get(shard)?.push(name) ?? byShard.set(shard, [name]);
    }
    if (byShard.size === 0) throw new Error(`${label}: "weight_map" is empty`);
    const files: SafetensorsFile[] = [];
    const where = new Map<string, SafetensorsFile>();
    for (const [shard, names] of byShard) {
      if (!(await source.exists(shard))) {
        throw new Error(`${label} names shard ${shard} (holding "${names[0]}"${names.length > 1 ? ` and ${names.length - 1} more` : ""}), which is not in ${source.name}: download it too`);
      }
      const f = await SafetensorsFile.open(source, shard);
      for (const name of names) {
        if (!f.has(name)) throw new Error(`${label} puts tensor "${name}" in ${shard}, but that file's header has no such tensor (${f.names.length} tensors)`);
        where.set(name, f);
      }
      files.push(f);
    }
    return new ModelWeights(source, files, where);
  }

  /** Tensor names: the file's order, or the index's. */
  get names(): string[] {
    return [...this.where.keys()];
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  private fileOf(name: string): SafetensorsFile {
    const f = this.where.get(name);
    if (!f) throw unknownTensor(name, `the weights in ${this.source.name}`, this.names);
    return f;
  }

  /** A tensor's dtype, shape and file; an error listing near names when there is no such tensor. */
  info(name: string): WeightInfo {
    const f = this.fileOf(name);
    const t = f.info(name);
    return { dtype: t.dtype, shape: [...t.shape], file: f.file };
  }

  /** One tensor as float32 (one ranged read of its bytes). */
  readF32(name: string): Promise<Float32Array> {
    return this.fileOf(name).readF32(name);
  }

  /** One tensor as IEEE half words (one ranged read of its bytes). */
  readF16(name: string): Promise<Uint16Array> {
    return this.fileOf(name).readF16(name);
  }
}

/** The safetensors weights of a model directory; see ModelWeights.open. */
export function openWeights(source: ModelSource): Promise<ModelWeights> {
  return ModelWeights.open(source);
}
