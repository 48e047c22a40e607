// Matrix multiply with f32 accumulation: C[z] = alpha · sum_{s<S} A'[z,s] · B'[z,s] (+ C[z] when ACCUMULATE), where
//   A' = A [M, K], or Aᵀ when TRANS_A (A stored [K, M])
//   B' = B [K, N], or Bᵀ when TRANS_B (B stored [N, K])
//   C  [M, N], row-major.
// ACCUMULATE adds the product to what C holds (a parameter gradient summed over chunks, a second term of a
// sum) instead of a temporary and an add; each element of C is read and written by the one thread that
// computes it. alpha = 1 leaves the product's bits as they are.
// z is the batch (third dispatch dim); z and s address each operand by element strides, and a zero stride
// broadcasts it (a weight shared by the batch). S > 1 sums products over a batch: the gradient of a weight
// that was broadcast over a batch the rows cannot absorb (TRANS_A).
//
// Two kernels, the same arithmetic:
//   matmul_reg    each thread keeps a TM×TN tile of C in registers and reads A and B straight from storage:
//                 no workgroup memory, no barrier. For CPU adapters (llvmpipe, SwiftShader), where a barrier
//                 switches coroutines and a load costs the same from any memory, so what counts is the
//                 multiply-adds per load (TM·TN / (TM + TN)).
//   matmul_tiled  the workgroup stages BK-deep slices of A' and B' in workgroup memory and each thread
//                 computes its TM×TN tile from there. For GPUs.
//   matmul_vec    small M (token-by-token decoding: M = 1, or a few sequences): each thread computes all M <= 8
//                 rows of C for MV_C columns, so no work is spent on rows that do not exist, and each row of A'
//                 it loads serves MV_C columns; no workgroup memory, no barrier. For CPU adapters, where every
//                 load is paid per lane and per component, so loads are what to count: N·K of W, plus
//                 M·K·N / MV_C of A'.
//   matmul_vec_wg small M on GPUs: a workgroup computes all M rows of 4 columns, its MV_WG threads splitting
//                 K (consecutive threads read consecutive 4-element runs of a W row with TRANS_B), then a
//                 tree reduction of the partial sums in workgroup memory.
// matmul_reg and matmul_tiled work in 4×4 blocks held as mat4x4 (column-major): with at = (A' block)ᵀ and bt = (B' block)ᵀ,
// bt·at = (A'B' block)ᵀ, whose column i is row i of the C block; one matrix product is 64 multiply-adds
// with no loop for a CPU compiler to leave rolled (SwiftShader does not unroll loops). A thread's blocks
// are written out for up to 4×4 of them (TM, TN <= 16); the TM/TN guards are constant and fold away.
//
// Loads never leave the operands: rows, columns and k are clamped into range and k past K is masked to 0,
// so interior and edge tiles run the same branch-free inner loop; only the stores are guarded.
// VEC_A / VEC_B: the operand's contiguous dim and its strides are multiples of 4, so 4 consecutive
// elements are one vec4 load (a4 and b4 view the same buffers as a and b).
//
// A_TYPE / B_TYPE: the element type of a and b in storage, per weight format: f32 here; tools/gen-shaders.mjs
// writes a variant of this file per combination of src/tensor/format.ts's formats (matmul_f16a, matmul_f16b,
// matmul_f16ab: frozen weights stored as f16, on adapters with shader-f16). Loads widen to f32 (f32(x) and
// vec4<f32>(v), no-ops for f32), so the tiles, the products and the accumulation are f32 in every variant;
// c is always f32. b (the weight of a linear layer: y = x·Wᵀ with TRANS_B, dx = dy·W without) also takes the
// packed formats (bf16, GGUF q8_0 … q6_k, nf4, fp4, int8: src/tensor/quant.ts): B_TYPE becomes u32 and
// gen-shaders replaces load_b, the one place b is read, by the format's decoding load, so 4 consecutive
// elements of a stored row of W are dequantized where they are loaded (a row of W is whole blocks, and
// every run load_b is asked for starts at a multiple of 4, so it lies in one block). b4 is unused there.
const TRANS_A: bool = false;
const TRANS_B: bool = false;
const VEC_A: bool = false;
const VEC_B: bool = false;
const ACCUMULATE: bool = false;
const TM: u32 = 16u; // rows of C per thread: 4, 8, 12 or 16
const TN: u32 = 16u; // columns of C per thread: 4, 8, 12 or 16
const WG_X: u32 = 8u; // threads along N
const WG_Y: u32 = 8u; // threads along M
const BK: u32 = 16u; // k-depth of the workgroup-memory slices (matmul_tiled), a multiple of 4
const MV_M: u32 = 8u; // matmul_vec, matmul_vec_wg: rows of C, 1..8 (= M)
const MV_WG: u32 = 64u; // matmul_vec, matmul_vec_wg: threads per workgroup (matmul_vec_wg: a power of two)
const MV_C: u32 = 4u; // matmul_vec: columns of C per thread, 4, 8, 12 or 16
alias A_TYPE = f32; // format of a
alias B_TYPE = f32; // format of b; packed formats through load_b

