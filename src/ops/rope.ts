// Rotary position embedding (Hugging Face Llama convention, rotate_half) and its gradient.
// inv_freq follows transformers' ROPE_INIT_FUNCTIONS ("default", "linear", "llama3"), in float64. The
// cos/sin tables are built on the CPU in float64 (f32 sin/cos of angles in the thousands of radians are
// far off) and uploaded once per size as f32 (P, head_dim/2); RotaryEmbedding owns and grows them.
import { gpu, type Gpu } from "../gpu/device.ts";
import * as K from "../kernels/rope.ts";
import { keep } from "../tensor/scope.ts";
import { record, Tensor } from "../tensor/tensor.ts";

/** `rope_scaling` of a Hugging Face config, keys as there. */
export interface RopeScaling {
  /** "default", "linear" or "llama3". */
  rope_type?: string;
  /** The older spelling of rope_type. */
  type?: string;
  factor?: number;
  low_freq_factor?: number;
  high_freq_factor?: number;
  original_max_position_embeddings?: number;
}

/** The rotary fields of a Hugging Face config (head_dim = hidden_size / num_attention_heads when absent there). */
export interface RotaryConfig {
  head_dim: number;
  /** Default 10000. */
  rope_theta?: number;
  rope_scaling?: RopeScaling | null;
  /** Default 2048. Tables grow past it when positions do; a GPU tensor of position ids gets this many. */
  max_position_embeddings?: number;
}

/**
 * inv_freq[i] (i < head_dim/2) as transformers computes it, in float64:
 *   default: 1 / theta^(2i / head_dim)
 *   linear:  default / factor                       (the same as dividing positions by factor)
 *   llama3:  wavelen = 2π / f; f if wavelen < L / high_freq_factor; f / factor if wavelen > L / low_freq_factor;
 *            else (1 - s) f / factor + s f with s = (L / wavelen - low) / (high - low), L = original_max_position_embeddings
 */
export function ropeInvFreq(config: RotaryConfig): Float64Array {
  const D = config.head_dim;
  const theta = config.rope_theta ?? 10000;
  const inv = Float64Array.from({ length: D / 2 }, (_, i) => 1 / theta ** ((2 * i) / D));
  const s = config.rope_scaling ?? {};
  const type = s.rope_type ?? s.type ?? "default";
  const need = (key: keyof RopeScaling): number => {
    const v = s[key];
    if (typeof v !== "number" || !Number.isFinite(v)) throw new Error(`RotaryEmbedding: rope_scaling type "${type}" needs a number \`${key}\``);
    return v;
  };
  switch (type) {
    case "default":
      return inv;
    case "linear": {
      const factor = need("factor");
      return inv.map((f) => f / factor);
    }
    case "llama3": {
      const factor = need("factor");
      const low = need("low_freq_factor");
      const high = need("high_freq_factor");
      const L = need("original_max_position_embeddings");
      return inv.map((f) => {
        const wavelen = (2 * Math.PI) / f;
        if (wavelen < L / high) return f;
        if (wavelen > L / low) return f / factor;
        const smooth = (L / wavelen - low) / (high - low);
        return ((1 - smooth) * f) / factor + smooth * f;
      });
    }
    default:
      throw new Error(`RotaryEmbedding: rope_scaling type "${type}" is not supported (supported: default, linear, llama3)`);
  }
}

/** inv_freq and the cos/sin tables of one model; the tables live as long as this object (see dispose()). */
export class RotaryEmbedding {
  readonly head_dim: number;
  readonly max_position_embeddings: number;
  /** (head_dim / 2), float64. */
  readonly inv_freq: Float64Array;
  private cos: Tensor | null = null;
  private sin: Tensor | null = null;
  /** The device the tables were uploaded to (a device lost and created again needs new ones). */
  private device: Gpu | null = null;

  constructor(config: RotaryConfig) {
    const D = config.head_dim;
    if (!Number.isInteger(D) || D <= 0 || D % 2 !== 0) throw new Error(`RotaryEmbedding: head_dim must be a positive even integer, got ${D}`);
    this.head_dim = D;
    this.max_position_embeddings = config.max_position_embeddings ?? 2048;
    this.inv_freq = ropeInvFreq(config);
  }

  /** Positions the current tables cover (0 before the first use). */
  get size(): number {
    return this.cos?.shape[0] ?? 0;
  }

