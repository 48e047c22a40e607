// Inference-time attention over a KV cache (text generation), and the cache write. No gradients.
//
// Caches: kc, vc (B, cap, KVH, D), positions 0..L-1 valid (L = past + S). q, o: (B, S, H, D), the S new
// tokens at absolute positions past..past+S-1. Query s of row b, head h attends cache position j iff
// j <= past + s, past + s - W < j with a sliding window W (p.window > 0; 0 is none), and mask[b, j] != 0
// (mask (B, L), 1 = token, 0 = padding), with kv head h / (H / KVH); a query with nothing to attend outputs
// 0. Scores are scale q·k, or c tanh(scale q·k / c) with a softcap c (p.softcap > 0; 0 is none).
//
// Split-K (flash decoding): the rows of one kv head, (s, g) pairs for its G = H / KVH query heads (row
// s·G + g, query head kvh·G + g), are cut into tiles of QR rows and the cache positions first..L-1 into NC
// chunks of CH (first: the lowest position any query sees, past + 1 - W with a window, else 0, so that a
// decode step past the window reads W positions, not L); a workgroup per (row tile, chunk, b·KVH + kvh)
// runs online softmax over its chunk from the tile's first row's window on, BK keys a step:
//   score step:       thread t scores key j0 + t against the QR rows (q staged, pre-scaled, in q_tile)
//                     into scores[row][t];
//   accumulate step:  thread (r, c) owns row r and vec4 column c: m' = max(m, max_t s), l' = l e^(m-m') +
//                     sum_t e^(s_t - m'), acc' = acc e^(m-m') + sum_t e^(s_t - m') v_t[c].
// With NC = 1, `single` writes o = acc / l directly (one dispatch). Else `partial` writes (m, l) and acc per
// (row, chunk), and `combine` merges the chunks: M = max m_k, o = sum_k acc_k e^(m_k - M) / sum_k l_k e^(m_k - M).
// A GQA group's query heads share a workgroup, so each K/V row is read once per row tile and chunk.
const D: u32 = 64u; // head_dim, a multiple of 4, at most 256
const QR: u32 = 4u; // rows ((s, g) pairs) per workgroup

const D4: u32 = D / 4u;
const WG: u32 = QR * D4; // threads of single / partial: one per (row, column)
const BK: u32 = WG; // keys per step: one per thread in the score step
const WG_FLAT: u32 = 64u; // threads of write / combine
// The score of a masked pair; finite, so that e^(MASKED - m) is 0 without infinities.
const MASKED: f32 = -1e30;

// One struct for every entry point (unused fields 0). cols = D / 4, a uniform: the bound of the loops over
// columns, which Mesa's compiler would otherwise unroll in full.
struct Params {
  B: u32, S: u32, H: u32, KVH: u32, cap: u32, past: u32, L: u32, NC: u32, CH: u32, cols: u32,
  start: u32, n: u32, width: u32, scale: f32, first: u32, window: u32, softcap: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;            // (B, S, H, D/4)
@group(0) @binding(2) var<storage, read> kc: array<vec4<f32>>;           // (B, cap, KVH, D/4)
@group(0) @binding(3) var<storage, read> vc: array<vec4<f32>>;           // (B, cap, KVH, D/4)
@group(0) @binding(4) var<storage, read> mask: array<i32>;               // (B, L)
@group(0) @binding(5) var<storage, read_write> o: array<vec4<f32>>;      // (B, S, H, D/4)
@group(0) @binding(6) var<storage, read_write> pml: array<vec2<f32>>;    // (B, H, S, NC): (m, l) per chunk
@group(0) @binding(7) var<storage, read_write> pacc: array<vec4<f32>>;   // (B, H, S, NC, D/4)
@group(0) @binding(8) var<storage, read_write> cache: array<f32>;        // (B, cap, width) (write)
@group(0) @binding(9) var<storage, read> x: array<f32>;                  // (B, S, width) (write)

var<workgroup> q_tile: array<vec4<f32>, QR * D4>; // the tile's q rows, times scale
var<workgroup> scores: array<f32, QR * BK>;      // [row][key of the step]

// cache[b, start + s, :] = x[b, s, :] for every b, s: one thread per value.
@compute @workgroup_size(WG_FLAT)
fn write(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) tid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG_FLAT + tid;
  if (i >= p.n) { return; }
  let tok = i / p.width; // b·S + s
  let b = tok / p.S;
  let s = tok % p.S;
  cache[(b * p.cap + p.start + s) * p.width + i % p.width] = x[i];
}

struct Part {
  m: f32,
  l: f32,
  acc: vec4<f32>,
}

// Where a tile row's q / o row starts, its head, and its absolute position.
struct Row {
  at: u32,
  h: u32,
  pos: u32,
}

fn row_of(b: u32, kvh: u32, row: u32) -> Row {
  let G = p.H / p.KVH;
  let s = row / G;
  let h = kvh * G + row % G;
  return Row(((b * p.S + s) * p.H + h) * D4, h, p.past + s);
}

