// Rotary position embedding (Hugging Face Llama convention, rotate_half) and its gradient, on all of each
// head's dims or (partial_rotary_factor, Phi-3) on the first rotary dims of each head with the rest passed
// through. inv_freq follows transformers' ROPE_INIT_FUNCTIONS ("default", "linear", "llama3", "longrope"),
// in float64. The cos/sin tables are built on the CPU in float64 (f32 sin/cos of angles in the thousands
// of radians are far off), times longrope's attention factor, and uploaded once per size as f32
// (P, rotary pairs); RotaryEmbedding owns and grows them: one pair of tables, or two for longrope (short
// and long factors), of which each call of rope() picks one (transformers' dynamic_rope_update).
import { gpu, type Gpu } from "../gpu/device.ts";
import * as K from "../kernels/rope.ts";
import { keep } from "../tensor/scope.ts";
import { record, Tensor } from "../tensor/tensor.ts";

/** The rope_scaling (rope_parameters) types RotaryEmbedding computes, for config parsers to check against. */
export const ropeScalingTypes: readonly string[] = ["default", "linear", "llama3", "longrope"];

/** `rope_scaling` of a Hugging Face config, keys as there. */
export interface RopeScaling {
  /** One of ropeScalingTypes. */
  rope_type?: string;
  /** The older spelling of rope_type. */
  type?: string;
  /** linear, llama3; longrope: default max_position_embeddings / original_max_position_embeddings. */
  factor?: number;
  low_freq_factor?: number;
  high_freq_factor?: number;
  /** llama3, longrope (for longrope, RotaryConfig's own field wins: see there). */
  original_max_position_embeddings?: number;
  /** longrope: the per-pair divisors of the frequencies up to original_max_position_embeddings (rotary dims / 2). */
  short_factor?: readonly number[];
  /** longrope: the per-pair divisors past original_max_position_embeddings (rotary dims / 2). */
  long_factor?: readonly number[];
  /** longrope: the factor on cos and sin; default sqrt(1 + ln(factor) / ln(original_max_position_embeddings)), 1 for factor <= 1. */
  attention_factor?: number;
}

/** The rotary fields of a Hugging Face config (head_dim = hidden_size / num_attention_heads when absent there). */
export interface RotaryConfig {
  head_dim: number;
  /** Default 10000. */
  rope_theta?: number;
  rope_scaling?: RopeScaling | null;
  /** Default 2048. Tables grow past it when positions do; a GPU tensor of position ids gets this many. */
  max_position_embeddings?: number;
  /**
   * Default 1. Rope on the first int(head_dim * partial_rotary_factor) dims of each head (rotate_half
   * within them; the frequencies over that many dims), the rest unchanged (transformers' Phi3 rotary_ndims).
   */
  partial_rotary_factor?: number;
  /**
   * longrope's pretraining length. As transformers' standardize_rope_params: this (the config's top-level
   * key, which Phi-3 configs carry — Phi3Config defaults it to 4096) wins over rope_scaling's, which wins over
   * max_position_embeddings.
   */
  original_max_position_embeddings?: number;
}

/** What a config's rotary fields come to (all but the tables). */
export interface RopeParameters {
  /** int(head_dim * partial_rotary_factor): the dims the frequencies are spread over. */
  dim: number;
  /** (ceil(dim / 2)): the rotated pairs (i, i + half) of each head; dims 2·half .. head_dim pass through. */
  inv_freq: Float64Array;
  /** longrope's frequencies past original_max_position_embeddings, else null. */
  long_inv_freq: Float64Array | null;
  /** The factor on cos and sin (longrope's attention_factor; 1 for the others). */
  attention_factor: number;
  /** longrope: long_inv_freq is used when max(position_ids) + 1 > this; else null. */
  original_max_position_embeddings: number | null;
}

/**
 * inv_freq[i] (i < ceil(dim / 2), dim = int(head_dim * partial_rotary_factor)) as transformers computes it,
 * in float64, and longrope's second set and factor:
 *   default:  f_i = 1 / theta^(2i / dim)
 *   linear:   f_i / factor                       (the same as dividing positions by factor)
 *   llama3:   wavelen = 2π / f; f if wavelen < L / high_freq_factor; f / factor if wavelen > L / low_freq_factor;
 *             else (1 - s) f / factor + s f with s = (L / wavelen - low) / (high - low), L = original_max_position_embeddings
 *   longrope: f_i / short_factor[i] and f_i / long_factor[i]; attention_factor as given, else with
 *             factor = rope_scaling.factor ?? max_position_embeddings / L: 1 if factor <= 1, else
 *             sqrt(1 + ln(factor) / ln(L)); L = config.original_max_position_embeddings ??
 *             rope_scaling.original_max_position_embeddings ?? max_position_embeddings.
 */
