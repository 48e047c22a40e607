// Typed launchers for shaders/kv_cache.wgsl: the KV-cache write and attention over a cache (prefill and
// decode, split-K over the cache length). No autograd.
import { gpu, isCpuAdapter } from "../gpu/device.ts";
import { grid, launch } from "../gpu/launch.ts";
import { Tensor } from "../tensor/tensor.ts";

/** q (B, S, H, D); caches (B, cap, KVH, D) with past + S valid positions. */
export interface CachedAttentionDims {
  B: number;
  S: number;
  H: number;
  KVH: number;
  D: number;
  cap: number;
  past: number;
  scale: number;
  /** Sliding window W: query s sees positions j > past + s - W. 0 or absent: none. */
  window?: number;
  /** Logit soft-cap c. 0 or absent: none. */
  softcap?: number;
}

/** The lowest cache position any query of a call attends: past + 1 - W with a window W, else 0. */
export function firstPosition(d: CachedAttentionDims): number {
  return d.window ? Math.max(0, d.past + 1 - d.window) : 0;
}

/** How one call is cut: QR rows per workgroup, NC chunks of CH cache positions (from firstPosition on). */
export interface CachedAttentionPlan {
  QR: number;
  NC: number;
  CH: number;
  /** Keys per step (threads of a workgroup): QR · D/4. */
  BK: number;
}

/** Workgroups a call aims for before it stops splitting the cache: enough to fill a GPU's cores. */
const TARGET_GPU = 256;
const TARGET_CPU = 16;

let forcedChunk: number | null = null;

/**
 * Forces every later cached attention onto chunks of `keys` cache positions (`Infinity`: one chunk, no
 * split) for tests; `null` restores the automatic choice (chunks of whole steps of BK positions).
 */
export function forceCachedAttentionChunk(keys: number | null): void {
  forcedChunk = keys;
}

/** The tiling of one call of attention_cached. */
export function cachedAttentionPlan(d: CachedAttentionDims): CachedAttentionPlan {
  const D4 = d.D / 4;
  const G = d.H / d.KVH;
  const rows = d.S * G;
  // At least 4 rows and about 64 threads per workgroup, never more rows than there are.
  const QR = Math.min(rows, Math.max(4, Math.min(32, Math.floor(64 / D4))));
  const BK = QR * D4;
  const span = d.past + d.S - firstPosition(d); // positions some query sees
  const steps = Math.ceil(span / BK);
  if (forcedChunk !== null) {
    // Any whole number of positions: chunks may end mid-step.
    const CH = Number.isFinite(forcedChunk) ? Math.min(span, Math.max(1, Math.floor(forcedChunk))) : span;
    return { QR, NC: Math.ceil(span / CH), CH, BK };
  }
  const base = Math.ceil(rows / QR) * d.B * d.KVH;
  const target = isCpuAdapter(gpu().info) ? TARGET_CPU : TARGET_GPU;
  const NC = Math.max(1, Math.min(base >= target ? 1 : Math.ceil(target / base), steps));
  const CH = Math.ceil(steps / NC) * BK;
  return { QR, NC: Math.ceil(span / CH), CH, BK };
}

/** cache[b, start + s] = x[b, s] for every row b, in place: one dispatch. x (B, S, ...), cache (B, cap, ...). */
export function write(cache: Tensor, x: Tensor, start: number): void {
  const [B, S] = x.shape as [number, number];
  const cap = cache.shape[1]!;
  const width = x.size / (B * S);
  launch("kv_cache", "write", {
    buffers: { cache: cache.buffer, x: x.buffer },
    params: params({ B, S, cap, start, n: x.size, width }),
    workgroups: grid(x.size, 64),
  });
}

function params(f: Partial<Record<string, number>>): Record<string, number> {
  const names = ["B", "S", "H", "KVH", "cap", "past", "L", "NC", "CH", "cols", "start", "n", "width", "scale", "first", "window", "softcap"];
  return Object.fromEntries(names.map((n) => [n, f[n] ?? 0]));
}

/**
 * o (B, S, H, D) = softmax over the allowed cache positions of (scale q·k, capped with a softcap)·v. `mask`:
 * i32 (B, past + S).
 * One dispatch when the plan has one chunk, else two (partials, combine).
 */
export function attendCached(q: Tensor, kc: Tensor, vc: Tensor, mask: Tensor, d: CachedAttentionDims): Tensor {
  const plan = cachedAttentionPlan(d);
  const { QR, NC, CH } = plan;
  const D4 = d.D / 4;
  const L = d.past + d.S;
  const o = Tensor.empty([d.B, d.S, d.H, d.D]);
  const rows = d.S * (d.H / d.KVH);
  const consts = { D: d.D, QR };
  const workgroups = [Math.ceil(rows / QR), NC, d.B * d.KVH];
  const base = {
    B: d.B, S: d.S, H: d.H, KVH: d.KVH, cap: d.cap, past: d.past, L, NC, CH, cols: D4, scale: d.scale,
    first: firstPosition(d), window: d.window ?? 0, softcap: d.softcap ?? 0,
  };
  if (NC === 1) {
    launch("kv_cache", "single", {
      consts,
      buffers: { q: q.buffer, kc: kc.buffer, vc: vc.buffer, mask: mask.buffer, o: o.buffer },
      params: params(base),
      workgroups,
    });
    return o;
  }
  const parts = d.B * d.H * d.S * NC;
  const pml = Tensor.empty([parts, 2]);
  const pacc = Tensor.empty([parts, d.D]);
  launch("kv_cache", "partial", {
    consts,
    buffers: { q: q.buffer, kc: kc.buffer, vc: vc.buffer, mask: mask.buffer, pml: pml.buffer, pacc: pacc.buffer },
    params: params(base),
    workgroups,
  });
  const n = d.B * d.S * d.H * D4;
  launch("kv_cache", "combine", {
    buffers: { pml: pml.buffer, pacc: pacc.buffer, o: o.buffer },
    params: params({ ...base, n }),
    workgroups: grid(n, 64),
  });
  pml.dispose();
  pacc.dispose();
  return o;
}
