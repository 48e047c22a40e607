// Causal attention for training, flash style: no (T, T) matrix in memory, forward and backward.
// q: (B, T, H, D), k, v: (B, T, KVH, D), o: (B, T, H, D); query head h reads kv head h / (H / KVH).
// Query i of batch row b attends key j iff lo_i <= j <= i, lo_i = bounds[b, i].x: the first real token of
// its sequence (packed sequences begin where position ids restart at 0; left padding is skipped), or with a
// sliding window W the later i - W + 1, whichever is larger. A padded query has lo_i = i + 1: no key, output
// 0, zero gradients. bounds[b, j].y is one past the last query that attends key j (the sequence's last real
// token + 1, or with a window at most j + W). Both are nondecreasing along the row (the op builds them so),
// hence a tile of queries i0.. needs keys [lo_{i0}, last query] and a tile of keys j0.. needs queries
// [j0, bounds[last key].y): a window W makes each tile's range about W + tile long instead of the sequence.
// Every kernel masks a pair by the query's lo and i alone (that is the whole rule; the key-side end only
// bounds backward_dkv's query range), so pairs a tile range lets in past a window are masked there.
//
//   forward:       s_ij = scale q_i·k_j, or c tanh(scale q_i·k_j / c) with a softcap c (p.softcap > 0; 0 is
//                  none, a uniform branch);  L_i = log sum_j e^(s_ij);  o_i = sum_j e^(s_ij - L_i) v_j
//                  online over key tiles: m' = max(m, max_j s_ij), l' = l e^(m - m') + sum_j e^(s_ij - m'),
//                  acc' = acc e^(m - m') + sum_j e^(s_ij - m') v_j;  then o_i = acc / l, L_i = m + log l
//   backward:      p_ij = e^(s_ij - L_i), Δ_i = dy_i·o_i, dp_ij = dy_i·v_j, ds_ij = p_ij (dp_ij - Δ_i),
//                  times 1 - (s_ij / c)^2 with a softcap (d/dx c tanh(x / c), from the capped s_ij itself)
//     dq:          dq_i = scale sum_j ds_ij k_j                        (a workgroup per query tile and head)
//     dkv:         dv_j = sum_{h of j's group} sum_i p_ij dy_i,        (a workgroup per key tile and kv head:
//                  dk_j = scale sum_{h of j's group} sum_i ds_ij q_i    fixed order, no atomics)
//
// A workgroup owns a tile of rows (queries; keys in backward_dkv); each thread RB blocks of 4 of them, and
// G threads share those rows. Per tile of the other side there are two steps:
//   score step:       the G threads split the tile's blocks of 4 (block u·G + g to thread g); each puts
//                     q·k (and dy·v) of its rows × blocks into p_tile (ds_tile) as [row][block], then turns
//                     them in place into probabilities (and scale·ds);
//   accumulate step:  they split the D/4 vec4 columns (column w·G + g to thread g) and read every block.
// With G = 1 a thread reads back only what it wrote, and needs no barrier. STAGE copies tiles of q, dy, k,
// v into workgroup memory (GPUs). Without it every read goes to the storage buffers, and with G = 1 there is
// no barrier at all: CPU adapters (llvmpipe, SwiftShader), where a barrier switches coroutines and any load
// is a per-invocation gather, so what counts is the multiply-adds per load.
// Products are 4×4 blocks held as mat4x4 (64 multiply-adds): a step multiplies RB own blocks by 4 blocks of
// the other side, written out with constant indices. Function-scope arrays of blocks are never indexed by
// a loop variable: SwiftShader does that through per-invocation gathers, and Mesa (llvmpipe) through a
// chain of selects over the whole array, which took minutes to compile. So the accumulators (up to D/4
// blocks per row block) live in the output buffers o, dq, dk, dv themselves, which each workgroup owns:
// read and written once per 4 blocks of the other side (o normalised at the end; dq and dk come out scaled
// since ds is). Rows past T are clamped on load and masked, and never stored.
const D: u32 = 64u; // head_dim, a multiple of 4, at most 256
const BQ: u32 = 32u; // queries per tile, a multiple of 16
const BK: u32 = 32u; // keys per tile, a multiple of 16
const RB: u32 = 2u; // blocks of 4 own rows per thread: 1 or 2
const G: u32 = 1u; // threads sharing a thread's rows
const STAGE: bool = false; // stage q, dy, k, v tiles in workgroup memory

const D4: u32 = D / 4u;
const BQ4: u32 = BQ / 4u;
const BK4: u32 = BK / 4u;
const KBT: u32 = (BK4 + G - 1u) / G; // key blocks per thread in a score step (forward, backward_dq)
const QBT: u32 = (BQ4 + G - 1u) / G; // query blocks per thread in a score step (backward_dkv)
const WG_Q: u32 = BQ4 / RB * G; // threads of forward and backward_dq
const WG_K: u32 = BK4 / RB * G; // threads of backward_dkv
const WG_ROWS: u32 = 64u; // threads of backward_delta
const Q_ROWS: u32 = select(1u, BQ, STAGE);
const K_ROWS: u32 = select(1u, BK, STAGE);
// The score of a masked pair; finite, so that e^(MASKED - m) is 0 without infinities.
const MASKED: f32 = -1e30;
const LANE = vec4<u32>(0u, 1u, 2u, 3u);

