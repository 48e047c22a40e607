// nn.Linear of a decoder layer, optionally with a LoRA adapter (what PEFT's LoraLayer wraps).
import { lora_linear } from "../ops/lora.ts";
import { linear } from "../ops/matmul.ts";
import type { Tensor } from "../tensor/tensor.ts";

/** A LoRA adapter on one linear layer: y = x Wᵀ + b + scaling · (dropout(x) Aᵀ) Bᵀ. */
export interface LoraAdapter {
  /** [r, in] */
  A: Tensor;
  /** [out, r] */
  B: Tensor;
  scaling: number;
  dropout: number;
  /** The dropout stream of this layer (a u32). */
  seed: number;
}

/** What a forward pass needs besides its tensors. */
export interface RunState {
  training: boolean;
  /** Replays LoRA dropout masks: the optimizer step. */
  step: number;
}

/** nn.Linear (weight [out, in], optional bias [out]), optionally with a LoRA adapter. */
export class Linear {
  lora: LoraAdapter | null = null;
  constructor(
    /** Its module path, as transformers names it (model.layers.0.self_attn.q_proj). */
    readonly name: string,
    public weight: Tensor,
    public bias: Tensor | null,
  ) {}

  get in_features(): number {
    return this.weight.shape[1]!;
  }

  get out_features(): number {
    return this.weight.shape[0]!;
  }

  forward(x: Tensor, run: RunState): Tensor {
    const l = this.lora;
    if (l) {
      return lora_linear(x, this.weight, this.bias, l.A, l.B, {
        scaling: l.scaling,
        dropout: l.dropout,
        seed: l.seed,
        step: run.step,
        training: run.training,
      });
    }
    return linear(x, this.weight, this.bias);
  }

  /** The tensors a forward reads that may need gradients. */
  leaves(): Tensor[] {
    return [this.weight, ...(this.bias ? [this.bias] : []), ...(this.lora ? [this.lora.A, this.lora.B] : [])];
  }
}
