// Packed weight formats (frozen quantized bases: block formats, and bf16): their byte layouts, host quantize / dequantize, and the WGSL
// that reads them inside the kernels. The weight-format table (format.ts) points here for every format whose
// storage is not a plain WGSL element type.
//
// A tensor of a block format is its blocks back to back, one row of K elements spanning K / blockSize whole
// blocks (K % blockSize == 0, checked by quantize()), element e in block e / blockSize. On the GPU the bytes
// are an array<u32> (little-endian words; layouts with an odd number of 16-bit halves per block straddle
// words, which the loads handle).
//
// GGUF layouts, values and arithmetic are llama.cpp's (ggml-common.h block_q*, ggml-quants.c dequantize_row_*),
// matched bit for bit against the `gguf` Python package's gguf.quants (tests/tensor/quant.test.ts). Every step
// is f32 (Math.fround), in the order gguf.quants' numpy code does it:
//   q8_0  34 B / 32: d f16, qs int8[32]                                   y = qs·d
//   q4_0  18 B / 32: d f16, qs[16] (element j < 16: low nibble of qs[j], j >= 16: high nibble of qs[j-16])
//                                                                          y = d·(q - 8)
//   q4_1  20 B / 32: d f16, m f16, qs[16]                                  y = d·q + m
//   q5_0  22 B / 32: d f16, qh u32 (bit j: 5th bit of element j), qs[16]  y = d·(q - 16)
//   q5_1  24 B / 32: d f16, m f16, qh u32, qs[16]                          y = d·q + m
//   q4_k 144 B / 256: d f16, dmin f16, scales[12] (8 6-bit scales and mins), qs[128]: sub-block s of 32
//                     (s = e / 32) takes nibble s % 2 of qs[32·(s / 2) + e % 32]      y = (d·sc_s)·q - dmin·m_s
//   q5_k 176 B / 256: as q4_k plus qh[32] before qs (bit s of qh[e % 32] is q's 5th bit)
//   q6_k 210 B / 256: ql[128], qh[64], scales int8[16], d f16: half h = e / 128, quarter r = (e % 128) / 32,
//                     l = e % 32: q = (nibble r / 2 of ql[64h + 32(r % 2) + l]) | (bits 2r of qh[32h + l]) << 4,
//                     minus 32; y = (d·sc_{e / 16})·q
//   bf16   2 B / 1: the top half of the f32 (quantize: round to nearest even, NaN kept quiet: ggml's)
// bitsandbytes-style 4-bit (bitsandbytes/functional.py quantize_4bit / dequantize_4bit with blocksize 64, no
// double quantization; the CUDA kernels kQuantizeBlockwise / kDequantizeBlockwise, dQuantizeNF4 / dQuantizeFP4 /
// dDequantizeFP4Tree in csrc/kernels.cu), one block per 64 elements:
//   nf4, fp4  36 B / 64: absmax f32, then 32 bytes of codes, element 2i in the HIGH nibble of byte i and 2i+1
//             in the low one (bitsandbytes' packing). Quantize: x = w · (1 / absmax) in f32, the code of x by
//             the kernels' decision trees (NF4: x > the f32 midpoint of neighbouring code values; FP4: its
//             literal pivots); y = code value · absmax (FP4: times the sign).
// bitsandbytes' double quantization (quantize_4bit with compress_statistics=True, bnb_4bit_use_double_quant): the
// codes as nf4 / fp4 from each block's own f32 absmax; then the tensor's absmax vector a (one per 64-block, in
// element order) is stored as offset = mean(a) plus quantize_blockwise(a − offset, blocksize 256) with the signed
// dynamic map (DYNAMIC_MAP): per 256 absmax values an f32 absmax2 = max|a − offset| and per value an 8-bit index q,
// the nearest map value to (a − offset)·(1/absmax2) clamped to [−1, 1] (the CPU kernel's argmin; ties to the lower
// index). Dequantization (dequantize_blockwise, then + offset): absmax' = (map[q]·absmax2) + offset, in f32; then
// y = code value · absmax'. The offset is the mean summed in float64 and rounded to f32 (torch's float32 mean may
// differ from it by an ulp). Stored in groups of 256 blocks (16384 elements), the group's header first:
//   nf4_dq, fp4_dq  8456 B / 16384: absmax2 f32, offset f32 (the tensor's, repeated in every group), then per block
//             its q (u8) and its 32 code bytes (nf4 / fp4's packing): 33 B a block, 8 a group. A tensor's last group
//             may be partial, 8 + 33·k bytes for k blocks, so n elements take 33·ceil(n/64) + 8·ceil(n/16384)
//             bytes (4.129 bits a weight: bitsandbytes' 4.127 and the offset once a group; nf4's are 4.5).
//             Element e is in group e / 16384, block (e / 64) % 256 of it: blocks and groups run over the flat
//             element index, across rows (a row is whole 64-blocks, not whole groups), so such a tensor's rows are
//             not runs of bytes of their own (rowBytes refuses them): split a weight into row blocks before
//             quantizing, never its bytes after. The kernels read the map from a 256-entry WGSL table of it.
// LLM.int8 weight storage (bitsandbytes int8_vectorwise_quant / int8_vectorwise_dequant):
//   int8  36 B / 32: absmax f32 of the element's ROW (the row-wise absmax of the f16-cast weight, SCB), then
//         int8[32]; q = round(127 · w16 / absmax) in float64 (half to even, as torch.round), y = (q · absmax) · fround(1/127)
//         (bitsandbytes' 7.874015718698502e-3; its kernels compute q in f32 as w16 · (127 / absmax), which can round
//         a value within an f32 rounding of a half the other way). Stored as 32-element blocks that each repeat their row's scale,
//         so every format is a fixed block layout (1.125 bytes per element, not 1).
// The K-quants (q4_k, q5_k, q6_k) have no quantizer in gguf.quants; quantize() gives them a plain min/max one
// (per sub-block scale and min, then the super-block's 6-/8-bit scale codes), not llama.cpp's iterative search:
// their dequantization is exact; their bytes differ from llama-quantize's, and their error is likely a little larger
// (tests/tensor/quant.test.ts bounds it: within about half a step of each format).

