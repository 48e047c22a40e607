// The Llama family as transformers' modeling_llama / qwen2 / qwen3 / mistral / gemma2 / gemma3 / smollm3 / phi3
// computes it, built from webtune's ops: embedding (× sqrt(hidden_size) for Gemma) → N × (RMSNorm → attention
// with RoPE → residual → RMSNorm → gated MLP → residual) → RMSNorm → LM head (soft-capped for Gemma), with the
// loss from the fused chunked cross-entropy. What a layer has comes from the architecture's description: biases,
// q/k norms (Qwen3, Gemma 3), fused qkv_proj / gate_up_proj (Phi-3, split along the last dim), Gemma's sandwich
// norms (pre/post_feedforward_layernorm present: the attention and MLP outputs are normed before each residual);
// and from the parsed config, per layer: its attention window (layer_types), its RoPE (none for SmolLM3's NoPE
// layers, Gemma 3's local one on sliding layers, partial / longrope for Phi-3), the attention scale and soft-cap.
import { gpu } from "../gpu/device.ts";
import { checkpoint } from "../nn/checkpoint.ts";
import { attention } from "../ops/attention.ts";
import { fused_linear_cross_entropy, IGNORE_INDEX } from "../ops/cross_entropy.ts";
import { add, scale, softcap } from "../ops/elementwise.ts";
import { embedding } from "../ops/embedding.ts";
import { kv_cache_write, attention_cached } from "../ops/kv_cache.ts";
import { concat, reshape, slice } from "../ops/layout.ts";
import { linear } from "../ops/matmul.ts";
import { rmsnorm } from "../ops/rmsnorm.ts";
import { rope, RotaryEmbedding } from "../ops/rope.ts";
import { geglu, swiglu } from "../ops/swiglu.ts";
import { flatBatch, type TokenBatch } from "../ops/token_batch.ts";
import { is_grad_enabled } from "../tensor/autograd.ts";
import { isPacked, isTrainable, type WeightFormat } from "../tensor/format.ts";
import { Tensor } from "../tensor/tensor.ts";
import {
  EMBED_TOKENS, FINAL_NORM, layerPrefix, LM_HEAD, toStored, weightsOf,
  type Activation, type Architecture, type LlamaFamilyConfig, type ModuleSpec, type Norm,
} from "./architecture.ts";
import type { CausalLM, CausalLMOutput, ForwardInputs, KVCacheLayer } from "./causal_lm.ts";
import { architectureOf } from "./config.ts";
import { writeDirectory } from "../io/local.ts";
import type { ModelSource } from "../io/source.ts";
import { generate, type GenerateOptions } from "./generate.ts";
import { Linear, type RunState } from "./linear.ts";
import { writeSafetensors, type SafetensorsEntry } from "./safetensors.ts";
import { floatKeys } from "./tiny.ts";

/** The op of each norm flavour: x [..., C] and its weight [C]. */
const NORMS: Record<Norm, (x: Tensor, w: Tensor, eps: number) => Tensor> = { rmsnorm };
/** The gated MLP's act(gate) · up for each hidden_act. */
const GATED: Record<Activation, (gate: Tensor, up: Tensor) => Tensor> = { silu: swiglu, gelu_pytorch_tanh: geglu };

/** How one decoder layer attends: its RoPE (null: none) and attention options. */
interface LayerAttention {
  rotary: RotaryEmbedding | null;
  scale: number | undefined;
  sliding_window: number | null;
  softcap: number | null;
}

/** A [V, C] weight, or its row blocks (each within one buffer binding). */
export type VocabWeight = Tensor | readonly Tensor[];

function blocksOf(w: VocabWeight): readonly Tensor[] {
  return Array.isArray(w) ? w : [w as Tensor];
}

function vocabEntries(name: string, w: VocabWeight): [string, Tensor][] {
  return Array.isArray(w) ? w.map((b, j): [string, Tensor] => [`${name}:${j}`, b]) : [[name, w as Tensor]];
}

/**
 * One decoder layer: its modules by name (the last part of their path), those the description has (the others
 * null): q_proj, k_proj and v_proj or Phi-3's fused qkv_proj; gate_proj and up_proj or its gate_up_proj.
 */
