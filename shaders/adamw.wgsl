// The AdamW update (torch.optim.AdamW), one dispatch per param, with the gradient scale of
// clip_grad_norm_ fused in (its norm and factor: shaders/grad_norm.wgsl).
//
//   adamw_update:  g = grad * scale[0]                             (scale: the clip factor, or 1)
//                  param *= decay                                  (decay = 1 - lr * weight_decay)
//                  m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
//                  param -= step_size * m / (sqrt(v) / bc2_sqrt + eps)
//                  step_size = lr / (1 - beta1^t), bc2_sqrt = sqrt(1 - beta2^t), t = the param's step.
//                  1 - beta comes from the CPU in f64: 1 - 0.999 in f32 is off by 5e-5 relative.
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

@compute @workgroup_size(WG)
fn adamw_update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG + lid;
  if (i >= p.n) { return; }
  let g = grad[i] * scale[0];
  let m = p.beta1 * exp_avg[i] + p.one_minus_beta1 * g;
  let v = p.beta2 * exp_avg_sq[i] + p.one_minus_beta2 * g * g;
  exp_avg[i] = m;
  exp_avg_sq[i] = v;
  param[i] = param[i] * p.decay - p.step_size * (m / (sqrt(v) / p.bc2_sqrt + p.eps));
}