import { f16ToF32, f32ToF16, floatToHalf, halfToFloat } from "./half.ts";

/** Formats of this file with a fixed block layout: every block the same bytes (CODECS). */
export type BlockFormat = "bf16" | "q8_0" | "q4_0" | "q4_1" | "q5_0" | "q5_1" | "q4_k" | "q5_k" | "q6_k" | "nf4" | "fp4" | "int8";
/** Double-quantized nf4 / fp4: blocks in groups of 256 behind a header (see the file's header). */
export type NestedFormat = "nf4_dq" | "fp4_dq";
/** Formats of this file (keys of format.ts's table whose storage is packed bytes). */
export type PackedFormat = BlockFormat | NestedFormat;

/** A packed format's storage: blocks of blockSize elements in bytesPerBlock bytes, maybe in groups behind a header. */
export interface PackedLayout {
  blockSize: number;
  bytesPerBlock: number;
  /** Grouped formats (nf4_dq, fp4_dq): `blocks` per group, after `headerBytes` of the group's own. */
  group?: { blocks: number; headerBytes: number };
}

export interface BlockCodec {
  blockSize: number;
  bytesPerBlock: number;
  /** Decodes the block at byte `o` of `b` into `y[d, d + blockSize)`. */
  decode(b: DataView, o: number, y: Float32Array, d: number): void;
  /** Encodes `x[s, s + blockSize)` into the block at byte `o` of `b`; `rowAbsmax`: int8's row scale. */
  encode(x: Float32Array, s: number, b: DataView, o: number, rowAbsmax: number): void;
}

const fr = Math.fround;
// Scratch for bf16's bit casts.
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

// f16 scalars: half.ts (the rounding f32ToF16 / f16ToF32 use for arrays).
const f16At = (b: DataView, o: number) => halfToFloat(b.getUint16(o, true));
const putF16 = (b: DataView, o: number, x: number) => b.setUint16(o, floatToHalf(x), true);

// numpy's np_roundf in gguf.quants: round half away from zero.
const roundAway = (x: number) => {
  const a = Math.abs(x);
  const f = Math.floor(a);
  return Math.sign(x) * (f + Math.floor(2 * (a - f)));
};
/** Round half to even (torch.round, np.round). */
export function roundEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
const clip = (x: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, x));

/** The first element of largest |x| in x[s, s + n) (np.argmax of abs: the first of ties). */
function signedAbsmax(x: Float32Array, s: number, n: number): number {
  let best = x[s]!;
  for (let i = 1; i < n; i++) if (Math.abs(x[s + i]!) > Math.abs(best)) best = x[s + i]!;
  return best;
}
function minMax(x: Float32Array, s: number, n: number): [number, number] {
  let lo = x[s]!;
  let hi = x[s]!;
  for (let i = 1; i < n; i++) {
    lo = Math.min(lo, x[s + i]!);
    hi = Math.max(hi, x[s + i]!);
  }
  return [lo, hi];
}
const inv = (d: number) => (d === 0 ? 0 : fr(1 / d));

// ---- GGUF 32-element formats ----

/** Element j of a 32-block's 4-bit values from qs at byte o (low nibbles first). */
const nib32 = (b: DataView, o: number, j: number) => (b.getUint8(o + (j & 15)) >> (j < 16 ? 0 : 4)) & 15;
function packNibbles32(q: number[], b: DataView, o: number): void {
  for (let j = 0; j < 16; j++) b.setUint8(o + j, (q[j]! & 15) | ((q[j + 16]! & 15) << 4));
}
function packHigh32(q: number[], b: DataView, o: number): void {
  let qh = 0;
  for (let j = 0; j < 32; j++) qh |= (q[j]! >> 4) << j;
  b.setUint32(o, qh >>> 0, true);
}

const q8_0: BlockCodec = {
  blockSize: 32,
  bytesPerBlock: 34,
  decode(b, o, y, d) {
    const s = f16At(b, o);
    for (let j = 0; j < 32; j++) y[d + j] = fr(b.getInt8(o + 2 + j) * s);
  },
  encode(x, s, b, o) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[s + j]!));
    const d = fr(amax / 127);
    const id = inv(d);
    putF16(b, o, d);
    for (let j = 0; j < 32; j++) b.setInt8(o + 2 + j, roundAway(fr(x[s + j]! * id)));
  },
};

/** Q4_0 / Q5_0: symmetric, d = max / -2^(bits-1), q = trunc(x·id + 2^(bits-1) + 0.5). */
function symmetric32(bits: 4 | 5): BlockCodec {
  const half = bits === 4 ? 8 : 16;
  const qs = bits === 4 ? 2 : 6;
  return {
    blockSize: 32,
    bytesPerBlock: bits === 4 ? 18 : 22,
    decode(b, o, y, d) {
      const s = f16At(b, o);
      const qh = bits === 5 ? b.getUint32(o + 2, true) : 0;
      for (let j = 0; j < 32; j++) y[d + j] = fr(s * (nib32(b, o + qs, j) + (((qh >>> j) & 1) << 4) - half));
    },
    encode(x, s, b, o) {
      const d = fr(signedAbsmax(x, s, 32) / -half);
      const id = inv(d);
      const q: number[] = [];
      for (let j = 0; j < 32; j++) q.push(clip(Math.trunc(fr(fr(x[s + j]! * id) + (half + 0.5))), 0, 2 * half - 1));
      putF16(b, o, d);
      if (bits === 5) packHigh32(q, b, o + 2);
      packNibbles32(q, b, o + qs);
    },
  };
}

