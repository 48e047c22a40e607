// Gated MLP activations, fused: out = act(gate) * up, all (n) flat. ACT picks the activation:
//   ACT 0, SwiGLU (Llama):  act = silu(g) = g s,  s = sigmoid(g);          act'(g) = s (1 + g (1 - s))
//   ACT 1, GeGLU (Gemma):   act = gelu_tanh(g) = 0.5 g (1 + tanh(u)),  u = k (g + 0.044715 g^3), k = sqrt(2/pi)
//                           (transformers' GELUTanh, "gelu_pytorch_tanh")
//                           act'(g) = 0.5 (1 + tanh u) + 0.5 g (1 - tanh^2 u) k (1 + 3 * 0.044715 g^2)
//                           both through 0.5 (1 + tanh u) = sigmoid(2u) =: q and 1 - tanh^2 u = 4 q (1 - q): no
//                           cancellation in 1 + tanh u for negative u (act = g q, act' = q + 2 g q (1 - q) k (...))
//   forward:             out = act(gate) * up
//   backward:            dgate = dy * up * act'(gate),  dup = dy * act(gate)
//   backward_gate / _up: one of the two, when the other input needs no gradient.
// One thread per element, WG per workgroup (index = (wid.x + wid.y * nwg.x) * WG + lid).
const WG: u32 = 256u;
const ACT: u32 = 0u;

struct Params { n: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gate: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> dgate: array<f32>;
@group(0) @binding(6) var<storage, read_write> dup: array<f32>;

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;
const GELU_C: f32 = 0.044715;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG + lid;
}

// 1 / (1 + e^-g): e^-g overflows to inf for g < -88 and s is then exactly 0 (no NaN).
fn sigmoid(g: f32) -> f32 {
  return 1.0 / (1.0 + exp(-g));
}

// 0.5 (1 + tanh u) = sigmoid(2u) of gelu_tanh's u = k (g + 0.044715 g^3).
fn gelu_q(g: f32) -> f32 {
  return sigmoid(2.0 * SQRT_2_OVER_PI * (g + GELU_C * g * g * g));
}

fn act(g: f32) -> f32 {
  if (ACT == 1u) {
    return g * gelu_q(g);
  }
  return g * sigmoid(g);
}

fn dact(g: f32) -> f32 {
  if (ACT == 1u) {
    let q = gelu_q(g);
    return q + 2.0 * g * q * (1.0 - q) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * g * g);
  }
  let s = sigmoid(g);
  return s * (1.0 + g * (1.0 - s));
}

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  let i = index(wid, nwg, lid);
  if (i >= p.n) { return; }
  out[i] = act(gate[i]) * up[i];
}

@compute @workgroup_size(WG)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let i = index(wid, nwg, lid);
  if (i >= p.n) { return; }
  let g = gate[i];
  if (ACT == 1u) {
    dgate[i] = dy[i] * up[i] * dact(g);
    dup[i] = dy[i] * act(g);
    return;
  }
  let s = sigmoid(g);
  dgate[i] = dy[i] * up[i] * s * (1.0 + g * (1.0 - s));
  dup[i] = dy[i] * g * s;
}

@compute @workgroup_size(WG)
fn backward_gate(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
  let i = index(wid, nwg, lid);
  if (i >= p.n) { return; }
  dgate[i] = dy[i] * up[i] * dact(gate[i]);
}

@compute @workgroup_size(WG)
fn backward_up(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
  let i = index(wid, nwg, lid);
  if (i >= p.n) { return; }
  dup[i] = dy[i] * act(gate[i]);
}