const BR: u32 = TM / 4u; // block rows per thread
const BC: u32 = TN / 4u; // block columns per thread
const BM: u32 = TM * WG_Y; // rows of C per workgroup
const BN: u32 = TN * WG_X; // columns of C per workgroup

struct Params { M: u32, N: u32, K: u32, S: u32, a_z: u32, b_z: u32, c_z: u32, a_s: u32, b_s: u32, alpha: f32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<A_TYPE>;
@group(0) @binding(2) var<storage, read> a4: array<vec4<A_TYPE>>;
@group(0) @binding(3) var<storage, read> b: array<B_TYPE>;
@group(0) @binding(4) var<storage, read> b4: array<vec4<B_TYPE>>;
@group(0) @binding(5) var<storage, read_write> c: array<f32>;

var<workgroup> a_tile: array<vec4<f32>, BK * BM / 4u>; // [k][m/4]: A'[m..m+3, k]
var<workgroup> b_tile: array<vec4<f32>, BK * BN / 4u>; // [k][n/4]: B'[k, n..n+3]
var<workgroup> mv_part: array<vec4<f32>, 8u * MV_WG>; // matmul_vec_wg: [m][thread] partial C[m, n0..n0+3]

// Elements j..j+3 of a contiguous run of `len` elements of A starting at `base`, each index clamped into the
// run (with VEC_A, j and len are multiples of 4 and the clamp keeps j aligned).
fn load_a(base: u32, j: u32, len: u32) -> vec4<f32> {
  if (VEC_A) {
    return vec4<f32>(a4[(base + min(j, len - 4u)) / 4u]);
  }
  let l = len - 1u;
  return vec4<f32>(f32(a[base + min(j, l)]), f32(a[base + min(j + 1u, l)]), f32(a[base + min(j + 2u, l)]), f32(a[base + min(j + 3u, l)]));
}

// (Every read of b goes through here: packed variants replace this function.)
fn load_b(base: u32, j: u32, len: u32) -> vec4<f32> {
  if (VEC_B) {
    return vec4<f32>(b4[(base + min(j, len - 4u)) / 4u]);
  }
  let l = len - 1u;
  return vec4<f32>(f32(b[base + min(j, l)]), f32(b[base + min(j + 1u, l)]), f32(b[base + min(j + 2u, l)]), f32(b[base + min(j + 3u, l)]));
}

// Which of k..k+3 are inside K.
fn k_valid(k: u32) -> vec4<bool> {
  return vec4<u32>(k, k + 1u, k + 2u, k + 3u) < vec4<u32>(p.K);
}

// A'[r..r+3, k..k+3] along k (A stored [M, K]), or A'[r..r+3, k] along rows (A stored [K, M]), zero past K.
fn a_run(base: u32, r: u32, k: u32) -> vec4<f32> {
  if (TRANS_A) {
    return select(vec4<f32>(), load_a(base + min(k, p.K - 1u) * p.M, r, p.M), k < p.K);
  }
  return select(vec4<f32>(), load_a(base + min(r, p.M - 1u) * p.K, k, p.K), k_valid(k));
}

// B'[k..k+3, n] along k (B stored [N, K]), or B'[k, n..n+3] along columns (B stored [K, N]), zero past K.
fn b_run(base: u32, k: u32, n: u32) -> vec4<f32> {
  if (TRANS_B) {
    return select(vec4<f32>(), load_b(base + min(n, p.N - 1u) * p.K, k, p.K), k_valid(k));
  }
  return select(vec4<f32>(), load_b(base + min(k, p.K - 1u) * p.N, n, p.N), k < p.K);
}

// (A'[r..r+3, k..k+3])ᵀ: column i is row r+i of A' over k.
fn a_block(base: u32, r: u32, k: u32) -> mat4x4<f32> {
  if (TRANS_A) {
    let by_k = mat4x4<f32>(a_run(base, r, k), a_run(base, r, k + 1u), a_run(base, r, k + 2u), a_run(base, r, k + 3u));
    return transpose(by_k);
  }
  return mat4x4<f32>(a_run(base, r, k), a_run(base, r + 1u, k), a_run(base, r + 2u, k), a_run(base, r + 3u, k));
}

// (B'[k..k+3, n..n+3])ᵀ: column kk is row k+kk of B' over n.
fn b_block(base: u32, k: u32, n: u32) -> mat4x4<f32> {
  if (TRANS_B) {
    let by_n = mat4x4<f32>(b_run(base, k, n), b_run(base, k, n + 1u), b_run(base, k, n + 2u), b_run(base, k, n + 3u));
    return transpose(by_n);
  }
  return mat4x4<f32>(b_run(base, k, n), b_run(base, k + 1u, n), b_run(base, k + 2u, n), b_run(base, k + 3u, n));
}

// acc[4i + j] += bt[j] · at[i] over the thread's BR×BC blocks.
fn mma(acc: ptr<function, array<mat4x4<f32>, 16>>, at: array<mat4x4<f32>, 4>, bt: array<mat4x4<f32>, 4>) {
  (*acc)[0] += bt[0] * at[0];
  if (BC > 1u) { (*acc)[1] += bt[1] * at[0]; }
  if (BC > 2u) { (*acc)[2] += bt[2] * at[0]; }
  if (BC > 3u) { (*acc)[3] += bt[3] * at[0]; }
  if (BR > 1u) {
    (*acc)[4] += bt[0] * at[1];
    if (BC > 1u) { (*acc)[5] += bt[1] * at[1]; }
    if (BC > 2u) { (*acc)[6] += bt[2] * at[1]; }
    if (BC > 3u) { (*acc)[7] += bt[3] * at[1]; }
  }
  if (BR > 2u) {
    (*acc)[8] += bt[0] * at[2];
    if (BC > 1u) { (*acc)[9] += bt[1] * at[2]; }
    if (BC > 2u) { (*acc)[10] += bt[2] * at[2]; }
    if (BC > 3u) { (*acc)[11] += bt[3] * at[2]; }
  }
  if (BR > 3u) {
    (*acc)[12] += bt[0] * at[3];
    if (BC > 1u) { (*acc)[13] += bt[1] * at[3]; }
    if (BC > 2u) { (*acc)[14] += bt[2] * at[3]; }
    if (BC > 3u) { (*acc)[15] += bt[3] * at[3]; }
  }
}

// C[r, n..n+3] = alpha · v (+ C[r, n..n+3] when ACCUMULATE), inside N (r < M).
fn store_row(base: u32, r: u32, n: u32, v: vec4<f32>) {
  let row = p.alpha * v;
  for (var q = 0u; q < 4u; q++) {
    if (n + q < p.N) {
      let j = base + r * p.N + n + q;
      if (ACCUMULATE) {
        c[j] += row[q];
      } else {
        c[j] = row[q];
      }
    }
  }
}

// C[r + i, n..n+3] = alpha · blk[i] (+ C[r + i, n..n+3] when ACCUMULATE), inside M×N.
fn store_block(base: u32, r: u32, n: u32, blk: mat4x4<f32>) {
  for (var i = 0u; i < 4u; i++) {
    if (r + i >= p.M) { return; }
    store_row(base, r + i, n, blk[i]);
  }
}

// The thread's TM×TN tile at (row0, col0), block (i, j) in acc[4i + j].
fn store_tile(base: u32, row0: u32, col0: u32, acc: array<mat4x4<f32>, 16>) {
  store_block(base, row0, col0, acc[0]);
  if (BC > 1u) { store_block(base, row0, col0 + 4u, acc[1]); }
  if (BC > 2u) { store_block(base, row0, col0 + 8u, acc[2]); }
  if (BC > 3u) { store_block(base, row0, col0 + 12u, acc[3]); }
  if (BR > 1u) {
    store_block(base, row0 + 4u, col0, acc[4]);
    if (BC > 1u) { store_block(base, row0 + 4u, col0 + 4u, acc[5]); }
    if (BC > 2u) { store_block(base, row0 + 4u, col0 + 8u, acc[6]); }
    if (BC > 3u) { store_block(base, row0 + 4u, col0 + 12u, acc[7]); }
  }
  if (BR > 2u) {
    store_block(base, row0 + 8u, col0, acc[8]);
    if (BC > 1u) { store_block(base, row0 + 8u, col0 + 4u, acc[9]); }
    if (BC > 2u) { store_block(base, row0 + 8u, col0 + 8u, acc[10]); }
    if (BC > 3u) { store_block(base, row0 + 8u, col0 + 12u, acc[11]); }
  }
  if (BR > 3u) {
    store_block(base, row0 + 12u, col0, acc[12]);
    if (BC > 1u) { store_block(base, row0 + 12u, col0 + 4u, acc[13]); }
    if (BC > 2u) { store_block(base, row0 + 12u, col0 + 8u, acc[14]); }
    if (BC > 3u) { store_block(base, row0 + 12u, col0 + 12u, acc[15]); }
  }
}

@compute @workgroup_size(WG_X, WG_Y)
fn matmul_reg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let row0 = (wid.y * WG_Y + lid.y) * TM;
  let col0 = (wid.x * WG_X + lid.x) * TN;
  if (row0 >= p.M || col0 >= p.N) { return; }
  var acc: array<mat4x4<f32>, 16>;
  for (var s = 0u; s < p.S; s++) {
    let ao = wid.z * p.a_z + s * p.a_s;
    let bo = wid.z * p.b_z + s * p.b_s;
    for (var k = 0u; k < p.K; k += 4u) {
      var at: array<mat4x4<f32>, 4>;
      var bt: array<mat4x4<f32>, 4>;
      at[0] = a_block(ao, row0, k);
      if (BR > 1u) { at[1] = a_block(ao, row0 + 4u, k); }
      if (BR > 2u) { at[2] = a_block(ao, row0 + 8u, k); }
      if (BR > 3u) { at[3] = a_block(ao, row0 + 12u, k); }
      bt[0] = b_block(bo, k, col0);
      if (BC > 1u) { bt[1] = b_block(bo, k, col0 + 4u); }
      if (BC > 2u) { bt[2] = b_block(bo, k, col0 + 8u); }
      if (BC > 3u) { bt[3] = b_block(bo, k, col0 + 12u); }
      mma(&acc, at, bt);
    }
  }
  store_tile(wid.z * p.c_z, row0, col0, acc);
}

