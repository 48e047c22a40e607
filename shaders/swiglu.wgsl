// SwiGLU gating of the Llama MLP, fused: out = silu(gate) * up, all (n) flat.
//   forward:             out = gate * s * up,  s = sigmoid(gate)
//   backward:            dgate = dy * up * s * (1 + gate * (1 - s)),  dup = dy * gate * s
//   backward_gate / _up: one of the two, when the other input needs no gradient.
// One thread per element, WG per workgroup (index = (wid.x + wid.y * nwg.x) * WG + lid).
const WG: u32 = 256u;

struct Params { n: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gate: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> dgate: array<f32>;
@group(0) @binding(6) var<storage, read_write> dup: array<f32>;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG + lid;
}

// 1 / (1 + e^-g): e^-g overflows to inf for g < -88 and s is then exactly 0 (no NaN).
fn sigmoid(g: f32) -> f32 {
  return 1.0 / (1.0 + exp(-g));
}

// d silu(g) / dg = s (1 + g (1 - s)).
fn dsilu(g: f32) -> f32 {
  let s = sigmoid(g);
  return s * (1.0 + g * (1.0 - s));
}

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  let i = index(wid, nwg, lid);
  if (i >= p.n) { return; }
  let g = gate[i];
  out[i] = g * sigmoid(g) * up[i];
}

@compute @workgroup_size(WG)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let i = index(wid, nwg, lid);
  if (i >= p.n) { return; }
  let g = gate[i];
  let s = sigmoid(g);
  dgate[i] = dy[i] * up[i] * s * (1.0 + g * (1.0 - s));
  dup[i] = dy[i] * g * s;
}

@compute @workgroup_size(WG)
fn backward_gate(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
  let i = index(wid, nwg, lid);
  if (i >= p.n) { return; }
  dgate[i] = dy[i] * up[i] * dsilu(gate[i]);
}

@compute @workgroup_size(WG)
fn backward_up(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
  let i = index(wid, nwg, lid);
  if (i >= p.n) { return; }
  let g = gate[i];
  dup[i] = dy[i] * g * sigmoid(g);
}