export interface DecoderLayer {
  input_layernorm: Tensor;
  q_proj: Linear | null;
  k_proj: Linear | null;
  v_proj: Linear | null;
  /** Phi-3: [(H + 2·KVH)·D, C], q | k | v along the output. */
  qkv_proj: Linear | null;
  o_proj: Linear;
  /** Qwen3, Gemma 3: [head_dim] */
  q_norm: Tensor | null;
  k_norm: Tensor | null;
  post_attention_layernorm: Tensor;
  /** Gemma: the MLP's input norm (post_attention_layernorm then norms the attention output). */
  pre_feedforward_layernorm: Tensor | null;
  /** Gemma: norms the MLP output before the residual. */
  post_feedforward_layernorm: Tensor | null;
  gate_proj: Linear | null;
  up_proj: Linear | null;
  /** Phi-3: [2I, C], gate | up along the output. */
  gate_up_proj: Linear | null;
  down_proj: Linear;
}

/** Every module name a DecoderLayer has (a description naming another is an error). */
const LAYER_MODULES = [
  "input_layernorm", "q_proj", "k_proj", "v_proj", "qkv_proj", "o_proj", "q_norm", "k_norm", "post_attention_layernorm",
  "pre_feedforward_layernorm", "post_feedforward_layernorm", "gate_proj", "up_proj", "gate_up_proj", "down_proj",
];

type LayerModule = Linear | Tensor | null;

/** A Llama-family causal LM: Llama, Mistral, Qwen2, Qwen3, Gemma2, Gemma3 (text), SmolLM3, Phi3 ForCausalLM. */
export class LlamaForCausalLM implements CausalLM {
  readonly config: LlamaFamilyConfig;
  /** [V, C], or its row blocks when larger than one buffer binding (see splitRows). */
  readonly embed_tokens: VocabWeight;
  readonly layers: DecoderLayer[];
  readonly norm: Tensor;
  /** The LM head, [V, C] (or row blocks): embed_tokens itself when tied. */
  readonly lm_head: VocabWeight;
  /** The RoPE of full-attention layers (and of all where the architecture has one RoPE). */
  readonly rotary: RotaryEmbedding;
  /** Each layer's RoPE and attention options. */
  private readonly attn: LayerAttention[];
  /** generation_config.json, when the model directory has one. */
  generation_config: Record<string, unknown> | null = null;
  /** Where it was loaded from. */
  name_or_path = "";
  /** The files it was loaded from (the trainer copies the tokenizer's files from here). */
  source: ModelSource | null = null;
  /** Whether forward recomputes each decoder layer in backward instead of keeping its activations. */
  is_gradient_checkpointing = false;
  training = false;
  /** The optimizer step, which LoRA dropout masks are drawn from (set by the trainer). */
  step = 0;
  /** The modules of each decoder layer, from the architecture's description. */
  private readonly modules: readonly ModuleSpec[];
  private readonly arch: Architecture;
  private readonly normOp: (x: Tensor, w: Tensor, eps: number) => Tensor;
  private readonly gatedOp: (gate: Tensor, up: Tensor) => Tensor;