// (A'[m..m+3, k..k+3])ᵀ and (B'[k..k+3, n..n+3])ᵀ from the staged slices (m, n relative to the workgroup's tile).
fn a_tile_block(k: u32, m: u32) -> mat4x4<f32> {
  let i = k * (BM / 4u) + m / 4u;
  return transpose(mat4x4<f32>(a_tile[i], a_tile[i + BM / 4u], a_tile[i + BM / 2u], a_tile[i + 3u * BM / 4u]));
}

fn b_tile_block(k: u32, n: u32) -> mat4x4<f32> {
  let i = k * (BN / 4u) + n / 4u;
  return mat4x4<f32>(b_tile[i], b_tile[i + BN / 4u], b_tile[i + BN / 2u], b_tile[i + 3u * BN / 4u]);
}

@compute @workgroup_size(WG_X, WG_Y)
fn matmul_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                @builtin(local_invocation_index) tid: u32) {
  let m0 = wid.y * BM;
  let n0 = wid.x * BN;
  let tr = lid.y * TM; // the thread's rows and columns inside the workgroup's tile
  let tc = lid.x * TN;
  var acc: array<mat4x4<f32>, 16>;
  for (var s = 0u; s < p.S; s++) {
    let ao = wid.z * p.a_z + s * p.a_s;
    let bo = wid.z * p.b_z + s * p.b_s;
    for (var k0 = 0u; k0 < p.K; k0 += BK) {
      // Stage A'[m0.., k0..] and B'[k0.., n0..], 4 elements per load along each operand's contiguous dim.
      for (var i = tid; i < BK * BM / 4u; i += WG_X * WG_Y) {
        if (TRANS_A) {
          let k = i / (BM / 4u);
          let m = 4u * (i % (BM / 4u));
          a_tile[i] = a_run(ao, m0 + m, k0 + k);
        } else {
          let m = i / (BK / 4u);
          let k = 4u * (i % (BK / 4u));
          let v = a_run(ao, m0 + m, k0 + k);
          for (var q = 0u; q < 4u; q++) { a_tile[(k + q) * (BM / 4u) + m / 4u][m % 4u] = v[q]; }
        }
      }
      for (var i = tid; i < BK * BN / 4u; i += WG_X * WG_Y) {
        if (TRANS_B) {
          let n = i / (BK / 4u);
          let k = 4u * (i % (BK / 4u));
          let v = b_run(bo, k0 + k, n0 + n);
          for (var q = 0u; q < 4u; q++) { b_tile[(k + q) * (BN / 4u) + n / 4u][n % 4u] = v[q]; }
        } else {
          let k = i / (BN / 4u);
          let n = 4u * (i % (BN / 4u));
          b_tile[i] = b_run(bo, k0 + k, n0 + n);
        }
      }
      workgroupBarrier();
      for (var k = 0u; k < BK; k += 4u) {
        var at: array<mat4x4<f32>, 4>;
        var bt: array<mat4x4<f32>, 4>;
        at[0] = a_tile_block(k, tr);
        if (BR > 1u) { at[1] = a_tile_block(k, tr + 4u); }
        if (BR > 2u) { at[2] = a_tile_block(k, tr + 8u); }
        if (BR > 3u) { at[3] = a_tile_block(k, tr + 12u); }
        bt[0] = b_tile_block(k, tc);
        if (BC > 1u) { bt[1] = b_tile_block(k, tc + 4u); }
        if (BC > 2u) { bt[2] = b_tile_block(k, tc + 8u); }
        if (BC > 3u) { bt[3] = b_tile_block(k, tc + 12u); }
        mma(&acc, at, bt);
      }
      workgroupBarrier();
    }
  }
  store_tile(wid.z * p.c_z, m0 + tr, n0 + tc, acc);
}

