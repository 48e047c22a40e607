// Typed launchers for shaders/rmsnorm.wgsl: RMSNorm over the last dim, x viewed as (N, C). No autograd.
import { gpu } from "../gpu/device.ts";
import { grid, launch, rowWorkgroupSize } from "../gpu/launch.ts";
import { Tensor } from "../tensor/tensor.ts";

/** Threads per workgroup of the column (dw) kernels. */
const WG = 256;
/** Rows summed by one thread of backward_dw_partial (more when the blocks would pass the grid limit). */
const ROWS = 64;

/** y (N, C) = x * rstd * w and rstd (N) = 1 / sqrt(mean(x^2) + eps). */
export function forward(x: Tensor, w: Tensor, N: number, C: number, eps: number): { y: Tensor; rstd: Tensor } {
  const y = Tensor.empty(x.shape);
  const rstd = Tensor.empty([N]);
  launch("rmsnorm", "forward", {
    consts: { WG: rowWorkgroupSize(C) },
    buffers: { x: x.buffer, w: w.buffer, y: y.buffer, rstd_out: rstd.buffer },
    params: { N, C, eps, rows: 0, blocks: 0 },
    workgroups: grid(N, 1),
  });
  return { y, rstd };
}

/** dx (N, C) = rstd * (dy * w - x * rstd^2 * mean(dy * w * x)). */
export function backwardDx(dy: Tensor, x: Tensor, w: Tensor, rstd: Tensor, N: number, C: number): Tensor {
  const dx = Tensor.empty(x.shape);
  launch("rmsnorm", "backward_dx", {
    consts: { WG: rowWorkgroupSize(C) },
    buffers: { dy: dy.buffer, x: x.buffer, w: w.buffer, rstd: rstd.buffer, dx: dx.buffer },
    params: { N, C, eps: 0, rows: 0, blocks: 0 },
    workgroups: grid(N, 1),
  });
  return dx;
}

/** dw (C) = sum_n dy * x * rstd: per-block partial sums in row order, then the blocks in order (deterministic). */
export function backwardDw(dy: Tensor, x: Tensor, rstd: Tensor, N: number, C: number): Tensor {
  const dw = Tensor.empty([C]);
  const maxGroups = gpu().info.limits.maxComputeWorkgroupsPerDimension;
  const rows = Math.max(ROWS, Math.ceil(N / maxGroups));
  const blocks = Math.max(1, Math.ceil(N / rows));
  const cols = Math.ceil(C / WG);
  const partials = blocks > 1 ? Tensor.empty([blocks, C]) : dw;
  const params = { N, C, eps: 0, rows, blocks };
  launch("rmsnorm", "backward_dw_partial", {
    buffers: { dy: dy.buffer, x: x.buffer, rstd: rstd.buffer, partials_out: partials.buffer },
    params,
    workgroups: [cols, blocks],
  });
  if (partials !== dw) {
    launch("rmsnorm", "backward_dw_reduce", {
      buffers: { partials: partials.buffer, dw: dw.buffer },
      params,
      workgroups: [cols],
    });
    partials.dispose();
  }
  return dw;
}