/** Q4_1 / Q5_1: d = (max - min) / (2^bits - 1), m = min, q = trunc((x - min)·id + 0.5). */
function affine32(bits: 4 | 5): BlockCodec {
  const top = bits === 4 ? 15 : 31;
  const qs = bits === 4 ? 4 : 8;
  return {
    blockSize: 32,
    bytesPerBlock: bits === 4 ? 20 : 24,
    decode(b, o, y, d) {
      const s = f16At(b, o);
      const m = f16At(b, o + 2);
      const qh = bits === 5 ? b.getUint32(o + 4, true) : 0;
      for (let j = 0; j < 32; j++) y[d + j] = fr(fr(s * (nib32(b, o + qs, j) + (((qh >>> j) & 1) << 4))) + m);
    },
    encode(x, s, b, o) {
      const [lo, hi] = minMax(x, s, 32);
      const d = fr(fr(hi - lo) / top);
      const id = inv(d);
      const q: number[] = [];
      for (let j = 0; j < 32; j++) q.push(clip(Math.trunc(fr(fr(fr(x[s + j]! - lo) * id) + 0.5)), 0, top));
      putF16(b, o, d);
      putF16(b, o + 2, lo);
      if (bits === 5) packHigh32(q, b, o + 4);
      packNibbles32(q, b, o + qs);
    },
  };
}

// ---- K-quants (super-blocks of 256) ----

/** The 6-bit scale and min of sub-block s (0..7) from the 12 packed bytes at o (get_scale_min_k4). */
function scaleMinK4(b: DataView, o: number, s: number): [number, number] {
  if (s < 4) return [b.getUint8(o + s) & 63, b.getUint8(o + 4 + s) & 63];
  const md = b.getUint8(o + 8 + s - 4);
  return [(md & 15) | ((b.getUint8(o + s - 4) >> 2) & 0x30), (md >> 4) | ((b.getUint8(o + 4 + s - 4) >> 2) & 0x30)];
}
function packScaleMinK4(sc: number[], mn: number[], b: DataView, o: number): void {
  for (let s = 0; s < 4; s++) {
    b.setUint8(o + s, (sc[s]! & 63) | ((sc[s + 4]! >> 4) << 6));
    b.setUint8(o + 4 + s, (mn[s]! & 63) | ((mn[s + 4]! >> 4) << 6));
    b.setUint8(o + 8 + s, (sc[s + 4]! & 15) | ((mn[s + 4]! & 15) << 4));
  }
}

/** Q4_K / Q5_K: y = (d·sc_s)·q - dmin·m_s with 6-bit sc, m per 32-element sub-block. */
function affineK(bits: 4 | 5): BlockCodec {
  const top = bits === 4 ? 15 : 31;
  const qs = bits === 4 ? 16 : 48;
  return {
    blockSize: 256,
    bytesPerBlock: bits === 4 ? 144 : 176,
    decode(b, o, y, d) {
      const dd = f16At(b, o);
      const dmin = f16At(b, o + 2);
      for (let s = 0; s < 8; s++) {
        const [sc, m] = scaleMinK4(b, o + 4, s);
        const ds = fr(dd * sc);
        const dm = fr(dmin * m);
        for (let l = 0; l < 32; l++) {
          let q = (b.getUint8(o + qs + 32 * (s >> 1) + l) >> (4 * (s & 1))) & 15;
          if (bits === 5) q |= ((b.getUint8(o + 16 + l) >> s) & 1) << 4;
          y[d + 32 * s + l] = fr(fr(ds * q) - dm);
        }
      }
    },
    encode(x, s0, b, o) {
      // Per sub-block: min folded at 0 or below (dmin·m >= 0 is subtracted), scale over the range.
      const scale: number[] = [];
      const lift: number[] = [];
      for (let s = 0; s < 8; s++) {
        const [lo, hi] = minMax(x, s0 + 32 * s, 32);
        lift.push(Math.max(0, -lo));
        scale.push((hi + Math.max(0, -lo)) / top);
      }
      const d = fr(halfToFloat(floatToHalf(Math.max(...scale) / 63)));
      const dmin = fr(halfToFloat(floatToHalf(Math.max(...lift) / 63)));
      const sc = scale.map((v) => (d > 0 ? clip(Math.round(v / d), 0, 63) : 0));
      const mn = lift.map((v) => (dmin > 0 ? clip(Math.round(v / dmin), 0, 63) : 0));
      putF16(b, o, d);
      putF16(b, o + 2, dmin);
      packScaleMinK4(sc, mn, b, o + 4);
      for (let i = 0; i < (bits === 4 ? 128 : 160); i++) b.setUint8(o + 16 + i, 0);
      for (let s = 0; s < 8; s++) {
        const ds = fr(d * sc[s]!);
        const dm = fr(dmin * mn[s]!);
        for (let l = 0; l < 32; l++) {
          const q = ds > 0 ? clip(Math.round((x[s0 + 32 * s + l]! + dm) / ds), 0, top) : 0;
          const at = o + qs + 32 * (s >> 1) + l;
          b.setUint8(at, b.getUint8(at) | ((q & 15) << (4 * (s & 1))));
          if (bits === 5) b.setUint8(o + 16 + l, b.getUint8(o + 16 + l) | ((q >> 4) << s));
        }
      }
    },
  };
}

const q6_k: BlockCodec = {
  blockSize: 256,
  bytesPerBlock: 210,
  decode(b, o, y, d) {
    const dd = f16At(b, o + 208);
    for (let e = 0; e < 256; e++) {
      const h = e >> 7;
      const r = (e & 127) >> 5;
      const l = e & 31;
      const lo = (b.getUint8(o + 64 * h + 32 * (r & 1) + l) >> (4 * (r >> 1))) & 15;
      const hi = (b.getUint8(o + 128 + 32 * h + l) >> (2 * r)) & 3;
      y[d + e] = fr(fr(dd * b.getInt8(o + 192 + (e >> 4))) * ((lo | (hi << 4)) - 32));
    }
  },
  encode(x, s0, b, o) {
    // Per 16 elements: a signed scale max / -32 (as Q4_0), then an int8 code of it against d = max|scale| / 127.
    const scale: number[] = [];
    for (let s = 0; s < 16; s++) scale.push(signedAbsmax(x, s0 + 16 * s, 16) / -32);
    const d = fr(halfToFloat(floatToHalf(Math.max(...scale.map(Math.abs)) / 127)));
    for (let i = 0; i < 192; i++) b.setUint8(o + i, 0);
    putF16(b, o + 208, d);
    for (let s = 0; s < 16; s++) {
      const sc = d > 0 ? clip(Math.round(scale[s]! / d), -128, 127) : 0;
      b.setInt8(o + 192 + s, sc);
      const ds = fr(d * sc);
      for (let i = 0; i < 16; i++) {
        const e = 16 * s + i;
        const q = (ds !== 0 ? clip(Math.round(x[s0 + e]! / ds), -32, 31) : 0) + 32;
        const h = e >> 7;
        const r = (e & 127) >> 5;
        const l = e & 31;
        const lo = o + 64 * h + 32 * (r & 1) + l;
        const hi = o + 128 + 32 * h + l;
        b.setUint8(lo, b.getUint8(lo) | ((q & 15) << (4 * (r >> 1))));
        b.setUint8(hi, b.getUint8(hi) | ((q >> 4) << (2 * r)));
      }
    }
  },
};

