// Causal scaled-dot-product attention for training (flash style: O(tokens × head_dim) memory), with
// grouped-query heads, packed sequences and padding, sliding windows and logit soft-capping, and its gradient.
import * as K from "../kernels/attention.ts";
import { record, Tensor } from "../tensor/tensor.ts";
import { flatBatch, type TokenBatch } from "./token_batch.ts";

export interface AttentionOptions {
  /**
   * Position ids [B, T] of packed rows: a sequence begins wherever they restart at 0 (as TRL's
   * padding-free collator writes them), and attends only within itself.
   */
  position_ids?: TokenBatch;
  /** [B, T], 1 for a token and 0 for padding (left or right). Padded queries output 0; padded keys are never attended. */
  attention_mask?: TokenBatch;
  /** Multiplies q·k; default 1/sqrt(head_dim). */
  scale?: number;
  /**
   * Sliding window W (null/undefined: none): query i also needs i - W < j for key j, so it sees at most the W
   * last tokens, itself included (transformers' sliding_window_overlay: kv_idx > q_idx - W). Indices are
   * positions in the row, not position ids; a packed sequence's window never reaches past its start anyway.
   */
  sliding_window?: number | null;
  /**
   * Logit soft-cap c (null/undefined/0: none): each score is c·tanh(scale·q·k / c) before masking and the
   * softmax (Gemma 2's attn_logit_softcapping).
   */
  softcap?: number | null;
}

const fmt = (t: Tensor) => `[${t.shape.join(", ")}]`;

/**
 * softmax(s + causal mask)·v per head, s = scale·q·kᵀ (or c·tanh(scale·q·kᵀ / c) with a softcap c): q
 * [B, T, H, D], k and v [B, T, KVH, D] (query head h uses kv head floor(h / (H / KVH))), output [B, T, H, D].
 * Query t of a row attends the tokens t' <= t of its own sequence (see AttentionOptions) that are not
 * padding, and with a sliding window W only those with t' > t - W; a query with no such token outputs 0.
 *
 * With p = softmax(s), o = p·v and Δ_i = rowsum(dy ∘ o)_i: dv = pᵀ·dy, ds = p ∘ (dy·vᵀ − Δ) (times
 * 1 − (s/c)², the cap's derivative, with a softcap), dq = scale·ds·k, dk = scale·dsᵀ·q (dk, dv summed over each
 * kv head's query heads), recomputing p tile by tile from q, k and the saved log-sum-exp (of the capped s).
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions = {}): Tensor {
  const d = dimsOf(q, k, v, options);
  const ids = options.position_ids && flatBatch("attention: position_ids", options.position_ids, d).data;
  const mask = options.attention_mask && flatBatch("attention: attention_mask", options.attention_mask, d).data;
  const window = slidingWindowOf("attention", options.sliding_window);
  const bounds = Tensor.fromArray(tokenBounds(d.B, d.T, ids, mask, window), [d.B, d.T, 2], { dtype: "i32" });
  const { o, lse } = K.forward(q, k, v, bounds, d);
  const saved: K.AttentionSaved = { q, k, v, o, lse, bounds };
  const out = record(
    o,
    "attention",
    [q, k, v],
    (dy, needs) => {
      const stats = K.rowStats(dy, saved, d);
      const dq = needs[0] ? K.backwardQ(dy, stats, saved, d) : null;
      let dk: Tensor | null = null;
      let dv: Tensor | null = null;
      if (needs[1] || needs[2]) {
        ({ dk, dv } = K.backwardKV(dy, stats, saved, d));
        if (!needs[1]) dk = (dk.dispose(), null);
        if (!needs[2]) dv = (dv.dispose(), null);
      }
      stats.dispose();
      return [dq, dk, dv];
    },
    [q, k, v, o, lse, bounds],
  );
  // The node holds its own references when it recorded one.
  lse.dispose();
  bounds.dispose();
  return out;
}

/** A sliding_window option checked: a positive integer, or undefined for none. */
export function slidingWindowOf(op: string, w: number | null | undefined): number | undefined {
  if (w === null || w === undefined) return undefined;
  if (!Number.isInteger(w) || w < 1) {
    throw new Error(`${op}: sliding_window must be a positive integer (the tokens a query sees, itself included) or null for none, got ${w}`);
  }
  return w;
}

