// float64 reference for causal attention with grouped-query heads, packed sequences, padding, sliding
// windows and logit soft-capping: q (B, T, H, D), k, v (B, T, KVH, D), o (B, T, H, D); the forward and the
// analytic gradient of sum(o · dy). The mask is built pair by pair from position ids, the attention mask and
// the window, independently of the op's per-token bounds: query i attends key j iff j <= i, j > i - W (with
// a window W), both in the same sequence (sequences begin where position ids restart at 0) and both real
// tokens. Scores are scale·q·k, or c·tanh(scale·q·k / c) with a softcap c.

export interface AttentionCase {
  B: number;
  T: number;
  H: number;
  KVH: number;
  D: number;
  scale?: number;
  /** (B·T), row-major. */
  positionIds?: ArrayLike<number>;
  /** (B·T), 1 = token, 0 = padding. */
  mask?: ArrayLike<number>;
  /** Sliding window W: query i sees keys j > i - W. */
  slidingWindow?: number;
  /** Logit soft-cap c. */
  softcap?: number;
}

/** live(b, i, j) for one batch row: whether query i attends key j. */
function liveness(c: AttentionCase): (b: number, i: number, j: number) => boolean {
  const seq = new Int32Array(c.B * c.T);
  for (let b = 0; b < c.B; b++) {
    for (let t = 1; t < c.T; t++) {
      const n = b * c.T + t;
      seq[n] = seq[n - 1]! + (c.positionIds && c.positionIds[n] === 0 ? 1 : 0);
    }
  }
  const real = (n: number) => !c.mask || c.mask[n] === 1;
  return (b, i, j) => {
    const ni = b * c.T + i;
    const nj = b * c.T + j;
    const inWindow = c.slidingWindow === undefined || j > i - c.slidingWindow;
    return j <= i && inWindow && seq[ni] === seq[nj] && real(ni) && real(nj);
  };
}

/**
 * Probabilities p[b, h, i, j] (zero where not live; a row with no live key is all zero), the cap's
 * derivative at each score (1 - tanh², or 1 without a softcap) and the layout helpers.
 */
function probabilities(q: Float64Array, k: Float64Array, c: AttentionCase) {
  const { B, T, H, KVH, D } = c;
  const scale = c.scale ?? 1 / Math.sqrt(D);
  const live = liveness(c);
  const qi = (b: number, t: number, h: number) => ((b * T + t) * H + h) * D;
  const ki = (b: number, t: number, h: number) => ((b * T + t) * KVH + Math.floor(h / (H / KVH))) * D;
  const P = new Float64Array(B * H * T * T);
  const dcap = new Float64Array(B * H * T * T).fill(1);
  const cap = c.softcap;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < T; i++) {
        const row = ((b * H + h) * T + i) * T;
        let m = -Infinity;
        for (let j = 0; j < T; j++) {
          if (!live(b, i, j)) continue;
          let s = 0;
          for (let d = 0; d < D; d++) s += q[qi(b, i, h) + d]! * k[ki(b, j, h) + d]!;
          s *= scale;
          if (cap) {
            const t = Math.tanh(s / cap);
            s = cap * t;
            dcap[row + j] = 1 - t * t;
          }
          P[row + j] = s;
          m = Math.max(m, s);
        }
        let sum = 0;
        for (let j = 0; j < T; j++) if (live(b, i, j)) sum += (P[row + j] = Math.exp(P[row + j]! - m));
        for (let j = 0; j < T; j++) P[row + j] = live(b, i, j) ? P[row + j]! / sum : 0;
      }
    }
  }
  return { P, dcap, scale, qi, ki };
}

export function attention(q: Float64Array, k: Float64Array, v: Float64Array, c: AttentionCase): Float64Array {
  const { B, T, H, D } = c;
  const { P, qi, ki } = probabilities(q, k, c);
  const o = new Float64Array(B * T * H * D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < T; i++) {
        const row = ((b * H + h) * T + i) * T;
        for (let j = 0; j < T; j++) {
          const pij = P[row + j]!;
          if (pij === 0) continue;
          for (let d = 0; d < D; d++) o[qi(b, i, h) + d] += pij * v[ki(b, j, h) + d]!;
        }
      }
    }
  }
  return o;
}

/**
 * [dq, dk, dv] of sum(o · dy): dv_j = sum_i p_ij dy_i, dp_ij = dy_i·v_j, ds_ij = p_ij (dp_ij - sum_j' p_ij' dp_ij')
 * (times 1 - tanh² of the capped argument with a softcap), dq_i = scale sum_j ds_ij k_j, dk_j = scale sum_i
 * ds_ij q_i (dk, dv summed over the heads sharing a kv head).
 */
export function attentionGrad(q: Float64Array, k: Float64Array, v: Float64Array, dy: Float64Array, c: AttentionCase): Float64Array[] {
  const { B, T, H, D } = c;
  const { P, dcap, scale, qi, ki } = probabilities(q, k, c);
  const dq = new Float64Array(q.length);
  const dk = new Float64Array(k.length);
  const dv = new Float64Array(v.length);
  const dp = new Float64Array(T);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < T; i++) {
        const row = ((b * H + h) * T + i) * T;
        let rowsum = 0;
        for (let j = 0; j < T; j++) {
          let s = 0;
          for (let d = 0; d < D; d++) s += dy[qi(b, i, h) + d]! * v[ki(b, j, h) + d]!;
          dp[j] = s;
          rowsum += P[row + j]! * s;
        }
        for (let j = 0; j < T; j++) {
          const pij = P[row + j]!;
          if (pij === 0) continue;
          const ds = pij * (dp[j]! - rowsum) * dcap[row + j]!;
          for (let d = 0; d < D; d++) {
            dv[ki(b, j, h) + d] += pij * dy[qi(b, i, h) + d]!;
            dq[qi(b, i, h) + d] += scale * ds * k[ki(b, j, h) + d]!;
            dk[ki(b, j, h) + d] += scale * ds * q[qi(b, i, h) + d]!;
          }
        }
      }
    }
  }
  return [dq, dk, dv];
}