const bf16: BlockCodec = {
  blockSize: 1,
  bytesPerBlock: 2,
  decode(b, o, y, d) {
    u32[0] = b.getUint16(o, true) << 16;
    y[d] = f32[0]!;
  },
  encode(x, s, b, o) {
    f32[0] = x[s]!;
    let n = u32[0]!;
    if ((n & 0x7fffffff) > 0x7f800000) n = ((n & 0xffff0000) | (64 << 16)) >>> 0; // quiet NaN
    b.setUint16(o, Math.floor((n + 0x7fff + ((n >>> 16) & 1)) / 65536) & 0xffff, true);
  },
};

// ---- bitsandbytes 4-bit ----

/**
 * NF4 code values: bitsandbytes' nf4 table (functional.py get_4bit_type("nf4") and `nf4_data` in csrc/kernels.cu;
 * the 16 quantiles of N(0, 1) normalised to [-1, 1] from QLoRA, Dettmers et al. 2023, appendix E), code 7 = 0.
 */
export const NF4_CODE: readonly number[] = [
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334,
  -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
  0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
].map(fr);
/** dQuantizeNF4's tree: code = how many midpoints of neighbouring values x is above (x > t, ties go down). */
const NF4_PIVOTS = NF4_CODE.slice(1).map((v, i) => fr((NF4_CODE[i]! + v) / 2));

/**
 * FP4 code values (bitsandbytes' "fp4": sign bit, 2 exponent bits, 1 mantissa bit, normalised by 1/6, with its
 * subnormal 0b001 at 0.0052083), as dDequantizeFP4Tree's literals in csrc/kernels.cu: codes 0..7 positive, 8..15
 * the same magnitudes negative.
 */