// ---- Small M: matmul_vec (CPU adapters) and matmul_vec_wg (GPUs). ----

// A'[m, k..k+3], zero past K (m < M): a run along k of A [M, K], or a column of A [K, M] (plain loads).
fn a_row(base: u32, m: u32, k: u32) -> vec4<f32> {
  if (TRANS_A) {
    let l = p.K - 1u;
    let v = vec4<f32>(f32(a[base + min(k, l) * p.M + m]), f32(a[base + min(k + 1u, l) * p.M + m]),
                      f32(a[base + min(k + 2u, l) * p.M + m]), f32(a[base + min(k + 3u, l) * p.M + m]));
    return select(vec4<f32>(), v, k_valid(k));
  }
  return a_run(base, m, k);
}

// Rows 0..MV_M-1 of something 4 wide: row m in lo[m] (m < 4) or hi[m - 4].
struct MvRows { lo: mat4x4<f32>, hi: mat4x4<f32> }

// A'[m, k..k+3] for the MV_M rows, loaded once per k for every column block of the thread.
fn mv_a(ao: u32, k: u32) -> MvRows {
  var r: MvRows;
  r.lo[0] = a_row(ao, 0u, k);
  if (MV_M > 1u) { r.lo[1] = a_row(ao, 1u, k); }
  if (MV_M > 2u) { r.lo[2] = a_row(ao, 2u, k); }
  if (MV_M > 3u) { r.lo[3] = a_row(ao, 3u, k); }
  if (MV_M > 4u) { r.hi[0] = a_row(ao, 4u, k); }
  if (MV_M > 5u) { r.hi[1] = a_row(ao, 5u, k); }
  if (MV_M > 6u) { r.hi[2] = a_row(ao, 6u, k); }
  if (MV_M > 7u) { r.hi[3] = a_row(ao, 7u, k); }
  return r;
}