export function ropeParameters(config: RotaryConfig): RopeParameters {
  const D = config.head_dim;
  const prf = config.partial_rotary_factor ?? 1;
  if (!(typeof prf === "number" && prf > 0 && prf <= 1)) {
    throw new Error(`RotaryEmbedding: partial_rotary_factor must be in (0, 1], got ${prf}`);
  }
  if (!Number.isInteger(D) || D <= 0 || (prf === 1 && D % 2 !== 0)) throw new Error(`RotaryEmbedding: head_dim must be a positive even integer, got ${D}`);
  const dim = Math.trunc(D * prf); // Python's int()
  const half = Math.ceil(dim / 2); // torch.arange(0, dim, 2)
  if (half === 0 || 2 * half > D) {
    throw new Error(`RotaryEmbedding: partial_rotary_factor ${prf} of head_dim ${D} gives ${dim} rotary dims; they must be at least 2 and, rounded up to even, at most head_dim`);
  }
  const theta = config.rope_theta ?? 10000;
  const inv = Float64Array.from({ length: half }, (_, i) => 1 / theta ** ((2 * i) / dim));
  const s = config.rope_scaling ?? {};
  const type = s.rope_type ?? s.type ?? "default";
  const need = (key: "factor" | "low_freq_factor" | "high_freq_factor" | "original_max_position_embeddings"): number => {
    const v = s[key];
    if (typeof v !== "number" || !Number.isFinite(v)) throw new Error(`RotaryEmbedding: rope_scaling type "${type}" needs a number \`${key}\``);
    return v;
  };
  const plain = (inv_freq: Float64Array): RopeParameters => ({ dim, inv_freq, long_inv_freq: null, attention_factor: 1, original_max_position_embeddings: null });
  switch (type) {
    case "default":
      return plain(inv);
    case "linear": {
      const factor = need("factor");
      return plain(inv.map((f) => f / factor));
    }
    case "llama3": {
      const factor = need("factor");
      const low = need("low_freq_factor");
      const high = need("high_freq_factor");
      const L = need("original_max_position_embeddings");
      return plain(
        inv.map((f) => {
          const wavelen = (2 * Math.PI) / f;
          if (wavelen < L / high) return f;
          if (wavelen > L / low) return f / factor;
          const smooth = (L / wavelen - low) / (high - low);
          return ((1 - smooth) * f) / factor + smooth * f;
        }),
      );
    }
    case "longrope": {
      const ext = (key: "short_factor" | "long_factor"): Float64Array => {
        const v = s[key];
        if (!Array.isArray(v) || v.length !== half || !v.every((x) => typeof x === "number" && Number.isFinite(x) && x > 0)) {
          throw new Error(
            `RotaryEmbedding: rope_scaling type "longrope" needs \`${key}\`: a list of ${half} positive numbers (one per rotary pair: ${dim} rotary dims of head_dim ${D}), got ${Array.isArray(v) ? `${v.length} entries` : JSON.stringify(v)}`,
          );
        }
        return Float64Array.from(v as number[]);
      };
      const short = ext("short_factor");
      const long = ext("long_factor");
      const maxPos = config.max_position_embeddings ?? 2048;
      const L = config.original_max_position_embeddings ?? s.original_max_position_embeddings ?? maxPos;
      if (!(Number.isInteger(L) && L > 0)) throw new Error(`RotaryEmbedding: longrope's original_max_position_embeddings must be a positive integer, got ${L}`);
      const factor = s.factor ?? maxPos / L;
      let attention = s.attention_factor;
      if (attention === undefined || attention === null) attention = factor <= 1 ? 1 : Math.sqrt(1 + Math.log(factor) / Math.log(L));
      if (!(typeof attention === "number" && Number.isFinite(attention))) throw new Error(`RotaryEmbedding: longrope's attention_factor must be a number, got ${attention}`);
      return {
        dim,
        inv_freq: inv.map((f, i) => f / short[i]!),
        long_inv_freq: inv.map((f, i) => f / long[i]!),
        attention_factor: attention,
        original_max_position_embeddings: L,
      };
    }
    default:
      throw new Error(`RotaryEmbedding: rope_scaling type "${type}" is not supported (supported: ${ropeScalingTypes.join(", ")})`);
  }
}

/** inv_freq of a config (longrope: the short factors' one); see ropeParameters(). */
export function ropeInvFreq(config: RotaryConfig): Float64Array {
  return ropeParameters(config).inv_freq;
}

interface Tables {
  cos: Tensor;
  sin: Tensor;
}

/**
 * inv_freq and the cos/sin tables of one model; the tables live as long as this object (see dispose()).
 * longrope has two pairs of tables, short (positions up to original_max_position_embeddings) and long.
 */
