// SwiGLU gating (the Llama MLP's act_fn(gate_proj(x)) * up_proj(x) with act_fn = silu), fused, and its gradient.
import * as K from "../kernels/swiglu.ts";
import { record, type Tensor } from "../tensor/tensor.ts";

/**
 * silu(gate) * up, elementwise over two tensors of one shape.
 * d/dgate = dy * up * s * (1 + gate * (1 - s)) with s = sigmoid(gate); d/dup = dy * silu(gate).
 */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  if (gate.dtype !== "f32" || up.dtype !== "f32") throw new Error(`swiglu: needs f32 tensors, got gate ${gate.dtype} and up ${up.dtype}`);
  if (gate.shape.join() !== up.shape.join()) {
    throw new Error(`swiglu: gate [${gate.shape.join(", ")}] and up [${up.shape.join(", ")}] must have the same shape`);
  }
  const out = K.forward(gate, up);
  return record(
    out,
    "swiglu",
    [gate, up],
    (dy, needs) => {
      const { dgate, dup } = K.backward(dy, gate, up, needs[0]!, needs[1]!);
      return [dgate, dup];
    },
    [gate, up],
  );
}
