// Learning-rate schedules as transformers' get_scheduler builds them: a multiplier of the base learning rate
// as a function of the optimizer step, with a linear warmup.

/** The lr_scheduler_type values webtune implements (transformers' SchedulerType names). */
export const SCHEDULER_TYPES = ["linear", "cosine", "constant", "constant_with_warmup"] as const;
export type SchedulerType = (typeof SCHEDULER_TYPES)[number];

/** warmup_steps as TrainingArguments reads it: an integer is steps, a float in [0, 1) a fraction of the total. */
export function warmupSteps(warmup: number, total: number): number {
  return warmup > 0 && warmup < 1 ? Math.ceil(warmup * total) : Math.floor(warmup);
}

/**
 * The multiplier of the learning rate for optimizer step `step` (0-based: the first update uses step 0), as
 * transformers' LambdaLR schedules compute it:
 *   warmup (step < W):   step / max(1, W)                    (every type but "constant")
 *   linear:              max(0, (total - step) / max(1, total - W))
 *   cosine:              max(0, 0.5 · (1 + cos(π · progress))), progress = (step - W) / max(1, total - W)
 *   constant(_with_warmup): 1
 */
export function lrLambda(type: SchedulerType, step: number, total: number, warmup: number): number {
  if (type === "constant") return 1;
  if (step < warmup) return step / Math.max(1, warmup);
  switch (type) {
    case "constant_with_warmup":
      return 1;
    case "linear":
      return Math.max(0, (total - step) / Math.max(1, total - warmup));
    case "cosine": {
      const progress = (step - warmup) / Math.max(1, total - warmup);
      return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
    }
  }
}
