// Typed launcher for shaders/matmul.wgsl, and the autotune that picks its tile config per adapter.
// No autograd here.
import { gpu, isCpuAdapter, type DeviceInfo } from "../gpu/device.ts";
import { grid, launch } from "../gpu/launch.ts";
import { BASE_FORMAT, formatVariant, isPacked, isWeightFormat, unsupportedReason, WEIGHT_FORMATS, type WeightFormat } from "../tensor/format.ts";
import { type DType, full, Tensor } from "../tensor/tensor.ts";

/** A kernel of shaders/matmul.wgsl and its tile: each thread computes TM×TN outputs (multiples of 4, at most 16). */
export interface MatmulConfig {
  kernel: "reg" | "tiled";
  TM: number;
  TN: number;
  /** Threads along N and M. */
  WG_X: number;
  WG_Y: number;
  /** k-depth of the workgroup-memory slices (tiled only). */
  BK?: number;
}

/**
 * The configs the autotuner times, by kind of adapter; the first of each list is the default until
 * `tuneMatmul()` has run. CPU adapters want the register tile (every load costs the same, barriers are
 * expensive, so outputs per load decide); GPUs want workgroup-memory tiles.
 */
export const MATMUL_CONFIGS: { cpu: readonly MatmulConfig[]; gpu: readonly MatmulConfig[] } = {
  cpu: [
    { kernel: "reg", TM: 16, TN: 16, WG_X: 8, WG_Y: 8 },
    { kernel: "reg", TM: 16, TN: 8, WG_X: 8, WG_Y: 8 },
  ],
  gpu: [
    { kernel: "tiled", TM: 4, TN: 4, WG_X: 16, WG_Y: 16, BK: 16 },
    { kernel: "tiled", TM: 8, TN: 8, WG_X: 8, WG_Y: 8, BK: 16 },
    { kernel: "tiled", TM: 4, TN: 4, WG_X: 8, WG_Y: 8, BK: 32 },
  ],
};

/**
 * The small-M kernels of shaders/matmul.wgsl (token-by-token decoding: M = 1, or a few sequences), which
 * compute all M <= 8 rows of C for a few columns: C columns per thread, no workgroup memory or barrier
 * ("vec", CPU adapters), or 4 columns per workgroup of WG threads splitting K, reduced in workgroup memory
 * ("vec_wg", GPUs).
 */
export interface MatvecConfig {
  kernel: "vec" | "vec_wg";
  /** Threads per workgroup ("vec_wg": a power of two). */
  WG: number;
  /** "vec": columns of C per thread, 4, 8, 12 or 16 (default 4): each row of A' it loads serves all of them. */
  C?: number;
}

/** Products with at most this many rows of C (after a shared weight's batch is folded into M) take MATVEC_CONFIGS. */
export const MATVEC_MAX_M = 8;

/**
 * The config of a product with M <= MATVEC_MAX_M rows, by kind of adapter, at index M - 1. On a CPU adapter
 * every storage load is paid per lane and per component whatever its address, so loads are what to count: at
 * M = 1 the matrix-vector kernel reads W once and A' once per 16 columns (the LM head [1×576]·[49152×576]ᵀ:
 * ~110 ms on a 2-core llvmpipe, the floor of a plain streaming read of W, against ~230 ms for the 16×16 tile);
 * from M = 2 the register tile with one row of threads and TM just above M does as well or better (measured
 * on llvmpipe, Deno). On GPUs the workgroup-per-4-columns kernel keeps every thread busy whatever M.
 */
export const MATVEC_CONFIGS: { cpu: readonly (MatvecConfig | MatmulConfig)[]; gpu: readonly (MatvecConfig | MatmulConfig)[] } = (() => {
  const vec: MatvecConfig = { kernel: "vec", WG: 16, C: 16 };
  const reg4: MatmulConfig = { kernel: "reg", TM: 4, TN: 16, WG_X: 16, WG_Y: 1 };
  const reg8: MatmulConfig = { kernel: "reg", TM: 8, TN: 16, WG_X: 16, WG_Y: 1 };
  const wg: MatvecConfig = { kernel: "vec_wg", WG: 64 };
  return { cpu: [vec, reg4, reg4, reg4, reg8, reg8, reg8, reg8], gpu: new Array<MatvecConfig>(MATVEC_MAX_M).fill(wg) };
})();

