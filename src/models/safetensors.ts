// The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian header
// length N, N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {str: str}},
// then the tensors' bytes, offsets relative to the end of the header.

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
export function writeSafetensors(tensors: Record<string, SafetensorsEntry>, metadata?: Record<string, string>): Uint8Array {
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
