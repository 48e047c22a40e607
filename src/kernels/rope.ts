// Typed launchers for shaders/rope.wgsl: rotary position embedding of x (T, H, D). No autograd.
import { grid, launch } from "../gpu/launch.ts";
import { Tensor } from "../tensor/tensor.ts";

const WG = 256;

export interface RopeArgs {
  /** i32 (T). */
  position_ids: Tensor;
  /** f32 (P, D/2) each. */
  cos: Tensor;
  sin: Tensor;
  T: number;
  H: number;
  D: number;
}

function run(entry: "forward" | "backward", io: Record<string, GPUBuffer>, a: RopeArgs): void {
  const half = a.D / 2;
  launch("rope", entry, {
    buffers: { position_ids: a.position_ids.buffer, cos_table: a.cos.buffer, sin_table: a.sin.buffer, ...io },
    params: { T: a.T, H: a.H, half, P: a.cos.shape[0]! },
    workgroups: grid(a.T * a.H * half, WG),
  });
}

/** y = x rotated by position * inv_freq per (i, i + D/2) pair. */
export function forward(x: Tensor, a: RopeArgs): Tensor {
  const y = Tensor.empty(x.shape);
  run("forward", { x: x.buffer, y: y.buffer }, a);
  return y;
}

/** dx = dy rotated back (by -angle). */
export function backward(dy: Tensor, a: RopeArgs): Tensor {
  const dx = Tensor.empty(dy.shape);
  run("backward", { dy: dy.buffer, dx: dx.buffer }, a);
  return dx;
}