export function configName(c: MatmulConfig | MatvecConfig): string {
  if (isMatvec(c)) return `${c.kernel} (M <= ${MATVEC_MAX_M}), ${c.WG} threads${c.kernel === "vec" ? `, ${c.C ?? 4} columns/thread` : ""}`;
  const bk = c.kernel === "tiled" ? `, BK ${c.BK ?? 16}` : "";
  return `${c.kernel} ${c.TM}x${c.TN}/thread, ${c.WG_X}x${c.WG_Y} threads${bk}`;
}

/**
 * The shape of one launch: C[z] = alpha · sum_{s<S} op(A[z,s]) · op(B[z,s]) (+ C[z] with `accumulate`), C[z] of
 * [M, N], with element strides for the batch z (0 broadcasts an operand) and for the summed products s.
 */
export interface MatmulDims {
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  batch: number;
  sum: number;
  a_z: number;
  b_z: number;
  c_z: number;
  a_s: number;
  b_s: number;
  /** Add the product to what C holds instead of overwriting it (default false). */
  accumulate?: boolean;
  /** Scale of the product (default 1, which leaves its bits as they are). */
  alpha?: number;
}

const tuned = new WeakMap<GPUDevice, MatmulConfig>();
const tuning = new WeakMap<GPUDevice, Promise<MatmulTuning>>();
let forced: MatmulConfig | null = null;
let forcedVec: MatvecConfig | MatmulConfig | null = null;

const isMatvec = (c: MatmulConfig | MatvecConfig): c is MatvecConfig => c.kernel === "vec" || c.kernel === "vec_wg";

/** The config matmuls use now: forced, else tuned for this device, else the adapter kind's default. */
export function matmulConfig(): MatmulConfig {
  const g = gpu();
  return forced ?? tuned.get(g.device) ?? MATMUL_CONFIGS[isCpuAdapter(g.info) ? "cpu" : "gpu"][0]!;
}

/** Forces every later matmul onto `config` (tests, benchmarks); `null` restores the tuned/default choice. */
export function forceMatmulConfig(config: MatmulConfig | null): void {
  if (config) checkConfig(config, gpu().info);
  forced = config;
}

/** The config a matmul with M <= MATVEC_MAX_M rows uses now: forced, else the adapter kind's for M. */
export function matvecConfig(M: number): MatvecConfig | MatmulConfig {
  const table = MATVEC_CONFIGS[isCpuAdapter(gpu().info) ? "cpu" : "gpu"];
  return forcedVec ?? table[Math.min(Math.max(M, 1), table.length) - 1]!;
}

/**
 * Forces every later matmul with M <= MATVEC_MAX_M onto `config` (tests, benchmarks), as forceMatmulConfig
 * does for larger M; `null` restores the adapter's choice.
 */
export function forceMatvecConfig(config: MatvecConfig | MatmulConfig | null): void {
  if (config) (isMatvec(config) ? checkMatvecConfig : checkConfig)(config as never, gpu().info);
  forcedVec = config;
}

/**
 * Checks the storage types of a launch: a and b in a weight format whose adapter feature the device has
 * (f16: shader-f16), c f32; a packed format (q4_0, nf4, …) for b only (the weight). Throws before anything is
 * allocated or recorded; the other operand of a packed b is f32.
 */
export function checkMatmulDtypes(a: DType, b: DType, c: DType = "f32"): void {
  if (!isWeightFormat(a) || !isWeightFormat(b) || c !== BASE_FORMAT) {
    throw new Error(`matmul: operands must be weight formats (${Object.keys(WEIGHT_FORMATS).join(", ")}) and the output f32 (got a ${a}, b ${b}, c ${c})`);
  }
  if (isPacked(a)) {
    throw new Error(`matmul: a ${a} operand must be the second one (b, the weight: x·Wᵀ or dy·W); only b is read packed (got a ${a}, b ${b})`);
  }
  if (isPacked(b) && a !== BASE_FORMAT) {
    throw new Error(`matmul: a packed ${b} weight multiplies f32 operands only (got a ${a}); keep the other operand in f32`);
  }
  for (const format of new Set([a, b])) {
    const why = unsupportedReason(format, gpu().info);
    if (why) throw new Error(`matmul: ${why} (got a ${a}, b ${b}); keep the weight in f32 here`);
  }
}

