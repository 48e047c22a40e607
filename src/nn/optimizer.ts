// The optimizer interface, as torch.optim.Optimizer: param groups whose hyperparameters a scheduler assigns
// (`group.lr = …`), per-param state created at a param's first update, step() and zero_grad(), and a
// state_dict() that a checkpoint stores as named tensors plus JSON without knowing the optimizer's fields.
// An optimizer is a subclass that validates its groups and writes update(); src/nn/optim.ts registers it
// under transformers' `optim` names.
//
// Gradient scales: clip_grad_norm_ does not rescale p.grad in place (that would be one more pass over every
// gradient). It attaches a 0-d GPU factor to each gradient (setGradScale), and step() hands that factor to
// update(), which multiplies it into the gradient as it reads it: every optimizer honours clipping, fused and
// without readback. So p.grad keeps its unscaled values, and a backward() between clip_grad_norm_ and step()
// would be scaled too.
import { gpu } from "../gpu/device.ts";
import { isTrainable } from "../tensor/format.ts";
import { keep } from "../tensor/scope.ts";
import { full, Tensor } from "../tensor/tensor.ts";

/** A param group: its params and its hyperparameters (each optimizer adds its own to `lr`). */
export interface ParamGroup {
  params: Tensor[];
  lr: number;
}

/** A group's hyperparameters without its params. */
export type Hyperparameters<G extends ParamGroup> = Omit<G, "params">;

/** A param group as given to a constructor: its params, and hyperparameters overriding the defaults. */
export type ParamGroupInit<G extends ParamGroup> = Partial<Hyperparameters<G>> & { params: Tensor[] };

/** One param's state: tensors (moments, on the GPU, f32) and numbers (step counts). */
export type ParamState = Record<string, Tensor | number>;

/**
 * torch's optimizer state_dict: state keyed by the param's index in the concatenated groups, and the groups'
 * hyperparameters with their params as indices.
 */
export interface OptimizerStateDict<G extends ParamGroup = ParamGroup, S extends ParamState = ParamState> {
  state: Record<number, S>;
  param_groups: (Hyperparameters<G> & { params: number[] })[];
}

/** A state_dict() without its tensors: what a checkpoint stores as JSON. */
export type OptimizerStateJSON = Omit<OptimizerStateDict, "state"> & { state: Record<number, Record<string, number>> };

/**
 * The 0-d factor attached to a gradient, to multiply in at the next step(). Each entry holds a reference to
 * the factor's buffer, released by step() or zero_grad().
 */
const gradScales = new WeakMap<Tensor, Tensor>();

/** Whether `grad` carries a factor that the next step() multiplies in. */
export function hasGradScale(grad: Tensor): boolean {
  return gradScales.has(grad);
}

/** Attaches the 0-d `scale` to each gradient: the next step() of the optimizer over its param multiplies it in. */
export function setGradScale(grads: readonly Tensor[], scale: Tensor): void {
  for (const g of grads) {
    if (gradScales.has(g)) throw new Error("setGradScale: a gradient already carries a scale; call optimizer.step() or zero_grad() first");
    scale.storage.retain();
    gradScales.set(g, scale);
  }
}

function dropGradScale(grad: Tensor): void {
  gradScales.get(grad)?.storage.release();
  gradScales.delete(grad);
}

export abstract class Optimizer<G extends ParamGroup = ParamGroup, S extends ParamState = ParamState> {
  readonly param_groups: G[];
  readonly state = new Map<Tensor, S>();
  /** Prefixes error messages (torch's class name). */
  private readonly name: string;
  /** The factor of gradients that carry none. */
  private one: Tensor | null = null;

  protected constructor(name: string, params: readonly Tensor[] | readonly ParamGroupInit<G>[], defaults: Hyperparameters<G>) {
    this.name = name;
    if (params.length === 0) throw new Error(`${name}: optimizer got an empty parameter list`);
    const inits = params[0] instanceof Tensor ? [{ params: params as Tensor[] }] : (params as ParamGroupInit<G>[]);
    const seen = new Set<Tensor>();
    this.param_groups = inits.map(({ params: ps, ...hyper }) => {
      const group = { ...structuredClone(defaults), ...structuredClone(hyper), params: [...ps] } as G;
      this.checkGroup(group);
      for (const p of group.params) {
        if (seen.has(p)) throw new Error(`${name}: some parameters appear in more than one parameter group`);
        if (!isTrainable(p.dtype)) throw new Error(`${name}: parameters must be f32, got ${p}`);
        seen.add(p);
      }
      return group;
    });
  }

  /** Throws unless the group's hyperparameters are valid (torch's constructor checks); run at every step. */
  protected abstract checkGroup(group: G): void;

  /**
   * Updates `param` in place from the gradient grad * scale[0] (`scale` 0-d: clip_grad_norm_'s factor, or 1)
   * with `group`'s hyperparameters, creating or advancing its entry in `this.state`. Records GPU work only.
   */
  protected abstract update(param: Tensor, grad: Tensor, scale: Tensor, group: G): void;