// This thread's (m, l, acc) for row r0 + tid / D4, column tid % D4, over the chunk's keys.
fn attend(wid: vec3<u32>, tid: u32) -> Part {
  let b = wid.z / p.KVH;
  let kvh = wid.z % p.KVH;
  let rows = p.S * (p.H / p.KVH);
  let r0 = wid.x * QR;
  let r = tid / D4;
  let c = tid % D4;
  let me = row_of(b, kvh, min(r0 + r, rows - 1u));
  q_tile[tid] = q[me.at + c] * p.scale;
  // Keys of the chunk from the first row's window up to the last row's position (uniform across the
  // workgroup); none when the window starts past the chunk.
  let last = row_of(b, kvh, min(r0 + QR, rows) - 1u);
  let chunk = p.first + wid.y * p.CH;
  let j_end = min(min(chunk + p.CH, p.L), last.pos + 1u);
  var j_begin = chunk;
  if (p.window > 0u) {
    let first = row_of(b, kvh, min(r0, rows - 1u));
    j_begin = max(chunk, max(first.pos + 1u, p.window) - p.window);
  }
  var m = MASKED;
  var l = 0.0;
  var acc = vec4<f32>(0.0);
  workgroupBarrier();
  for (var j0 = j_begin; j0 < j_end; j0 += BK) {
    // Score step: key j0 + tid against every row of the tile.
    let j = j0 + tid;
    let jc = min(j, p.L - 1u);
    let krow = ((b * p.cap + jc) * p.KVH + kvh) * D4;
    let key_ok = j < j_end && mask[b * p.L + jc] != 0;
    for (var rr = 0u; rr < QR; rr++) {
      var dot = vec4<f32>(0.0);
      for (var cc = 0u; cc < p.cols; cc++) {
        dot += q_tile[rr * D4 + cc] * kc[krow + cc];
      }
      let row = r0 + rr;
      let pos = row_of(b, kvh, min(row, rows - 1u)).pos;
      let ok = key_ok && row < rows && j <= pos && (p.window == 0u || j + p.window > pos);
      var sc = dot.x + dot.y + dot.z + dot.w;
      if (p.softcap > 0.0) { sc = p.softcap * tanh(clamp(sc / p.softcap, -15.0, 15.0)); } // clamped: no exp overflow
      scores[rr * BK + tid] = select(MASKED, sc, ok);
    }
    workgroupBarrier();
    // Accumulate step: this thread's row and column over the step's keys.
    let n = min(BK, j_end - j0);
    var mx = m;
    for (var t = 0u; t < n; t++) {
      mx = max(mx, scores[r * BK + t]);
    }
    let alpha = exp(m - mx);
    l *= alpha;
    acc *= alpha;
    let vrow = ((b * p.cap + j0) * p.KVH + kvh) * D4 + c;
    for (var t = 0u; t < n; t++) {
      let sc = scores[r * BK + t];
      let w = select(0.0, exp(sc - mx), sc > MASKED);
      l += w;
      acc += w * vc[vrow + t * p.KVH * D4];
    }
    m = mx;
    workgroupBarrier();
  }
  return Part(m, l, acc);
}

// NC = 1: o straight from the one chunk.
@compute @workgroup_size(WG)
fn single(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let part = attend(wid, tid);
  let kvh = wid.z % p.KVH;
  let row = wid.x * QR + tid / D4;
  if (row >= p.S * (p.H / p.KVH)) { return; }
  let me = row_of(wid.z / p.KVH, kvh, row);
  o[me.at + tid % D4] = select(vec4<f32>(0.0), part.acc / part.l, part.l > 0.0);
}

// Index of a (b, h, s, chunk) partial.
fn part_at(b: u32, h: u32, s: u32, chunk: u32) -> u32 {
  return ((b * p.H + h) * p.S + s) * p.NC + chunk;
}

// NC > 1: each chunk's (m, l) and unnormalised acc.
@compute @workgroup_size(WG)
fn partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let part = attend(wid, tid);
  let b = wid.z / p.KVH;
  let kvh = wid.z % p.KVH;
  let row = wid.x * QR + tid / D4;
  let G = p.H / p.KVH;
  if (row >= p.S * G) { return; }
  let at = part_at(b, kvh * G + row % G, row / G, wid.y);
  pacc[at * D4 + tid % D4] = part.acc;
  if (tid % D4 == 0u) { pml[at] = vec2<f32>(part.m, part.l); }
}

// NC > 1: o[b, s, h, c] from the chunks' partials; one thread per vec4 of o.
@compute @workgroup_size(WG_FLAT)
fn combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) tid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG_FLAT + tid;
  if (i >= p.n) { return; }
  let c = i % p.cols;
  let tok = i / p.cols; // (b·S + s)·H + h
  let h = tok % p.H;
  let s = (tok / p.H) % p.S;
  let b = tok / (p.H * p.S);
  let at0 = part_at(b, h, s, 0u);
  var mx = MASKED;
  for (var k = 0u; k < p.NC; k++) {
    mx = max(mx, pml[at0 + k].x);
  }
  var l = 0.0;
  var acc = vec4<f32>(0.0);
  for (var k = 0u; k < p.NC; k++) {
    let ml = pml[at0 + k];
    let w = select(0.0, exp(ml.x - mx), ml.y > 0.0);
    l += w * ml.y;
    acc += w * pacc[(at0 + k) * p.cols + c];
  }
  o[i] = select(vec4<f32>(0.0), acc / l, l > 0.0);
}
