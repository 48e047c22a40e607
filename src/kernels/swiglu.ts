// Typed launchers for shaders/swiglu.wgsl: act(gate) * up over flat tensors, act = silu (SwiGLU) or
// gelu_tanh (GeGLU), one shader specialised by ACT. No autograd.
import { grid, launch } from "../gpu/launch.ts";
import { Tensor } from "../tensor/tensor.ts";

const WG = 256;

/** The gate activations of the family, by the shader's ACT constant. */
export const ACTIVATIONS = { silu: 0, gelu_tanh: 1 } as const;
export type GateActivation = keyof typeof ACTIVATIONS;

/** out = act(gate) * up. */
export function forward(gate: Tensor, up: Tensor, act: GateActivation = "silu"): Tensor {
  const out = Tensor.empty(gate.shape);
  launch("swiglu", "forward", {
    consts: { ACT: ACTIVATIONS[act] },
    buffers: { gate: gate.buffer, up: up.buffer, out: out.buffer },
    params: { n: gate.size },
    workgroups: grid(gate.size, WG),
  });
  return out;
}

/** dgate = dy * up * act'(gate) and dup = dy * act(gate), each only when asked for. */
export function backward(
  dy: Tensor, gate: Tensor, up: Tensor, wantGate: boolean, wantUp: boolean, act: GateActivation = "silu",
): { dgate: Tensor | null; dup: Tensor | null } {
  const dgate = wantGate ? Tensor.empty(gate.shape) : null;
  const dup = wantUp ? Tensor.empty(up.shape) : null;
  if (!dgate && !dup) return { dgate, dup };
  const entry = dgate && dup ? "backward" : dgate ? "backward_gate" : "backward_up";
  const buffers: Record<string, GPUBuffer> = { dy: dy.buffer, gate: gate.buffer };
  if (dgate) Object.assign(buffers, { up: up.buffer, dgate: dgate.buffer });
  if (dup) buffers.dup = dup.buffer;
  launch("swiglu", entry, { consts: { ACT: ACTIVATIONS[act] }, buffers, params: { n: gate.size }, workgroups: grid(gate.size, WG) });
  return { dgate, dup };
}
