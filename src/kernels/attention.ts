// Typed launchers for shaders/attention.wgsl (causal flash attention with per-token bounds, which carry
// packing, padding and sliding windows, and an optional logit soft-cap; forward and backward) and the tile
// config per adapter. No autograd here.
import { gpu, isCpuAdapter, type DeviceInfo } from "../gpu/device.ts";
import { grid, launch } from "../gpu/launch.ts";
import { Tensor } from "../tensor/tensor.ts";

/** Tiles of shaders/attention.wgsl. */
export interface AttentionConfig {
  /** Queries per tile, a multiple of 16. */
  BQ: number;
  /** Keys per tile, a multiple of 16. */
  BK: number;
  /** Blocks of 4 rows per thread: 1 or 2. */
  RB: number;
  /** Threads sharing a thread's rows: they split the accumulator columns and the score blocks. */
  G: number;
  /** Copy q, dy, k, v tiles into workgroup memory (GPUs) instead of reading the storage buffers. */
  stage: boolean;
}

/** q (B, T, H, D), k and v (B, T, KVH, D), and the tiling of every kernel of one call. */
export interface AttentionDims {
  B: number;
  T: number;
  H: number;
  KVH: number;
  D: number;
  scale: number;
  /** Logit soft-cap c (scores c·tanh(s / c)); 0 for none. */
  softcap: number;
  config: AttentionConfig;
}

/**
 * CPU adapters: no staging and G = 1, so no barrier at all; a thread's 8 rows against 4 blocks of 4 are
 * 512 multiply-adds per 24 vec4 loads, and 32-row tiles give each workgroup 4 threads (SwiftShader's
 * SIMD width).
 */
const CPU_CONFIG: AttentionConfig = { BQ: 32, BK: 32, RB: 2, G: 1, stage: false };

/**
 * GPUs: staged tiles, G = D/16 threads per 4 rows (each accumulates 16 columns), the largest tiles that fit
 * the adapter's workgroup memory; past that (head_dim 256 at 32 KiB), unstaged.
 */
const GPU_TILES: readonly [number, number][] = [[32, 32], [32, 16], [16, 32], [16, 16]];

let forced: AttentionConfig | null = null;

/** Forces every later attention onto `config` (tests, benchmarks); `null` restores the adapter's choice. */
export function forceAttentionConfig(config: AttentionConfig | null): void {
  forced = config;
}

/** The config attention uses for head_dim D: forced, else the adapter kind's. */
export function attentionConfig(D: number): AttentionConfig {
  const info = gpu().info;
  const c = forced ?? (isCpuAdapter(info) ? CPU_CONFIG : gpuConfig(D, info));
  checkConfig(c, D, info);
  return c;
}

function gpuConfig(D: number, info: DeviceInfo): AttentionConfig {
  const G = Math.ceil(D / 16);
  for (const [BQ, BK] of GPU_TILES) {
    const c = { BQ, BK, RB: 1, G, stage: true };
    if (configFits(c, D, info)) return c;
  }
  return { BQ: 16, BK: 16, RB: 1, G, stage: false };
}

/** Bytes of workgroup memory the largest kernel (backward_dkv) takes with `c` at head_dim D. */
export function workgroupBytes(c: AttentionConfig, D: number): number {
  const rows = c.stage ? 2 * c.BQ + 2 * c.BK : 4;
  return 4 * (rows * D + 2 * c.BQ * c.BK + 2 * c.BQ * c.G);
}

/** Threads of the largest workgroup (forward / backward_dq: BQ/4/RB·G; backward_dkv: BK/4/RB·G). */
export function workgroupThreads(c: AttentionConfig): number {
  return (Math.max(c.BQ, c.BK) / 4 / c.RB) * c.G;
}

export function configFits(c: AttentionConfig, D: number, info: DeviceInfo): boolean {
  const l = info.limits;
  const threads = workgroupThreads(c);
  return (
    threads <= l.maxComputeInvocationsPerWorkgroup &&
    threads <= l.maxComputeWorkgroupSizeX &&
    workgroupBytes(c, D) <= l.maxComputeWorkgroupStorageSize
  );
}

