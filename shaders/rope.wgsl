// Rotary position embedding, Hugging Face convention (rotate_half: the pairs are (i, i + half)), on the
// first 2 * half dims of each head (partial rotary, Phi-3's rotary_ndims); dims 2 * half .. D pass through.
// x, y: (T, H, D) with T tokens (batch folded in), H heads, D >= 2 * half; position_ids: (T) i32;
// cos_table, sin_table: (P, half), cos/sin of position * inv_freq[i] (built on the CPU in float64, times
// longrope's attention factor where there is one).
//   forward:   y[i]        = x[i] cos - x[i + half] sin
//              y[i + half] = x[i + half] cos + x[i] sin
//              y[j]        = x[j]                          (2 * half <= j < D)
//   backward:  the rotation by -angle (the transpose), identity on the passed dims:
//              dx[i]        = dy[i] cos + dy[i + half] sin
//              dx[i + half] = dy[i + half] cos - dy[i] sin
//              dx[j]        = dy[j]
// One thread per (t, h, lane), lane < L = D - half: lanes below half are a pair, the others copy one
// passed dim (none when the rotary dims are the whole head). Positions outside [0, P) are clamped into the
// table (the op checks CPU position ids before launch; a GPU tensor of ids must stay below the table's P).
const WG: u32 = 256u;

struct Params { T: u32, H: u32, half: u32, P: u32, D: u32 }

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

// One thread's work: a rotation (rot: the index of its first element, the second is + half, and cos, sin of
// its angle) or a copy of the element at `at`.
struct Lane { at: u32, rot: bool, c: f32, s: f32 }

// The lane of thread g = (t * H + h) * L + lane, or at = NONE past the end.
fn lane_of(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> Lane {
  let L = p.D - p.half;
  let g = (wid.x + wid.y * nwg.x) * WG + lid;
  if (g >= p.T * p.H * L) { return Lane(NONE, false, 0.0, 0.0); }
  let i = g % L;
  let th = g / L;
  if (i >= p.half) { return Lane(th * p.D + p.half + i, false, 0.0, 0.0); }
  let pos = u32(clamp(position_ids[th / p.H], 0, i32(p.P) - 1));
  let k = pos * p.half + i;
  return Lane(th * p.D + i, true, cos_table[k], sin_table[k]);
}

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  let r = lane_of(wid, nwg, lid);
  if (r.at == NONE) { return; }
  if (!r.rot) {
    y[r.at] = x[r.at];
    return;
  }
  let x1 = x[r.at];
  let x2 = x[r.at + p.half];
  y[r.at] = x1 * r.c - x2 * r.s;
  y[r.at + p.half] = x2 * r.c + x1 * r.s;
}

@compute @workgroup_size(WG)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let r = lane_of(wid, nwg, lid);
  if (r.at == NONE) { return; }
  if (!r.rot) {
    dx[r.at] = dy[r.at];
    return;
  }
  let d1 = dy[r.at];
  let d2 = dy[r.at + p.half];
  dx[r.at] = d1 * r.c + d2 * r.s;
  dx[r.at + p.half] = d2 * r.c - d1 * r.s;
}
