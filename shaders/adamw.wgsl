// The AdamW update (torch.optim.AdamW), one dispatch per param, with the gradient scale of
// clip_grad_norm_ fused in (its norm and factor: shaders/grad_norm.wgsl).
//
//   adamw_update:  g = grad * scale[0]                             (scale: the clip factor, or 1)
//                  param *= decay                                  (decay = 1 - lr * weight_decay)
//                  m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
//                  param -= step_size * m / (sqrt(v) / bc2_sqrt + eps)
//                  step_size = lr / (1 - beta1^t), bc2_sqrt = sqrt(1 - beta2^t), t = the param's step.
//                  1 - beta comes from the CPU in f64: 1 - 0.999 in f32 is off by 5e-5 relative.
//                  stats[0] = max(stats[0], max |param'|), stats[1] = max(stats[1], max |m'|, |v'|) as the
//                  bits of |x| (sign cleared), which order as |x| does and read as f32 are that |x|: Inf or
//                  NaN past any finite value. The trainer reads them with its one readback per step, so a
//                  non-finite or exploding weight is seen without another readback (src/nn/adamw.ts).
//                  Bit tests, not x != x: WGSL may assume that no float is NaN or Inf.
const WG: u32 = 256u;

struct Params {
  n: u32,
  decay: f32,
  beta1: f32,
  beta2: f32,
  one_minus_beta1: f32,
  one_minus_beta2: f32,
  eps: f32,
  step_size: f32,
  bc2_sqrt: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;      // (n)
@group(0) @binding(2) var<storage, read> grad: array<f32>;             // (n)
@group(0) @binding(3) var<storage, read_write> exp_avg: array<f32>;    // (n)
@group(0) @binding(4) var<storage, read_write> exp_avg_sq: array<f32>; // (n)
@group(0) @binding(5) var<storage, read> scale: array<f32>;            // (1)
@group(0) @binding(6) var<storage, read_write> stats: array<atomic<u32>>; // (2): max |param|, max |m|, |v| bits

var<workgroup> red: array<vec2<u32>, WG>;

// |x|'s bits: the sign cleared.
fn abs_bits(x: f32) -> u32 {
  return bitcast<u32>(x) & 0x7fffffffu;
}

@compute @workgroup_size(WG)
fn adamw_update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG + lid;
  var big = vec2<u32>(0u, 0u);
  if (i < p.n) {
    let g = grad[i] * scale[0];
    let m = p.beta1 * exp_avg[i] + p.one_minus_beta1 * g;
    let v = p.beta2 * exp_avg_sq[i] + p.one_minus_beta2 * g * g;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    let w = param[i] * p.decay - p.step_size * (m / (sqrt(v) / p.bc2_sqrt + p.eps));
    param[i] = w;
    big = vec2<u32>(abs_bits(w), max(abs_bits(m), abs_bits(v)));
  }
  // The workgroup's largest, then one atomic per workgroup (uniform control flow for the barriers).
  red[lid] = big;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] = max(red[lid], red[lid + s]); }
    workgroupBarrier();
  }
  if (lid == 0u) {
    atomicMax(&stats[0], red[0].x);
    atomicMax(&stats[1], red[0].y);
  }
}
