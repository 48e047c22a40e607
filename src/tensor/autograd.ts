// Grad mode (torch.autograd.grad_mode): whether ops record a graph. Below tensor.ts, whose record() reads it
// and whose backward pass turns it off while the backward rules run.

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