export const FP4_CODE: readonly number[] = (() => {
  const pos = [0, 5.208333333e-3, 0.66666667, 1.0, 0.33333333, 0.5, 0.16666667, 0.25].map(fr);
  return [...pos, ...pos.map((v) => -v)];
})();
/** dQuantizeFP4's pivots (its literals): the decision tree over |x|. */
function fp4Code(x: number): number {
  const sign = x < 0 ? 8 : 0;
  const a = Math.abs(x);
  if (a > fr(0.29166667)) {
    if (a > fr(0.583333)) return (a > fr(0.8333333) ? 3 : 2) + sign;
    return (a > fr(0.4166667) ? 5 : 4) + sign;
  }
  if (a > fr(0.0859375)) return (a > fr(0.20833333) ? 7 : 6) + sign;
  return (a > fr(0.00260417) ? 1 : 0) + sign;
}
function nf4Code(x: number): number {
  // The first pivot x is not above (binary search: the tree's 4 comparisons); NaN gives 0, as the tree does.
  let lo = 0;
  let hi = 15;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (x > NF4_PIVOTS[mid]!) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The 64 values of a 4-bit block: its 32 code bytes at byte o (element 2i in the high nibble of byte i), times absmax. */
function decode4(table: readonly number[], b: DataView, o: number, absmax: number, y: Float32Array, d: number): void {
  for (let i = 0; i < 32; i++) {
    const v = b.getUint8(o + i);
    y[d + 2 * i] = fr(table[v >> 4]! * absmax);
    y[d + 2 * i + 1] = fr(table[v & 15]! * absmax);
  }
}

function bnb4(table: readonly number[], code: (x: number) => number, zero: number): BlockCodec {
  return {
    blockSize: 64,
    bytesPerBlock: 36,
    decode(b, o, y, d) {
      decode4(table, b, o + 4, b.getFloat32(o, true), y, d);
    },
    encode(x, s, b, o) {
      let absmax = 0;
      for (let j = 0; j < 64; j++) absmax = Math.max(absmax, Math.abs(x[s + j]!));
      const scale = fr(1 / absmax);
      b.setFloat32(o, absmax, true);
      const c = (j: number) => (absmax === 0 ? zero : code(fr(x[s + j]! * scale)));
      for (let i = 0; i < 32; i++) b.setUint8(o + 4 + i, (c(2 * i) << 4) | c(2 * i + 1));
    },
  };
}

const INV127 = fr(1 / 127); // 7.874015718698502e-3

const int8: BlockCodec = {
  blockSize: 32,
  bytesPerBlock: 36,
  decode(b, o, y, d) {
    const absmax = b.getFloat32(o, true);
    for (let j = 0; j < 32; j++) y[d + j] = fr(fr(b.getInt8(o + 4 + j) * absmax) * INV127);
  },
  // x is already f16-rounded (quantize() casts int8's values once), as LLM.int8 quantizes the f16 weight.
  encode(x, s, b, o, rowAbsmax) {
    b.setFloat32(o, rowAbsmax, true);
    for (let j = 0; j < 32; j++) b.setInt8(o + 4 + j, rowAbsmax === 0 ? 0 : clip(roundEven((127 * x[s + j]!) / rowAbsmax), -127, 127));
  },
};

export const CODECS: Readonly<Record<BlockFormat, BlockCodec>> = {
  bf16,
  q8_0,
  q4_0: symmetric32(4),
  q4_1: affine32(4),
  q5_0: symmetric32(5),
  q5_1: affine32(5),
  q4_k: affineK(4),
  q5_k: affineK(5),
  q6_k,
  nf4: bnb4(NF4_CODE, nf4Code, 7),
  fp4: bnb4(FP4_CODE, fp4Code, 0),
  int8,
};

// ---- bitsandbytes double quantization: nf4_dq, fp4_dq ----

/**
 * torch.linspace(start, end, steps, dtype=float32) on the CPU: step in f32, the two halves from either end, each
 * value one fused multiply-add (start + step·i rounded once: its vectorised kernel's fmadd; the product is exact
 * in float64 here, so one fround is that rounding).
 */
function linspace32(start: number, end: number, steps: number): number[] {
  const s = fr(start);
  const e = fr(end);
  const step = fr((e - s) / (steps - 1));
  const half = Math.floor(steps / 2);
  return Array.from({ length: steps }, (_, i) => (i < half ? fr(s + step * i) : fr(e - step * (steps - i - 1))));
}

/**
 * bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8), float32: for i in 0..6,
 * ±10^(i−6) times the midpoints of linspace(0.1, 1, 2^i + 1); then 0 and 1; sorted (256 values, 0 at index 127).
 */
export const DYNAMIC_MAP: readonly number[] = (() => {
  const data: number[] = [];
  for (let i = 0; i < 7; i++) {
    const b = linspace32(0.1, 1, 2 ** i + 1);
    const means = b.slice(0, -1).map((v, k) => fr(fr(v + b[k + 1]!) / 2));
    const scale = fr(10 ** (i - 6));
    data.push(...means.map((m) => fr(scale * m)));
    data.push(...means.map((m) => fr(fr(-(10 ** (i - 6))) * m)));
  }
  data.push(0, 1);
  return data.sort((a, b) => a - b);
})();
const DYNAMIC_ZERO = DYNAMIC_MAP.indexOf(0);

/** The nested formats' 4-bit format (their codes are its codes). */
const NESTED: Readonly<Record<NestedFormat, "nf4" | "fp4">> = { nf4_dq: "nf4", fp4_dq: "fp4" };
/** Blocks per group, the group header's bytes (absmax2, offset) and a block's (q, then 32 code bytes). */
const GROUP_BLOCKS = 256;
const GROUP_HEADER = 8;
const NESTED_BLOCK = 33;
const GROUP_BYTES = GROUP_HEADER + GROUP_BLOCKS * NESTED_BLOCK; // 8456, a multiple of 4: every header word-aligned

const isNested = (f: PackedFormat): f is NestedFormat => Object.hasOwn(NESTED, f);

/**
 * The index of the nearest DYNAMIC_MAP value to v (in [−1, 1]), the first of ties, distances |v − map[k]| in f32:
 * the argmin of bitsandbytes' CPU kernel over all 256, found by bisection (the map is sorted, so the distances
 * fall to the first value at or above v and rise after it; the scan of its neighbours keeps the argmin's ties).
 */
function nearestDynamic(v: number): number {
  let lo = 0;
  let hi = 255;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (DYNAMIC_MAP[mid]! < v) lo = mid + 1;
    else hi = mid;
  }
  let best = Math.max(0, lo - 2);
  let bestDiff = Math.abs(fr(v - DYNAMIC_MAP[best]!));
  for (let k = best + 1; k <= Math.min(255, lo + 1); k++) {
    const d = Math.abs(fr(v - DYNAMIC_MAP[k]!));
    if (d < bestDiff) [best, bestDiff] = [k, d];
  }
  return best;
}

/** Bytes of nb blocks of a nested format: 33 a block, 8 a group of 256 (the last one maybe partial). */
const nestedBytes = (nb: number) => NESTED_BLOCK * nb + GROUP_HEADER * Math.ceil(nb / GROUP_BLOCKS);
/** The whole blocks in `bytes` bytes of a nested format (any padding after the last block ignored). */
function nestedBlocks(bytes: number): number {
  const groups = Math.floor(bytes / GROUP_BYTES);
  const rest = bytes - groups * GROUP_BYTES;
  return groups * GROUP_BLOCKS + (rest > GROUP_HEADER ? Math.floor((rest - GROUP_HEADER) / NESTED_BLOCK) : 0);
}

/**
 * The nested layout of nf4 / fp4 bytes (36-byte blocks: absmax f32, then 32 code bytes): bitsandbytes' double
 * quantization of the absmax vector (the file's header), the codes as they are.
 */
function nest(plain: Uint8Array): Uint8Array {
  const src = new DataView(plain.buffer, plain.byteOffset, plain.byteLength);
  const nb = plain.byteLength / 36;
  const a = Float64Array.from({ length: nb }, (_, i) => src.getFloat32(36 * i, true));
  let sum = 0;
  for (const v of a) sum += v;
  const offset = nb ? fr(sum / nb) : 0;
  const out = new Uint8Array(nestedBytes(nb));
  const view = new DataView(out.buffer);
  for (let s = 0; s < nb; s += GROUP_BLOCKS) {
    const g = (s / GROUP_BLOCKS) * GROUP_BYTES;
    const x = Array.from({ length: Math.min(nb, s + GROUP_BLOCKS) - s }, (_, j) => fr(a[s + j]! - offset));
    const absmax2 = x.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    const inv = fr(1 / absmax2);
    view.setFloat32(g, absmax2, true);
    view.setFloat32(g + 4, offset, true);
    for (let j = 0; j < x.length; j++) {
      const o = g + GROUP_HEADER + NESTED_BLOCK * j;
      // absmax2 = 0 (every absmax the offset): any q gives map[q]·0 + offset; 0's index says so.
      view.setUint8(o, absmax2 > 0 ? nearestDynamic(Math.min(1, Math.max(-1, fr(x[j]! * inv)))) : DYNAMIC_ZERO);
      out.set(plain.subarray(36 * (s + j) + 4, 36 * (s + j) + 36), o + 1);
    }
  }
  return out;
}

