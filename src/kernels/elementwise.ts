// Typed launchers for shaders/elementwise.wgsl (fill and axpy: src/tensor/tensor.ts). No autograd here.
import { grid, launch } from "../gpu/launch.ts";
import { Tensor } from "../tensor/tensor.ts";

const WG = 256;
export const BINARY = { add: 0, sub: 1, mul: 2, div: 3 } as const;
export const UNARY = { neg: 0, exp: 1, log: 2, silu: 3, gelu: 4, scale: 5, softcap: 6 } as const;
export type BinaryOp = keyof typeof BINARY;
export type UnaryOp = keyof typeof UNARY;

/** out = a OP b, where the smaller operand repeats over the larger's leading dims. */
export function binary(op: BinaryOp, a: Tensor, b: Tensor, shape: readonly number[]): Tensor {
  const out = Tensor.empty(shape);
  const n = out.size;
  launch("elementwise", "binary", {
    consts: { OP: BINARY[op] },
    buffers: { a: a.buffer, b: b.buffer, out: out.buffer },
    params: { n, na: a.size, nb: b.size, alpha: 0 },
    workgroups: grid(n, WG),
  });
  return out;
}

export function unary(op: UnaryOp, a: Tensor, alpha = 0): Tensor {
  const out = Tensor.empty(a.shape);
  launch("elementwise", "unary", {
    consts: { OP: UNARY[op] },
    buffers: { a: a.buffer, out: out.buffer },
    params: { n: a.size, na: a.size, nb: a.size, alpha },
    workgroups: grid(a.size, WG),
  });
  return out;
}

/** dy * f'(a) for log, silu, gelu and softcap (alpha: the cap). */
export function unaryBackward(op: "log" | "silu" | "gelu" | "softcap", a: Tensor, dy: Tensor, alpha = 0): Tensor {
  const da = Tensor.empty(a.shape);
  launch("elementwise", "unary_backward", {
    consts: { OP: UNARY[op] },
    buffers: { a: a.buffer, dy: dy.buffer, da: da.buffer },
    params: { n: a.size, na: a.size, nb: a.size, alpha },
    workgroups: grid(a.size, WG),
  });
  return da;
}

/** Sums a over its leading elements down to `shape` (a suffix of a's shape). */
export function sumLeading(a: Tensor, shape: readonly number[]): Tensor {
  const out = Tensor.empty(shape);
  launch("elementwise", "sum_leading", {
    buffers: { a: a.buffer, out: out.buffer },
    params: { n: out.size, na: a.size, nb: out.size, alpha: 0 },
    workgroups: grid(out.size, WG),
  });
  return out;
}