// cols = D / 4 again, as a uniform: the bound of the loops over columns, which Mesa's compiler (llvmpipe)
// would otherwise unroll in full (D/4 copies of a long body).
// softcap: the logit cap c, 0 for none.
struct Params { B: u32, T: u32, H: u32, KVH: u32, cols: u32, scale: f32, softcap: f32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;           // (B, T, H, D/4)
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;           // (B, T, KVH, D/4)
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;           // (B, T, KVH, D/4)
@group(0) @binding(4) var<storage, read> bounds: array<vec2<i32>>;      // (B, T): (lo_t, one past the last query of key t)
@group(0) @binding(5) var<storage, read_write> o: array<vec4<f32>>;     // (B, T, H, D/4), written by forward
@group(0) @binding(6) var<storage, read_write> lse: array<f32>;         // (B, H, T): L_i, written by forward
@group(0) @binding(7) var<storage, read> dy: array<vec4<f32>>;          // (B, T, H, D/4): dLoss/do
@group(0) @binding(8) var<storage, read_write> stats: array<vec2<f32>>; // (B, H, T): (L_i, Δ_i)
@group(0) @binding(9) var<storage, read_write> dq: array<vec4<f32>>;    // (B, T, H, D/4)
@group(0) @binding(10) var<storage, read_write> dk: array<vec4<f32>>;   // (B, T, KVH, D/4)
@group(0) @binding(11) var<storage, read_write> dv: array<vec4<f32>>;   // (B, T, KVH, D/4)

var<workgroup> q_tile: array<vec4<f32>, Q_ROWS * D4>;  // (BQ, D/4): q rows of the query tile (STAGE)
var<workgroup> dy_tile: array<vec4<f32>, Q_ROWS * D4>; // (BQ, D/4): dy rows of the query tile (STAGE)
var<workgroup> k_tile: array<vec4<f32>, K_ROWS * D4>;  // (BK, D/4): k rows of the key tile (STAGE)
var<workgroup> v_tile: array<vec4<f32>, K_ROWS * D4>;  // (BK, D/4): v rows of the key tile (STAGE)
// [own row][block of the other side]: q·k, then probabilities: forward and backward_dq (BQ, BK/4),
// backward_dkv (BK, BQ/4).
var<workgroup> p_tile: array<vec4<f32>, BQ * BK4>;
// dy·v, then scale · ds, in the same layout: backward_dq (BQ, BK/4), backward_dkv (BK, BQ/4).
var<workgroup> ds_tile: array<vec4<f32>, BQ * BK4>;
var<workgroup> row_max: array<f32, BQ * G>; // forward: each thread's max over its blocks, per row (G > 1)
var<workgroup> row_sum: array<f32, BQ * G>; // forward: each thread's sum of its probabilities, per row (G > 1)

// Index of q[b, t, h, 0] (or o, dy, dq), t clamped into the row's T tokens.
fn q_row(b: u32, t: u32, h: u32) -> u32 {
  return ((b * p.T + min(t, p.T - 1u)) * p.H + h) * D4;
}

// Index of k[b, t, kvh, 0] (or v, dk, dv), t clamped into the row's T tokens.
fn kv_row(b: u32, t: u32, kvh: u32) -> u32 {
  return ((b * p.T + min(t, p.T - 1u)) * p.KVH + kvh) * D4;
}

// Index of lse[b, h, t] (or stats), t clamped.
fn stat_at(b: u32, h: u32, t: u32) -> u32 {
  return (b * p.H + h) * p.T + min(t, p.T - 1u);
}

fn stage_q(b: u32, h: u32, i0: u32, tid: u32, threads: u32) {
  for (var x = tid; x < BQ * D4; x += threads) { q_tile[x] = q[q_row(b, i0 + x / D4, h) + x % D4]; }
}

fn stage_q_dy(b: u32, h: u32, i0: u32, tid: u32, threads: u32) {
  for (var x = tid; x < BQ * D4; x += threads) {
    let at = q_row(b, i0 + x / D4, h) + x % D4;
    q_tile[x] = q[at];
    dy_tile[x] = dy[at];
  }
}

fn stage_kv(b: u32, kvh: u32, j0: u32, tid: u32, threads: u32) {
  for (var x = tid; x < BK * D4; x += threads) {
    let at = kv_row(b, j0 + x / D4, kvh) + x % D4;
    k_tile[x] = k[at];
    v_tile[x] = v[at];
  }
}

// Where rows i..i+3 of q / dy (in the query tile at i0) or j..j+3 of k / v (in the key tile at j0) start:
// in the staged tile, or in the storage buffer.
fn q_rows(b: u32, h: u32, i0: u32, i: u32) -> vec4<u32> {
  if (STAGE) { return (vec4<u32>(i - i0) + LANE) * D4; }
  return q_rows_global(b, h, i);
}

fn kv_rows(b: u32, kvh: u32, j0: u32, j: u32) -> vec4<u32> {
  if (STAGE) { return (vec4<u32>(j - j0) + LANE) * D4; }
  return kv_rows_global(b, kvh, j);
}

// Where rows i..i+3 of a (B, T, H, D/4) buffer (q, dy, o, dq) or of a (B, T, KVH, D/4) one (k, v, dk, dv) start.
fn q_rows_global(b: u32, h: u32, i: u32) -> vec4<u32> {
  return vec4<u32>(q_row(b, i, h), q_row(b, i + 1u, h), q_row(b, i + 2u, h), q_row(b, i + 3u, h));
}

fn kv_rows_global(b: u32, kvh: u32, j: u32) -> vec4<u32> {
  return vec4<u32>(kv_row(b, j, kvh), kv_row(b, j + 1u, kvh), kv_row(b, j + 2u, kvh), kv_row(b, j + 3u, kvh));
}

// Blocks whose column e is columns 4c..4c+3 of the row starting at at[e].
fn q_block(at: vec4<u32>, c: u32) -> mat4x4<f32> {
  if (STAGE) { return mat4x4<f32>(q_tile[at.x + c], q_tile[at.y + c], q_tile[at.z + c], q_tile[at.w + c]); }
  return mat4x4<f32>(q[at.x + c], q[at.y + c], q[at.z + c], q[at.w + c]);
}

fn dy_block(at: vec4<u32>, c: u32) -> mat4x4<f32> {
  if (STAGE) { return mat4x4<f32>(dy_tile[at.x + c], dy_tile[at.y + c], dy_tile[at.z + c], dy_tile[at.w + c]); }
  return mat4x4<f32>(dy[at.x + c], dy[at.y + c], dy[at.z + c], dy[at.w + c]);
}

fn k_block(at: vec4<u32>, c: u32) -> mat4x4<f32> {
  if (STAGE) { return mat4x4<f32>(k_tile[at.x + c], k_tile[at.y + c], k_tile[at.z + c], k_tile[at.w + c]); }
  return mat4x4<f32>(k[at.x + c], k[at.y + c], k[at.z + c], k[at.w + c]);
}

fn v_block(at: vec4<u32>, c: u32) -> mat4x4<f32> {
  if (STAGE) { return mat4x4<f32>(v_tile[at.x + c], v_tile[at.y + c], v_tile[at.z + c], v_tile[at.w + c]); }
  return mat4x4<f32>(v[at.x + c], v[at.y + c], v[at.z + c], v[at.w + c]);
}

// Accumulator blocks in the output buffers: column e is columns 4c..4c+3 of the row starting at at[e];
// rows with valid[e] false (past T, clamped onto row T-1 by the caller) are not written.
fn o_get(at: vec4<u32>, c: u32) -> mat4x4<f32> {
  return mat4x4<f32>(o[at.x + c], o[at.y + c], o[at.z + c], o[at.w + c]);
}

fn o_put(at: vec4<u32>, c: u32, m: mat4x4<f32>, valid: vec4<bool>) {
  if (valid.x) { o[at.x + c] = m[0]; }
  if (valid.y) { o[at.y + c] = m[1]; }
  if (valid.z) { o[at.z + c] = m[2]; }
  if (valid.w) { o[at.w + c] = m[3]; }
}

fn dq_get(at: vec4<u32>, c: u32) -> mat4x4<f32> {
  return mat4x4<f32>(dq[at.x + c], dq[at.y + c], dq[at.z + c], dq[at.w + c]);
}

fn dq_put(at: vec4<u32>, c: u32, m: mat4x4<f32>, valid: vec4<bool>) {
  if (valid.x) { dq[at.x + c] = m[0]; }
  if (valid.y) { dq[at.y + c] = m[1]; }
  if (valid.z) { dq[at.z + c] = m[2]; }
  if (valid.w) { dq[at.w + c] = m[3]; }
}

fn dk_get(at: vec4<u32>, c: u32) -> mat4x4<f32> {
  return mat4x4<f32>(dk[at.x + c], dk[at.y + c], dk[at.z + c], dk[at.w + c]);
}

fn dk_put(at: vec4<u32>, c: u32, m: mat4x4<f32>, valid: vec4<bool>) {
  if (valid.x) { dk[at.x + c] = m[0]; }
  if (valid.y) { dk[at.y + c] = m[1]; }
  if (valid.z) { dk[at.z + c] = m[2]; }
  if (valid.w) { dk[at.w + c] = m[3]; }
}

fn dv_get(at: vec4<u32>, c: u32) -> mat4x4<f32> {
  return mat4x4<f32>(dv[at.x + c], dv[at.y + c], dv[at.z + c], dv[at.w + c]);
}

fn dv_put(at: vec4<u32>, c: u32, m: mat4x4<f32>, valid: vec4<bool>) {
  if (valid.x) { dv[at.x + c] = m[0]; }
  if (valid.y) { dv[at.y + c] = m[1]; }
  if (valid.z) { dv[at.z + c] = m[2]; }
  if (valid.w) { dv[at.w + c] = m[3]; }
}

// Rows r..r+3 of a [row][block] tile with `blocks` blocks per row, at block x: column e is row r + e.
fn p_get(r: u32, blocks: u32, x: u32) -> mat4x4<f32> {
  return mat4x4<f32>(p_tile[r * blocks + x], p_tile[(r + 1u) * blocks + x], p_tile[(r + 2u) * blocks + x], p_tile[(r + 3u) * blocks + x]);
}

fn p_put(r: u32, blocks: u32, x: u32, m: mat4x4<f32>) {
  p_tile[r * blocks + x] = m[0];
  p_tile[(r + 1u) * blocks + x] = m[1];
  p_tile[(r + 2u) * blocks + x] = m[2];
  p_tile[(r + 3u) * blocks + x] = m[3];
}

fn ds_get(r: u32, blocks: u32, x: u32) -> mat4x4<f32> {
  return mat4x4<f32>(ds_tile[r * blocks + x], ds_tile[(r + 1u) * blocks + x], ds_tile[(r + 2u) * blocks + x], ds_tile[(r + 3u) * blocks + x]);
}

fn ds_put(r: u32, blocks: u32, x: u32, m: mat4x4<f32>) {
  ds_tile[r * blocks + x] = m[0];
  ds_tile[(r + 1u) * blocks + x] = m[1];
  ds_tile[(r + 2u) * blocks + x] = m[2];
  ds_tile[(r + 3u) * blocks + x] = m[3];
}

// Blocks x0..x0+3 of the own rows r0.. of p_tile (ds_tile): w[4 rb + e] is rows r0 + 4 rb.., block x0 + e.
fn p_weights(r0: u32, blocks: u32, x0: u32) -> array<mat4x4<f32>, 8> {
  var w: array<mat4x4<f32>, 8>;
  w[0] = p_get(r0, blocks, x0);
  w[1] = p_get(r0, blocks, x0 + 1u);
  w[2] = p_get(r0, blocks, x0 + 2u);
  w[3] = p_get(r0, blocks, x0 + 3u);
  if (RB > 1u) {
    w[4] = p_get(r0 + 4u, blocks, x0);
    w[5] = p_get(r0 + 4u, blocks, x0 + 1u);
    w[6] = p_get(r0 + 4u, blocks, x0 + 2u);
    w[7] = p_get(r0 + 4u, blocks, x0 + 3u);
  }
  return w;
}

fn ds_weights(r0: u32, blocks: u32, x0: u32) -> array<mat4x4<f32>, 8> {
  var w: array<mat4x4<f32>, 8>;
  w[0] = ds_get(r0, blocks, x0);
  w[1] = ds_get(r0, blocks, x0 + 1u);
  w[2] = ds_get(r0, blocks, x0 + 2u);
  w[3] = ds_get(r0, blocks, x0 + 3u);
  if (RB > 1u) {
    w[4] = ds_get(r0 + 4u, blocks, x0);
    w[5] = ds_get(r0 + 4u, blocks, x0 + 1u);
    w[6] = ds_get(r0 + 4u, blocks, x0 + 2u);
    w[7] = ds_get(r0 + 4u, blocks, x0 + 3u);
  }
  return w;
}

// st[4 rb + e] += own_t[rb] · ob[e] for rb < RB and the first n <= 4 blocks e: with own_t[rb] an own block
// transposed and ob[e] a block of the other side, column x of the product is the other side's row x
// against the 4 own rows (transposed once per tile rather than the 4 blocks per step).
fn mma_score(st: ptr<function, array<mat4x4<f32>, 8>>, own_t: array<mat4x4<f32>, 2>, ob: array<mat4x4<f32>, 4>, n: u32) {
  (*st)[0] += own_t[0] * ob[0];
  if (n > 1u) { (*st)[1] += own_t[0] * ob[1]; }
  if (n > 2u) { (*st)[2] += own_t[0] * ob[2]; }
  if (n > 3u) { (*st)[3] += own_t[0] * ob[3]; }
  if (RB > 1u) {
    (*st)[4] += own_t[1] * ob[0];
    if (n > 1u) { (*st)[5] += own_t[1] * ob[1]; }
    if (n > 2u) { (*st)[6] += own_t[1] * ob[2]; }
    if (n > 3u) { (*st)[7] += own_t[1] * ob[3]; }
  }
}

// a[rb] += sum_e ob[e] · w[4 rb + e]: columns 4c.. of the other side's rows (ob) weighted by own row's
// probabilities (w, column r = own row r against the 4 rows of block e).
fn mma_acc(a: ptr<function, array<mat4x4<f32>, 2>>, ob: array<mat4x4<f32>, 4>, w: array<mat4x4<f32>, 8>) {
  (*a)[0] += ob[0] * w[0] + ob[1] * w[1] + ob[2] * w[2] + ob[3] * w[3];
  if (RB > 1u) { (*a)[1] += ob[0] * w[4] + ob[1] * w[5] + ob[2] * w[6] + ob[3] * w[7]; }
}

// Whether key j is live for a query with bounds (lo, hi), componentwise: keys j..j+3 against one query's
// bounds splatted (forward, backward_dq), or one key splatted against four queries' (backward_dkv).
fn live(j: vec4<i32>, lo: vec4<i32>, hi: vec4<i32>) -> vec4<bool> {
  return (j >= lo) & (j <= hi);
}

// (lo, hi) of queries i..i+3: the pair (i, j) is live iff lo <= j <= hi; hi = -1 past T.
fn query_lo(b: u32, i: vec4<u32>) -> vec4<i32> {
  let r = b * p.T;
  let t = min(i, vec4<u32>(p.T - 1u));
  return vec4<i32>(bounds[r + t.x].x, bounds[r + t.y].x, bounds[r + t.z].x, bounds[r + t.w].x);
}

fn query_hi(i: vec4<u32>) -> vec4<i32> {
  return select(vec4<i32>(i), vec4<i32>(-1), i >= vec4<u32>(p.T));
}

// (L, Δ) of queries i..i+3 of head h.
fn query_stats(b: u32, h: u32, i: vec4<u32>) -> array<vec4<f32>, 2> {
  let s0 = stats[stat_at(b, h, i.x)];
  let s1 = stats[stat_at(b, h, i.y)];
  let s2 = stats[stat_at(b, h, i.z)];
  let s3 = stats[stat_at(b, h, i.w)];
  return array<vec4<f32>, 2>(vec4<f32>(s0.x, s1.x, s2.x, s3.x), vec4<f32>(s0.y, s1.y, s2.y, s3.y));
}

// The score step's blocks st[4 rb + e] (column x: the other side's row x of block x[e] against own rows
// r0 + 4 rb..) into p_tile (ds_tile) as [row][block], for the first n blocks, those inside the tile.
fn p_put_scores(st: array<mat4x4<f32>, 8>, r0: u32, blocks: u32, x: vec4<u32>, n: u32) {
  if (x.x < blocks) {
    p_put(r0, blocks, x.x, transpose(st[0]));
    if (RB > 1u) { p_put(r0 + 4u, blocks, x.x, transpose(st[4])); }
  }
  if (n > 1u && x.y < blocks) {
    p_put(r0, blocks, x.y, transpose(st[1]));
    if (RB > 1u) { p_put(r0 + 4u, blocks, x.y, transpose(st[5])); }
  }
  if (n > 2u && x.z < blocks) {
    p_put(r0, blocks, x.z, transpose(st[2]));
    if (RB > 1u) { p_put(r0 + 4u, blocks, x.z, transpose(st[6])); }
  }
  if (n > 3u && x.w < blocks) {
    p_put(r0, blocks, x.w, transpose(st[3]));
    if (RB > 1u) { p_put(r0 + 4u, blocks, x.w, transpose(st[7])); }
  }
}

fn ds_put_scores(st: array<mat4x4<f32>, 8>, r0: u32, blocks: u32, x: vec4<u32>, n: u32) {
  if (x.x < blocks) {
    ds_put(r0, blocks, x.x, transpose(st[0]));
    if (RB > 1u) { ds_put(r0 + 4u, blocks, x.x, transpose(st[4])); }
  }
  if (n > 1u && x.y < blocks) {
    ds_put(r0, blocks, x.y, transpose(st[1]));
    if (RB > 1u) { ds_put(r0 + 4u, blocks, x.y, transpose(st[5])); }
  }
  if (n > 2u && x.z < blocks) {
    ds_put(r0, blocks, x.z, transpose(st[2]));
    if (RB > 1u) { ds_put(r0 + 4u, blocks, x.z, transpose(st[6])); }
  }
  if (n > 3u && x.w < blocks) {
    ds_put(r0, blocks, x.w, transpose(st[3]));
    if (RB > 1u) { ds_put(r0 + 4u, blocks, x.w, transpose(st[7])); }
  }
}

// Scores from q·k: scale q·k, then c tanh(· / c) when p.softcap = c > 0. tanh's argument is clamped to
// ±15 (where tanh is ±1 in f32), so that an exp-based tanh cannot overflow into NaN.
fn scores_of(qk: mat4x4<f32>) -> mat4x4<f32> {
  let sm = p.scale * qk;
  if (p.softcap > 0.0) {
    let c = p.softcap;
    return mat4x4<f32>(c * tanh(clamp(sm[0] / c, vec4<f32>(-15.0), vec4<f32>(15.0))),
                       c * tanh(clamp(sm[1] / c, vec4<f32>(-15.0), vec4<f32>(15.0))),
                       c * tanh(clamp(sm[2] / c, vec4<f32>(-15.0), vec4<f32>(15.0))),
                       c * tanh(clamp(sm[3] / c, vec4<f32>(-15.0), vec4<f32>(15.0))));
  }
  return sm;
}

// ds of the capped scores into ds of the raw ones: componentwise times 1 - (s / c)^2, s the capped scores
// (p.softcap = c > 0; the caller branches).
fn uncap_ds(ds: mat4x4<f32>, s: mat4x4<f32>) -> mat4x4<f32> {
  let c = p.softcap;
  return mat4x4<f32>(ds[0] * (1.0 - (s[0] / c) * (s[0] / c)), ds[1] * (1.0 - (s[1] / c) * (s[1] / c)),
                     ds[2] * (1.0 - (s[2] / c) * (s[2] / c)), ds[3] * (1.0 - (s[3] / c) * (s[3] / c)));
}

// forward: the q·k block at p_tile rows r.., key block kb (keys j..j+3), into scores (scores_of) masked to
// MASKED in place; returns the 4 rows' maxima.
fn mask_scores(r: u32, kb: u32, j: u32, lo: vec4<i32>, hi: vec4<i32>) -> vec4<f32> {
  let sm = scores_of(p_get(r, BK4, kb));
  let jj = vec4<i32>(vec4<u32>(j) + LANE);
  let m = mat4x4<f32>(
    select(vec4<f32>(MASKED), sm[0], live(jj, vec4<i32>(lo.x), vec4<i32>(hi.x))),
    select(vec4<f32>(MASKED), sm[1], live(jj, vec4<i32>(lo.y), vec4<i32>(hi.y))),
    select(vec4<f32>(MASKED), sm[2], live(jj, vec4<i32>(lo.z), vec4<i32>(hi.z))),
    select(vec4<f32>(MASKED), sm[3], live(jj, vec4<i32>(lo.w), vec4<i32>(hi.w))));
  p_put(r, BK4, kb, m);
  return vec4<f32>(max4(m[0]), max4(m[1]), max4(m[2]), max4(m[3]));
}

// backward_dq: from q·k (p_tile) and dy·v (ds_tile) at rows r.., key block kb (keys j..j+3), scale · ds
// (of the raw scores) into ds_tile in place; L, dl: the 4 rows' L and Δ.
fn ds_of_scores(r: u32, kb: u32, j: u32, lo: vec4<i32>, hi: vec4<i32>, L: vec4<f32>, dl: vec4<f32>) {
  let sm = scores_of(p_get(r, BK4, kb));
  let dpm = ds_get(r, BK4, kb);
  let jj = vec4<i32>(vec4<u32>(j) + LANE);
  var dsm = p.scale * mat4x4<f32>(
    select(vec4<f32>(0.0), exp(sm[0] - L.x), live(jj, vec4<i32>(lo.x), vec4<i32>(hi.x))) * (dpm[0] - dl.x),
    select(vec4<f32>(0.0), exp(sm[1] - L.y), live(jj, vec4<i32>(lo.y), vec4<i32>(hi.y))) * (dpm[1] - dl.y),
    select(vec4<f32>(0.0), exp(sm[2] - L.z), live(jj, vec4<i32>(lo.z), vec4<i32>(hi.z))) * (dpm[2] - dl.z),
    select(vec4<f32>(0.0), exp(sm[3] - L.w), live(jj, vec4<i32>(lo.w), vec4<i32>(hi.w))) * (dpm[3] - dl.w));
  if (p.softcap > 0.0) { dsm = uncap_ds(dsm, sm); }
  ds_put(r, BK4, kb, dsm);
}

// backward_dkv: from k·q (p_tile) and v·dy (ds_tile) at rows r.. (keys j..j+3), query block qb (queries with
// bounds lo, hi and L, Δ), p into p_tile and scale · ds (of the raw scores) into ds_tile in place.
fn p_ds_of_scores(r: u32, qb: u32, j: u32, lo: vec4<i32>, hi: vec4<i32>, L: vec4<f32>, dl: vec4<f32>) {
  let sm = scores_of(p_get(r, BQ4, qb));
  let dpm = ds_get(r, BQ4, qb);
  let jj = vec4<i32>(vec4<u32>(j) + LANE);
  let pm = mat4x4<f32>(
    select(vec4<f32>(0.0), exp(sm[0] - L), live(vec4<i32>(jj.x), lo, hi)),
    select(vec4<f32>(0.0), exp(sm[1] - L), live(vec4<i32>(jj.y), lo, hi)),
    select(vec4<f32>(0.0), exp(sm[2] - L), live(vec4<i32>(jj.z), lo, hi)),
    select(vec4<f32>(0.0), exp(sm[3] - L), live(vec4<i32>(jj.w), lo, hi)));
  p_put(r, BQ4, qb, pm);
  var dsm = p.scale * mat4x4<f32>(pm[0] * (dpm[0] - dl), pm[1] * (dpm[1] - dl), pm[2] * (dpm[2] - dl), pm[3] * (dpm[3] - dl));
  if (p.softcap > 0.0) { dsm = uncap_ds(dsm, sm); }
  ds_put(r, BQ4, qb, dsm);
}

fn max4(x: vec4<f32>) -> f32 {
  return max(max(x.x, x.y), max(x.z, x.w));
}

fn sum4(x: vec4<f32>) -> f32 {
  return (x.x + x.y) + (x.z + x.w);
}

// Columns of m scaled by s (column r by s[r]).
fn scale_columns(m: mat4x4<f32>, s: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(m[0] * s.x, m[1] * s.y, m[2] * s.z, m[3] * s.w);
}

@compute @workgroup_size(WG_Q)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let b = wid.z;
  let h = wid.y;
  let kvh = h / (p.H / p.KVH);
  let i0 = wid.x * BQ;
  let g = tid % G;
  let r0 = tid / G * 4u * RB; // own rows i0 + r0 + 4 rb + (0..3), rb < RB
  let rows = array<vec4<u32>, 2>(vec4<u32>(i0 + r0) + LANE, vec4<u32>(i0 + r0 + 4u) + LANE);
  let lo = array<vec4<i32>, 2>(query_lo(b, rows[0]), query_lo(b, rows[1]));
  let hi = array<vec4<i32>, 2>(query_hi(rows[0]), query_hi(rows[1]));
  let qa = array<vec4<u32>, 2>(q_rows(b, h, i0, rows[0].x), q_rows(b, h, i0, rows[1].x));
  let oa = array<vec4<u32>, 2>(q_rows_global(b, h, rows[0].x), q_rows_global(b, h, rows[1].x));
  let valid = array<vec4<bool>, 2>(rows[0] < vec4<u32>(p.T), rows[1] < vec4<u32>(p.T));
  let j_begin = u32(bounds[b * p.T + i0].x);
  let j_end = min(i0 + BQ, p.T);
  if (STAGE) { stage_q(b, h, i0, tid, WG_Q); }
  var m = array<vec4<f32>, 2>(vec4<f32>(MASKED), vec4<f32>(MASKED)); // running max per own row
  var l = array<vec4<f32>, 2>(); // running sum of e^(s - m)
  for (var j0 = j_begin; j0 < j_end; j0 += BK) {
    if (STAGE) {
      stage_kv(b, kvh, j0, tid, WG_Q);
      workgroupBarrier();
    }
    let nkb = (min(j0 + BK, j_end) - j0 + 3u) / 4u; // key blocks some query of the tile can see
    // Score step: masked scores of own rows × own key blocks into p_tile (4 blocks at a time), their maxima.
    var mx = array<vec4<f32>, 2>(vec4<f32>(MASKED), vec4<f32>(MASKED));
    for (var u0 = 0u; u0 < KBT; u0 += 4u) {
      let kb = (vec4<u32>(u0) + LANE) * G + g;
      let n = min(4u, KBT - u0);
      let ka = array<vec4<u32>, 4>(kv_rows(b, kvh, j0, j0 + 4u * kb.x), kv_rows(b, kvh, j0, j0 + 4u * kb.y),
                                   kv_rows(b, kvh, j0, j0 + 4u * kb.z), kv_rows(b, kvh, j0, j0 + 4u * kb.w));
      var s = array<mat4x4<f32>, 8>(); // s[4 rb + e] column x: key x of block e against the 4 own rows
      for (var c = 0u; c < p.cols; c++) {
        var own_t: array<mat4x4<f32>, 2>;
        own_t[0] = transpose(q_block(qa[0], c));
        if (RB > 1u) { own_t[1] = transpose(q_block(qa[1], c)); }
        var ob: array<mat4x4<f32>, 4>;
        ob[0] = k_block(ka[0], c);
        if (n > 1u) { ob[1] = k_block(ka[1], c); }
        if (n > 2u) { ob[2] = k_block(ka[2], c); }
        if (n > 3u) { ob[3] = k_block(ka[3], c); }
        mma_score(&s, own_t, ob, n);
      }
      p_put_scores(s, r0, BK4, kb, n);
    }
    for (var u = 0u; u < KBT; u++) {
      let kb = u * G + g;
      if (kb < BK4) {
        for (var rb = 0u; rb < RB; rb++) { mx[rb] = max(mx[rb], mask_scores(r0 + 4u * rb, kb, j0 + 4u * kb, lo[rb], hi[rb])); }
      }
    }
    if (G > 1u) {
      for (var rb = 0u; rb < RB; rb++) {
        for (var r = 0u; r < 4u; r++) { row_max[(r0 + 4u * rb + r) * G + g] = mx[rb][r]; }
      }
      workgroupBarrier();
      for (var rb = 0u; rb < RB; rb++) {
        for (var r = 0u; r < 4u; r++) {
          for (var x = 0u; x < G; x++) { mx[rb][r] = max(mx[rb][r], row_max[(r0 + 4u * rb + r) * G + x]); }
        }
      }
    }
    // Scores to probabilities e^(s - m'), in place; their row sums.
    var alpha = array<vec4<f32>, 2>();
    var ls = array<vec4<f32>, 2>();
    for (var rb = 0u; rb < RB; rb++) {
      let m_new = max(m[rb], mx[rb]);
      alpha[rb] = exp(m[rb] - m_new);
      m[rb] = m_new;
      for (var u = 0u; u < KBT; u++) {
        let kb = u * G + g;
        if (kb < BK4) {
          let sm = p_get(r0 + 4u * rb, BK4, kb);
          let pm = mat4x4<f32>(
            select(vec4<f32>(0.0), exp(sm[0] - m_new.x), sm[0] > vec4<f32>(MASKED)),
            select(vec4<f32>(0.0), exp(sm[1] - m_new.y), sm[1] > vec4<f32>(MASKED)),
            select(vec4<f32>(0.0), exp(sm[2] - m_new.z), sm[2] > vec4<f32>(MASKED)),
            select(vec4<f32>(0.0), exp(sm[3] - m_new.w), sm[3] > vec4<f32>(MASKED)));
          ls[rb] += vec4<f32>(sum4(pm[0]), sum4(pm[1]), sum4(pm[2]), sum4(pm[3]));
          p_put(r0 + 4u * rb, BK4, kb, pm);
        }
      }
    }
    if (G > 1u) {
      for (var rb = 0u; rb < RB; rb++) {
        for (var r = 0u; r < 4u; r++) { row_sum[(r0 + 4u * rb + r) * G + g] = ls[rb][r]; }
      }
      workgroupBarrier();
      for (var rb = 0u; rb < RB; rb++) {
        ls[rb] = vec4<f32>(0.0);
        for (var r = 0u; r < 4u; r++) {
          for (var x = 0u; x < G; x++) { ls[rb][r] += row_sum[(r0 + 4u * rb + r) * G + x]; }
        }
      }
    }
    l[0] = l[0] * alpha[0] + ls[0];
    l[1] = l[1] * alpha[1] + ls[1];
    // Accumulate step: o = o e^(m - m') + p·v (o starts at 0), 4 key blocks at a time.
    for (var kb0 = 0u; kb0 < nkb; kb0 += 4u) {
      let pw = p_weights(r0, BK4, kb0);
      let va = array<vec4<u32>, 4>(kv_rows(b, kvh, j0, j0 + 4u * kb0), kv_rows(b, kvh, j0, j0 + 4u * kb0 + 4u),
                                   kv_rows(b, kvh, j0, j0 + 4u * kb0 + 8u), kv_rows(b, kvh, j0, j0 + 4u * kb0 + 12u));
      let first = j0 == j_begin && kb0 == 0u;
      for (var c = g; c < p.cols; c += G) {
        var a = array<mat4x4<f32>, 2>();
        if (!first) {
          a[0] = o_get(oa[0], c);
          if (RB > 1u) { a[1] = o_get(oa[1], c); }
          if (kb0 == 0u) {
            a[0] = scale_columns(a[0], alpha[0]);
            a[1] = scale_columns(a[1], alpha[1]);
          }
        }
        mma_acc(&a, array<mat4x4<f32>, 4>(v_block(va[0], c), v_block(va[1], c), v_block(va[2], c), v_block(va[3], c)), pw);
        o_put(oa[0], c, a[0], valid[0]);
        if (RB > 1u) { o_put(oa[1], c, a[1], valid[1]); }
      }
    }
    if (STAGE || G > 1u) { workgroupBarrier(); }
  }
  // o = acc / l; a row with no key (l = 0, o possibly never written) gets 0, and L = 0, which backward
  // never reads (all its pairs are masked).
  for (var rb = 0u; rb < RB; rb++) {
    let lr = l[rb];
    let inv = 1.0 / max(lr, vec4<f32>(1e-30));
    let some = lr > vec4<f32>(0.0);
    for (var c = g; c < p.cols; c += G) {
      let a = o_get(oa[rb], c);
      o_put(oa[rb], c, mat4x4<f32>(select(vec4<f32>(0.0), a[0] * inv.x, some.x), select(vec4<f32>(0.0), a[1] * inv.y, some.y),
                                   select(vec4<f32>(0.0), a[2] * inv.z, some.z), select(vec4<f32>(0.0), a[3] * inv.w, some.w)), valid[rb]);
    }
    if (g == 0u) {
      for (var r = 0u; r < 4u; r++) {
        if (valid[rb][r]) { lse[stat_at(b, h, rows[rb][r])] = select(0.0, m[rb][r] + log(max(lr[r], 1e-30)), some[r]); }
      }
    }
  }
}

