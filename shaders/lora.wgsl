// LoRA linear (PEFT): y = x Wᵀ + b + s · dropout(x) Aᵀ Bᵀ. The three products run on shaders/matmul.wgsl (the
// adapter's accumulating into y); this file holds the dropout mask and the seeded uniform init of A (the bias add is
// shaders/tensor.wgsl's axpy).
//
// Random bits come from Philox4x32-10 (Salmon et al. 2011, Random123), a counter-based generator: element
// i of a tensor takes word i % 4 of philox(counter = (i / 4, step, stream, 0), key = (seed, 0)). A mask is a
// pure function of (seed, step, i), so backward regenerates it instead of storing it, and a step replays
// bit for bit on any adapter (integer arithmetic only).
//   dropout:           h = x · keep / (1 - p)                keep = bits >= round(p · 2^32) (threshold)
//   dropout_backward:  dx += dh · keep / (1 - p)             (scale = 1 / (1 - p))
//   init_uniform:      out = scale · (2u - 1), u in [0, 1)   (u = (bits >> 8) · 2^-24; scale = bound)
const WG: u32 = 256u;

const STREAM_DROPOUT: u32 = 0u;
const STREAM_INIT: u32 = 1u;

struct Params { n: u32, seed: u32, step: u32, threshold: u32, scale: f32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> h: array<f32>;
@group(0) @binding(3) var<storage, read> dh: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const PHILOX_M0: u32 = 0xD2511F53u;
const PHILOX_M1: u32 = 0xCD9E8D57u;
const PHILOX_W0: u32 = 0x9E3779B9u;
const PHILOX_W1: u32 = 0xBB67AE85u;

// High 32 bits of the 64-bit product a·b, from 16-bit halves (WGSL has no u64). The middle sum fits in
// 32 bits: at most (2^16 - 1) + (2^16 - 1) + (2^16 - 1)^2 = 2^32 - 1.
fn mul_hi(a: u32, b: u32) -> u32 {
  let a0 = a & 0xFFFFu;
  let a1 = a >> 16u;
  let b0 = b & 0xFFFFu;
  let b1 = b >> 16u;
  let mid = ((a0 * b0) >> 16u) + ((a1 * b0) & 0xFFFFu) + a0 * b1;
  return a1 * b1 + ((a1 * b0) >> 16u) + (mid >> 16u);
}

// Philox4x32 with 10 rounds; round r uses key + r·(W0, W1).
fn philox(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
  var c = counter;
  var k = key;
  for (var r = 0u; r < 10u; r++) {
    let hi0 = mul_hi(PHILOX_M0, c.x);
    let hi1 = mul_hi(PHILOX_M1, c.z);
    c = vec4<u32>(hi1 ^ c.y ^ k.x, PHILOX_M1 * c.z, hi0 ^ c.w ^ k.y, PHILOX_M0 * c.x);
    k += vec2<u32>(PHILOX_W0, PHILOX_W1);
  }
  return c;
}

fn bits(group: u32, stream: u32) -> vec4<u32> {
  return philox(vec4<u32>(group, p.step, stream, 0u), vec2<u32>(p.seed, 0u));
}

// keep / (1 - p) for elements 4·group .. 4·group + 3.
fn mask(group: u32) -> vec4<f32> {
  return select(vec4<f32>(), vec4<f32>(p.scale), bits(group, STREAM_DROPOUT) >= vec4<u32>(p.threshold));
}

fn group_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG + lid;
}

// One thread per 4 elements (one Philox call).
@compute @workgroup_size(WG)
fn dropout(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  let g = group_index(wid, nwg, lid);
  if (4u * g >= p.n) { return; }
  let m = mask(g);
  for (var j = 0u; j < 4u; j++) {
    let i = 4u * g + j;
    if (i < p.n) { h[i] = x[i] * m[j]; }
  }
}

@compute @workgroup_size(WG)
fn dropout_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
  let g = group_index(wid, nwg, lid);
  if (4u * g >= p.n) { return; }
  let m = mask(g);
  for (var j = 0u; j < 4u; j++) {
    let i = 4u * g + j;
    if (i < p.n) { dx[i] = dx[i] + dh[i] * m[j]; }
  }
}

@compute @workgroup_size(WG)
fn init_uniform(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  let g = group_index(wid, nwg, lid);
  if (4u * g >= p.n) { return; }
  let u = vec4<f32>(bits(g, STREAM_INIT) >> vec4<u32>(8u)) * (1.0 / 16777216.0);
  let v = p.scale * (2.0 * u - 1.0);
  for (var j = 0u; j < 4u; j++) {
    let i = 4u * g + j;
    if (i < p.n) { out[i] = v[j]; }
  }
}