/**
 * C = alpha·op(A)·op(B), or C += alpha·op(A)·op(B) with `accumulate`, into `c` (see MatmulDims). A and B may be
 * stored as f16 (widened to f32 as they are loaded; the arithmetic is f32) where the device has shader-f16, and
 * B in a packed format (dequantized as it is loaded): its stored rows (N of K with transB, K of N without) are
 * whole blocks, and a batched B's strides whole rows.
 * `config` defaults to the small-M kernel when M <= MATVEC_MAX_M, else to the tuned tile config.
 */
export function matmulInto(a: Tensor, b: Tensor, c: Tensor, d: MatmulDims, config?: MatmulConfig | MatvecConfig): void {
  checkMatmulDtypes(a.dtype, b.dtype, c.dtype);
  // shaders/matmul.wgsl's variant for the operands' formats (tools/gen-shaders.mjs writes one per combination).
  const family = formatVariant("matmul", { a: a.dtype as WeightFormat, b: b.dtype as WeightFormat });
  const cfg = config ?? (d.M <= MATVEC_MAX_M ? matvecConfig(d.M) : matmulConfig());
  // vec4 loads need 4-aligned runs along the operand's contiguous dim and 4-aligned operand offsets.
  const vec = (len: number, ...strides: number[]) => len % 4 === 0 && strides.every((s) => s % 4 === 0);
  const consts = {
    TRANS_A: d.transA,
    TRANS_B: d.transB,
    VEC_A: vec(d.transA ? d.M : d.K, d.a_z, d.a_s),
    VEC_B: vec(d.transB ? d.K : d.N, d.b_z, d.b_s),
    ACCUMULATE: d.accumulate ?? false,
  };
  // A packed b is read through its decoding load_b only (no vec4 view).
  const buffers: Record<string, GPUBuffer> = isPacked(b.dtype as WeightFormat)
    ? { a: a.buffer, a4: a.buffer, b: b.buffer, c: c.buffer }
    : { a: a.buffer, a4: a.buffer, b: b.buffer, b4: b.buffer, c: c.buffer };
  const params = {
    M: d.M, N: d.N, K: d.K, S: d.sum, a_z: d.a_z, b_z: d.b_z, c_z: d.c_z, a_s: d.a_s, b_s: d.b_s, alpha: d.alpha ?? 1,
  };
  if (isMatvec(cfg)) {
    if (d.M > MATVEC_MAX_M) throw new Error(`matmul: the ${cfg.kernel} kernel computes at most ${MATVEC_MAX_M} rows (M = ${d.M})`);
    // "vec": C columns per thread; "vec_wg": 4 columns per workgroup.
    const C = cfg.kernel === "vec" ? (cfg.C ?? 4) : 4;
    const [x, y] = grid(Math.ceil(d.N / C), cfg.kernel === "vec" ? cfg.WG : 1);
    launch(family, `matmul_${cfg.kernel}`, {
      consts: { ...consts, MV_M: d.M, MV_WG: cfg.WG, MV_C: C },
      buffers,
      params,
      workgroups: [x, y, d.batch],
    });
    return;
  }
  const BM = cfg.TM * cfg.WG_Y;
  const BN = cfg.TN * cfg.WG_X;
  launch(family, cfg.kernel === "reg" ? "matmul_reg" : "matmul_tiled", {
    consts: { ...consts, TM: cfg.TM, TN: cfg.TN, WG_X: cfg.WG_X, WG_Y: cfg.WG_Y, BK: cfg.BK ?? 16 },
    buffers,
    params,
    workgroups: [Math.ceil(d.N / BN), Math.ceil(d.M / BM), d.batch],
  });
}

/**
 * c [M, N] = alpha·op(a)·op(b), or c += with `accumulate`, for 2-D row-major operands (a [M, K] or [K, M] with
 * transA, b [K, N] or [N, K] with transB): one product, no batch.
 */
export function productInto(
  a: Tensor, transA: boolean, b: Tensor, transB: boolean, c: Tensor, M: number, N: number, K: number,
  o: { alpha?: number; accumulate?: boolean } = {}, config?: MatmulConfig | MatvecConfig,
): void {
  matmulInto(a, b, c, { M, N, K, transA, transB, batch: 1, sum: 1, a_z: 0, b_z: 0, c_z: 0, a_s: 0, b_s: 0, ...o }, config);
}

export interface MatmulTuning {
  config: MatmulConfig;
  /** Each candidate's speed on the tuning problem (transpose_b, the linear layer's product). */
  timings: { config: MatmulConfig; gflops: number }[];
  /** Wall time of the whole tuning, shader compilation included. */
  ms: number;
}