// acc[m] (C[m, n..n+3]) += bt · at[m] with bt = (B'[k..k+3, n..n+3])ᵀ, whose column kk is B'[k + kk, n..n+3].
fn mv_fma(acc: ptr<function, MvRows>, at: MvRows, bo: u32, k: u32, n: u32) {
  let bt = b_block(bo, k, n);
  (*acc).lo[0] += bt * at.lo[0];
  if (MV_M > 1u) { (*acc).lo[1] += bt * at.lo[1]; }
  if (MV_M > 2u) { (*acc).lo[2] += bt * at.lo[2]; }
  if (MV_M > 3u) { (*acc).lo[3] += bt * at.lo[3]; }
  if (MV_M > 4u) { (*acc).hi[0] += bt * at.hi[0]; }
  if (MV_M > 5u) { (*acc).hi[1] += bt * at.hi[1]; }
  if (MV_M > 6u) { (*acc).hi[2] += bt * at.hi[2]; }
  if (MV_M > 7u) { (*acc).hi[3] += bt * at.hi[3]; }
}

fn mv_store(co: u32, n: u32, acc: MvRows) {
  store_block(co, 0u, n, acc.lo);
  if (MV_M > 4u) { store_block(co, 4u, n, acc.hi); }
}

// MV_C columns per thread (4 to 16): each row of A' loaded serves all of them.
@compute @workgroup_size(MV_WG)
fn matmul_vec(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
  let n0 = ((wid.x + wid.y * nwg.x) * MV_WG + lid.x) * MV_C;
  if (n0 >= p.N) { return; }
  var acc0: MvRows;
  var acc1: MvRows;
  var acc2: MvRows;
  var acc3: MvRows;
  for (var s = 0u; s < p.S; s++) {
    let ao = wid.z * p.a_z + s * p.a_s;
    let bo = wid.z * p.b_z + s * p.b_s;
    for (var k = 0u; k < p.K; k += 4u) {
      let at = mv_a(ao, k);
      mv_fma(&acc0, at, bo, k, n0);
      if (MV_C > 4u) { mv_fma(&acc1, at, bo, k, n0 + 4u); }
      if (MV_C > 8u) { mv_fma(&acc2, at, bo, k, n0 + 8u); }
      if (MV_C > 12u) { mv_fma(&acc3, at, bo, k, n0 + 12u); }
    }
  }
  let co = wid.z * p.c_z;
  mv_store(co, n0, acc0);
  if (MV_C > 4u) { mv_store(co, n0 + 4u, acc1); }
  if (MV_C > 8u) { mv_store(co, n0 + 8u, acc2); }
  if (MV_C > 12u) { mv_store(co, n0 + 12u, acc3); }
}

