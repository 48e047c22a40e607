// Gated MLP activations, fused, and their gradients: the MLP's act_fn(gate_proj(x)) * up_proj(x) with
// act_fn = silu (SwiGLU: Llama, Qwen, Mistral, Phi-3) or gelu_pytorch_tanh (GeGLU: Gemma 1/2/3).
import * as K from "../kernels/swiglu.ts";
import { record, type Tensor } from "../tensor/tensor.ts";

function gated(name: string, act: K.GateActivation, gate: Tensor, up: Tensor): Tensor {
  if (gate.dtype !== "f32" || up.dtype !== "f32") throw new Error(`${name}: needs f32 tensors, got gate ${gate.dtype} and up ${up.dtype}`);
  if (gate.shape.join() !== up.shape.join()) {
    throw new Error(`${name}: gate [${gate.shape.join(", ")}] and up [${up.shape.join(", ")}] must have the same shape`);
  }
  const out = K.forward(gate, up, act);
  return record(
    out,
    name,
    [gate, up],
    (dy, needs) => {
      const { dgate, dup } = K.backward(dy, gate, up, needs[0]!, needs[1]!, act);
      return [dgate, dup];
    },
    [gate, up],
  );
}

/**
 * silu(gate) * up, elementwise over two tensors of one shape.
 * d/dgate = dy * up * s * (1 + gate * (1 - s)) with s = sigmoid(gate); d/dup = dy * silu(gate).
 */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  return gated("swiglu", "silu", gate, up);
}

/**
 * gelu_tanh(gate) * up (transformers' GELUTanh, hidden_activation "gelu_pytorch_tanh"), elementwise over
 * two tensors of one shape: gelu_tanh(g) = 0.5 g (1 + tanh(u)), u = √(2/π) (g + 0.044715 g³).
 * d/dgate = dy * up * (0.5 (1 + tanh u) + 0.5 g (1 - tanh² u) √(2/π) (1 + 0.134145 g²)); d/dup = dy * gelu_tanh(gate).
 */
export function geglu(gate: Tensor, up: Tensor): Tensor {
  return gated("geglu", "gelu_tanh", gate, up);
}