  /** `params`: every weight of the description but the [V, C] ones, by transformers' name; `vocab`: those. */
  constructor(config: LlamaFamilyConfig, params: Map<string, Tensor>, vocab: { embed_tokens: VocabWeight; lm_head?: VocabWeight }) {
    this.config = config;
    const arch = architectureOf(config);
    this.arch = arch;
    this.modules = arch.layer(config);
    this.normOp = NORMS[arch.norm];
    this.gatedOp = GATED[config.hidden_act];
    const take = (name: string): Tensor => {
      const t = params.get(name);
      if (!t) throw new Error(`${config.architecture}: weight "${name}" is missing`);
      return t;
    };
    this.embed_tokens = vocab.embed_tokens;
    this.norm = take(FINAL_NORM);
    if (!config.tie_word_embeddings && !vocab.lm_head) throw new Error(`${config.architecture}: weight "${LM_HEAD}" is missing`);
    this.lm_head = config.tie_word_embeddings ? this.embed_tokens : vocab.lm_head!;
    this.layers = [];
    for (const m of this.modules) {
      if (!LAYER_MODULES.includes(moduleName(m))) throw new Error(`${config.architecture}: its description has a layer module "${m.path}" that the model does not run (it runs ${LAYER_MODULES.join(", ")})`);
    }
    for (let i = 0; i < config.num_hidden_layers; i++) {
      const p = layerPrefix(i);
      const layer: Record<string, LayerModule> = Object.fromEntries(LAYER_MODULES.map((n) => [n, null]));
      for (const m of this.modules) {
        const path = `${p}.${m.path}`;
        layer[moduleName(m)] = m.kind === "norm" ? take(`${path}.weight`) : new Linear(path, take(`${path}.weight`), m.bias ? take(`${path}.bias`) : null);
      }
      this.layers.push(layer as unknown as DecoderLayer);
    }
    const rotary = (rope_theta: number, rope_scaling: LlamaFamilyConfig["rope_scaling"]) =>
      new RotaryEmbedding({
        head_dim: config.head_dim,
        rope_theta,
        rope_scaling,
        max_position_embeddings: config.max_position_embeddings,
        partial_rotary_factor: config.partial_rotary_factor,
        ...(config.original_max_position_embeddings !== null ? { original_max_position_embeddings: config.original_max_position_embeddings } : {}),
      });
    this.rotary = rotary(config.rope_theta, config.rope_scaling);
    const local = config.sliding_rope ? rotary(config.sliding_rope.rope_theta, config.sliding_rope.rope_scaling) : this.rotary;
    this.localRotary = local === this.rotary ? null : local;
    const scale = config.query_pre_attn_scalar !== null ? config.query_pre_attn_scalar ** -0.5 : undefined;
    this.attn = config.layer_types.map((type, i) => {
      const sliding = type === "sliding_attention";
      return {
        rotary: config.use_rope[i] ? (sliding ? local : this.rotary) : null,
        scale,
        sliding_window: sliding ? config.sliding_window : null,
        softcap: config.attn_logit_softcapping,
      };
    });
    // Gemma: torch.tensor(hidden_size**0.5).to(embedding dtype); the embedding is held in f32.
    this.embedScale = arch.scaleEmbeddings ? Math.fround(Math.sqrt(config.hidden_size)) : null;
  }

  /** longrope's original_max_position_embeddings (see CausalLM.longrope_switch), else null. */
  get longrope_switch(): number | null {
    const r = [this.rotary, this.localRotary].find((x) => x?.long_inv_freq);
    return r ? r.original_max_position_embeddings : null;
  }

  /** Gemma 3's RoPE of sliding layers, when it has one of its own. */
  private readonly localRotary: RotaryEmbedding | null;
  /** The factor on the embedding output (Gemma), or null. */
  private readonly embedScale: number | null;

  /** A layer's modules in the description's order. */
  private modulesOf(l: DecoderLayer): (Linear | Tensor)[] {
    return this.modules.map((m) => (l as unknown as Record<string, Linear | Tensor>)[moduleName(m)]!);
  }

  /**
   * The weights by their transformers names (state-dict order, the description's; a tied LM head appears
   * once, as model.embed_tokens.weight, like torch's named_parameters). A weight stored as row blocks appears as
   * one entry per block, named `model.embed_tokens.weight:0`, `:1`, … in row order.
   */
  named_parameters(): [string, Tensor][] {
    const out: [string, Tensor][] = vocabEntries(EMBED_TOKENS, this.embed_tokens);
    this.layers.forEach((l, i) => {
      this.modulesOf(l).forEach((m, j) => {
        if (m instanceof Linear) {
          out.push([`${m.name}.weight`, m.weight]);
          if (m.bias) out.push([`${m.name}.bias`, m.bias]);
        } else out.push([`${layerPrefix(i)}.${this.modules[j]!.path}.weight`, m]);
      });
    });
    out.push([FINAL_NORM, this.norm]);
    if (this.lm_head !== this.embed_tokens) out.push(...vocabEntries(LM_HEAD, this.lm_head));
    return out;
  }

  /** The parameters that require grad. */
  parameters(): Tensor[] {
    return this.named_parameters()
      .map(([, t]) => t)
      .filter((t) => t.requires_grad);
  }

  /** Every linear layer of the decoder, by module path (the LM head is not among them, as for PEFT's all-linear). */
  linears(): Linear[] {
    return this.layers.flatMap((l) => this.linearsOf(l));
  }

