// Fused cross-entropy over a chunk of LM-head logits x (rows, V), in place: per row r with label y
// (label -100: ignored — zero loss, zero gradient, not counted), on z = the logits, or with SOFTCAP on the
// capped logits z = c tanh(x / c) (Gemma's final_logit_softcapping, c = p.cap):
//   lse     = m + log s,            m = max_j z[r, j],  s = sum_j exp(z[r, j] - m)
//   loss    = lse - z[r, y]                              (nll; -log p_y)
//   loss    = p_y * (lse - z[r, y])                      (DFT: -p_y log p_y with p_y = exp(z[r, y] - lse) a constant)
//   entropy = -sum_j p_j log p_j = log s - t / s,        t = sum_j exp(z[r, j] - m) (z[r, j] - m)
//   correct = argmax_j z[r, j] == y                      (the first index on ties, like torch.argmax)
//   x[r, j] <- w (p_j - [j == y]),  w = scale (nll) or scale * p_y (DFT)   when GRAD; scale = 1/normaliser
//              times dz/dx = 1 - tanh^2(x / c) = 4 e / (1 + e)^2, e = exp(-2 |x| / c), with SOFTCAP
// m, s, t and the argmax come from one sweep over the row with the online rule: when the running max
// grows from m to m', s <- s e^(m - m') and t <- e^(m - m') (t + s (m - m')); two partials combine the
// same way. t holds shifted logits, so the entropy has no cancellation at large logit magnitudes.
// Logits are taken to be finite (WGSL may assume no infinities; an LM head's are).
// A second sweep writes the gradient over the logits (each thread over its own columns, which it read raw
// in the first: the capped values are recomputed, never stored). The per-row results go to tok (3, N) at
// the chunk's global rows row0 + r; `totals` then sums them in a fixed order.
//
//   rows:        one workgroup of WG threads per row (row = wid.x + wid.y * nwg.x)
//   scale_by:    x[i] *= g[0]                           (rows * V elements: the backward's upstream scalar
//                                                        applied in place to a precomputed gradient)
//   totals:      loss = scale * sum_n tok[0, n], correct = sum_n tok[1, n], entropy = sum_n tok[2, n]
//                (one workgroup)
const WG: u32 = 256u;   // a power of two
const GRAD: bool = true;
const DFT: bool = false;
const SOFTCAP: bool = false;

