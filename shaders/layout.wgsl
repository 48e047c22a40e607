// Copies that move elements between layouts, one thread per element written. Elements are 4-byte words
// (u32 here), so f32 and i32 tensors copy alike.
//   copy_block:     src viewed as (A, Din, C), dst as (A, Dout, C):
//                   dst[a, dst_off + k, c] = src[a, src_off + k, c]  for k < d
//                   (slice: Dout = d; concat: Din = d, one launch per piece; slice backward: Din = d into zeros)
//                   A block row is dc = d*C contiguous words, so strides and offsets are given in words:
//                   src_stride = Din*C, src_off = src_off*C, dst_stride = Dout*C, dst_off = dst_off*C.
//   transpose_copy: src (A, d0, B, d1, C) -> dst (A, d1, B, d0, C)
const WG: u32 = 256u;

struct CopyParams { n: u32, dc: u32, src_stride: u32, src_off: u32, dst_stride: u32, dst_off: u32 }
struct TransposeParams { n: u32, d0: u32, B: u32, d1: u32, C: u32 }

@group(0) @binding(0) var<uniform> cp: CopyParams;
@group(0) @binding(1) var<uniform> tp: TransposeParams;
@group(0) @binding(2) var<storage, read> src: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<u32>;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG + lid;
}

// n = A*dc elements of the block.
@compute @workgroup_size(WG)
fn copy_block(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let i = index(wid, nwg, lid);
  if (i >= cp.n) { return; }
  let a = i / cp.dc;
  let k = i - a * cp.dc;
  dst[a * cp.dst_stride + cp.dst_off + k] = src[a * cp.src_stride + cp.src_off + k];
}

// n = A*d1*B*d0*C elements of dst; i is dst's flat index, decomposed (a, j1, b, j0, c) from the inside out.
@compute @workgroup_size(WG)
fn transpose_copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
  let i = index(wid, nwg, lid);
  if (i >= tp.n) { return; }
  let c = i % tp.C;
  var t = i / tp.C;
  let j0 = t % tp.d0;
  t /= tp.d0;
  let b = t % tp.B;
  t /= tp.B;
  let j1 = t % tp.d1;
  let a = t / tp.d1;
  dst[i] = src[(((a * tp.d0 + j0) * tp.B + b) * tp.d1 + j1) * tp.C + c];
}
