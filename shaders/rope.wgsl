// Rotary position embedding, Hugging Face convention (rotate_half: the pairs are (i, i + D/2)).
// x, y: (T, H, D) with T tokens (batch folded in), H heads, D = 2 * half; position_ids: (T) i32;
// cos_table, sin_table: (P, half), cos/sin of position * inv_freq[i] (built on the CPU in float64).
//   forward:   y[i]        = x[i] cos - x[i + half] sin
//              y[i + half] = x[i + half] cos + x[i] sin
//   backward:  the rotation by -angle (the transpose):
//              dx[i]        = dy[i] cos + dy[i + half] sin
//              dx[i + half] = dy[i + half] cos - dy[i] sin
// One thread per (t, h, i), i < half. Positions outside [0, P) are clamped into the table (the op checks
// CPU position ids before launch; a GPU tensor of ids must stay below the table's P).
const WG: u32 = 256u;

struct Params { T: u32, H: u32, half: u32, P: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> position_ids: array<i32>; // (T)
@group(0) @binding(2) var<storage, read> cos_table: array<f32>;    // (P, half)
@group(0) @binding(3) var<storage, read> sin_table: array<f32>;    // (P, half)
@group(0) @binding(4) var<storage, read> x: array<f32>;            // (T, H, D)
@group(0) @binding(5) var<storage, read_write> y: array<f32>;      // (T, H, D)
@group(0) @binding(6) var<storage, read> dy: array<f32>;           // (T, H, D)
@group(0) @binding(7) var<storage, read_write> dx: array<f32>;     // (T, H, D)

// `at` of a thread past the end.
const NONE: u32 = 0xffffffffu;

// One rotation: the index of its first element (the second is + half) and cos, sin of its angle.
struct Pair { at: u32, c: f32, s: f32 }

// The pair of thread g = (t * H + h) * half + i, or at = NONE past the end.
fn pair_of(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> Pair {
  let g = (wid.x + wid.y * nwg.x) * WG + lid;
  if (g >= p.T * p.H * p.half) { return Pair(NONE, 0.0, 0.0); }
  let i = g % p.half;
  let th = g / p.half;
  let pos = u32(clamp(position_ids[th / p.H], 0, i32(p.P) - 1));
  let k = pos * p.half + i;
  return Pair(th * 2u * p.half + i, cos_table[k], sin_table[k]);
}

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  let r = pair_of(wid, nwg, lid);
  if (r.at == NONE) { return; }
  let x1 = x[r.at];
  let x2 = x[r.at + p.half];
  y[r.at] = x1 * r.c - x2 * r.s;
  y[r.at + p.half] = x2 * r.c + x1 * r.s;
}

@compute @workgroup_size(WG)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let r = pair_of(wid, nwg, lid);
  if (r.at == NONE) { return; }
  let d1 = dy[r.at];
  let d2 = dy[r.at + p.half];
  dx[r.at] = d1 * r.c + d2 * r.s;
  dx[r.at + p.half] = d2 * r.c - d1 * r.s;
}
