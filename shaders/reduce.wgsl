// Reductions over the last dim of x viewed as (rows, n), and their gradients.
// Row kernels run one workgroup of WG threads per row (row = wid.x + wid.y * nwg.x, folded past the
// per-dimension limit): a strided loop over the row, then a tree reduce in workgroup memory (WG is a
// power of two). Elementwise kernels cover rows * n elements, WG per workgroup.
//   sum_forward:         out[r] = scale * sum_j x[r, j]                   (sum: scale 1, mean: 1/n)
//   max_forward:         out[r] = max_j x[r, j], arg_out[r] = the first j attaining it
//   logsumexp_forward:   out[r] = m + log(sum_j exp(x[r, j] - m)),  m = max_j x[r, j]
//   softmax_forward:     out[r, j] = exp(x[r, j] - m) / sum_k exp(x[r, k] - m)
//   sum_backward:        dx[r, j] = scale * dy[r]
//   max_backward:        dx[r, j] = dy[r] if j == arg[r] else 0
//   logsumexp_backward:  dx[r, j] = dy[r] * exp(x[r, j] - y[r])          (= dy * softmax(x))
//   softmax_backward:    dx[r, j] = y[r, j] * (dy[r, j] - sum_k dy[r, k] y[r, k])
// Max and sum-of-exp are found in one pass with the online rule: a running (m, s = sum exp(x - m)) is
// rescaled by exp(m_old - m_new) whenever the max grows, and two partial (m, s) combine the same way.
const WG: u32 = 256u;

struct Params { rows: u32, n: u32, scale: f32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;             // (rows, n)
@group(0) @binding(2) var<storage, read_write> out: array<f32>;     // (rows), or (rows, n) for softmax
@group(0) @binding(3) var<storage, read_write> arg_out: array<u32>; // (rows)
@group(0) @binding(4) var<storage, read> y: array<f32>;             // forward output: (rows) or (rows, n)
@group(0) @binding(5) var<storage, read> arg: array<u32>;           // (rows), from max_forward
@group(0) @binding(6) var<storage, read> dy: array<f32>;            // (rows), or (rows, n) for softmax
@group(0) @binding(7) var<storage, read_write> dx: array<f32>;      // (rows, n)

// The lowest finite f32: the running max of a thread that has seen nothing (-inf inputs stay below it).
const LOWEST: f32 = -3.4028234663852886e38;
// arg of a thread that has seen nothing.
const NONE: u32 = 0xffffffffu;

var<workgroup> red_f: array<f32, WG>;
var<workgroup> red_g: array<f32, WG>;
var<workgroup> red_u: array<u32, WG>;

fn row_of(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.x + wid.y * nwg.x;
}

fn element_of(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG + lid;
}

// The workgroup's sum of v. Called by every thread of the workgroup (uniform control flow).
fn workgroup_sum(v: f32, lid: u32) -> f32 {
  red_f[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red_f[lid] += red_f[lid + s]; }
    workgroupBarrier();
  }
  let r = red_f[0];
  workgroupBarrier(); // red_f may be written again by the caller's next reduce
  return r;
}

// (m, s) of a whole row: m = max_j x[base + j], s = sum_j exp(x[base + j] - m).
fn row_max_sumexp(base: u32, lid: u32) -> vec2<f32> {
  var m = LOWEST;
  var s = 0.0;
  for (var j = lid; j < p.n; j += WG) {
    let v = x[base + j];
    if (v > m) {
      s = s * exp(m - v) + 1.0;
      m = v;
    } else {
      s += exp(v - m);
    }
  }
  red_f[lid] = m;
  red_g[lid] = s;
  workgroupBarrier();
  for (var k = WG / 2u; k > 0u; k >>= 1u) {
    if (lid < k) {
      let m1 = red_f[lid];
      let m2 = red_f[lid + k];
      let mm = max(m1, m2);
      red_g[lid] = red_g[lid] * exp(m1 - mm) + red_g[lid + k] * exp(m2 - mm);
      red_f[lid] = mm;
    }
    workgroupBarrier();
  }
  let r = vec2<f32>(red_f[0], red_g[0]);
  workgroupBarrier();
  return r;
}

@compute @workgroup_size(WG)
fn sum_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
  let row = row_of(wid, nwg);
  if (row >= p.rows) { return; }
  let base = row * p.n;
  var s = 0.0;
  for (var j = lid; j < p.n; j += WG) { s += x[base + j]; }
  let total = workgroup_sum(s, lid);
  if (lid == 0u) { out[row] = p.scale * total; }
}

@compute @workgroup_size(WG)
fn max_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
  let row = row_of(wid, nwg);
  if (row >= p.rows) { return; }
  let base = row * p.n;
  // Each thread visits its indices in increasing order, so a strict > keeps the first maximum.
  var m = LOWEST;
  var i = NONE;
  for (var j = lid; j < p.n; j += WG) {
    let v = x[base + j];
    if (i == NONE || v > m) {
      m = v;
      i = j;
    }
  }
  red_f[lid] = m;
  red_u[lid] = i;
  workgroupBarrier();
  for (var k = WG / 2u; k > 0u; k >>= 1u) {
    if (lid < k) {
      let m2 = red_f[lid + k];
      let i2 = red_u[lid + k];
      let i1 = red_u[lid];
      let m1 = red_f[lid];
      // The other partial wins if it has seen something and is greater, or equal at a smaller index.
      if (i2 != NONE && (i1 == NONE || m2 > m1 || (m2 == m1 && i2 < i1))) {
        red_f[lid] = m2;
        red_u[lid] = i2;
      }
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    out[row] = red_f[0];
    arg_out[row] = red_u[0];
  }
}

@compute @workgroup_size(WG)
fn logsumexp_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
  let row = row_of(wid, nwg);
  if (row >= p.rows) { return; }
  let ms = row_max_sumexp(row * p.n, lid);
  if (lid == 0u) { out[row] = ms.x + log(ms.y); }
}

@compute @workgroup_size(WG)
fn softmax_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
  let row = row_of(wid, nwg);
  if (row >= p.rows) { return; }
  let base = row * p.n;
  let ms = row_max_sumexp(base, lid);
  let inv = 1.0 / ms.y;
  for (var j = lid; j < p.n; j += WG) { out[base + j] = exp(x[base + j] - ms.x) * inv; }
}

@compute @workgroup_size(WG)
fn sum_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  let i = element_of(wid, nwg, lid);
  if (i >= p.rows * p.n) { return; }
  dx[i] = p.scale * dy[i / p.n];
}

@compute @workgroup_size(WG)
fn max_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  let i = element_of(wid, nwg, lid);
  if (i >= p.rows * p.n) { return; }
  let r = i / p.n;
  dx[i] = select(0.0, dy[r], i - r * p.n == arg[r]);
}

@compute @workgroup_size(WG)
fn logsumexp_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
  let i = element_of(wid, nwg, lid);
  if (i >= p.rows * p.n) { return; }
  let r = i / p.n;
  dx[i] = dy[r] * exp(x[i] - y[r]);
}

@compute @workgroup_size(WG)
fn softmax_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
  let row = row_of(wid, nwg);
  if (row >= p.rows) { return; }
  let base = row * p.n;
  var s = 0.0;
  for (var j = lid; j < p.n; j += WG) { s += dy[base + j] * y[base + j]; }
  let d = workgroup_sum(s, lid);
  for (var j = lid; j < p.n; j += WG) { dx[base + j] = y[base + j] * (dy[base + j] - d); }
}