// stats[b, h, i] = (L_i, Δ_i = dy_i·o_i): one thread per (b, i, h), threads numbered (wid.x + wid.y nwg.x) WG + lid.
@compute @workgroup_size(WG_ROWS)
fn backward_delta(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
  let n = (wid.x + wid.y * nwg.x) * WG_ROWS + lid; // = (b T + i) H + h
  if (n >= p.B * p.T * p.H) { return; }
  let h = n % p.H;
  let bi = n / p.H;
  var d = 0.0;
  for (var c = 0u; c < p.cols; c++) { d += dot(dy[n * D4 + c], o[n * D4 + c]); }
  let at = stat_at(bi / p.T, h, bi % p.T);
  stats[at] = vec2<f32>(lse[at], d);
}

@compute @workgroup_size(WG_Q)
fn backward_dq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let b = wid.z;
  let h = wid.y;
  let kvh = h / (p.H / p.KVH);
  let i0 = wid.x * BQ;
  let g = tid % G;
  let r0 = tid / G * 4u * RB;
  let rows = array<vec4<u32>, 2>(vec4<u32>(i0 + r0) + LANE, vec4<u32>(i0 + r0 + 4u) + LANE);
  let lo = array<vec4<i32>, 2>(query_lo(b, rows[0]), query_lo(b, rows[1]));
  let hi = array<vec4<i32>, 2>(query_hi(rows[0]), query_hi(rows[1]));
  let qa = array<vec4<u32>, 2>(q_rows(b, h, i0, rows[0].x), q_rows(b, h, i0, rows[1].x));
  let oa = array<vec4<u32>, 2>(q_rows_global(b, h, rows[0].x), q_rows_global(b, h, rows[1].x));
  let valid = array<vec4<bool>, 2>(rows[0] < vec4<u32>(p.T), rows[1] < vec4<u32>(p.T));
  let st = array<array<vec4<f32>, 2>, 2>(query_stats(b, h, rows[0]), query_stats(b, h, rows[1]));
  let j_end = min(i0 + BQ, p.T);
  // From lo of the first query; when no row has a key, one tile of masked pairs writes dq = 0.
  let j_begin = min(u32(bounds[b * p.T + i0].x), j_end - 1u);
  if (STAGE) { stage_q_dy(b, h, i0, tid, WG_Q); }
  for (var j0 = j_begin; j0 < j_end; j0 += BK) {
    if (STAGE) {
      stage_kv(b, kvh, j0, tid, WG_Q);
      workgroupBarrier();
    }
    let nkb = (min(j0 + BK, j_end) - j0 + 3u) / 4u;
    // Score step: q·k and dy·v of own rows × own key blocks into p_tile and ds_tile, then scale · ds in place.
    for (var u0 = 0u; u0 < KBT; u0 += 4u) {
      let kb = (vec4<u32>(u0) + LANE) * G + g;
      let n = min(4u, KBT - u0);
      let ka = array<vec4<u32>, 4>(kv_rows(b, kvh, j0, j0 + 4u * kb.x), kv_rows(b, kvh, j0, j0 + 4u * kb.y),
                                   kv_rows(b, kvh, j0, j0 + 4u * kb.z), kv_rows(b, kvh, j0, j0 + 4u * kb.w));
      var s = array<mat4x4<f32>, 8>(); // q·k, laid out as forward's s
      var dp = array<mat4x4<f32>, 8>(); // dy·v
      for (var c = 0u; c < p.cols; c++) {
        var own_t: array<mat4x4<f32>, 2>;
        var own_dy_t: array<mat4x4<f32>, 2>;
        own_t[0] = transpose(q_block(qa[0], c));
        own_dy_t[0] = transpose(dy_block(qa[0], c));
        if (RB > 1u) {
          own_t[1] = transpose(q_block(qa[1], c));
          own_dy_t[1] = transpose(dy_block(qa[1], c));
        }
        var ob: array<mat4x4<f32>, 4>;
        var ob_v: array<mat4x4<f32>, 4>;
        ob[0] = k_block(ka[0], c);
        ob_v[0] = v_block(ka[0], c);
        if (n > 1u) {
          ob[1] = k_block(ka[1], c);
          ob_v[1] = v_block(ka[1], c);
        }
        if (n > 2u) {
          ob[2] = k_block(ka[2], c);
          ob_v[2] = v_block(ka[2], c);
        }
        if (n > 3u) {
          ob[3] = k_block(ka[3], c);
          ob_v[3] = v_block(ka[3], c);
        }
        mma_score(&s, own_t, ob, n);
        mma_score(&dp, own_dy_t, ob_v, n);
      }
      p_put_scores(s, r0, BK4, kb, n);
      ds_put_scores(dp, r0, BK4, kb, n);
    }
    for (var u = 0u; u < KBT; u++) {
      let kb = u * G + g;
      if (kb < BK4) {
        for (var rb = 0u; rb < RB; rb++) { ds_of_scores(r0 + 4u * rb, kb, j0 + 4u * kb, lo[rb], hi[rb], st[rb][0], st[rb][1]); }
      }
    }
    if (G > 1u) { workgroupBarrier(); }
    // Accumulate step: dq += (scale ds)·k (dq starts at 0), 4 key blocks at a time.
    for (var kb0 = 0u; kb0 < nkb; kb0 += 4u) {
      let dw = ds_weights(r0, BK4, kb0);
      let ka = array<vec4<u32>, 4>(kv_rows(b, kvh, j0, j0 + 4u * kb0), kv_rows(b, kvh, j0, j0 + 4u * kb0 + 4u),
                                   kv_rows(b, kvh, j0, j0 + 4u * kb0 + 8u), kv_rows(b, kvh, j0, j0 + 4u * kb0 + 12u));
      let first = j0 == j_begin && kb0 == 0u;
      for (var c = g; c < p.cols; c += G) {
        var a = array<mat4x4<f32>, 2>();
        if (!first) {
          a[0] = dq_get(oa[0], c);
          if (RB > 1u) { a[1] = dq_get(oa[1], c); }
        }
        mma_acc(&a, array<mat4x4<f32>, 4>(k_block(ka[0], c), k_block(ka[1], c), k_block(ka[2], c), k_block(ka[3], c)), dw);
        dq_put(oa[0], c, a[0], valid[0]);
        if (RB > 1u) { dq_put(oa[1], c, a[1], valid[1]); }
      }
    }
    if (STAGE || G > 1u) { workgroupBarrier(); }
  }

}

