// The global gradient norm and the clip factor of torch.nn.utils.clip_grad_norm_, without readback.
//
//   grad_sumsq:  partials[slot + k*G + j] = sum of g_k[i]^2 over the i that group j of tensor k visits,
//                for up to K gradients per dispatch (workgroups (G, count): tensor k = wid.y, its groups
//                j = wid.x stride over it by G*WG). K = 7 keeps the dispatch within WebGPU's default of
//                8 storage buffers per stage (7 gradients + partials).
//   grad_norm:   norm = sqrt(sum of partials[0..total)); clip = min(1, max_norm / (norm + 1e-6)), as
//                torch's clamp(max=1): a NaN norm gives a NaN clip. One workgroup; fixed order, so the
//                result is deterministic (no atomics). The optimizer's step multiplies clip into its
//                update (src/nn/optimizer.ts).
const WG: u32 = 256u;

struct SumsqParams {
  n0: u32, n1: u32, n2: u32, n3: u32, n4: u32, n5: u32, n6: u32, // lengths of g0..g6 (0 past count)
  slot: u32, // this dispatch's first slot in partials
}

struct NormParams {
  total: u32, // slots to sum
  max_norm: f32,
}

// grad_sumsq (partials is read back by grad_norm)
@group(0) @binding(0) var<uniform> sq: SumsqParams;
@group(0) @binding(1) var<storage, read> g0: array<f32>;
@group(0) @binding(2) var<storage, read> g1: array<f32>;
@group(0) @binding(3) var<storage, read> g2: array<f32>;
@group(0) @binding(4) var<storage, read> g3: array<f32>;
@group(0) @binding(5) var<storage, read> g4: array<f32>;
@group(0) @binding(6) var<storage, read> g5: array<f32>;
@group(0) @binding(7) var<storage, read> g6: array<f32>;
@group(0) @binding(8) var<storage, read_write> partials: array<f32>;   // (slots)
// grad_norm
@group(0) @binding(9) var<uniform> np: NormParams;
@group(0) @binding(10) var<storage, read_write> norm_out: array<f32>;  // (1)
@group(0) @binding(11) var<storage, read_write> clip_out: array<f32>;  // (1)

var<workgroup> red: array<f32, WG>;

// The workgroup's sum of v, in a fixed tree order. Called by every thread (uniform control flow).
fn workgroup_sum(v: f32, lid: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  return red[0];
}

fn length_of(k: u32) -> u32 {
  switch k {
    case 0u: { return sq.n0; }
    case 1u: { return sq.n1; }
    case 2u: { return sq.n2; }
    case 3u: { return sq.n3; }
    case 4u: { return sq.n4; }
    case 5u: { return sq.n5; }
    default: { return sq.n6; }
  }
}

fn grad_at(k: u32, i: u32) -> f32 {
  switch k {
    case 0u: { return g0[i]; }
    case 1u: { return g1[i]; }
    case 2u: { return g2[i]; }
    case 3u: { return g3[i]; }
    case 4u: { return g4[i]; }
    case 5u: { return g5[i]; }
    default: { return g6[i]; }
  }
}

@compute @workgroup_size(WG)
fn grad_sumsq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let k = wid.y;
  let n = length_of(k);
  var s = 0.0;
  for (var i = wid.x * WG + lid; i < n; i += nwg.x * WG) {
    let g = grad_at(k, i);
    s += g * g;
  }
  let total = workgroup_sum(s, lid);
  if (lid == 0u) { partials[sq.slot + k * nwg.x + wid.x] = total; }
}

@compute @workgroup_size(WG)
fn grad_norm(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  for (var i = lid; i < np.total; i += WG) { s += partials[i]; }
  let total = workgroup_sum(s, lid);
  if (lid == 0u) {
    let norm = sqrt(total);
    let c = np.max_norm / (norm + 1e-6);
    norm_out[0] = norm;
    clip_out[0] = select(c, 1.0, c > 1.0);
  }
}
