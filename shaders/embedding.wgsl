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
// Threads are numbered (wid.x + wid.y * nwg.x) * WG + lid.
const WG: u32 = 256u;

struct Params { N: u32, C: u32, U: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> weight: array<f32>;          // (V, C)
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
  out[i] = weight[u32(ids[n]) * p.C + (i - n * p.C)];
}

// p.N = K pairs.
@compute @workgroup_size(WG)
fn forward_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  let i = index(wid, nwg, lid);
  if (i >= p.N * p.C) { return; }
  let k = i / p.C;
  let c = i - k * p.C;
  out[u32(pairs[2u * k]) * p.C + c] = weight[u32(pairs[2u * k + 1u]) * p.C + c];
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
