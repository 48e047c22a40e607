// RMSNorm (Hugging Face LlamaRMSNorm). x: (N, C), w: (C).
//   forward:       rstd[n] = 1 / sqrt(mean_c x[n, c]^2 + eps),  y[n, c] = x[n, c] * rstd[n] * w[c]
//   backward_dx:   dx[n, c] = rstd[n] * (dy[n, c] w[c] - x[n, c] rstd[n]^2 * mean_c'(dy[n, c'] w[c'] x[n, c']))
//   backward_dw:   dw[c] = sum_n dy[n, c] x[n, c] rstd[n], in two deterministic passes (no atomics):
//                  backward_dw_partial sums the `rows` rows of block b in order into partials_out[b, c], then
//                  backward_dw_reduce sums the blocks in order. With one block, partials_out is dw.
// Row kernels run one workgroup of WG threads per row (row = wid.x + wid.y * nwg.x): a strided loop
// over the row, then a tree reduce in workgroup memory (WG a power of two). Column kernels run one
// thread per column c (WG columns per workgroup along x; the row block along y for dw_partial).
const WG: u32 = 256u;

struct Params { N: u32, C: u32, eps: f32, rows: u32, blocks: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;                  // (N, C)
@group(0) @binding(2) var<storage, read> w: array<f32>;                  // (C)
@group(0) @binding(3) var<storage, read_write> y: array<f32>;            // (N, C)
@group(0) @binding(4) var<storage, read_write> rstd_out: array<f32>;     // (N)
@group(0) @binding(5) var<storage, read> rstd: array<f32>;               // (N), from forward
@group(0) @binding(6) var<storage, read> dy: array<f32>;                 // (N, C)
@group(0) @binding(7) var<storage, read_write> dx: array<f32>;           // (N, C)
@group(0) @binding(8) var<storage, read_write> partials_out: array<f32>; // (blocks, C), or dw (C) itself if blocks == 1
@group(0) @binding(9) var<storage, read> partials: array<f32>;           // (blocks, C), from backward_dw_partial
@group(0) @binding(10) var<storage, read_write> dw: array<f32>;          // (C)

var<workgroup> red: array<f32, WG>;

fn row_of(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.x + wid.y * nwg.x;
}

// The workgroup's sum of v. Called by every thread of the workgroup (uniform control flow).
fn workgroup_sum(v: f32, lid: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  let row = row_of(wid, nwg);
  if (row >= p.N) { return; }
  let base = row * p.C;
  var ss = 0.0;
  for (var c = lid; c < p.C; c += WG) {
    let v = x[base + c];
    ss += v * v;
  }
  let r = inverseSqrt(workgroup_sum(ss, lid) / f32(p.C) + p.eps);
  for (var c = lid; c < p.C; c += WG) { y[base + c] = x[base + c] * r * w[c]; }
  if (lid == 0u) { rstd_out[row] = r; }
}

@compute @workgroup_size(WG)
fn backward_dx(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
  let row = row_of(wid, nwg);
  if (row >= p.N) { return; }
  let base = row * p.C;
  var s = 0.0;
  for (var c = lid; c < p.C; c += WG) { s += dy[base + c] * w[c] * x[base + c]; }
  let r = rstd[row];
  let k = r * r * workgroup_sum(s, lid) / f32(p.C);
  for (var c = lid; c < p.C; c += WG) { dx[base + c] = r * (dy[base + c] * w[c] - x[base + c] * k); }
}

@compute @workgroup_size(WG)
fn backward_dw_partial(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= p.C) { return; }
  let n0 = gid.y * p.rows;
  let n1 = min(n0 + p.rows, p.N);
  var s = 0.0;
  for (var n = n0; n < n1; n++) { s += dy[n * p.C + c] * x[n * p.C + c] * rstd[n]; }
  partials_out[gid.y * p.C + c] = s;
}

@compute @workgroup_size(WG)
fn backward_dw_reduce(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= p.C) { return; }
  var s = 0.0;
  for (var b = 0u; b < p.blocks; b++) { s += partials[b * p.C + c]; }
  dw[c] = s;
}