// One workgroup per 4 columns: thread t takes k = 4t, 4t + 4·MV_WG, ... and the partial sums meet in a tree.
@compute @workgroup_size(MV_WG)
fn matmul_vec_wg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) t: u32) {
  let n0 = (wid.x + wid.y * nwg.x) * 4u; // uniform over the workgroup
  if (n0 >= p.N) { return; }
  var acc: MvRows;
  for (var s = 0u; s < p.S; s++) {
    let ao = wid.z * p.a_z + s * p.a_s;
    let bo = wid.z * p.b_z + s * p.b_s;
    for (var k = 4u * t; k < p.K; k += 4u * MV_WG) {
      mv_fma(&acc, mv_a(ao, k), bo, k, n0);
    }
  }
  for (var m = 0u; m < MV_M; m++) {
    mv_part[m * MV_WG + t] = select(acc.hi[m % 4u], acc.lo[m % 4u], m < 4u);
  }
  workgroupBarrier();
  for (var w = MV_WG / 2u; w > 0u; w /= 2u) {
    if (t < w) {
      for (var m = 0u; m < MV_M; m++) {
        mv_part[m * MV_WG + t] += mv_part[m * MV_WG + t + w];
      }
    }
    workgroupBarrier();
  }
  if (t < MV_M) {
    store_row(wid.z * p.c_z, t, n0, mv_part[t * MV_WG]);
  }
}
