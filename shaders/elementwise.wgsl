// Elementwise kernels over flat f32 arrays of n elements (fill and the in-place axpy are shaders/tensor.wgsl's).
// Broadcasting over leading dims: an operand of na (nb) elements repeats every na (nb) elements of the output,
// so its index is i % na (i % nb).
//   binary:          out = a OP b                 OP: 0 add, 1 sub, 2 mul, 3 div
//   unary:           out = f(a)                   OP: 0 neg, 1 exp, 2 log, 3 silu, 4 gelu, 5 scale (alpha*a),
//                                                     6 softcap (alpha * tanh(a / alpha), alpha = the cap)
//   unary_backward:  da = dy * f'(a)              log: 1/a,
//                                                 silu: s(1 + a(1 - s)) with s = sigmoid(a),
//                                                 gelu: Phi(a) + a phi(a) (exact, erf-based GELU),
//                                                 softcap: 1 - tanh^2(a / alpha) = 4e / (1 + e)^2, e = exp(-2|a / alpha|)
//   sum_leading:     out[j] = sum_r a[r*n + j]    (gradient of an operand broadcast over leading dims)
const OP: u32 = 0u;
const WG: u32 = 256u;

struct Params { n: u32, na: u32, nb: u32, alpha: f32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read_write> da: array<f32>;

const SQRT1_2: f32 = 0.7071067811865476;
const INV_SQRT_2PI: f32 = 0.3989422804014327;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG + lid;
}

fn sigmoid(x: f32) -> f32 {
  return 1.0 / (1.0 + exp(-x));
}

// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), odd-extended.
fn erf_approx(x: f32) -> f32 {
  let t = 1.0 / (1.0 + 0.3275911 * abs(x));
  let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
  let r = 1.0 - poly * exp(-x * x);
  return select(-r, r, x >= 0.0);
}

// tanh from e^(-2|u|) in (0, 1]: no overflow (a builtin tanh may be (e^2u - 1) / (e^2u + 1), NaN past u = 44).
fn tanh_stable(u: f32) -> f32 {
  let e = exp(-2.0 * abs(u));
  let t = (1.0 - e) / (1.0 + e);
  return select(-t, t, u >= 0.0);
}

@compute @workgroup_size(WG)
fn binary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  let i = index(wid, nwg, lid);
  if (i >= p.n) { return; }
  let x = a[i % p.na];
  let z = b[i % p.nb];
  var r: f32;
  switch OP {
    case 0u: { r = x + z; }
    case 1u: { r = x - z; }
    case 2u: { r = x * z; }
    default: { r = x / z; }
  }
  out[i] = r;
}

@compute @workgroup_size(WG)
fn unary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
  let i = index(wid, nwg, lid);
  if (i >= p.n) { return; }
  let x = a[i];
  var r: f32;
  switch OP {
    case 0u: { r = -x; }
    case 1u: { r = exp(x); }
    case 2u: { r = log(x); }
    case 3u: { r = x * sigmoid(x); }
    case 4u: { r = 0.5 * x * (1.0 + erf_approx(x * SQRT1_2)); }
    case 6u: { r = p.alpha * tanh_stable(x / p.alpha); }
    default: { r = p.alpha * x; }
  }
  out[i] = r;
}

@compute @workgroup_size(WG)
fn unary_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
  let i = index(wid, nwg, lid);
  if (i >= p.n) { return; }
  let g = dy[i];
  var r: f32;
  switch OP {
    case 2u: { r = g / a[i]; }
    case 3u: {
      let x = a[i];
      let s = sigmoid(x);
      r = g * s * (1.0 + x * (1.0 - s));
    }
    case 6u: {
      // 1 - tanh^2 u = 4e / (1 + e)^2 with e = exp(-2|u|): no cancellation where tanh saturates.
      let e = exp(-2.0 * abs(a[i] / p.alpha));
      let d = 1.0 + e;
      r = g * 4.0 * e / (d * d);
    }
    default: {
      let x = a[i];
      r = g * (0.5 * (1.0 + erf_approx(x * SQRT1_2)) + x * INV_SQRT_2PI * exp(-0.5 * x * x));
    }
  }
  da[i] = r;
}

// n columns, na = rows * n elements of a.
@compute @workgroup_size(WG)
fn sum_leading(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
  let j = index(wid, nwg, lid);
  if (j >= p.n) { return; }
  var s = 0.0;
  for (var k = j; k < p.na; k += p.n) { s += a[k]; }
  out[j] = s;
}
