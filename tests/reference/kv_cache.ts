// float64 reference for attention over a KV cache and the cache write. q (B, S, H, D) at absolute positions
// past..past+S-1; caches (B, cap, KVH, D), positions 0..past+S-1 valid. Query s attends position j iff
// j <= past + s, j > past + s - W with a sliding window W, and mask[b, j] = 1; kv head h / (H / KVH); a
// query with nothing to attend gives 0. Scores scale·q·k, or c·tanh(scale·q·k / c) with a softcap c.

export interface CachedCase {
  B: number;
  S: number;
  H: number;
  KVH: number;
  D: number;
  cap: number;
  past: number;
  scale?: number;
  /** (B, past + S), row-major, 1 = token, 0 = padding. */
  mask?: ArrayLike<number>;
  slidingWindow?: number;
  softcap?: number;
}

export function attentionCached(q: ArrayLike<number>, kc: ArrayLike<number>, vc: ArrayLike<number>, c: CachedCase): Float64Array {
  const { B, S, H, KVH, D, cap, past } = c;
  const L = past + S;
  const scale = c.scale ?? 1 / Math.sqrt(D);
  const o = new Float64Array(B * S * H * D);
  const scores = new Float64Array(L);
  for (let b = 0; b < B; b++) {
    for (let s = 0; s < S; s++) {
      for (let h = 0; h < H; h++) {
        const kvh = Math.floor(h / (H / KVH));
        const qa = ((b * S + s) * H + h) * D;
        const W = c.slidingWindow;
        const allowed = (j: number) => j <= past + s && (W === undefined || j > past + s - W) && (!c.mask || c.mask[b * L + j] === 1);
        let m = -Infinity;
        for (let j = 0; j < L; j++) {
          if (!allowed(j)) continue;
          const ka = ((b * cap + j) * KVH + kvh) * D;
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q[qa + d]! * kc[ka + d]!;
          scores[j] = c.softcap ? c.softcap * Math.tanh((scale * dot) / c.softcap) : scale * dot;
          m = Math.max(m, scores[j]!);
        }
        if (m === -Infinity) continue; // nothing to attend: 0
        let sum = 0;
        for (let j = 0; j < L; j++) if (allowed(j)) sum += Math.exp(scores[j]! - m);
        for (let j = 0; j < L; j++) {
          if (!allowed(j)) continue;
          const w = Math.exp(scores[j]! - m) / sum;
          const va = ((b * cap + j) * KVH + kvh) * D;
          for (let d = 0; d < D; d++) o[qa + d] += w * vc[va + d]!;
        }
      }
    }
  }
  return o;
}

/** A copy of cache (B, cap, width) with x (B, S, width) written at positions start..start+S-1 of every row. */
export function cacheWrite(cache: ArrayLike<number>, x: ArrayLike<number>, B: number, cap: number, S: number, start: number): Float64Array {
  const out = Float64Array.from(cache);
  const width = x.length / (B * S);
  for (let b = 0; b < B; b++) {
    for (let s = 0; s < S; s++) {
      for (let w = 0; w < width; w++) out[(b * cap + start + s) * width + w] = x[(b * S + s) * width + w]!;
    }
  }
  return out;
}
