// tidy(): every tensor created inside the function is disposed when it returns, except what it returns.
// The arena a training step needs: intermediates go, gradients stay with their leaves, and the graph of
// a forward pass that nothing returned (no backward ran) is freed with its saved buffers.
import { freeUnreachable } from "./autograd.ts";
import type { Tensor } from "./tensor.ts";

const stack: Set<Tensor>[] = [];

/** Called by the Tensor constructor. */
export function track(t: Tensor): void {
  stack[stack.length - 1]?.add(t);
}

/** Takes `t` out of every open scope, so no tidy() disposes it. */
export function keep<T extends Tensor>(t: T): T {
  for (const s of stack) s.delete(t);
  return t;
}

export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  stack.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    stack.pop();
    freeUnreachable(scope, []);
    for (const t of scope) t.dispose();
    throw e;
  }
  stack.pop();
  if (result instanceof Promise) throw new TypeError("tidy() takes a synchronous function (await outside of it)");
  const kept = new Set<Tensor>();
  collect(result, kept, 0);
  const outer = stack[stack.length - 1];
  freeUnreachable([...scope].filter((t) => !kept.has(t)), kept);
  for (const t of scope) {
    if (kept.has(t)) outer?.add(t);
    else t.dispose();
  }
  return result;
}

function collect(v: unknown, out: Set<Tensor>, depth: number): void {
  if (!v || typeof v !== "object" || depth > 4) return;
  if ("storage" in v && "shape" in v) out.add(v as Tensor);
  else if (Array.isArray(v)) for (const x of v) collect(x, out, depth + 1);
  else if (Object.getPrototypeOf(v) === Object.prototype) for (const x of Object.values(v)) collect(x, out, depth + 1);
}
