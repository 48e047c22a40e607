// torch.optim.AdamW on the GPU: one fused dispatch per param (the clip factor, decoupled weight decay, both
// moments and the bias-corrected update in one pass), the step count and learning rate on the CPU.
import { adamwUpdate } from "../kernels/adamw.ts";
import { keep } from "../tensor/scope.ts";
import { full, Tensor } from "../tensor/tensor.ts";
import { Optimizer, type Hyperparameters, type OptimizerStateDict, type ParamGroup, type ParamGroupInit } from "./optimizer.ts";

/** A param group with every AdamW hyperparameter set. */
export interface AdamWParamGroup extends ParamGroup {
  betas: [number, number];
  eps: number;
  weight_decay: number;
}

export type AdamWOptions = Partial<Hyperparameters<AdamWParamGroup>>;

/** Per-param state, created at the param's first update. */
export interface AdamWState {
  /** Updates applied to this param (params without a gradient are skipped and not counted). */
  step: number;
  exp_avg: Tensor;
  exp_avg_sq: Tensor;
  [key: string]: Tensor | number;
}

export type AdamWStateDict = OptimizerStateDict<AdamWParamGroup, AdamWState>;

export class AdamW extends Optimizer<AdamWParamGroup, AdamWState> {
  /** [max |param|, max |exp_avg|, |exp_avg_sq|] that the last step() wrote (see update_stats). */
  private stats: Tensor | null = null;

  constructor(params: readonly Tensor[] | readonly ParamGroupInit<AdamWParamGroup>[], { lr = 1e-3, betas = [0.9, 0.999], eps = 1e-8, weight_decay = 0.01 }: AdamWOptions = {}) {
    super("AdamW", params, { lr, betas, eps, weight_decay });
  }

  protected checkGroup(g: AdamWParamGroup): void {
    if (!(g.lr >= 0)) throw new Error(`AdamW: invalid learning rate: ${g.lr}`);
    if (!(g.eps >= 0)) throw new Error(`AdamW: invalid epsilon value: ${g.eps}`);
    g.betas.forEach((b, i) => {
      if (!(b >= 0 && b < 1)) throw new Error(`AdamW: invalid beta parameter at index ${i}: ${b}`);
    });
    if (!(g.weight_decay >= 0)) throw new Error(`AdamW: invalid weight_decay value: ${g.weight_decay}`);
  }

  /** A loaded state must have all three entries (a checkpoint missing a moment is an error naming it). */
  protected checkState(p: Tensor, s: AdamWState): void {
    if (!(Number.isInteger(s.step) && s.step >= 0)) throw new Error(`AdamW.load_state_dict: state step must be a whole number, got ${JSON.stringify(s.step)}`);
    for (const k of ["exp_avg", "exp_avg_sq"] as const) {
      if (!(s[k] instanceof Tensor)) throw new Error(`AdamW.load_state_dict: state ${k} is missing for param [${p.shape}]`);
    }
    super.checkState(p, s);
  }

  /**
   * The largest |value| the last step() wrote, over every param it updated: a (2) GPU tensor, [max |param|,
   * max of |exp_avg| and |exp_avg_sq|], Inf or NaN where a written value is non-finite (null before the first
   * step). The update kernels gather it as they write, so reading it with what a training step reads back
   * anyway (its loss) costs no readback of its own. Valid until the next step().
   */
  get update_stats(): Tensor | null {
    return this.stats;
  }

  override step(): void {
    this.stats?.dispose();
    this.stats = keep(full([2], 0));
    super.step();
  }

  override dispose(): void {
    super.dispose();
    this.stats?.dispose();
    this.stats = null;
  }

  protected update(p: Tensor, grad: Tensor, scale: Tensor, group: AdamWParamGroup): void {
    let s = this.state.get(p);
    if (!s) this.state.set(p, (s = { step: 0, exp_avg: keep(full(p.shape, 0)), exp_avg_sq: keep(full(p.shape, 0)) }));
    s.step++;
    const [beta1, beta2] = group.betas;
    adamwUpdate(p, grad, s.exp_avg, s.exp_avg_sq, scale, this.stats!, { lr: group.lr, beta1, beta2, eps: group.eps, weight_decay: group.weight_decay, step: s.step });
  }
}