/**
 * Times the candidate configs on a mid-size product and keeps the fastest for this device (once per
 * device; later calls return the same result). Until it has run, matmul uses the adapter kind's default.
 */
export function tuneMatmul(): Promise<MatmulTuning> {
  const g = gpu();
  let t = tuning.get(g.device);
  if (!t) {
    t = tune().then(
      (r) => (tuned.set(g.device, r.config), r),
      (e) => (tuning.delete(g.device), Promise.reject(e)),
    );
    tuning.set(g.device, t);
  }
  return t;
}

async function tune(): Promise<MatmulTuning> {
  const g = gpu();
  const cpu = isCpuAdapter(g.info);
  const candidates = MATMUL_CONFIGS[cpu ? "cpu" : "gpu"].filter((c) => configFits(c, g.info));
  // 512³: enough workgroups that the tile, not the parallelism, decides (at 256³ a CPU adapter's few
  // threads starve on 16×16 tiles). A CPU adapter takes ~0.1 s a product and ~1 s to compile a candidate:
  // one timed run each keeps the tuning near 2 s.
  const n = 512;
  const reps = cpu ? 1 : 10;
  const start = performance.now();
  const x = full([n, n], 0.5);
  const w = full([n, n], 0.25);
  const y = Tensor.empty([n, n]);
  const timings: MatmulTuning["timings"] = [];
  try {
    for (const config of candidates) {
      productInto(x, false, w, true, y, n, n, n, {}, config); // compiles the pipeline and warms up
      await g.batch.sync();
      const t0 = performance.now();
      for (let r = 0; r < reps; r++) productInto(x, false, w, true, y, n, n, n, {}, config);
      await g.batch.sync();
      timings.push({ config, gflops: (2 * n ** 3 * reps) / ((performance.now() - t0) * 1e6) });
    }
  } finally {
    for (const t of [x, w, y]) t.dispose();
  }
  const best = timings.reduce((p, q) => (q.gflops > p.gflops ? q : p));
  return { config: best.config, timings, ms: performance.now() - start };
}

/** Whether the adapter allows the config's workgroup size and workgroup memory. */
export function configFits(c: MatmulConfig, info: DeviceInfo): boolean {
  const l = info.limits;
  const shared = c.kernel === "tiled" ? (c.BK ?? 16) * (c.TM * c.WG_Y + c.TN * c.WG_X) * 4 : 0;
  return (
    c.WG_X * c.WG_Y <= l.maxComputeInvocationsPerWorkgroup &&
    c.WG_X <= l.maxComputeWorkgroupSizeX &&
    c.WG_Y <= l.maxComputeWorkgroupSizeY &&
    shared <= l.maxComputeWorkgroupStorageSize
  );
}

function checkConfig(c: MatmulConfig, info: DeviceInfo): void {
  const tile = (v: number) => Number.isInteger(v) && v >= 4 && v <= 16 && v % 4 === 0;
  if (!tile(c.TM) || !tile(c.TN) || (c.BK !== undefined && (c.BK < 4 || c.BK % 4 !== 0))) {
    throw new Error(`matmul config ${configName(c)}: TM and TN must be 4, 8, 12 or 16 and BK a multiple of 4`);
  }
  if (!configFits(c, info)) throw new Error(`matmul config ${configName(c)} exceeds this adapter's workgroup limits`);
}

/** Whether the adapter allows the small-M config's workgroup size. */
export function matvecConfigFits(c: MatvecConfig, info: DeviceInfo): boolean {
  const l = info.limits;
  const shared = c.kernel === "vec_wg" ? 8 * c.WG * 16 : 0;
  return c.WG <= l.maxComputeInvocationsPerWorkgroup && c.WG <= l.maxComputeWorkgroupSizeX && shared <= l.maxComputeWorkgroupStorageSize;
}

function checkMatvecConfig(c: MatvecConfig, info: DeviceInfo): void {
  const cols = (v: number) => Number.isInteger(v) && v >= 4 && v <= 16 && v % 4 === 0;
  if (!Number.isInteger(c.WG) || c.WG < 1 || (c.kernel === "vec_wg" && (c.WG & (c.WG - 1)) !== 0) || !cols(c.C ?? 4)) {
    throw new Error(`matmul config ${configName(c)}: WG must be a positive integer (a power of two for vec_wg) and C 4, 8, 12 or 16`);
  }
  if (!matvecConfigFits(c, info)) throw new Error(`matmul config ${configName(c)} exceeds this adapter's workgroup limits`);
}
