// torch.optim.AdamW and torch.nn.utils.clip_grad_norm_, on the GPU and without readback: the step count
// and the learning rate live on the CPU, the norm and the clip factor stay in GPU buffers, and a training
// step (clip, then update) records ceil(grads / 7) + 1 + params dispatches into the open batch.
//
// One difference from torch: clip_grad_norm_ does not rescale p.grad in place. It marks each gradient
// with the clip factor and the next AdamW.step() multiplies it in (fused into the update). So p.grad
// keeps its unclipped values, and a backward() between clip_grad_norm_ and step() would be clipped too.
import { gpu } from "../gpu/device.ts";
import { adamwUpdate, gradNorm } from "../kernels/adamw.ts";
import { full } from "../kernels/elementwise.ts";
import { keep } from "../tensor/scope.ts";
import { Tensor } from "../tensor/tensor.ts";

export interface AdamWOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weight_decay?: number;
}

/** A param group as given to the constructor: its params, and hyperparameters overriding the defaults. */
export interface ParamGroupInit extends AdamWOptions {
  params: Tensor[];
}

/** A param group with every hyperparameter set. Assign `lr` to schedule it, as torch's schedulers do. */
export interface ParamGroup {
  params: Tensor[];
  lr: number;
  betas: [number, number];
  eps: number;
  weight_decay: number;
}

/** Per-param state, created at the param's first step. */
export interface AdamWState {
  /** Updates applied to this param (params without a gradient are skipped and not counted). */
  step: number;
  exp_avg: Tensor;
  exp_avg_sq: Tensor;
}

/**
 * torch's optimizer state_dict: state keyed by the param's index in the concatenated groups, and the
 * groups' hyperparameters with their params as indices.
 */
export interface AdamWStateDict {
  state: Record<number, AdamWState>;
  param_groups: (Omit<ParamGroup, "params"> & { params: number[] })[];
}

/**
 * The clip factor (0-d) that clip_grad_norm_ attached to each gradient. Each mark holds a reference to
 * the factor's buffer, released by step() or zero_grad().
 */
const pendingClip = new WeakMap<Tensor, Tensor>();

/**
 * Computes the 2-norm of all gradients of `parameters` together (params without a gradient are
 * skipped) and arranges for the next AdamW.step() to scale them by min(1, max_norm / (norm + 1e-6)).
 * Returns the norm as a 0-d tensor, to read when logging; NaN or Inf when a gradient holds one.
 */
export function clip_grad_norm_(parameters: Tensor | Iterable<Tensor>, max_norm: number): Tensor {
  const params = parameters instanceof Tensor ? [parameters] : [...parameters];
  const grads = params.flatMap((p) => (p.grad ? [p.grad] : []));
  for (const g of grads) {
    if (pendingClip.has(g)) {
      throw new Error("clip_grad_norm_: these gradients are already clipped; call optimizer.step() or zero_grad() first");
    }
  }
  const { norm, clip } = gradNorm(grads, max_norm);
  for (const g of grads) {
    clip.storage.retain();
    pendingClip.set(g, clip);
  }
  clip.dispose();
  return norm;
}

export class AdamW {
  readonly param_groups: ParamGroup[];
  readonly state = new Map<Tensor, AdamWState>();
  /** The clip factor of gradients that clip_grad_norm_ has not marked. */
  private one: Tensor | null = null;

  constructor(params: Tensor[] | ParamGroupInit[], { lr = 1e-3, betas = [0.9, 0.999], eps = 1e-8, weight_decay = 0.01 }: AdamWOptions = {}) {
    const defaults = { lr, betas, eps, weight_decay };
    if (params.length === 0) throw new Error("AdamW: optimizer got an empty parameter list");
    const inits: ParamGroupInit[] = "params" in params[0]! ? (params as ParamGroupInit[]) : [{ params: params as Tensor[] }];
    const seen = new Set<Tensor>();
    this.param_groups = inits.map((g) => {
      const group: ParamGroup = { ...defaults, ...g, params: [...g.params] };
      group.betas = [...group.betas];
      checkHyper(group);
      for (const p of group.params) {
        if (seen.has(p)) throw new Error("AdamW: some parameters appear in more than one parameter group");
        if (p.dtype !== "f32") throw new Error(`AdamW: parameters must be f32, got ${p}`);
        seen.add(p);
      }
      return group;
    });
  }

