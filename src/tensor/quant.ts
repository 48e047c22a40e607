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

/** Formats of this file (keys of format.ts's table whose storage is packed bytes). */
export type PackedFormat = "bf16" | "q8_0" | "q4_0" | "q4_1" | "q5_0" | "q5_1" | "q4_k" | "q5_k" | "q6_k" | "nf4" | "fp4" | "int8";

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

function bnb4(table: readonly number[], code: (x: number) => number, zero: number): BlockCodec {
  return {
    blockSize: 64,
    bytesPerBlock: 36,
    decode(b, o, y, d) {
      const absmax = b.getFloat32(o, true);
      for (let i = 0; i < 32; i++) {
        const v = b.getUint8(o + 4 + i);
        y[d + 2 * i] = fr(table[v >> 4]! * absmax);
        y[d + 2 * i + 1] = fr(table[v & 15]! * absmax);
      }
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

export const CODECS: Readonly<Record<PackedFormat, BlockCodec>> = {
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

/** "a" or "an" before a format's name as said (an f16, an nf4, an int8; a q4_0, a bf16). */
export function article(format: string): string {
  return /^[aefhilmnorsx]/.test(format) ? "an" : "a";
}

/**
 * GGUF tensor types (ggml's enum ggml_type, gguf's GGMLQuantizationType) to their format's name here, for the
 * GGUF loader: the types webtune reads. A tensor of another type (Q2_K, IQ4_XS, …) is an error naming it.
 */
export const GGML_TYPE_FORMATS: Readonly<Record<number, "f32" | "f16" | PackedFormat>> = {
  0: "f32", 1: "f16", 2: "q4_0", 3: "q4_1", 6: "q5_0", 7: "q5_1", 8: "q8_0", 12: "q4_k", 13: "q5_k", 14: "q6_k", 30: "bf16",
};

export function isPackedFormat(f: string): f is PackedFormat {
  return Object.hasOwn(CODECS, f);
}

/**
 * Why `shape` cannot be stored in `format`, or null: the last dim (a row) must be whole blocks.
 * "weight [3, 40]: a q4_0 row of 40 elements is not whole blocks of 32; use a format with smaller blocks or keep it in f16".
 */
export function blockShapeError(format: PackedFormat, shape: readonly number[], what = "tensor"): string | null {
  const bs = CODECS[format].blockSize;
  const K = shape.length ? shape[shape.length - 1]! : 1;
  if (K % bs === 0) return null;
  return `${what} [${shape.join(", ")}]: ${article(format)} ${format} row of ${K} elements is not whole blocks of ${bs}; keep it in f32, f16 or a format whose block divides ${K}`;
}

/**
 * Bytes of one row of `rowLength` elements (whole blocks): rows are contiguous, so a loader moves whole rows of
 * packed data (GGUF's Q/K row permutation undone on q4_k bytes) by rowBytes-sized slices.
 */
export function rowBytes(format: PackedFormat, rowLength: number): number {
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
  const c = CODECS[format];
  const view = bytes instanceof ArrayBuffer ? new DataView(bytes) : new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const nb = n === undefined ? Math.floor(view.byteLength / c.bytesPerBlock) : Math.ceil(n / c.blockSize);
  if (nb * c.bytesPerBlock > view.byteLength) {
    throw new Error(`dequantize: ${n} ${format} elements need ${nb * c.bytesPerBlock} bytes, got ${view.byteLength}`);
  }
  const y = new Float32Array(nb * c.blockSize);
  for (let i = 0; i < nb; i++) c.decode(view, i * c.bytesPerBlock, y, i * c.blockSize);
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
const codeTable = (t: readonly number[]) =>
  `var<private> $w_code: array<f32, 16> = array<f32, 16>(${t.map((v) => (Object.is(v, -0) ? "-0.0" : wgslFloat(v))).join(", ")});\n`;

const BNB4 = fn(`  let o = (e / 64u) * 36u;
  let i = e % 64u;
  let at = o + 4u + i / 2u;
  let h = ($w[at >> 2u] >> ((at & 2u) * 8u)) & 0xFFFFu;
  let c = vec4<u32>(h >> 4u, h, h >> 12u, h >> 8u) & vec4<u32>(15u);
  return vec4<f32>($w_code[c.x], $w_code[c.y], $w_code[c.z], $w_code[c.w]) * bitcast<f32>($w[o >> 2u]);`);

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
    int8: fn(`  let o = (e / 32u) * 36u;
  return ($w_i8x4($w[(o + 4u + e % 32u) >> 2u]) * bitcast<f32>($w[o >> 2u])) * ${wgslFloat(INV127)};`),
  } satisfies Record<PackedFormat, string>).map(([f, body]) => [f, `${WGSL_COMMON}${body}`]),
) as Record<PackedFormat, string>;