@compute @workgroup_size(WG_K)
fn backward_dkv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let b = wid.z;
  let kvh = wid.y;
  let j0 = wid.x * BK;
  let g = tid % G;
  let r0 = tid / G * 4u * RB; // own keys j0 + r0 + 4 rb + (0..3), rb < RB
  let keys = array<vec4<u32>, 2>(vec4<u32>(j0 + r0) + LANE, vec4<u32>(j0 + r0 + 4u) + LANE);
  let ka = array<vec4<u32>, 2>(kv_rows(b, kvh, j0, keys[0].x), kv_rows(b, kvh, j0, keys[1].x));
  let oa = array<vec4<u32>, 2>(kv_rows_global(b, kvh, keys[0].x), kv_rows_global(b, kvh, keys[1].x));
  let valid = array<vec4<bool>, 2>(keys[0] < vec4<u32>(p.T), keys[1] < vec4<u32>(p.T));
  // Up to the last query of the last key; when no query attends any key of the tile, one tile of masked
  // pairs (queries >= j0 cannot attend: they would be before i_end) writes dk = dv = 0.
  let i_end = max(u32(bounds[b * p.T + min(j0 + BK, p.T) - 1u].y), j0 + 1u);
  let group = p.H / p.KVH;
  if (STAGE) { stage_kv(b, kvh, j0, tid, WG_K); }
  for (var h = kvh * group; h < (kvh + 1u) * group; h++) {
    for (var i0 = j0; i0 < i_end; i0 += BQ) {
      if (STAGE) {
        stage_q_dy(b, h, i0, tid, WG_K);
        workgroupBarrier();
      }
      let nqb = (min(i0 + BQ, i_end) - i0 + 3u) / 4u;
      // Score step: k·q and v·dy of own keys × own query blocks into p_tile and ds_tile, then p and scale · ds in place.
      for (var u0 = 0u; u0 < QBT; u0 += 4u) {
        let qb = (vec4<u32>(u0) + LANE) * G + g;
        let n = min(4u, QBT - u0);
        let qa = array<vec4<u32>, 4>(q_rows(b, h, i0, i0 + 4u * qb.x), q_rows(b, h, i0, i0 + 4u * qb.y),
                                     q_rows(b, h, i0, i0 + 4u * qb.z), q_rows(b, h, i0, i0 + 4u * qb.w));
        var s = array<mat4x4<f32>, 8>(); // s[4 rb + e] column x: query x of block e against the 4 own keys (k·q)
        var dp = array<mat4x4<f32>, 8>(); // v·dy
        for (var c = 0u; c < p.cols; c++) {
          var own_t: array<mat4x4<f32>, 2>;
          var own_v_t: array<mat4x4<f32>, 2>;
          own_t[0] = transpose(k_block(ka[0], c));
          own_v_t[0] = transpose(v_block(ka[0], c));
          if (RB > 1u) {
            own_t[1] = transpose(k_block(ka[1], c));
            own_v_t[1] = transpose(v_block(ka[1], c));
          }
          var ob: array<mat4x4<f32>, 4>;
          var ob_dy: array<mat4x4<f32>, 4>;
          ob[0] = q_block(qa[0], c);
          ob_dy[0] = dy_block(qa[0], c);
          if (n > 1u) {
            ob[1] = q_block(qa[1], c);
            ob_dy[1] = dy_block(qa[1], c);
          }
          if (n > 2u) {
            ob[2] = q_block(qa[2], c);
            ob_dy[2] = dy_block(qa[2], c);
          }
          if (n > 3u) {
            ob[3] = q_block(qa[3], c);
            ob_dy[3] = dy_block(qa[3], c);
          }
          mma_score(&s, own_t, ob, n);
          mma_score(&dp, own_v_t, ob_dy, n);
        }
        p_put_scores(s, r0, BQ4, qb, n);
        ds_put_scores(dp, r0, BQ4, qb, n);
      }
      for (var u = 0u; u < QBT; u++) {
        let qb = u * G + g;
        if (qb < BQ4) {
          let i = vec4<u32>(i0 + 4u * qb) + LANE;
          let lo = query_lo(b, i);
          let hi = query_hi(i);
          let st = query_stats(b, h, i);
          for (var rb = 0u; rb < RB; rb++) { p_ds_of_scores(r0 + 4u * rb, qb, j0 + r0 + 4u * rb, lo, hi, st[0], st[1]); }
        }
      }
      if (G > 1u) { workgroupBarrier(); }
      // Accumulate step: dv += p·dy, dk += (scale ds)·q (both start at 0), 4 query blocks at a time.
      for (var qb0 = 0u; qb0 < nqb; qb0 += 4u) {
        let pw = p_weights(r0, BQ4, qb0);
        let dw = ds_weights(r0, BQ4, qb0);
        let qa = array<vec4<u32>, 4>(q_rows(b, h, i0, i0 + 4u * qb0), q_rows(b, h, i0, i0 + 4u * qb0 + 4u),
                                     q_rows(b, h, i0, i0 + 4u * qb0 + 8u), q_rows(b, h, i0, i0 + 4u * qb0 + 12u));
        let first = h == kvh * group && i0 == j0 && qb0 == 0u;
        for (var c = g; c < p.cols; c += G) {
          var a_v = array<mat4x4<f32>, 2>();
          var a_k = array<mat4x4<f32>, 2>();
          if (!first) {
            a_v[0] = dv_get(oa[0], c);
            a_k[0] = dk_get(oa[0], c);
            if (RB > 1u) {
              a_v[1] = dv_get(oa[1], c);
              a_k[1] = dk_get(oa[1], c);
            }
          }
          mma_acc(&a_v, array<mat4x4<f32>, 4>(dy_block(qa[0], c), dy_block(qa[1], c), dy_block(qa[2], c), dy_block(qa[3], c)), pw);
          mma_acc(&a_k, array<mat4x4<f32>, 4>(q_block(qa[0], c), q_block(qa[1], c), q_block(qa[2], c), q_block(qa[3], c)), dw);
          dv_put(oa[0], c, a_v[0], valid[0]);
          dk_put(oa[0], c, a_k[0], valid[0]);
          if (RB > 1u) {
            dv_put(oa[1], c, a_v[1], valid[1]);
            dk_put(oa[1], c, a_k[1], valid[1]);
          }
        }
      }
      if (STAGE || G > 1u) { workgroupBarrier(); }
    }
  }

}