  /**
   * cos and sin, f32 (P, head_dim / 2), of position * inv_freq for positions 0..P-1, P > maxPosition.
   * Grown to at least twice their size (up to max_position_embeddings) when too small; tensors from an
   * earlier size stay valid for ops that saved them.
   */
  tables(maxPosition: number): { cos: Tensor; sin: Tensor } {
    if (!this.cos || !this.sin || this.device !== gpu() || maxPosition >= this.size) {
      const grown = this.device === gpu() ? Math.min(Math.max(2 * this.size, 256), this.max_position_embeddings) : 0;
      this.build(Math.max(maxPosition + 1, grown));
    }
    return { cos: this.cos!, sin: this.sin! };
  }

  /** Releases the tables (ops that saved them keep theirs until their backward has run). */
  dispose(): void {
    this.cos?.dispose();
    this.sin?.dispose();
    this.cos = this.sin = null;
  }

  private build(P: number): void {
    const half = this.head_dim / 2;
    const c = new Float32Array(P * half);
    const s = new Float32Array(P * half);
    for (let pos = 0; pos < P; pos++) {
      for (let i = 0; i < half; i++) {
        const angle = pos * this.inv_freq[i]!;
        c[pos * half + i] = Math.cos(angle);
        s[pos * half + i] = Math.sin(angle);
      }
    }
    this.dispose();
    this.device = gpu();
    this.cos = keep(Tensor.fromArray(c, [P, half]));
    this.sin = keep(Tensor.fromArray(s, [P, half]));
  }
}

/**
 * Rotary position embedding of x (..., H, D) (T = the product of the leading dims: tokens, batch folded
 * in) at per-token `position_ids` (T) (packed sequences restart at 0), as transformers'
 * apply_rotary_pos_emb: y = x * cos + rotate_half(x) * sin. Position ids are a CPU array (checked) or an
 * i32 tensor (not checked: its positions must be below rotary.max_position_embeddings).
 * d/dx = the rotation by -angle: dx[i] = dy[i] cos + dy[i + D/2] sin, dx[i + D/2] = dy[i + D/2] cos - dy[i] sin.
 */
export function rope(x: Tensor, position_ids: Int32Array | readonly number[] | Tensor, rotary: RotaryEmbedding): Tensor {
  if (x.dtype !== "f32") throw new Error(`rope: needs an f32 tensor, got ${x.dtype}`);
  if (x.ndim < 2) throw new Error(`rope: x must be (..., H, D), got shape [${x.shape.join(", ")}]`);
  const D = x.shape[x.ndim - 1]!;
  const H = x.shape[x.ndim - 2]!;
  if (D !== rotary.head_dim) throw new Error(`rope: x's last dim ${D} is not the rotary head_dim ${rotary.head_dim} (x: [${x.shape.join(", ")}])`);
  const T = H === 0 ? 0 : x.size / (H * D);
  const n = position_ids instanceof Tensor ? position_ids.size : position_ids.length;
  if (n !== T) throw new Error(`rope: ${n} position ids for ${T} tokens (x: [${x.shape.join(", ")}])`);
  let ids: Tensor;
  let maxPosition: number;
  if (position_ids instanceof Tensor) {
    if (position_ids.dtype !== "i32") throw new Error(`rope: position_ids must be an i32 tensor, got ${position_ids.dtype}`);
    ids = position_ids;
    maxPosition = rotary.max_position_embeddings - 1;
  } else {
    maxPosition = 0;
    for (let t = 0; t < T; t++) {
      const v = position_ids[t]!;
      if (!Number.isInteger(v) || v < 0 || v > 0x7fffffff) throw new Error(`rope: position_ids[${t}] = ${v} is not a non-negative 32-bit integer`);
      if (v > maxPosition) maxPosition = v;
    }
    ids = Tensor.fromArray(Int32Array.from(position_ids), [T]);
  }
  const { cos, sin } = rotary.tables(maxPosition);
  const a: K.RopeArgs = { position_ids: ids, cos, sin, T, H, D };
  const y = record(K.forward(x, a), "rope", [x], (dy) => [K.backward(dy, a)], [ids, cos, sin]);
  if (ids !== position_ids) ids.dispose(); // the node holds its own reference when it recorded one
  return y;
}