/** Decodes `nb` blocks of a nested format: absmax' = (map[q]·absmax2) + offset in f32, then as its 4-bit format. */
function decodeNested(format: NestedFormat, view: DataView, nb: number): Float32Array {
  const table = NESTED[format] === "nf4" ? NF4_CODE : FP4_CODE;
  const y = new Float32Array(64 * nb);
  for (let i = 0; i < nb; i++) {
    const g = Math.floor(i / GROUP_BLOCKS) * GROUP_BYTES;
    const o = g + GROUP_HEADER + NESTED_BLOCK * (i % GROUP_BLOCKS);
    const absmax = fr(fr(DYNAMIC_MAP[view.getUint8(o)]! * view.getFloat32(g, true)) + view.getFloat32(g + 4, true));
    decode4(table, view, o + 1, absmax, y, 64 * i);
  }
  return y;
}

/** Every packed format's storage (format.ts's table reads it). */
export const LAYOUTS: Readonly<Record<PackedFormat, PackedLayout>> = {
  ...(Object.fromEntries(Object.entries(CODECS).map(([f, c]) => [f, { blockSize: c.blockSize, bytesPerBlock: c.bytesPerBlock }])) as Record<BlockFormat, PackedLayout>),
  nf4_dq: { blockSize: 64, bytesPerBlock: NESTED_BLOCK, group: { blocks: GROUP_BLOCKS, headerBytes: GROUP_HEADER } },
  fp4_dq: { blockSize: 64, bytesPerBlock: NESTED_BLOCK, group: { blocks: GROUP_BLOCKS, headerBytes: GROUP_HEADER } },
};

/** "a" or "an" before a format's name as said (an f16, an nf4, an int8; a q4_0, a bf16). */
export function article(format: string): string {
  return /^[aefhilmnorsx]/.test(format) ? "an" : "a";
}

/**
 * GGUF tensor types (ggml's enum ggml_type, gguf's GGMLQuantizationType) to their format's name here, for the
 * GGUF loader: the types webtune reads. A tensor of another type (Q2_K, IQ4_XS, …) is an error naming it.
 */
export const GGML_TYPE_FORMATS: Readonly<Record<number, "f32" | "f16" | BlockFormat>> = {
  0: "f32", 1: "f16", 2: "q4_0", 3: "q4_1", 6: "q5_0", 7: "q5_1", 8: "q8_0", 12: "q4_k", 13: "q5_k", 14: "q6_k", 30: "bf16",
};

export function isPackedFormat(f: string): f is PackedFormat {
  return Object.hasOwn(LAYOUTS, f);
}

/**
 * Why `shape` cannot be stored in `format`, or null: the last dim (a row) must be whole blocks.
 * "weight [3, 40]: a q4_0 row of 40 elements is not whole blocks of 32; use a format with smaller blocks or keep it in f16".
 */
export function blockShapeError(format: PackedFormat, shape: readonly number[], what = "tensor"): string | null {
  const bs = LAYOUTS[format].blockSize;
  const K = shape.length ? shape[shape.length - 1]! : 1;
  if (K % bs === 0) return null;
  return `${what} [${shape.join(", ")}]: ${article(format)} ${format} row of ${K} elements is not whole blocks of ${bs}; keep it in f32, f16 or a format whose block divides ${K}`;
}

/**
 * Bytes of one row of `rowLength` elements (whole blocks): rows are contiguous, so a loader moves whole rows of
 * packed data (GGUF's Q/K row permutation undone on q4_k bytes, row blocks of a table) by rowBytes-sized slices.
 * Not the nested formats: their rows share groups' headers (split the values before quantizing instead).
 */
export function rowBytes(format: PackedFormat, rowLength: number): number {
  if (isNested(format)) {
    throw new Error(
      `rowBytes: ${article(format)} ${format} tensor's rows are not runs of bytes of their own (its blocks share groups of 256 with one absmax2 and offset); ` +
        `quantize each row block separately instead of slicing the bytes`,
    );
  }
  const c = CODECS[format];
  const err = blockShapeError(format, [rowLength]);
  if (err) throw new Error(`rowBytes: ${err}`);
  return (rowLength / c.blockSize) * c.bytesPerBlock;
}

/**
 * The packed bytes of `values` (rows of `rowLength` elements, whole blocks) in `format`; the byte length is
 * whole blocks (the upload pads to 4). int8 takes each row's absmax of the f16-cast values as its scale.
 */
export function quantize(format: PackedFormat, values: Float32Array, rowLength: number = values.length, what = "tensor"): Uint8Array {
  if (isNested(format)) return nest(quantize(NESTED[format], values, rowLength, what));
  const c = CODECS[format];
  const rows = rowLength > 0 ? values.length / rowLength : 0;
  if (!Number.isInteger(rows)) throw new Error(`quantize: ${values.length} values are not whole rows of ${rowLength}`);
  const err = blockShapeError(format, [rows, rowLength], what);
  if (err) throw new Error(`quantize: ${err}`);
  const nb = values.length / c.blockSize;
  const out = new Uint8Array(nb * c.bytesPerBlock);
  const view = new DataView(out.buffer);
  const perRow = rowLength / c.blockSize;
  // int8 quantizes the f16-cast weight (its row absmax and its codes).
  const x = format === "int8" ? f16ToF32(f32ToF16(values)) : values;
  let absmax = 0;
  for (let i = 0; i < nb; i++) {
    if (format === "int8" && i % perRow === 0) {
      absmax = 0;
      for (let j = 0; j < rowLength; j++) absmax = Math.max(absmax, Math.abs(x[i * c.blockSize + j]!));
    }
    c.encode(x, i * c.blockSize, view, i * c.bytesPerBlock, absmax);
  }
  return out;
}

