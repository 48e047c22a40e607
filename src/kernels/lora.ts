// Typed launchers for shaders/lora.wgsl: the Philox dropout mask (applied forward and backward) and the seeded
// uniform init. No autograd.
import { grid, launch } from "../gpu/launch.ts";
import { Tensor } from "../tensor/tensor.ts";

const WG = 256;

/** A dropout mask, a pure function of (seed, step, element index): p drops, 1/(1 - p) scales what it keeps. */
export interface DropoutMask {
  p: number;
  seed: number;
  step: number;
}

/** Elements whose 32 random bits fall below this are dropped: P(drop) = threshold / 2^32 = p to within 2^-33. */
function dropThreshold(p: number): number {
  return Math.min(2 ** 32 - 1, Math.round(p * 2 ** 32));
}

function maskParams(n: number, m: DropoutMask) {
  return { n, seed: m.seed, step: m.step, threshold: dropThreshold(m.p), scale: 1 / (1 - m.p) };
}

/** h = x · keep / (1 - p). */
export function dropout(x: Tensor, m: DropoutMask): Tensor {
  const h = Tensor.empty(x.shape);
  launch("lora", "dropout", {
    buffers: { x: x.buffer, h: h.buffer },
    params: maskParams(x.size, m),
    workgroups: grid(Math.ceil(x.size / 4), WG),
  });
  return h;
}

/** dx += dh · keep / (1 - p), in place: the adapter path's share of dx through the same mask. */
export function dropoutBackwardInto(dx: Tensor, dh: Tensor, m: DropoutMask): void {
  launch("lora", "dropout_backward", {
    buffers: { dh: dh.buffer, dx: dx.buffer },
    params: maskParams(dx.size, m),
    workgroups: grid(Math.ceil(dx.size / 4), WG),
  });
}

/** Values uniform in [-bound, bound), from Philox's init stream of `seed`. */
export function uniform(shape: readonly number[], bound: number, seed: number): Tensor {
  const out = Tensor.empty(shape);
  launch("lora", "init_uniform", {
    buffers: { out: out.buffer },
    params: { n: out.size, seed, step: 0, threshold: 0, scale: bound },
    workgroups: grid(Math.ceil(out.size / 4), WG),
  });
  return out;
}