  /**
   * One AdamW update of every param that has a gradient (scaled by its clip_grad_norm_ factor), with
   * each group's current lr. Records one dispatch per param; reads nothing back.
   */
  step(): void {
    for (const group of this.param_groups) {
      checkHyper(group);
      const [beta1, beta2] = group.betas;
      for (const p of group.params) {
        const g = p.grad;
        if (!g) continue;
        if (g.shape.join() !== p.shape.join()) throw new Error(`AdamW: gradient [${g.shape}] of param [${p.shape}]`);
        let s = this.state.get(p);
        if (!s) this.state.set(p, (s = { step: 0, exp_avg: keep(full(p.shape, 0)), exp_avg_sq: keep(full(p.shape, 0)) }));
        s.step++;
        const mark = pendingClip.get(g);
        adamwUpdate(p, g, s.exp_avg, s.exp_avg_sq, mark ?? this.ones(), {
          lr: group.lr,
          beta1,
          beta2,
          eps: group.eps,
          weight_decay: group.weight_decay,
          step: s.step,
        });
        if (mark) {
          pendingClip.delete(g);
          mark.storage.release();
        }
      }
    }
  }

  /** Drops every param's gradient (torch's default set_to_none) and any pending clip factor. */
  zero_grad(): void {
    for (const group of this.param_groups) {
      for (const p of group.params) {
        if (p.grad) {
          pendingClip.get(p.grad)?.storage.release();
          pendingClip.delete(p.grad);
        }
        p.zero_grad();
      }
    }
  }

  /** The state and hyperparameters, shaped like torch's. The state tensors are the optimizer's own. */
  state_dict(): AdamWStateDict {
    const state: Record<number, AdamWState> = {};
    let index = 0;
    const param_groups = this.param_groups.map(({ params, ...hyper }) => {
      const ids = params.map((p) => {
        const s = this.state.get(p);
        if (s) state[index] = { ...s };
        return index++;
      });
      return { ...hyper, betas: [...hyper.betas] as [number, number], params: ids };
    });
    return { state, param_groups };
  }

  /**
   * Replaces the state and hyperparameters with `sd`'s (a state_dict() of an optimizer over params of the
   * same shapes, in the same order). Tensors are copied: `sd` stays the caller's.
   */
  load_state_dict(sd: AdamWStateDict): void {
    if (sd.param_groups.length !== this.param_groups.length) {
      throw new Error("AdamW.load_state_dict: loaded state dict has a different number of parameter groups");
    }
    const byIndex: Tensor[] = [];
    sd.param_groups.forEach((saved, i) => {
      const group = this.param_groups[i]!;
      if (saved.params.length !== group.params.length) {
        throw new Error("AdamW.load_state_dict: loaded state dict contains a parameter group that doesn't match the size of optimizer's group");
      }
      saved.params.forEach((id, j) => (byIndex[id] = group.params[j]!));
    });
    const loaded = new Map<Tensor, AdamWState>();
    for (const [key, s] of Object.entries(sd.state)) {
      const p = byIndex[+key];
      if (!p) throw new Error(`AdamW.load_state_dict: state for param ${key}, which no group lists`);
      for (const t of [s.exp_avg, s.exp_avg_sq]) {
        if (t.shape.join() !== p.shape.join()) throw new Error(`AdamW.load_state_dict: state [${t.shape}] for param [${p.shape}]`);
      }
      loaded.set(p, { step: s.step, exp_avg: copyOf(s.exp_avg), exp_avg_sq: copyOf(s.exp_avg_sq) });
    }
    for (const s of this.state.values()) {
      s.exp_avg.dispose();
      s.exp_avg_sq.dispose();
    }
    this.state.clear();
    for (const [p, s] of loaded) this.state.set(p, s);
    sd.param_groups.forEach(({ params: _, ...hyper }, i) => {
      const group = this.param_groups[i]!;
      Object.assign(group, hyper, { betas: [...hyper.betas] });
      checkHyper(group);
    });
  }

  private ones(): Tensor {
    this.one ??= keep(full([], 1));
    return this.one;
  }
}

function checkHyper(g: ParamGroup): void {
  if (!(g.lr >= 0)) throw new Error(`AdamW: invalid learning rate: ${g.lr}`);
  if (!(g.eps >= 0)) throw new Error(`AdamW: invalid epsilon value: ${g.eps}`);
  g.betas.forEach((b, i) => {
    if (!(b >= 0 && b < 1)) throw new Error(`AdamW: invalid beta parameter at index ${i}: ${b}`);
  });
  if (!(g.weight_decay >= 0)) throw new Error(`AdamW: invalid weight_decay value: ${g.weight_decay}`);
}

function copyOf(t: Tensor): Tensor {
  const c = keep(Tensor.empty(t.shape));
  gpu().batch.copy(t.buffer, 0, c.buffer, 0, t.size * 4);
  return c;
}

/** The `optim` names (transformers' spelling) that webtune implements; SFTConfig rejects any other. */
export function optimizerNames(): string[] {
  return ["adamw_torch", "adamw_torch_fused"];
}
