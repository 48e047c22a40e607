// Inference-time ops for text generation with a KV cache: the in-place cache write and attention of new
// tokens over the cache (prefill and decode). No autograd: they run under no_grad only.
import * as K from "../kernels/kv_cache.ts";
import { is_grad_enabled } from "../tensor/autograd.ts";
import { Tensor } from "../tensor/tensor.ts";
import { slidingWindowOf, softcapOf } from "./attention.ts";
import { flatBatch, type TokenBatch } from "./token_batch.ts";

const fmt = (t: Tensor) => `[${t.shape.join(", ")}]`;

function noGrad(op: string, inputs: Record<string, Tensor>): void {
  if (!is_grad_enabled()) return;
  for (const [name, t] of Object.entries(inputs)) {
    if (t.requires_grad) {
      throw new Error(`${op}: ${name} requires grad; ${op} has no gradient: call it inside no_grad(() => ...)`);
    }
  }
}

/**
 * Writes x [B, S, KVH, D] into positions start..start+S-1 of every row of cache [B, capacity, KVH, D], in
 * place (one dispatch). Both f32.
 */
export function kv_cache_write(cache: Tensor, x: Tensor, start: number): void {
  const fail = (why: string): never => {
    throw new Error(`kv_cache_write: ${why} (cache ${fmt(cache)}, x ${fmt(x)}, start ${start})`);
  };
  noGrad("kv_cache_write", { cache, x });
  if (cache.dtype !== "f32" || x.dtype !== "f32") fail(`cache and x must be f32, got ${cache.dtype} and ${x.dtype}`);
  if (cache.ndim !== 4 || x.ndim !== 4) fail("cache must be [B, capacity, KVH, D] and x [B, S, KVH, D]");
  const [B, cap, KVH, D] = cache.shape as [number, number, number, number];
  const [Bx, S, KVHx, Dx] = x.shape as [number, number, number, number];
  if (Bx !== B || KVHx !== KVH || Dx !== D) {
    fail(`x must be [${B}, S, ${KVH}, ${D}] to match the cache, got ${fmt(x)}`);
  }
  if (!Number.isInteger(start) || start < 0) fail(`start must be a non-negative integer, got ${start}`);
  if (start + S > cap) {
    fail(`writing ${S} positions at ${start}..${start + S - 1} overflows the cache's capacity of ${cap} positions`);
  }
  if (x.size === 0) return;
  K.write(cache, x, start);
}

export interface CachedAttentionOptions {
  /** Cached positions before the new tokens: query s is at absolute position past + s. */
  past: number;
  /**
   * [B, past + S], 1 for a token and 0 for padding (left padding in batched generation): nested rows, a
   * flat array of B·(past + S) values, or an i32 tensor of that shape. Default: all tokens.
   */
  attention_mask?: TokenBatch;
  /** Multiplies q·k; default 1/sqrt(head_dim). */
  scale?: number;
  /**
   * Sliding window W (null/undefined: none): query s also needs past + s - W < j for cache position j, as
   * attention's sliding_window with the absolute position past + s as the query's index.
   */
  sliding_window?: number | null;
  /** Logit soft-cap c (null/undefined/0: none): scores c·tanh(scale·q·k / c), as attention's softcap. */
  softcap?: number | null;
}

/**
 * Attention of S new tokens over a KV cache: q [B, S, H, D] at absolute positions past..past+S-1; kcache
 * and vcache [B, capacity, KVH, D] hold past + S valid positions (the new ones already written). Query s
 * attends cache positions j <= past + s (and j > past + s - W with a sliding window W) with
 * attention_mask[b][j] = 1, query head h using kv head floor(h / (H / KVH)); a query with nothing to attend
 * outputs 0. Output [B, S, H, D], equal to training attention's rows past..past+S-1 for the same tokens.
 * Prefill (past 0, S = prompt length) and decode (S = 1). Split-K over the cache length (from the first
 * position the window lets in): 1 dispatch, or 2 when the cache is split into chunks (partials and their
 * combine).
 */
export function attention_cached(q: Tensor, kcache: Tensor, vcache: Tensor, options: CachedAttentionOptions): Tensor {
  const shapes = `q ${fmt(q)}, kcache ${fmt(kcache)}, vcache ${fmt(vcache)}, past ${options?.past}`;
  const fail = (why: string): never => {
    throw new Error(`attention_cached: ${why} (${shapes})`);
  };
  noGrad("attention_cached", { q, kcache, vcache });
  for (const [name, t] of [["q", q], ["kcache", kcache], ["vcache", vcache]] as const) {
    if (t.dtype !== "f32") fail(`${name} must be f32, got ${t.dtype}`);
    if (t.ndim !== 4) fail(`${name} must be 4-D`);
  }
  const [B, S, H, D] = q.shape as [number, number, number, number];
  const [Bk, cap, KVH, Dk] = kcache.shape as [number, number, number, number];
  if (kcache.shape.join() !== vcache.shape.join()) fail("kcache and vcache must have the same shape");
  if (Bk !== B) fail(`q has B=${B} but the caches have B=${Bk}`);
  if (Dk !== D) fail(`head_dim differs: ${D} in q, ${Dk} in the caches`);
  if (D % 4 !== 0 || D > 256 || D === 0) fail(`head_dim must be a multiple of 4 from 4 to 256, got ${D}`);
  if (KVH === 0 || H % KVH !== 0) fail(`the ${H} query heads must be a multiple of the ${KVH} kv heads`);
  if (B === 0 || S === 0) fail("empty batch or no new tokens");
  const past = options?.past;
  if (!Number.isInteger(past) || past < 0) fail(`past must be a non-negative integer, got ${past}`);
  const L = past + S;
  if (L > cap) fail(`past + S = ${past} + ${S} = ${L} positions exceed the caches' capacity of ${cap}`);
  const scale = options.scale ?? 1 / Math.sqrt(D);
  if (!Number.isFinite(scale)) fail(`scale must be finite, got ${options.scale}`);
  const window = slidingWindowOf("attention_cached", options.sliding_window) ?? 0;
  const softcap = softcapOf("attention_cached", options.softcap);
  const given = options.attention_mask;
  let mask: Tensor;
  if (given instanceof Tensor) {
    if (given.dtype !== "i32" || given.shape.join() !== [B, L].join()) {
      fail(`attention_mask must be an i32 tensor [B, past + S] = [${B}, ${L}], got ${given.dtype} ${fmt(given)}`);
    }
    mask = given;
  } else {
    mask = Tensor.fromArray(given ? maskInts(given, B, L) : new Int32Array(B * L).fill(1), [B, L], { dtype: "i32" });
  }
  const o = K.attendCached(q, kcache, vcache, mask, { B, S, H, KVH, D, cap, past, scale, window, softcap });
  if (mask !== given) mask.dispose();
  return o;
}

/** A [B, L] mask flattened to B·L 0/1 integers, checked. */
function maskInts(a: TokenBatch, B: number, L: number): Int32Array {
  const { data } = flatBatch("attention_cached: attention_mask", a, { B, T: L, dims: "B, past + S" });
  const bad = data.findIndex((m) => m !== 0 && m !== 1);
  if (bad >= 0) throw new Error(`attention_cached: attention_mask[${Math.floor(bad / L)}][${bad % L}] = ${data[bad]}; expected 0 or 1`);
  return data;
}