  private linearsOf(l: DecoderLayer): Linear[] {
    return this.modulesOf(l).filter((m): m is Linear => m instanceof Linear);
  }

  train(mode = true): this {
    this.training = mode;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  gradient_checkpointing_enable(): void {
    this.is_gradient_checkpointing = true;
  }

  gradient_checkpointing_disable(): void {
    this.is_gradient_checkpointing = false;
  }

  /** Gives every weight requires_grad = `flag` (full fine-tuning: true). */
  requires_grad_(flag = true): this {
    const frozen = this.named_parameters().find(([, t]) => !isTrainable(t.dtype));
    if (flag && frozen) {
      throw new Error(
        isPacked(frozen[1].dtype as WeightFormat)
          ? `requires_grad_: ${frozen[0]} is stored as ${frozen[1].dtype}, a format for frozen weights (quantized by quantization_config or a GGUF file); ` +
              "train LoRA adapters on it (get_peft_model), or load the float model without quantization_config for full fine-tuning"
          : `requires_grad_: ${frozen[0]} is stored as ${frozen[1].dtype}, a format for frozen weights; load the model with dtype "float32" for full fine-tuning`,
      );
    }
    for (const [, t] of this.named_parameters()) t.requires_grad = flag;
    return this;
  }

  /**
   * The forward pass. With labels: the loss of the shifted labels from the fused chunked cross-entropy (no
   * [tokens × V] logits unless return_logits), with its gradients ready for loss.backward(). Synchronous: it
   * only records GPU work, and nothing is read back.
   */
  forward(inputs: ForwardInputs): CausalLMOutput {
    const cfg = this.config;
    const ids = flatBatch("input_ids", inputs.input_ids);
    const { B, T } = ids;
    const positions = inputs.position_ids ? flatBatch("position_ids", inputs.position_ids, { B, T, of: "input_ids" }).data : null;
    const mask = inputs.attention_mask ? flatBatch("attention_mask", inputs.attention_mask, { B, T, of: "input_ids" }).data : null;
    const labels = inputs.labels ? flatBatch("labels", inputs.labels, { B, T, of: "input_ids" }).data : null;
    const pos = positions ?? Int32Array.from({ length: B * T }, (_, i) => i % T);
    const run: RunState = { training: this.training, step: this.step };
    let h = this.embed(embedding(this.embed_tokens, ids.data, [B, T], { padding_idx: this.paddingIdx() }));
    const checkpointing = this.is_gradient_checkpointing && this.training && is_grad_enabled();
    for (const [i, layer] of this.layers.entries()) {
      const f = (x: Tensor) => this.decoderLayer(layer, i, x, B, T, pos, positions, mask, run);
      h = checkpointing ? checkpoint(([x]) => f(x!), [h], this.layerLeaves(layer)) : f(h);
    }
    h = this.normOp(h, this.norm, cfg.rms_norm_eps);
    const out: CausalLMOutput = {};
    if (labels) {
      const shifted = new Int32Array(B * T).fill(IGNORE_INDEX);
      for (let b = 0; b < B; b++) for (let t = 0; t + 1 < T; t++) shifted[b * T + t] = labels[b * T + t + 1]!;
      const ce = fused_linear_cross_entropy(h, this.lm_head, shifted, {
        num_items_in_batch: inputs.num_items_in_batch,
        dft: inputs.loss_type === "dft",
        softcap: cfg.final_logit_softcapping,
      });
      out.loss = ce.loss;
      out.metrics = ce.metrics;
    }
    if (!labels || inputs.return_logits) out.logits = this.logitsOf(h);
    return out;
  }

  /**
   * Inference over a KV cache: the S new tokens `ids` [B, S] at positions `pos` [B, S], after `past` cached
   * ones; each layer writes its k and v at past..past+S-1 of its cache [B, capacity, KVH, D] and attends
   * the cache under `mask` [B, past + S]. Returns the final hidden state of the last new token, [B, C].
   * Call inside no_grad().
   */
  forwardCached(ids: Int32Array, pos: Int32Array, B: number, S: number, past: number, mask: Int32Array, cache: KVCacheLayer[]): Tensor {
    const run: RunState = { training: false, step: this.step };
    let h = this.embed(embedding(this.embed_tokens, ids, [B, S]));
    this.layers.forEach((layer, i) => {
      const c = cache[i]!;
      const a = this.attn[i]!;
      h = this.decoderLayer(layer, i, h, B, S, pos, null, null, run, (q, k, v) => {
        kv_cache_write(c.k, k, past);
        kv_cache_write(c.v, v, past);
        return attention_cached(q, c.k, c.v, { past, attention_mask: mask, scale: a.scale, sliding_window: a.sliding_window, softcap: a.softcap });
      });
    });
    const last = S === 1 ? h : slice(h, 1, S - 1, S);
    return this.normOp(reshape(last, [B, this.config.hidden_size]), this.norm, this.config.rms_norm_eps);
  }

  /**
   * h [..., C] · lm_headᵀ → [..., V] (block by block when the head is split), soft-capped by
   * final_logit_softcapping (Gemma) as transformers returns them (and generate samples from them).
   */
  logitsOf(h: Tensor): Tensor {
    const w = this.lm_head;
    const z = Array.isArray(w) ? concat(w.map((b) => linear(h, b)), h.ndim - 1) : linear(h, w as Tensor);
    const c = this.config.final_logit_softcapping;
    return c ? softcap(z, c) : z;
  }

  /** The embedding output, scaled where the architecture does (Gemma). */
  private embed(h: Tensor): Tensor {
    return this.embedScale === null ? h : scale(h, this.embedScale);
  }

  /** One decoder layer (number `i`) on h [B, T, C]. */
  private decoderLayer(
    l: DecoderLayer, i: number, x: Tensor, B: number, T: number, pos: Int32Array,
    packed: Int32Array | null, mask: Int32Array | null, run: RunState,
    attend?: (q: Tensor, k: Tensor, v: Tensor) => Tensor,
  ): Tensor {
    const cfg = this.config;
    const { num_attention_heads: H, num_key_value_heads: KVH, head_dim: D, intermediate_size: I, rms_norm_eps: eps } = cfg;
    const norm = this.normOp;
    const at = this.attn[i]!;
    const h = norm(x, l.input_layernorm, eps);
    let q: Tensor, k: Tensor, v: Tensor;
    if (l.qkv_proj) {
      const qkv = l.qkv_proj.forward(h, run);
      q = slice(qkv, -1, 0, H * D);
      k = slice(qkv, -1, H * D, (H + KVH) * D);
      v = slice(qkv, -1, (H + KVH) * D, (H + 2 * KVH) * D);
    } else {
      q = l.q_proj!.forward(h, run);
      k = l.k_proj!.forward(h, run);
      v = l.v_proj!.forward(h, run);
    }
    q = reshape(q, [B, T, H, D]);
    k = reshape(k, [B, T, KVH, D]);
    v = reshape(v, [B, T, KVH, D]);
    if (l.q_norm) q = norm(q, l.q_norm, eps);
    if (l.k_norm) k = norm(k, l.k_norm, eps);
    if (at.rotary) {
      q = rope(q, pos, at.rotary);
      k = rope(k, pos, at.rotary);
    }
    const a = attend
      ? attend(q, k, v)
      : attention(q, k, v, {
          ...(packed ? { position_ids: packed } : {}),
          ...(mask ? { attention_mask: mask } : {}),
          scale: at.scale,
          sliding_window: at.sliding_window,
          softcap: at.softcap,
        });
    let o = l.o_proj.forward(reshape(a, [B, T, H * D]), run);
    const sandwich = l.pre_feedforward_layernorm !== null;
    if (sandwich) o = norm(o, l.post_attention_layernorm, eps);
    const x2 = add(x, o);
    const h2 = norm(x2, sandwich ? l.pre_feedforward_layernorm! : l.post_attention_layernorm, eps);
    let gate: Tensor, up: Tensor;
    if (l.gate_up_proj) {
      const gu = l.gate_up_proj.forward(h2, run);
      gate = slice(gu, -1, 0, I);
      up = slice(gu, -1, I, 2 * I);
    } else {
      gate = l.gate_proj!.forward(h2, run);
      up = l.up_proj!.forward(h2, run);
    }
    let mlp = l.down_proj.forward(this.gatedOp(gate, up), run);
    if (l.post_feedforward_layernorm) mlp = norm(mlp, l.post_feedforward_layernorm, eps);
    return add(x2, mlp);
  }

  private layerLeaves(l: DecoderLayer): Tensor[] {
    return this.modulesOf(l).flatMap((m) => (m instanceof Linear ? m.leaves() : [m]));
  }

  /** transformers gives the embedding padding_idx = pad_token_id: that row gets no gradient. */
  private paddingIdx(): number | null {
    const p = this.config.pad_token_id;
    return p !== null && p >= 0 && p < this.config.vocab_size ? p : null;
  }

  /**
   * Continues each row of `input_ids` (number[] for one row) with a KV cache on the GPU; returns prompt + new
   * tokens per row. See GenerateOptions (max_new_tokens, do_sample, temperature, top_k, top_p, eos_token_id, seed, …).
   */
  generate(input_ids: TokenBatch, options: GenerateOptions = {}): Promise<number[][]> {
    return generate(this, input_ids, options);
  }

  /**
   * The weights under transformers' names as f32 host arrays, as files store them (after the description's
   * save transform; row blocks joined back into one tensor; a tied head appears once), read back from the GPU
   * one tensor at a time.
   */
  async state_dict(): Promise<Map<string, { shape: number[]; data: Float32Array }>> {
    const out = new Map<string, { shape: number[]; data: Float32Array }>();
    const specs = new Map(weightsOf(this.arch, this.config).map((w) => [w.name, w]));
    const put = (name: string, shape: number[], data: Float32Array) => out.set(name, { shape, data: toStored(this.arch, specs.get(name)!, data) });
    const vocab = new Map<string, readonly Tensor[]>([[EMBED_TOKENS, blocksOf(this.embed_tokens)]]);
    if (this.lm_head !== this.embed_tokens) vocab.set(LM_HEAD, blocksOf(this.lm_head));
    for (const [name, t] of this.named_parameters()) {
      const base = name.replace(/:\d+$/, "");
      const blocks = vocab.get(base);
      if (blocks) {
        if (out.has(base)) continue;
        const C = blocks[0]!.shape[1]!;
        const rows = blocks.reduce((s, b) => s + b.shape[0]!, 0);
        const data = new Float32Array(rows * C);
        let at = 0;
        for (const b of blocks) {
          data.set((await b.toArray()) as Float32Array, at);
          at += b.size;
        }
        put(base, [rows, C], data);
      } else {
        put(name, [...t.shape], (await t.toArray()) as Float32Array);
      }
    }
    return out;
  }

  /** A Hugging Face model directory's files: config.json, generation_config.json (if any) and model.safetensors (f32). */
  async model_files(): Promise<Record<string, Uint8Array>> {
    const tensors: Record<string, SafetensorsEntry> = {};
    for (const [name, t] of await this.state_dict()) tensors[name] = { dtype: "F32", shape: t.shape, data: t.data };
    const json = (o: unknown) => new TextEncoder().encode(JSON.stringify(o, null, 2) + "\n");
    const config = { ...this.config.raw, torch_dtype: "float32" };
    return {
      "config.json": new TextEncoder().encode(floatKeys(JSON.stringify(config, null, 2)) + "\n"),
      ...(this.generation_config ? { "generation_config.json": json(this.generation_config) } : {}),
      "model.safetensors": writeSafetensors(tensors, { format: "pt" }),
    };
  }

  /** Writes config.json, generation_config.json and model.safetensors to `dir` (Deno/Node), as transformers' save_pretrained. */
  async save_pretrained(dir: string): Promise<void> {
    await writeDirectory(dir, await this.model_files());
  }

  /** Frees every weight (and adapter) of the model. */
  dispose(): void {
    for (const [, t] of this.named_parameters()) t.dispose();
    for (const lin of this.linears()) {
      lin.lora?.A.dispose();
      lin.lora?.B.dispose();
    }
    this.rotary.dispose();
    this.localRotary?.dispose();
  }

  /** The device the model lives on. */
  get device(): GPUDevice {
    return gpu().device;
  }
}

/** The name of a module in its DecoderLayer: the last part of its path (self_attn.q_proj → q_proj). */
function moduleName(m: ModuleSpec): string {
  return m.path.slice(m.path.lastIndexOf(".") + 1);
}