struct Params { rows: u32, V: u32, N: u32, row0: u32, scale: f32, cap: f32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;     // (rows, V) logits in, dlogits out
@group(0) @binding(2) var<storage, read> labels: array<i32>;      // (N), -100 = ignore
@group(0) @binding(3) var<storage, read_write> tok: array<f32>;   // (3, N): loss, correct, entropy per token
@group(0) @binding(4) var<storage, read_write> loss: array<f32>;    // (1)
@group(0) @binding(5) var<storage, read_write> correct: array<f32>; // (1)
@group(0) @binding(6) var<storage, read_write> entropy: array<f32>; // (1)
@group(0) @binding(7) var<storage, read> g: array<f32>;             // (1)

const IGNORE: i32 = -100;
// The lowest finite f32: the running max of a thread that has seen nothing.
const LOWEST: f32 = -3.4028234663852886e38;
// The argmax of a thread that has seen nothing.
const NONE: u32 = 0xffffffffu;

// c tanh(v / c) by e = exp(-2 |v| / c) in (0, 1] (no overflow), and its derivative 1 - tanh^2 = 4e / (1 + e)^2.
fn capped(v: f32) -> f32 {
  let e = exp(-2.0 * abs(v) / p.cap);
  let t = p.cap * (1.0 - e) / (1.0 + e);
  return select(-t, t, v >= 0.0);
}

fn dcapped(v: f32) -> f32 {
  let e = exp(-2.0 * abs(v) / p.cap);
  let d = 1.0 + e;
  return 4.0 * e / (d * d);
}

// The logit the loss sees: x[k], capped with SOFTCAP.
fn logit(k: u32) -> f32 {
  if (SOFTCAP) { return capped(x[k]); }
  return x[k];
}

var<workgroup> red_m: array<f32, WG>;
var<workgroup> red_s: array<f32, WG>;
var<workgroup> red_t: array<f32, WG>;
var<workgroup> red_i: array<u32, WG>;

@compute @workgroup_size(WG)
fn rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) { return; }
  let base = row * p.V;
  let n = p.row0 + row;
  let label = labels[n];
  if (label == IGNORE) {
    if (GRAD) {
      for (var j = lid; j < p.V; j += WG) { x[base + j] = 0.0; }
    }
    if (lid == 0u) {
      tok[n] = 0.0;
      tok[p.N + n] = 0.0;
      tok[2u * p.N + n] = 0.0;
    }
    return;
  }
  let y = u32(label);
  // Each thread visits its indices in increasing order, so a strict > keeps the first maximum.
  var m = LOWEST;
  var s = 0.0;
  var t = 0.0;
  var i = NONE;
  for (var j = lid; j < p.V; j += WG) {
    let v = logit(base + j);
    if (v > m || i == NONE) {
      let a = exp(m - v);
      t = a * (t + s * (m - v));
      s = s * a + 1.0;
      m = v;
      i = j;
    } else {
      let e = exp(v - m);
      s += e;
      t += e * (v - m);
    }
  }
  // Read before the barriers below: the gradient sweep overwrites the row in place.
  let xy = logit(base + y);
  red_m[lid] = m;
  red_s[lid] = s;
  red_t[lid] = t;
  red_i[lid] = i;
  workgroupBarrier();
  for (var k = WG / 2u; k > 0u; k >>= 1u) {
    if (lid < k) {
      let m1 = red_m[lid];
      let m2 = red_m[lid + k];
      let i1 = red_i[lid];
      let i2 = red_i[lid + k];
      let mm = max(m1, m2);
      let a1 = exp(m1 - mm);
      let a2 = exp(m2 - mm);
      let s1 = red_s[lid];
      let s2 = red_s[lid + k];
      red_t[lid] = a1 * (red_t[lid] + s1 * (m1 - mm)) + a2 * (red_t[lid + k] + s2 * (m2 - mm));
      red_s[lid] = s1 * a1 + s2 * a2;
      red_m[lid] = mm;
      // The other partial wins the argmax if it has seen something and is greater, or equal at a smaller index.
      if (i2 != NONE && (i1 == NONE || m2 > m1 || (m2 == m1 && i2 < i1))) { red_i[lid] = i2; }
    }
    workgroupBarrier();
  }
  let mx = red_m[0];
  let sum = red_s[0];
  let inv = 1.0 / sum;
  let ce = (mx - xy) + log(sum);    // lse - x[y] >= 0
  let py = exp(xy - mx) * inv;
  if (lid == 0u) {
    tok[n] = select(ce, py * ce, DFT);
    tok[p.N + n] = select(0.0, 1.0, red_i[0] == y);
    tok[2u * p.N + n] = log(sum) - red_t[0] * inv;
  }
  if (GRAD) {
    let w = select(p.scale, p.scale * py, DFT);
    for (var j = lid; j < p.V; j += WG) {
      if (SOFTCAP) {
        let raw = x[base + j];
        let pj = exp(capped(raw) - mx) * inv;
        x[base + j] = w * (pj - select(0.0, 1.0, j == y)) * dcapped(raw);
      } else {
        let pj = exp(x[base + j] - mx) * inv;
        x[base + j] = w * (pj - select(0.0, 1.0, j == y));
      }
    }
  }
}

@compute @workgroup_size(WG)
fn scale_by(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG + lid;
  if (i >= p.rows * p.V) { return; }
  x[i] *= g[0];
}

@compute @workgroup_size(WG)
fn totals(@builtin(local_invocation_index) lid: u32) {
  var l = 0.0;
  var c = 0.0;
  var e = 0.0;
  for (var n = lid; n < p.N; n += WG) {
    l += tok[n];
    c += tok[p.N + n];
    e += tok[2u * p.N + n];
  }
  red_m[lid] = l;
  red_s[lid] = c;
  red_t[lid] = e;
  workgroupBarrier();
  for (var k = WG / 2u; k > 0u; k >>= 1u) {
    if (lid < k) {
      red_m[lid] += red_m[lid + k];
      red_s[lid] += red_s[lid + k];
      red_t[lid] += red_t[lid + k];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    loss[0] = p.scale * red_m[0];
    correct[0] = red_s[0];
    entropy[0] = red_t[0];
  }
}
