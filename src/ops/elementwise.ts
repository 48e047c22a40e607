// Elementwise ops with broadcasting over leading dims, and their gradients.
import * as K from "../kernels/elementwise.ts";
import { record, type Tensor } from "../tensor/tensor.ts";

/**
 * The output shape of a binary op: the operands' shapes must be equal, or the smaller one (leading 1s
 * dropped) must be a suffix of the larger, which it then repeats over (e.g. [B, T, C] + [C]).
 */
export function broadcastShape(op: string, a: readonly number[], b: readonly number[]): readonly number[] {
  const strip = (s: readonly number[]) => {
    const i = s.findIndex((d) => d !== 1);
    return i < 0 ? [] : s.slice(i);
  };
  const [big, small] = numelOf(a) >= numelOf(b) ? [a, b] : [b, a];
  const s = strip(small);
  const ok = s.length <= big.length && s.every((d, i) => d === big[big.length - s.length + i]);
  if (!ok) {
    throw new Error(`${op}: shapes [${a.join(", ")}] and [${b.join(", ")}] do not broadcast (only over leading dims)`);
  }
  return big;
}

function numelOf(s: readonly number[]): number {
  return s.reduce((x, y) => x * y, 1);
}

/** dy summed down to `like`'s shape when `like` was broadcast. */
function unbroadcast(dy: Tensor, like: Tensor): Tensor {
  return like.size === dy.size ? dy : K.sumLeading(dy, like.shape);
}

function binaryOp(op: K.BinaryOp, a: Tensor, b: Tensor): Tensor {
  const shape = broadcastShape(op, a.shape, b.shape);
  const out = K.binary(op, a, b, shape);
  switch (op) {
    // d(a+b) = dy, dy
    case "add":
      return record(out, op, [a, b], (dy) => [unbroadcast(dy, a), unbroadcast(dy, b)]);
    // d(a-b) = dy, -dy
    case "sub":
      return record(out, op, [a, b], (dy, needs) => [
        unbroadcast(dy, a),
        needs[1] ? reduceThen(K.unary("scale", dy, -1), b) : null,
      ]);
    // d(ab) = dy b, dy a
    case "mul":
      return record(
        out,
        op,
        [a, b],
        (dy, needs) => [
          needs[0] ? reduceThen(K.binary("mul", dy, b, dy.shape), a) : null,
          needs[1] ? reduceThen(K.binary("mul", dy, a, dy.shape), b) : null,
        ],
        [a, b],
      );
    // d(a/b) = dy / b, -dy a / b^2 = -(dy out) / b
    case "div":
      return record(
        out,
        op,
        [a, b],
        (dy, needs) => {
          const da = needs[0] ? reduceThen(K.binary("div", dy, b, dy.shape), a) : null;
          let db: Tensor | null = null;
          if (needs[1]) {
            const t = K.binary("mul", dy, out, dy.shape);
            const u = K.binary("div", t, b, dy.shape);
            t.dispose();
            db = reduceThen(K.unary("scale", u, -1), b);
            u.dispose();
          }
          return [da, db];
        },
        [a, b, out],
      );
  }
}

/** Reduces a full-size gradient to `like`'s shape, disposing the full-size one when reduced. */
function reduceThen(full: Tensor, like: Tensor): Tensor {
  if (like.size === full.size) return full;
  const r = K.sumLeading(full, like.shape);
  full.dispose();
  return r;
}

export const add = (a: Tensor, b: Tensor): Tensor => binaryOp("add", a, b);
export const sub = (a: Tensor, b: Tensor): Tensor => binaryOp("sub", a, b);
export const mul = (a: Tensor, b: Tensor): Tensor => binaryOp("mul", a, b);
export const div = (a: Tensor, b: Tensor): Tensor => binaryOp("div", a, b);

/** alpha * x. d/dx = alpha. */
export function scale(x: Tensor, alpha: number): Tensor {
  return record(K.unary("scale", x, alpha), "scale", [x], (dy) => [K.unary("scale", dy, alpha)]);
}

/** -x. d/dx = -1. */
export function neg(x: Tensor): Tensor {
  return record(K.unary("neg", x), "neg", [x], (dy) => [K.unary("neg", dy)]);
}

/** e^x. d/dx = e^x (the output, saved). */
export function exp(x: Tensor): Tensor {
  const y = K.unary("exp", x);
  return record(y, "exp", [x], (dy) => [K.binary("mul", dy, y, y.shape)], [y]);
}

/** ln x. d/dx = 1/x. */
export function log(x: Tensor): Tensor {
  return record(K.unary("log", x), "log", [x], (dy) => [K.unaryBackward("log", x, dy)], [x]);
}

/** x·sigmoid(x). d/dx = s(1 + x(1 - s)). */
export function silu(x: Tensor): Tensor {
  return record(K.unary("silu", x), "silu", [x], (dy) => [K.unaryBackward("silu", x, dy)], [x]);
}

/** Exact GELU, x·Φ(x) (PyTorch's default, approximate='none'). d/dx = Φ(x) + x·φ(x). */
export function gelu(x: Tensor): Tensor {
  return record(K.unary("gelu", x), "gelu", [x], (dy) => [K.unaryBackward("gelu", x, dy)], [x]);
}

/**
 * cap · tanh(x / cap): Gemma 2's soft-capping of logits (final_logit_softcapping; the LM head's returned
 * logits). d/dx = 1 - tanh²(x / cap). cap must be a positive finite number.
 */
export function softcap(x: Tensor, cap: number): Tensor {
  if (!(typeof cap === "number" && cap > 0 && Number.isFinite(cap))) {
    throw new Error(`softcap: cap must be a positive finite number, got ${cap} (leave soft-capping off instead of passing 0)`);
  }
  return record(K.unary("softcap", x, cap), "softcap", [x], (dy) => [K.unaryBackward("softcap", x, dy, cap)], [x]);
}