function checkConfig(c: AttentionConfig, D: number, info: DeviceInfo): void {
  const tile = (n: number) => Number.isInteger(n) && n >= 16 && n % 16 === 0;
  if (!tile(c.BQ) || !tile(c.BK) || (c.RB !== 1 && c.RB !== 2) || !Number.isInteger(c.G) || c.G < 1) {
    throw new Error(`attention config ${JSON.stringify(c)}: BQ and BK must be positive multiples of 16, RB 1 or 2, G a positive integer`);
  }
  if (!configFits(c, D, info)) {
    throw new Error(
      `attention config ${JSON.stringify(c)} at head_dim ${D} exceeds this adapter's workgroup limits ` +
        `(${workgroupThreads(c)} threads, max ${info.limits.maxComputeInvocationsPerWorkgroup}; ` +
        `${workgroupBytes(c, D)} bytes of workgroup memory, max ${info.limits.maxComputeWorkgroupStorageSize})`,
    );
  }
}

function consts(d: AttentionDims) {
  const c = d.config;
  return { D: d.D, BQ: c.BQ, BK: c.BK, RB: c.RB, G: c.G, STAGE: c.stage };
}

function params(d: AttentionDims) {
  return { B: d.B, T: d.T, H: d.H, KVH: d.KVH, cols: d.D / 4, scale: d.scale, softcap: d.softcap };
}

/** o (B, T, H, D) and the log-sum-exp of each query's scores, lse (B, H, T). `bounds`: i32 (B, T, 2). */
export function forward(q: Tensor, k: Tensor, v: Tensor, bounds: Tensor, d: AttentionDims): { o: Tensor; lse: Tensor } {
  const o = Tensor.empty([d.B, d.T, d.H, d.D]);
  const lse = Tensor.empty([d.B, d.H, d.T]);
  launch("attention", "forward", {
    consts: consts(d),
    buffers: { q: q.buffer, k: k.buffer, v: v.buffer, bounds: bounds.buffer, o: o.buffer, lse: lse.buffer },
    params: params(d),
    workgroups: [Math.ceil(d.T / d.config.BQ), d.H, d.B],
  });
  return { o, lse };
}

export interface AttentionSaved {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  o: Tensor;
  lse: Tensor;
  bounds: Tensor;
}

/** (L_i, Δ_i = dy_i·o_i) per query, (B, H, T, 2): what both gradient kernels read. */
export function rowStats(dy: Tensor, s: AttentionSaved, d: AttentionDims): Tensor {
  const stats = Tensor.empty([d.B, d.H, d.T, 2]);
  launch("attention", "backward_delta", {
    consts: { D: d.D },
    buffers: { dy: dy.buffer, o: s.o.buffer, lse: s.lse.buffer, stats: stats.buffer },
    params: params(d),
    workgroups: grid(d.B * d.T * d.H, 64),
  });
  return stats;
}

/** dq (B, T, H, D). */
export function backwardQ(dy: Tensor, stats: Tensor, s: AttentionSaved, d: AttentionDims): Tensor {
  const dq = Tensor.empty(s.q.shape);
  launch("attention", "backward_dq", {
    consts: consts(d),
    buffers: { q: s.q.buffer, k: s.k.buffer, v: s.v.buffer, bounds: s.bounds.buffer, dy: dy.buffer, stats: stats.buffer, dq: dq.buffer },
    params: params(d),
    workgroups: [Math.ceil(d.T / d.config.BQ), d.H, d.B],
  });
  return dq;
}

/** dk and dv (B, T, KVH, D), each summed over the query heads of its group. */
export function backwardKV(dy: Tensor, stats: Tensor, s: AttentionSaved, d: AttentionDims): { dk: Tensor; dv: Tensor } {
  const dk = Tensor.empty(s.k.shape);
  const dv = Tensor.empty(s.v.shape);
  launch("attention", "backward_dkv", {
    consts: consts(d),
    buffers: {
      q: s.q.buffer, k: s.k.buffer, v: s.v.buffer, bounds: s.bounds.buffer, dy: dy.buffer, stats: stats.buffer,
      dk: dk.buffer, dv: dv.buffer,
    },
    params: params(d),
    workgroups: [Math.ceil(d.T / d.config.BK), d.KVH, d.B],
  });
  return { dk, dv };
}
