// float64 reference for rotary position embedding (rotate_half convention) on x (T, H, D): inv_freq as
// transformers' ROPE_INIT_FUNCTIONS, the forward, and the analytic gradient of sum(y · dy). Partial rotary:
// the first 2·inv.length dims of each head of D rotate, the rest pass through; longrope's attention
// factor scales cos and sin.

export interface Scaling {
  rope_type: "default" | "linear" | "llama3" | "longrope";
  factor?: number;
  low_freq_factor?: number;
  high_freq_factor?: number;
  original_max_position_embeddings?: number;
}

/**
 * transformers' _compute_default_rope_parameters over `dim` rotary dims (ceil(dim / 2) frequencies), then
 * the linear or llama3 adjustment; `ext`: longrope's short or long factors, dividing the frequencies.
 */
export function invFreq(dim: number, theta: number, scaling?: Scaling, ext?: readonly number[]): Float64Array {
  const out = new Float64Array(Math.ceil(dim / 2));
  for (let i = 0; i < out.length; i++) {
    const f = 1 / Math.pow(theta, (2 * i) / dim);
    if (ext) {
      out[i] = f / ext[i]!;
      continue;
    }
    if (!scaling || scaling.rope_type === "default") out[i] = f;
    else if (scaling.rope_type === "linear") out[i] = f / scaling.factor!;
    else {
      const { factor, low_freq_factor: lo, high_freq_factor: hi, original_max_position_embeddings: L } = scaling as Required<Scaling>;
      const wavelen = (2 * Math.PI) / f;
      const smooth = (L / wavelen - lo) / (hi - lo);
      out[i] = wavelen < L / hi ? f : wavelen > L / lo ? f / factor : (1 - smooth) * (f / factor) + smooth * f;
    }
  }
  return out;
}

/**
 * x (T, H, D) rotated by angle = pos[t] * inv[i] in each (i, i + half) pair, half = inv.length, cos and sin
 * times `attn`; dims 2·half .. D copied; sign -1 rotates back (the transpose).
 */
function rotate(x: Float64Array, pos: ArrayLike<number>, H: number, inv: Float64Array, sign: number, D: number, attn: number): Float64Array {
  const half = inv.length;
  const y = new Float64Array(x.length);
  for (let t = 0; t < pos.length; t++) {
    for (let h = 0; h < H; h++) {
      const base = (t * H + h) * D;
      for (let i = 0; i < half; i++) {
        const c = attn * Math.cos(pos[t]! * inv[i]!);
        const s = attn * sign * Math.sin(pos[t]! * inv[i]!);
        const x1 = x[base + i]!;
        const x2 = x[base + i + half]!;
        y[base + i] = x1 * c - x2 * s;
        y[base + i + half] = x2 * c + x1 * s;
      }
      for (let j = 2 * half; j < D; j++) y[base + j] = x[base + j]!;
    }
  }
  return y;
}

/** D: the head dim (default 2·inv.length: all rotated); attn: the factor on cos and sin (default 1). */
export const rope = (x: Float64Array, pos: ArrayLike<number>, H: number, inv: Float64Array, D = 2 * inv.length, attn = 1) =>
  rotate(x, pos, H, inv, 1, D, attn);
export const ropeGrad = (dy: Float64Array, pos: ArrayLike<number>, H: number, inv: Float64Array, D = 2 * inv.length, attn = 1) =>
  rotate(dy, pos, H, inv, -1, D, attn);