/** The f32 values of `n` elements (default: all whole blocks) stored as `bytes` in `format`. */
export function dequantize(format: PackedFormat, bytes: ArrayBuffer | ArrayBufferView, n?: number): Float32Array {
  const { blockSize, bytesPerBlock } = LAYOUTS[format];
  const view = bytes instanceof ArrayBuffer ? new DataView(bytes) : new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const nested = isNested(format);
  const size = nested ? nestedBytes : (blocks: number) => blocks * bytesPerBlock;
  const whole = nested ? nestedBlocks(view.byteLength) : Math.floor(view.byteLength / bytesPerBlock);
  const nb = n === undefined ? whole : Math.ceil(n / blockSize);
  if (size(nb) > view.byteLength) throw new Error(`dequantize: ${n} ${format} elements need ${size(nb)} bytes, got ${view.byteLength}`);
  let y: Float32Array;
  if (nested) y = decodeNested(format, view, nb);
  else {
    const c = CODECS[format];
    y = new Float32Array(nb * blockSize);
    for (let i = 0; i < nb; i++) c.decode(view, i * bytesPerBlock, y, i * blockSize);
  }
  return n === undefined || n === y.length ? y : y.slice(0, n);
}

// ---- WGSL: the kernels' loads of a packed operand ----
//
// Each format's `load` below is WGSL text for one operand of a shader: `$w` stands for the operand's storage
// array (array<u32>) and `$load` for the shader's load function, which tools/gen-shaders.mjs replaces by it:
//   fn $load(base: u32, j: u32, len: u32) -> vec4<f32>
// elements j..j+3 of a stored row of `len` elements that starts at element `base` (j clamped to len - 4: j and
// len are multiples of 4, len whole blocks, so the 4 elements are in one block), dequantized to f32 in the
// order of the host's decode above (a compiler may fuse a multiply and an add: the products then differ from
// the host's by an f32 rounding at most). No workgroup memory, no full-precision copy: every load decodes.
// f16 scales are widened by bit manipulation (subnormal scales exact on every adapter, no shader-f16 needed).

const WGSL_COMMON = `
// 4 bytes of $w from byte o (any alignment), little-endian.
fn $w_word(o: u32) -> u32 {
  let i = o >> 2u;
  let s = (o & 3u) * 8u;
  return select(($w[i] >> s) | ($w[i + 1u] << (32u - s)), $w[i], s == 0u);
}
fn $w_byte(o: u32) -> u32 {
  return ($w[o >> 2u] >> ((o & 3u) * 8u)) & 0xFFu;
}
// The f16 at byte o (even) of $w, widened exactly.
fn $w_f16(o: u32) -> f32 {
  return $w_half(($w[o >> 2u] >> ((o & 2u) * 8u)) & 0xFFFFu);
}
// f16 bits h (the low 16 bits) widened exactly.
fn $w_half(h: u32) -> f32 {
  let s = (h & 0x8000u) << 16u;
  let e = (h >> 10u) & 0x1Fu;
  let m = h & 0x3FFu;
  if (e == 0u) { return select(1.0, -1.0, s != 0u) * (f32(m) * 5.9604644775390625e-8); }
  if (e == 31u) { return bitcast<f32>(s | 0x7F800000u | (m << 13u)); }
  return bitcast<f32>(s | ((e + 112u) << 23u) | (m << 13u));
}
// The 4 bytes of v, each shifted right by sh and kept to \`mask\`.
fn $w_fields(v: u32, sh: u32, mask: u32) -> vec4<f32> {
  return vec4<f32>((vec4<u32>(v, v >> 8u, v >> 16u, v >> 24u) >> vec4<u32>(sh)) & vec4<u32>(mask));
}
// The 4 bytes of v as int8.
fn $w_i8x4(v: u32) -> vec4<f32> {
  return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(v << 24u, v << 16u, v << 8u, v)) >> vec4<u32>(24u));
}
`;

/** Bits j..j+3 of qh, times 16 (q5_0, q5_1). */
const HIGH_BITS = `vec4<f32>((vec4<u32>(qh) >> (vec4<u32>(i & 31u) + vec4<u32>(0u, 1u, 2u, 3u))) & vec4<u32>(1u)) * 16.0`;

const SCALE_MIN_K4 = `
// d·sc and dmin·m of sub-block s of the q4_k / q5_k super-block at byte o (4-aligned): d and dmin share word 0,
// the 12 scale bytes are words 1..3 (w0 = scales 0..3 low 6 bits + high bits of 4..7, w1 = the mins alike,
// w2 = low nibbles of scale / min 4..7), as get_scale_min_k4 reads them; branch-free.
fn $w_scale_min(o: u32, s: u32) -> vec2<f32> {
  let dd = $w[o >> 2u];
  let w0 = $w[(o >> 2u) + 1u];
  let w1 = $w[(o >> 2u) + 2u];
  let w2 = $w[(o >> 2u) + 3u];
  let t = 8u * (s & 3u);
  let lo = vec2<u32>(w0 >> t, w1 >> t) & vec2<u32>(63u);
  let md = (w2 >> t) & 0xFFu;
  let hi = vec2<u32>(md & 15u, md >> 4u) | (((vec2<u32>(w0, w1) >> vec2<u32>(t + 6u)) & vec2<u32>(3u)) << vec2<u32>(4u));
  let sm = vec2<f32>(select(hi, lo, s < 4u));
  return vec2<f32>($w_half(dd & 0xFFFFu) * sm.x, $w_half(dd >> 16u) * sm.y);
}
`;

const fn = (body: string) => `fn $load(base: u32, j: u32, len: u32) -> vec4<f32> {\n  let e = base + min(j, len - 4u);\n${body}\n}\n`;
const wgslFloat = (v: number) => (Number.isInteger(v) ? `${v}.0` : String(v));
/** A table of f32 values as a private WGSL array `name` (exact: each literal is the f32's shortest decimal). */
const wgslTable = (name: string, t: readonly number[]) =>
  `var<private> ${name}: array<f32, ${t.length}> = array<f32, ${t.length}>(${t.map((v) => (Object.is(v, -0) ? "-0.0" : wgslFloat(v))).join(", ")});\n`;
const codeTable = (t: readonly number[]) => wgslTable("$w_code", t);