  /**
   * One update of every param that has a gradient (scaled by its clip_grad_norm_ factor), with each group's
   * current hyperparameters. Reads nothing back.
   */
  step(): void {
    for (const group of this.param_groups) {
      this.checkGroup(group);
      for (const p of group.params) {
        const g = p.grad;
        if (!g) continue;
        if (g.shape.join() !== p.shape.join()) throw new Error(`${this.name}: gradient [${g.shape}] of param [${p.shape}]`);
        this.update(p, g, gradScales.get(g) ?? (this.one ??= keep(full([], 1))), group);
        dropGradScale(g);
      }
    }
  }

  /** Drops every param's gradient (torch's default set_to_none) and any factor it carries. */
  zero_grad(): void {
    for (const group of this.param_groups) {
      for (const p of group.params) {
        if (p.grad) dropGradScale(p.grad);
        p.zero_grad();
      }
    }
  }

  /** The state and hyperparameters, shaped like torch's. The state tensors are the optimizer's own. */
  state_dict(): OptimizerStateDict<G, S> {
    const state: Record<number, S> = {};
    let index = 0;
    const param_groups = this.param_groups.map(({ params, ...hyper }) => {
      const ids = params.map((p) => {
        const s = this.state.get(p);
        if (s) state[index] = { ...s };
        return index++;
      });
      return { ...structuredClone(hyper), params: ids };
    });
    return { state, param_groups };
  }

  /**
   * Replaces the state and hyperparameters with `sd`'s (a state_dict() of an optimizer of this kind over
   * params of the same shapes, in the same order). Tensors are copied: `sd` stays the caller's.
   */
  load_state_dict(sd: OptimizerStateDict): void {
    const where = `${this.name}.load_state_dict`;
    if (sd.param_groups.length !== this.param_groups.length) {
      throw new Error(`${where}: loaded state dict has a different number of parameter groups`);
    }
    const byIndex: Tensor[] = [];
    sd.param_groups.forEach((saved, i) => {
      const group = this.param_groups[i]!;
      if (saved.params.length !== group.params.length) {
        throw new Error(`${where}: loaded state dict contains a parameter group that doesn't match the size of optimizer's group`);
      }
      saved.params.forEach((id, j) => (byIndex[id] = group.params[j]!));
    });
    const loaded = new Map<Tensor, S>();
    for (const [key, s] of Object.entries(sd.state)) {
      const p = byIndex[+key];
      if (!p) throw new Error(`${where}: state for param ${key}, which no group lists`);
      this.checkState(p, s as S);
      loaded.set(p, Object.fromEntries(Object.entries(s).map(([k, v]) => [k, v instanceof Tensor ? copyOf(v) : v])) as S);
    }
    this.disposeState();
    for (const [p, s] of loaded) this.state.set(p, s);
    sd.param_groups.forEach(({ params: _, ...hyper }, i) => {
      const group = this.param_groups[i]!;
      Object.assign(group, structuredClone(hyper));
      this.checkGroup(group);
    });
  }

  /** Throws unless `s` is a valid state for `p`; by default each of its tensors has p's shape. */
  protected checkState(p: Tensor, s: S): void {
    for (const [k, t] of Object.entries(s)) {
      if (t instanceof Tensor && t.shape.join() !== p.shape.join()) {
        throw new Error(`${this.name}.load_state_dict: state ${k} [${t.shape}] for param [${p.shape}]`);
      }
    }
  }

  /** Frees the state's tensors; the optimizer starts over (fresh state) at its next step. */
  dispose(): void {
    this.disposeState();
    this.one?.dispose();
    this.one = null;
  }

  private disposeState(): void {
    for (const s of this.state.values()) for (const v of Object.values(s)) if (v instanceof Tensor) v.dispose();
    this.state.clear();
  }
}

function copyOf(t: Tensor): Tensor {
  const c = keep(Tensor.empty(t.shape));
  gpu().batch.copy(t.buffer, 0, c.buffer, 0, t.size * 4);
  return c;
}

/**
 * A state_dict() as a checkpoint stores it: its tensors by name, "state.<index>.<key>" (torch's nesting,
 * flattened), and everything else as JSON. The tensors are the optimizer's own.
 */
export function splitStateDict(sd: OptimizerStateDict): { tensors: Record<string, Tensor>; json: OptimizerStateJSON } {
  const tensors: Record<string, Tensor> = {};
  const state: OptimizerStateJSON["state"] = {};
  for (const [i, s] of Object.entries(sd.state)) {
    state[+i] = {};
    for (const [k, v] of Object.entries(s)) {
      if (v instanceof Tensor) tensors[`state.${i}.${k}`] = v;
      else state[+i]![k] = v;
    }
  }
  return { tensors, json: { state, param_groups: sd.param_groups } };
}

/** The inverse of splitStateDict. */
export function joinStateDict(tensors: Record<string, Tensor>, json: OptimizerStateJSON): OptimizerStateDict {
  const state: OptimizerStateDict["state"] = {};
  for (const [i, s] of Object.entries(json.state)) state[+i] = { ...s };
  for (const [name, t] of Object.entries(tensors)) {
    const m = /^state\.(\d+)\.(.+)$/.exec(name);
    if (!m) throw new Error(`optimizer state: a tensor named "${name}" (expected state.<index>.<key>)`);
    (state[+m[1]!] ??= {})[m[2]!] = t;
  }
  return { state, param_groups: json.param_groups };
}
