// Token embedding. weight: (V, C), ids: (N) i32 (checked on the CPU to lie in [0, V)), out: (N, C).
//   forward:   out[n, c] = weight[ids[n], c]                     one thread per (n, c)
//   backward:  dweight[v, c] = sum over n with ids[n] == v of dy[n, c], added in increasing n: the same
//              bits on every run whatever the repeats (no atomics). One thread per (u, c) over the U
//              distinct ids; rows of ids that do not occur are zero-filled beforehand.
// csr (i32) is the grouping of positions by id, built on the CPU:
//   csr[0, U)                 the distinct ids, increasing
//   csr[U, 2U + 1)            offsets: id csr[u] occurs at positions csr[2U + 1 + k], offsets[u] <= k < offsets[u + 1]
//   csr[2U + 1, 2U + 1 + M)   the positions (M of them), increasing within each id
//   forward_rows: the gather from one row block of a weight stored as blocks (ops/row_blocks.ts): pairs
//              (2K) i32 holds, for the K positions whose id lies in this block, (position n, row of the
//              block); out[n, c] = weight[row, c], one thread per (k, c). The other positions are left
//              to the other blocks' dispatches.
//   forward_packed: the gather from a frozen weight in a packed format (a quantized base's embedding: bf16,
//              GGUF q8_0 … q6_k, nf4, fp4, int8; src/tensor/quant.ts): one thread per 4 elements (n, c..c+3),
//              dequantized by load_weight, which the packed variants (embedding_<format>weight) replace by the
//              format's decoding load. A row (C elements) is whole blocks. forward_rows_packed: forward_rows
//              from a packed row block, the same way.
// W_TYPE: weight's element type per format (f32 here; f16 and the packed formats' u32 in the variants), read
// as f32(weight[i]) by forward and forward_rows (no-ops for f32), which only f32 and f16 weights launch.
// Threads are numbered (wid.x + wid.y * nwg.x) * WG + lid.
const WG: u32 = 256u;
alias W_TYPE = f32; // format of weight; packed formats through load_weight

struct Params { N: u32, C: u32, U: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> weight: array<W_TYPE>;       // (V, C)
@group(0) @binding(2) var<storage, read> ids: array<i32>;             // (N)
@group(0) @binding(3) var<storage, read_write> out: array<f32>;       // (N, C)
@group(0) @binding(4) var<storage, read> csr: array<i32>;             // (2U + 1 + M)
@group(0) @binding(5) var<storage, read> dy: array<f32>;              // (N, C)
@group(0) @binding(6) var<storage, read_write> dweight: array<f32>;   // (V, C), zero where no id occurs
@group(0) @binding(7) var<storage, read> pairs: array<i32>;           // (2K): (position, row of the block)

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  let i = index(wid, nwg, lid);
  if (i >= p.N * p.C) { return; }
  let n = i / p.C;
  out[i] = f32(weight[u32(ids[n]) * p.C + (i - n * p.C)]);
}

// p.N = K pairs.
@compute @workgroup_size(WG)
fn forward_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  let i = index(wid, nwg, lid);
  if (i >= p.N * p.C) { return; }
  let k = i / p.C;
  let c = i - k * p.C;
  out[u32(pairs[2u * k]) * p.C + c] = f32(weight[u32(pairs[2u * k + 1u]) * p.C + c]);
}

// Elements j..j+3 of the weight row of `len` elements at element `base`, each clamped into the row (every read
// of a packed weight goes through here: packed variants replace this function).
fn load_weight(base: u32, j: u32, len: u32) -> vec4<f32> {
  let l = len - 1u;
  return vec4<f32>(f32(weight[base + min(j, l)]), f32(weight[base + min(j + 1u, l)]), f32(weight[base + min(j + 2u, l)]),
                   f32(weight[base + min(j + 3u, l)]));
}

// One thread per (n, 4 columns): ceil(C / 4) threads per position.
@compute @workgroup_size(WG)
fn forward_packed(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
  let i = index(wid, nwg, lid);
  let C4 = (p.C + 3u) / 4u;
  if (i >= p.N * C4) { return; }
  let n = i / C4;
  let c = 4u * (i - n * C4);
  let v = load_weight(u32(ids[n]) * p.C, c, p.C);
  for (var q = 0u; q < 4u; q++) {
    if (c + q < p.C) { out[n * p.C + c + q] = v[q]; }
  }
}

// forward_rows for a packed block: p.N = K pairs; one thread per (k, 4 columns).
@compute @workgroup_size(WG)
fn forward_rows_packed(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
  let i = index(wid, nwg, lid);
  let C4 = (p.C + 3u) / 4u;
  if (i >= p.N * C4) { return; }
  let k = i / C4;
  let c = 4u * (i - k * C4);
  let n = u32(pairs[2u * k]);
  let v = load_weight(u32(pairs[2u * k + 1u]) * p.C, c, p.C);
  for (var q = 0u; q < 4u; q++) {
    if (c + q < p.C) { out[n * p.C + c + q] = v[q]; }
  }
}

@compute @workgroup_size(WG)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let i = index(wid, nwg, lid);
  if (i >= p.U * p.C) { return; }
  let u = i / p.C;
  let c = i - u * p.C;
  let positions = 2u * p.U + 1u;
  var s = 0.0;
  for (var k = u32(csr[p.U + u]); k < u32(csr[p.U + u + 1u]); k++) {
    s += dy[u32(csr[positions + k]) * p.C + c];
  }
  dweight[u32(csr[u]) * p.C + c] = s;
}
