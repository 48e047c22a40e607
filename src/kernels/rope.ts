// Typed launchers for shaders/rope.wgsl: rotary position embedding of x (T, H, D) on its first 2 * half
// dims per head (half = the tables' width), the rest passed through. No autograd.
import { grid, launch } from "../gpu/launch.ts";
import { Tensor } from "../tensor/tensor.ts";

const WG = 256;

export interface RopeArgs {
  /** i32 (T). */
  position_ids: Tensor;
  /** f32 (P, half) each: half rotated pairs per head, 2 * half <= D. */
  cos: Tensor;
  sin: Tensor;
  T: number;
  H: number;
  D: number;
}

function run(entry: "forward" | "backward", io: Record<string, GPUBuffer>, a: RopeArgs): void {
  const [P, half] = a.cos.shape as [number, number];
  launch("rope", entry, {
    buffers: { position_ids: a.position_ids.buffer, cos_table: a.cos.buffer, sin_table: a.sin.buffer, ...io },
    params: { T: a.T, H: a.H, half, P, D: a.D },
    workgroups: grid(a.T * a.H * (a.D - half), WG),
  });
}

/** y = x rotated by position * inv_freq per (i, i + half) pair, dims from 2 * half on copied. */
export function forward(x: Tensor, a: RopeArgs): Tensor {
  const y = Tensor.empty(x.shape);
  run("forward", { x: x.buffer, y: y.buffer }, a);
  return y;
}

/** dx = dy rotated back (by -angle), dims from 2 * half on copied. */
export function backward(dy: Tensor, a: RopeArgs): Tensor {
  const dx = Tensor.empty(dy.shape);
  run("backward", { dy: dy.buffer, dx: dx.buffer }, a);
  return dx;
}
