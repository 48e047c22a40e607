// What generation, PEFT and the trainer need of a causal language model, whatever its architecture: the
// forward pass (with the loss), inference over a KV cache, its weights by transformers' names, its linear
// layers (PEFT's targets), and transformers' training switches and save methods.
import type { CrossEntropyMetrics } from "../ops/cross_entropy.ts";
import type { TokenBatch } from "../ops/token_batch.ts";
import type { Tensor } from "../tensor/tensor.ts";
import type { LlamaFamilyConfig } from "./architecture.ts";
import type { ModelSource } from "../io/source.ts";
import type { Linear } from "./linear.ts";

export interface ForwardInputs {
  /** [B, T] token ids. */
  input_ids: TokenBatch;
  /**
   * [B, T] positions; default 0..T-1 on every row. Packed rows (TRL's padding-free batches) restart at 0 at
   * each sequence, and attention then stays inside each sequence.
   */
  position_ids?: TokenBatch;
  /** [B, T], 1 for a token, 0 for padding (left or right). */
  attention_mask?: TokenBatch;
  /**
   * [B, T] targets, not shifted: as in transformers, logits at t are scored against labels[t + 1];
   * -100 is ignored.
   */
  labels?: TokenBatch;
  /** The divisor of the summed token losses (valid labels over the whole accumulated batch); default: the valid labels here. */
  num_items_in_batch?: number;
  /** Also compute the [B, T, V] logits when labels are given (they always are without labels). */
  return_logits?: boolean;
  /**
   * TRL's loss_type: "nll" (default) the token cross-entropy; "dft" its Dynamic Fine-Tuning loss, each token's
   * -p·log p with its probability p held constant (trl.trainer.sft_trainer.dft_loss).
   */
  loss_type?: "nll" | "dft";
}

export interface CausalLMOutput {
  /** [B, T, V], when asked for or when no labels were given. */
  logits?: Tensor;
  /** Scalar: mean token cross-entropy over the valid shifted labels (see num_items_in_batch). */
  loss?: Tensor;
  /** Token accuracy and entropy sums of the loss (with labels). */
  metrics?: CrossEntropyMetrics;
}

/** One decoder layer's KV cache: k and v, [B, capacity, KVH, D]. */
export interface KVCacheLayer {
  k: Tensor;
  v: Tensor;
}

/**
 * A causal LM as generate(), PeftModel and SFTTrainer use it (LlamaForCausalLM is one). generate(model, …) is
 * a function of this interface; a model's own generate() method calls it.
 */
export interface CausalLM {
  readonly config: LlamaFamilyConfig;
  /** generation_config.json, when the model directory has one. */
  generation_config: Record<string, unknown> | null;
  /** Where it was loaded from. */
  name_or_path: string;
  /** The files it was loaded from (the trainer copies the tokenizer's files from here). */
  source: ModelSource | null;
  training: boolean;
  /** The optimizer step, which LoRA dropout masks are drawn from (set by the trainer). */
  step: number;
  readonly is_gradient_checkpointing: boolean;

  /** The forward pass; with labels, the loss ready for backward(). Records GPU work, reads nothing back. */
  forward(inputs: ForwardInputs): CausalLMOutput;
  /**
   * Inference over a KV cache: the S new tokens `ids` [B, S] at positions `pos` [B, S] after `past` cached ones,
   * attending under `mask` [B, past + S]; writes each layer's k and v into `cache` (one layer each, see
   * KVCacheLayer) and returns the final hidden state of the last new token, [B, C]. Inside no_grad().
   */
  forwardCached(ids: Int32Array, pos: Int32Array, B: number, S: number, past: number, mask: Int32Array, cache: KVCacheLayer[]): Tensor;
  /** h [..., C] → logits [..., V]. */
  logitsOf(h: Tensor): Tensor;
  /**
   * longrope's switch length (Phi-3): RoPE uses the long factors once max(position) + 1 exceeds it, so a
   * generation reaching it recomputes its KV cache with them (transformers' Phi3ForCausalLM
   * prepare_inputs_for_generation); null or absent: none.
   */
  readonly longrope_switch?: number | null;

  /** The weights by transformers' names (see LlamaForCausalLM.named_parameters). */
  named_parameters(): [string, Tensor][];
  /** The parameters that require grad. */
  parameters(): Tensor[];
  /** Every linear layer of the decoder (PEFT's candidates; the LM head is not one). */
  linears(): Linear[];
  train(mode?: boolean): this;
  eval(): this;
  requires_grad_(flag?: boolean): this;
  gradient_checkpointing_enable(): void;
  gradient_checkpointing_disable(): void;

  /** The weights as f32 host arrays under transformers' names. */
  state_dict(): Promise<Map<string, { shape: number[]; data: Float32Array }>>;
  /** config.json, generation_config.json (if any) and model.safetensors. */
  model_files(): Promise<Record<string, Uint8Array>>;
  save_pretrained(dir: string): Promise<void>;
  dispose(): void;
}
