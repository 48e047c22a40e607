// Typed launchers for shaders/swiglu.wgsl: silu(gate) * up over flat tensors. No autograd.
import { grid, launch } from "../gpu/launch.ts";
import { Tensor } from "../tensor/tensor.ts";

const WG = 256;

/** out = silu(gate) * up. */
export function forward(gate: Tensor, up: Tensor): Tensor {
  const out = Tensor.empty(gate.shape);
  launch("swiglu", "forward", {
    buffers: { gate: gate.buffer, up: up.buffer, out: out.buffer },
    params: { n: gate.size },
    workgroups: grid(gate.size, WG),
  });
  return out;
}

/** dgate = dy * up * silu'(gate) and dup = dy * silu(gate), each only when asked for. */
export function backward(dy: Tensor, gate: Tensor, up: Tensor, wantGate: boolean, wantUp: boolean): { dgate: Tensor | null; dup: Tensor | null } {
  const dgate = wantGate ? Tensor.empty(gate.shape) : null;
  const dup = wantUp ? Tensor.empty(up.shape) : null;
  if (!dgate && !dup) return { dgate, dup };
  const entry = dgate && dup ? "backward" : dgate ? "backward_gate" : "backward_up";
  const buffers: Record<string, GPUBuffer> = { dy: dy.buffer, gate: gate.buffer };
  if (dgate) Object.assign(buffers, { up: up.buffer, dgate: dgate.buffer });
  if (dup) buffers.dup = dup.buffer;
  launch("swiglu", entry, { buffers, params: { n: gate.size }, workgroups: grid(gate.size, WG) });
  return { dgate, dup };
}
