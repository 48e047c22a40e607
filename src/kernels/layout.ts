// Typed launchers for shaders/layout.wgsl: copies between layouts of 4-byte elements (f32, i32). No autograd.
import { grid, launch } from "../gpu/launch.ts";
import { Tensor } from "../tensor/tensor.ts";

const WG = 256;

export interface Block {
  /** Product of the dims before the copied dim. */
  A: number;
  /** Extent of the copied dim in src and in dst. */
  Din: number;
  Dout: number;
  /** Length of the block along the copied dim, and its start in src and in dst. */
  d: number;
  srcOff: number;
  dstOff: number;
  /** Product of the dims after the copied dim. */
  C: number;
}

/** dst (A, Dout, C)[:, dstOff : dstOff + d] = src (A, Din, C)[:, srcOff : srcOff + d], in place. */
export function copyBlock(src: Tensor, dst: Tensor, b: Block): void {
  const n = b.A * b.d * b.C;
  launch("layout", "copy_block", {
    buffers: { src: src.buffer, dst: dst.buffer },
    params: {
      n,
      dc: b.d * b.C,
      src_stride: b.Din * b.C,
      src_off: b.srcOff * b.C,
      dst_stride: b.Dout * b.C,
      dst_off: b.dstOff * b.C,
    },
    workgroups: grid(n, WG),
  });
}

/** x viewed as (A, d0, B, d1, C) -> (A, d1, B, d0, C), returned with `shape`. */
export function transpose(
  x: Tensor,
  dims: { d0: number; B: number; d1: number; C: number },
  shape: readonly number[],
): Tensor {
  const out = Tensor.empty(shape, x.dtype);
  const { d0, B, d1, C } = dims;
  launch("layout", "transpose_copy", {
    buffers: { src: x.buffer, dst: out.buffer },
    params: { n: out.size, d0, B, d1, C },
    workgroups: grid(out.size, WG),
  });
  return out;
}