const BNB4 = fn(`  let o = (e / 64u) * 36u;
  let i = e % 64u;
  let at = o + 4u + i / 2u;
  let h = ($w[at >> 2u] >> ((at & 2u) * 8u)) & 0xFFFFu;
  let c = vec4<u32>(h >> 4u, h, h >> 12u, h >> 8u) & vec4<u32>(15u);
  return vec4<f32>($w_code[c.x], $w_code[c.y], $w_code[c.z], $w_code[c.w]) * bitcast<f32>($w[o >> 2u]);`);

// Nested: the block's absmax from its group's header and its q (one byte at any alignment), then 2 code bytes
// (4 elements, a 16-bit run at any alignment: 33-byte blocks).
const NESTED_LOAD = `${wgslTable("$w_dmap", DYNAMIC_MAP)}${fn(`  let g = (e / ${GROUP_BLOCKS * 64}u) * ${GROUP_BYTES}u;
  let o = g + ${GROUP_HEADER}u + ((e / 64u) % ${GROUP_BLOCKS}u) * ${NESTED_BLOCK}u;
  let absmax = $w_dmap[$w_byte(o)] * bitcast<f32>($w[g >> 2u]) + bitcast<f32>($w[(g >> 2u) + 1u]);
  let h = $w_word(o + 1u + (e % 64u) / 2u) & 0xFFFFu;
  let c = vec4<u32>(h >> 4u, h, h >> 12u, h >> 8u) & vec4<u32>(15u);
  return vec4<f32>($w_code[c.x], $w_code[c.y], $w_code[c.z], $w_code[c.w]) * absmax;`)}`;

/** The WGSL of each packed format's load (with WGSL_COMMON's helpers). */
export const PACKED_WGSL: Readonly<Record<PackedFormat, string>> = Object.fromEntries(
  Object.entries({
    // Per element (rows of any length): the top half of an f32.
    bf16: `fn $w_bf16(e: u32) -> f32 {
  return bitcast<f32>((($w[e >> 1u] >> ((e & 1u) * 16u)) & 0xFFFFu) << 16u);
}
fn $load(base: u32, j: u32, len: u32) -> vec4<f32> {
  let l = len - 1u;
  return vec4<f32>($w_bf16(base + min(j, l)), $w_bf16(base + min(j + 1u, l)), $w_bf16(base + min(j + 2u, l)), $w_bf16(base + min(j + 3u, l)));
}
`,
    q8_0: fn(`  let o = (e / 32u) * 34u;
  return $w_i8x4($w_word(o + 2u + e % 32u)) * $w_f16(o);`),
    q4_0: fn(`  let o = (e / 32u) * 18u;
  let i = e % 32u;
  return $w_f16(o) * ($w_fields($w_word(o + 2u + (i & 15u)), select(0u, 4u, i >= 16u), 15u) - 8.0);`),
    q4_1: fn(`  let o = (e / 32u) * 20u;
  let i = e % 32u;
  return $w_f16(o) * $w_fields($w[(o + 4u + (i & 15u)) >> 2u], select(0u, 4u, i >= 16u), 15u) + $w_f16(o + 2u);`),
    q5_0: fn(`  let o = (e / 32u) * 22u;
  let i = e % 32u;
  let qh = $w_word(o + 2u);
  let q = $w_fields($w_word(o + 6u + (i & 15u)), select(0u, 4u, i >= 16u), 15u) + ${HIGH_BITS};
  return $w_f16(o) * (q - 16.0);`),
    q5_1: fn(`  let o = (e / 32u) * 24u;
  let i = e % 32u;
  let qh = $w[(o + 4u) >> 2u];
  let q = $w_fields($w[(o + 8u + (i & 15u)) >> 2u], select(0u, 4u, i >= 16u), 15u) + ${HIGH_BITS};
  return $w_f16(o) * q + $w_f16(o + 2u);`),
    q4_k: `${SCALE_MIN_K4}${fn(`  let o = (e / 256u) * 144u;
  let i = e % 256u;
  let s = i / 32u;
  let sm = $w_scale_min(o, s);
  let q = $w_fields($w[(o + 16u + 32u * (s / 2u) + i % 32u) >> 2u], 4u * (s & 1u), 15u);
  return sm.x * q - sm.y;`)}`,
    q5_k: `${SCALE_MIN_K4}${fn(`  let o = (e / 256u) * 176u;
  let i = e % 256u;
  let s = i / 32u;
  let sm = $w_scale_min(o, s);
  let q = $w_fields($w[(o + 48u + 32u * (s / 2u) + i % 32u) >> 2u], 4u * (s & 1u), 15u)
        + $w_fields($w[(o + 16u + i % 32u) >> 2u], s, 1u) * 16.0;
  return sm.x * q - sm.y;`)}`,
    q6_k: fn(`  let o = (e / 256u) * 210u;
  let i = e % 256u;
  let h = i / 128u;
  let r = (i % 128u) / 32u;
  let l = i % 32u;
  let q = $w_fields($w_word(o + 64u * h + 32u * (r & 1u) + l), 4u * (r >> 1u), 15u)
        + $w_fields($w_word(o + 128u + 32u * h + l), 2u * r, 3u) * 16.0 - 32.0;
  let sc = f32(bitcast<i32>($w_byte(o + 192u + i / 16u) << 24u) >> 24u);
  return ($w_f16(o + 208u) * sc) * q;`),
    nf4: codeTable(NF4_CODE) + BNB4,
    fp4: codeTable(FP4_CODE) + BNB4,
    nf4_dq: codeTable(NF4_CODE) + NESTED_LOAD,
    fp4_dq: codeTable(FP4_CODE) + NESTED_LOAD,
    int8: fn(`  let o = (e / 32u) * 36u;
  return ($w_i8x4($w[(o + 4u + e % 32u) >> 2u]) * bitcast<f32>($w[o >> 2u])) * ${wgslFloat(INV127)};`),
  } satisfies Record<PackedFormat, string>).map(([f, body]) => [f, `${WGSL_COMMON}${body}`]),
) as Record<PackedFormat, string>;
