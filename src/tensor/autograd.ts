// Reverse-mode autograd. An op records a node on its output: its inputs, the buffers it saved, and its
// backward closure (written beside the forward in src/ops). backward() walks the nodes in reverse
// topological order, releasing each node's saved buffers and its incoming gradient as soon as it has run.
import { gpu } from "../gpu/device.ts";
import { axpy, full } from "../kernels/elementwise.ts";
import { keep } from "./scope.ts";
import { Tensor, type Storage } from "./tensor.ts";

/** Gradients of a node's inputs given the gradient of its output; `needs[i]` says whether input i wants one. */
export type BackwardFn = (dy: Tensor, needs: boolean[]) => (Tensor | null)[];

export interface GradNode {
  name: string;
  inputs: Tensor[];
  backward: BackwardFn;
  saved: Storage[];
}

let enabled = true;

/** Runs `fn` without recording any graph (evaluation, optimizer updates). `fn` must be synchronous. */
export function no_grad<T>(fn: () => T): T {
  const prev = enabled;
  enabled = false;
  try {
    const r = fn();
    if (r instanceof Promise) throw new TypeError("no_grad() takes a synchronous function (await outside of it)");
    return r;
  } finally {
    enabled = prev;
  }
}

/** Runs `fn` with grad recording on, also inside no_grad() or a backward pass (gradient checkpointing). */
export function enable_grad<T>(fn: () => T): T {
  const prev = enabled;
  enabled = true;
  try {
    return fn();
  } finally {
    enabled = prev;
  }
}

export function is_grad_enabled(): boolean {
  return enabled;
}

/**
 * Makes `out` remember the op that produced it, when grad is enabled and some input requires grad.
 * `save` lists tensors the backward closure reads: their buffers stay alive until it has run.
 */
export function record(out: Tensor, name: string, inputs: Tensor[], backward: BackwardFn, save: Tensor[] = []): Tensor {
  if (!enabled || !inputs.some((t) => t.requires_grad)) return out;
  out.requires_grad = true;
  out.node = { name, inputs, backward, saved: save.map((t) => t.storage.retain()) };
  fromOp.add(out);
  return out;
}

/** Tensors made by an op (non-leaves), so a second backward through a freed graph is caught. */
const fromOp = new WeakSet<Tensor>();

export function backward(root: Tensor, gradient?: Tensor): void {
  if (!root.requires_grad) {
    throw new Error(
      `backward() on ${root}: it does not require grad and has no grad history. ` +
        "Create the inputs with { requires_grad: true } (and not inside no_grad()).",
    );
  }
  if (fromOp.has(root) && !root.node) {
    throw new Error(`backward() on ${root}: its graph was already freed (by an earlier backward(), or by tidy())`);
  }
  if (gradient) {
    if (gradient.shape.join() !== root.shape.join()) {
      throw new Error(`backward(): gradient shape [${gradient.shape}] does not match tensor shape [${root.shape}]`);
    }
  } else if (root.size !== 1) {
    throw new Error(`backward() without a gradient needs a one-element tensor; got shape [${root.shape}]`);
  }
  const order = topoSort(root);
  const prev = enabled;
  enabled = false;
  try {
    // The caller's gradient is copied: rules may pass it through and accumulation writes in place.
    const grads = new Map<Tensor, Tensor>([[root, gradient ? copyOf(gradient) : full(root.shape, 1)]]);
    for (let k = order.length - 1; k >= 0; k--) {
      const t = order[k]!;
      const g = grads.get(t);
      if (!g) continue;
      grads.delete(t);
      const node = t.node;
      if (!node) {
        if (fromOp.has(t)) throw new Error(`backward(): the graph through ${t} was already freed (by an earlier backward(), or by tidy())`);
        accumulateLeaf(t, g);
        continue;
      }
      t.node = null;
      const needs = node.inputs.map((i) => i.requires_grad);
      const gs = node.backward(g, needs);
      for (const s of node.saved) s.release();
      // A rule may pass dy through (add) or return one tensor twice: give each input its own.
      const seen = new Set<Tensor>();
      for (let i = 0; i < gs.length; i++) {
        const gi = gs[i];
        if (!gi) continue;
        if (seen.has(gi)) gs[i] = copyOf(gi);
        seen.add(gi);
      }
      if (!seen.has(g)) g.dispose();
      node.inputs.forEach((input, i) => {
        const gi = gs[i];
        if (!gi) return;
        if (!needs[i]) return gi.dispose();
        if (gi.shape.join() !== input.shape.join()) {
          throw new Error(`${node.name} backward: gradient [${gi.shape}] for input ${i} of shape [${input.shape}]`);
        }
        const prevG = grads.get(input);
        if (prevG) {
          axpy(prevG, gi);
          gi.dispose();
        } else grads.set(input, gi);
      });
    }
  } finally {
    enabled = prev;
  }
}

/**
 * Frees the graph nodes of `dropped` tensors that no tensor in `kept` reaches: a forward pass run
 * without a backward must not hold its saved buffers forever. Called by tidy() with what it disposes.
 */
export function freeUnreachable(dropped: Iterable<Tensor>, kept: Iterable<Tensor>): void {
  const reached = new Set<Tensor>();
  const stack = [...kept];
  while (stack.length) {
    const t = stack.pop()!;
    if (reached.has(t)) continue;
    reached.add(t);
    for (const i of t.node?.inputs ?? []) stack.push(i);
  }
  for (const t of dropped) {
    if (!t.node || reached.has(t)) continue;
    for (const s of t.node.saved) s.release();
    t.node = null;
  }
}

function accumulateLeaf(t: Tensor, g: Tensor): void {
  if (t.grad) {
    axpy(t.grad, g);
    g.dispose();
  } else t.grad = keep(g);
}

function copyOf(t: Tensor): Tensor {
  const c = Tensor.empty(t.shape, t.dtype);
  gpu().batch.copy(t.buffer, 0, c.buffer, 0, Math.ceil(t.storage.bytes / 4) * 4);
  return c;
}

/** Post-order over tensors that require grad: every tensor comes after all of its inputs. */
function topoSort(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const visited = new Set<Tensor>();
  const stack: [Tensor, boolean][] = [[root, false]];
  while (stack.length) {
    const [t, done] = stack.pop()!;
    if (done) {
      order.push(t);
      continue;
    }
    if (visited.has(t)) continue;
    visited.add(t);
    stack.push([t, true]);
    for (const i of t.node?.inputs ?? []) if (i.requires_grad && !visited.has(i)) stack.push([i, false]);
  }
  return order;
}
