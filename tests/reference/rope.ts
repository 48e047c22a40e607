// float64 reference for rotary position embedding (rotate_half convention) on x (T, H, D): inv_freq as
// transformers' ROPE_INIT_FUNCTIONS, the forward, and the analytic gradient of sum(y · dy).

export interface Scaling {
  rope_type: "default" | "linear" | "llama3";
  factor?: number;
  low_freq_factor?: number;
  high_freq_factor?: number;
  original_max_position_embeddings?: number;
}

/** transformers' _compute_default_rope_parameters, then the linear or llama3 adjustment. */
export function invFreq(D: number, theta: number, scaling?: Scaling): Float64Array {
  const out = new Float64Array(D / 2);
  for (let i = 0; i < D / 2; i++) {
    const f = 1 / Math.pow(theta, (2 * i) / D);
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

/** x rotated by angle = pos[t] * inv[i] in each (i, i + D/2) pair; sign -1 rotates back (the transpose). */
function rotate(x: Float64Array, pos: ArrayLike<number>, H: number, inv: Float64Array, sign: number): Float64Array {
  const half = inv.length;
  const D = 2 * half;
  const y = new Float64Array(x.length);
  for (let t = 0; t < pos.length; t++) {
    for (let h = 0; h < H; h++) {
      const base = (t * H + h) * D;
      for (let i = 0; i < half; i++) {
        const c = Math.cos(pos[t]! * inv[i]!);
        const s = sign * Math.sin(pos[t]! * inv[i]!);
        const x1 = x[base + i]!;
        const x2 = x[base + i + half]!;
        y[base + i] = x1 * c - x2 * s;
        y[base + i + half] = x2 * c + x1 * s;
      }
    }
  }
  return y;
}

export const rope = (x: Float64Array, pos: ArrayLike<number>, H: number, inv: Float64Array) => rotate(x, pos, H, inv, 1);
export const ropeGrad = (dy: Float64Array, pos: ArrayLike<number>, H: number, inv: Float64Array) => rotate(dy, pos, H, inv, -1);