export class RotaryEmbedding {
  readonly head_dim: number;
  readonly max_position_embeddings: number;
  /** The rotated dims of each head (2 · inv_freq.length <= head_dim): the first ones; the rest pass through. */
  readonly rotary_dim: number;
  /** (rotary_dim / 2), float64 (longrope: from short_factor). */
  readonly inv_freq: Float64Array;
  /** longrope: (rotary_dim / 2) from long_factor, float64; else null. */
  readonly long_inv_freq: Float64Array | null;
  /** The factor on cos and sin (longrope's attention_factor, else 1). */
  readonly attention_factor: number;
  /** longrope's switch: the long tables when max(position_ids) + 1 > this; else null. */
  readonly original_max_position_embeddings: number | null;
  private short: Tables | null = null;
  private long: Tables | null = null;
  /** The device the tables were uploaded to (a device lost and created again needs new ones). */
  private device: Gpu | null = null;

  constructor(config: RotaryConfig) {
    const r = ropeParameters(config);
    this.head_dim = config.head_dim;
    this.max_position_embeddings = config.max_position_embeddings ?? 2048;
    this.inv_freq = r.inv_freq;
    this.long_inv_freq = r.long_inv_freq;
    this.rotary_dim = 2 * r.inv_freq.length;
    this.attention_factor = r.attention_factor;
    this.original_max_position_embeddings = r.original_max_position_embeddings;
  }

  /** Positions the current (short, or only) tables cover (0 before the first use). */
  get size(): number {
    return this.short?.cos.shape[0] ?? 0;
  }

  /** Positions the current long tables cover (0 before their first use, and without longrope). */
  get longSize(): number {
    return this.long?.cos.shape[0] ?? 0;
  }

  /** Whether a call whose largest position id is maxPosition uses the long factors (longrope's dynamic switch). */
  usesLong(maxPosition: number): boolean {
    return this.long_inv_freq !== null && maxPosition + 1 > this.original_max_position_embeddings!;
  }

  /**
   * cos and sin, f32 (P, rotary_dim / 2), of position * inv_freq (times attention_factor) for positions
   * 0..P-1, P > maxPosition, from the long factors when usesLong(maxPosition). Made for maxPosition + 1
   * positions at first; grown to at least twice their size (up to max_position_embeddings; the short ones of longrope up to
   * original_max_position_embeddings) when too small; tensors from an earlier size stay valid for ops
   * that saved them.
   */
  tables(maxPosition: number): { cos: Tensor; sin: Tensor } {
    if (this.device !== gpu()) this.dispose();
    const long = this.usesLong(maxPosition);
    const cur = long ? this.long : this.short;
    if (cur && maxPosition < cur.cos.shape[0]!) return cur;
    const size = cur?.cos.shape[0] ?? 0;
    const cap = this.long_inv_freq && !long ? this.original_max_position_embeddings! : this.max_position_embeddings;
    const grown = cur ? Math.min(Math.max(2 * size, 256), cap) : 0;
    const t = this.build(Math.max(maxPosition + 1, grown), long ? this.long_inv_freq! : this.inv_freq);
    if (cur) {
      cur.cos.dispose();
      cur.sin.dispose();
    }
    if (long) this.long = t;
    else this.short = t;
    this.device = gpu();
    return t;
  }

  /** Releases the tables (ops that saved them keep theirs until their backward has run). */
  dispose(): void {
    for (const t of [this.short, this.long]) {
      t?.cos.dispose();
      t?.sin.dispose();
    }
    this.short = this.long = null;
  }

  private build(P: number, inv_freq: Float64Array): Tables {
    const half = inv_freq.length;
    const a = this.attention_factor;
    const c = new Float32Array(P * half);
    const s = new Float32Array(P * half);
    for (let pos = 0; pos < P; pos++) {
      for (let i = 0; i < half; i++) {
        const angle = pos * inv_freq[i]!;
        c[pos * half + i] = Math.cos(angle) * a;
        s[pos * half + i] = Math.sin(angle) * a;
      }
    }
    return { cos: keep(Tensor.fromArray(c, [P, half])), sin: keep(Tensor.fromArray(s, [P, half])) };
  }
}

/**
 * Rotary position embedding of x (..., H, D) (T = the product of the leading dims: tokens, batch folded
 * in) at per-token `position_ids` (T) (packed sequences restart at 0), as transformers'
 * apply_rotary_pos_emb: y = x * cos + rotate_half(x) * sin on the first rotary_dim dims of each head
 * (x_rot), the others passed through (Phi3's apply_rotary_pos_emb: cat(rope(x_rot), x_pass)). Position ids
 * are a CPU array (checked) or an i32 tensor (not checked: its positions must be below
 * rotary.max_position_embeddings; not for longrope, whose short/long choice needs max(position_ids) on the
 * CPU). longrope uses its long tables when max(position_ids) + 1 > original_max_position_embeddings, per
 * call (transformers' longrope_frequency_update, on this call's position ids).
 * d/dx = the rotation by -angle: dx[i] = dy[i] cos + dy[i + h] sin, dx[i + h] = dy[i + h] cos - dy[i] sin
 * (h = rotary_dim / 2), and dx = dy on the passed dims.
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
    if (rotary.long_inv_freq) {
      throw new Error("rope: longrope picks its short or long factors from max(position_ids), which a GPU tensor does not tell: pass position ids as an Int32Array or number[]");
    }
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
