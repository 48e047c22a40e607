// tidy(): every tensor created inside the function is disposed when it returns, except what it returns.
// The arena a training step needs: intermediates go, gradients stay with their leaves, and the graph of
// a forward pass that nothing returned (no backward ran) is freed with its saved buffers.
// Below tensor.ts (whose constructor registers every tensor here), so it sees a tensor as a Scoped.

/** A tensor as the arena sees it: what it disposes, and the graph node whose saved buffers it may free. */
export interface Scoped {
  node: { readonly inputs: readonly Scoped[]; readonly saved: readonly { release(): void }[] } | null;
  dispose(): void;
}

const stack: Set<Scoped>[] = [];

/** Called by the Tensor constructor. */
export function track(t: Scoped): void {
  stack[stack.length - 1]?.add(t);
}

/** Takes `t` out of every open scope, so no tidy() disposes it. */
export function keep<T extends Scoped>(t: T): T {
  for (const s of stack) s.delete(t);
  return t;
}

export function tidy<T>(fn: () => T): T {
  const scope = new Set<Scoped>();
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
  const kept = new Set<Scoped>();
  collect(result, kept, 0);
  const outer = stack[stack.length - 1];
  freeUnreachable([...scope].filter((t) => !kept.has(t)), kept);
  for (const t of scope) {
    if (kept.has(t)) outer?.add(t);
    else t.dispose();
  }
  return result;
}

/**
 * Frees the graph nodes of `dropped` tensors that no tensor in `kept` reaches: a forward pass run
 * without a backward must not hold its saved buffers forever.
 */
function freeUnreachable(dropped: Iterable<Scoped>, kept: Iterable<Scoped>): void {
  const reached = new Set<Scoped>();
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

function collect(v: unknown, out: Set<Scoped>, depth: number): void {
  if (!v || typeof v !== "object" || depth > 4) return;
  if ("storage" in v && "shape" in v) out.add(v as unknown as Scoped); // a Tensor
  else if (Array.isArray(v)) for (const x of v) collect(x, out, depth + 1);
  else if (Object.getPrototypeOf(v) === Object.prototype) for (const x of Object.values(v)) collect(x, out, depth + 1);
}
