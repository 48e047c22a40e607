// The kernels the tensor layer itself needs (src/tensor/tensor.ts): constants, and the in-place accumulation
// of gradients and of biases. Flat f32 arrays of n elements; a of na elements repeats over the leading dims of
// acc (na divides n: na = n for a gradient, na = cols for a bias over the rows of acc).
//   fill:  out[i] = alpha
//   axpy:  acc[i] += alpha * a[i % na]
const WG: u32 = 256u;

struct Params { n: u32, na: u32, alpha: f32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> acc: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = index(wid, nwg, lid);
  if (i >= p.n) { return; }
  out[i] = p.alpha;
}

@compute @workgroup_size(WG)
fn axpy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = index(wid, nwg, lid);
  if (i >= p.n) { return; }
  acc[i] = acc[i] + p.alpha * a[i % p.na];
}
