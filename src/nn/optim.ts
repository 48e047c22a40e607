// The optimizers webtune implements, by transformers' `optim` name (TrainingArguments.optim). The trainer
// builds its optimizer here; SFTConfig rejects any other name (optimizerNames()). A new optimizer is an
// Optimizer subclass (src/nn/optimizer.ts) and its entries below.
import { AdamW } from "./adamw.ts";
import type { Optimizer } from "./optimizer.ts";
import type { Tensor } from "../tensor/tensor.ts";

/** The TrainingArguments an optimizer is built from (transformers' get_optimizer_cls_and_kwargs), in their spelling. */
export interface OptimizerArguments {
  learning_rate: number;
  adam_beta1: number;
  adam_beta2: number;
  adam_epsilon: number;
}

/** A param group as the Trainer makes them: weight decay on, or off (biases and norms). */
export interface DecayParamGroup {
  params: Tensor[];
  weight_decay: number;
}

type OptimizerFactory = (groups: DecayParamGroup[], args: OptimizerArguments) => Optimizer;

const adamw: OptimizerFactory = (groups, a) => new AdamW(groups, { lr: a.learning_rate, betas: [a.adam_beta1, a.adam_beta2], eps: a.adam_epsilon });

const OPTIMIZERS: Record<string, OptimizerFactory> = {
  adamw_torch: adamw,
  adamw_torch_fused: adamw,
};

/** The `optim` names (transformers' spelling) that webtune implements. */
export function optimizerNames(): string[] {
  return Object.keys(OPTIMIZERS);
}

/** The optimizer transformers' `optim` names, over `groups`; an error listing the implemented names for any other. */
export function createOptimizer(optim: string, groups: DecayParamGroup[], args: OptimizerArguments): Optimizer {
  const make = Object.hasOwn(OPTIMIZERS, optim) ? OPTIMIZERS[optim]! : null;
  if (!make) {
    throw new Error(`optim "${optim}" is not implemented in webtune; the implemented ones: ${optimizerNames().map((n) => `"${n}"`).join(", ")}`);
  }
  return make(groups, args);
}