/** A softcap option checked: a positive finite number, or 0 for none (null, undefined or 0 given). */
export function softcapOf(op: string, c: number | null | undefined): number {
  if (c === null || c === undefined || c === 0) return 0;
  if (typeof c !== "number" || !Number.isFinite(c) || c < 0) {
    throw new Error(`${op}: softcap must be a positive finite number (scores become c·tanh(s / c)) or null for none, got ${c}`);
  }
  return c;
}

function dimsOf(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions): K.AttentionDims {
  const scale = options.scale;
  const shapes = `q ${fmt(q)}, k ${fmt(k)}, v ${fmt(v)}`;
  const fail = (why: string): never => {
    throw new Error(`attention: ${why} (${shapes})`);
  };
  for (const [name, t] of [["q", q], ["k", k], ["v", v]] as const) {
    if (t.dtype !== "f32") fail(`${name} must be f32, got ${t.dtype}`);
    if (t.ndim !== 4) fail(`${name} must be 4-D [B, T, heads, head_dim]`);
  }
  const [B, T, H, D] = q.shape as [number, number, number, number];
  const [Bk, Tk, KVH, Dk] = k.shape as [number, number, number, number];
  if (k.shape.join() !== v.shape.join()) fail("k and v must have the same shape");
  if (Bk !== B || Tk !== T) fail(`q has B=${B}, T=${T} but k and v have B=${Bk}, T=${Tk}`);
  if (Dk !== D) fail(`head_dim differs: ${D} in q, ${Dk} in k and v`);
  if (D % 4 !== 0 || D > 256 || D === 0) fail(`head_dim must be a multiple of 4 from 4 to 256, got ${D}`);
  if (KVH === 0 || H % KVH !== 0) fail(`the ${H} query heads must be a multiple of the ${KVH} kv heads`);
  if (B === 0 || T === 0) fail("empty batch or sequence");
  const s = scale ?? 1 / Math.sqrt(D);
  if (!Number.isFinite(s)) fail(`scale must be finite, got ${scale}`);
  const softcap = softcapOf("attention", options.softcap);
  return { B, T, H, KVH, D, scale: s, softcap, config: K.attentionConfig(D) };
}

/**
 * Per token t of each row, as (lo_t, end_t) pairs, i32 (B, T, 2). Query t attends keys lo_t..t; end_t is one
 * past the last query that attends key t. Sequences begin at t = 0 and wherever position_ids is 0; within
 * one, the mask must read 0…0 1…1 0…0 (left, then right padding): real tokens [a, c) get lo = a and
 * end = c, padding gets lo = t + 1 (attends nothing) and end = t (attended by nothing). A sliding window W
 * narrows real tokens to lo = max(a, t - W + 1) and end = min(c, t + W). Both stay nondecreasing along the
 * row, which the kernels' tile bounds rely on (and the masks, which read lo of the query side only: end only
 * bounds the queries backward_dkv visits).
 */
export function tokenBounds(B: number, T: number, positionIds?: Int32Array, mask?: Int32Array, window?: number): Int32Array {
  const out = new Int32Array(2 * B * T);
  for (let b = 0; b < B; b++) {
    const row = b * T;
    for (let s = 0; s < T; ) {
      let e = s + 1;
      while (e < T && !(positionIds && positionIds[row + e] === 0)) e++;
      const real = (t: number) => {
        const m = mask ? mask[row + t]! : 1;
        if (m !== 0 && m !== 1) throw new Error(`attention: attention_mask[${b}][${t}] = ${m}; expected 0 or 1`);
        return m === 1;
      };
      let a = s;
      while (a < e && !real(a)) a++;
      let c = a;
      while (c < e && real(c)) c++;
      for (let t = c; t < e; t++) {
        if (real(t)) {
          throw new Error(
            `attention: attention_mask[${b}] has padding at ${c} between real tokens ${c - 1} and ${t} of one sequence; ` +
              "only left or right padding is supported",
          );
        }
      }
      for (let t = s; t < e; t++) {
        const inside = t >= a && t < c;
        out[2 * (row + t)] = !inside ? t + 1 : window ? Math.max(a, t - window + 1) : a;
        out[2 * (row + t) + 1] = !inside ? t : window ? Math.min(c, t + window) : c;
      }
      s = e;
    }
  }
  return out;
}
