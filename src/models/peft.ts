// LoRA as PEFT does it: get_peft_model wraps the target linear layers of a model and freezes the rest;
// PeftModel names, saves and loads adapters in PEFT's formats (adapter_config.json + adapter_model.safetensors).
import { productInto } from "../kernels/matmul.ts";
import { isTrainable } from "../tensor/format.ts";
import { initLoraWeights } from "../ops/lora.ts";
import { keep } from "../tensor/scope.ts";
import { Tensor } from "../tensor/tensor.ts";
import type { TokenBatch } from "../ops/token_batch.ts";
import type { CausalLM, CausalLMOutput, ForwardInputs } from "./causal_lm.ts";
import type { SourceOptions } from "../io/http.ts";
import { writeDirectory } from "../io/local.ts";
import { openSource, type ModelLocation } from "../io/open.ts";
import { generate, type GenerateOptions } from "./generate.ts";
import { loraGGUF, type LoraGGUFInput } from "./gguf_writer.ts";
import { fnv1a, FNV_OFFSET } from "./init.ts";
import type { Linear } from "./linear.ts";
import { SafetensorsFile, writeSafetensors, type SafetensorsEntry } from "./safetensors.ts";

/** PEFT's LoraConfig: the same keys and defaults. */
export interface LoraConfig {
  /** Rank (default 8). */
  r?: number;
  /** Scaling numerator: scaling = lora_alpha / r (default 8). */
  lora_alpha?: number;
  /** Dropout on the adapter's input (default 0). */
  lora_dropout?: number;
  /**
   * Module names (a module matches when its path is the name or ends with "." + name), a regular
   * expression matched against the whole path, or "all-linear" (every linear layer but the LM head).
   * Default for the Llama family: ["q_proj", "v_proj"], as PEFT.
   */
  target_modules?: string[] | string | null;
  /** scaling = lora_alpha / sqrt(r) (default false). */
  use_rslora?: boolean;
  /** Only "none" (the default) is supported. */
  bias?: "none";
  /** Not supported: must be null or empty. */
  modules_to_save?: string[] | null;
  /** true (default): A Kaiming-uniform, B zeros; false: both random (not an identity; for tests). */
  init_lora_weights?: boolean;
  /** Restrict the adapter to these decoder layer indices. */
  layers_to_transform?: number[] | number | null;
  task_type?: "CAUSAL_LM";
  /** PEFT's other keys are accepted and written back as given. */
  [key: string]: unknown;
}

const DEFAULTS = {
  r: 8,
  lora_alpha: 8,
  lora_dropout: 0,
  use_rslora: false,
  bias: "none",
  init_lora_weights: true,
} as const;

/** The modules PEFT targets by default for these model types (llama, mistral, qwen2/3, gemma2, gemma3_text, …). */
const DEFAULT_TARGETS = ["q_proj", "v_proj"];
/** Model types webtune runs for which PEFT's TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING has no entry. */
const NO_DEFAULT_TARGETS = ["phi3", "smollm3"];

const PREFIX = "base_model.model.";

/** A LoraConfig with every key PEFT writes, filled with defaults. */
export type ResolvedLoraConfig = Required<Pick<LoraConfig, "r" | "lora_alpha" | "lora_dropout" | "use_rslora" | "bias" | "init_lora_weights">> &
  LoraConfig & { target_modules: string[] | string };

function resolve(config: LoraConfig): ResolvedLoraConfig {
  const c = { ...DEFAULTS, ...config, target_modules: config.target_modules ?? DEFAULT_TARGETS } as ResolvedLoraConfig;
  const fail = (why: string): never => {
    throw new Error(`LoraConfig: ${why}`);
  };
  if (!Number.isInteger(c.r) || c.r <= 0) fail(`r must be a positive integer, got ${c.r}`);
  if (typeof c.lora_alpha !== "number" || !Number.isFinite(c.lora_alpha)) fail(`lora_alpha must be a number, got ${c.lora_alpha}`);
  if (!(c.lora_dropout >= 0 && c.lora_dropout < 1)) fail(`lora_dropout must be in [0, 1), got ${c.lora_dropout}`);
  if (c.bias !== "none") fail(`bias "${c.bias}" is not supported; use "none"`);
  if (c.modules_to_save && c.modules_to_save.length) fail(`modules_to_save (${c.modules_to_save.join(", ")}) is not supported yet; train those modules with full fine-tuning instead`);
  if (c.task_type !== undefined && c.task_type !== "CAUSAL_LM") fail(`task_type "${c.task_type}" is not supported; use "CAUSAL_LM"`);
  if (c.peft_type !== undefined && c.peft_type !== "LORA") fail(`peft_type "${String(c.peft_type)}" is not LoRA; webtune loads LoRA adapters only`);
  if (c.use_dora) fail("use_dora (DoRA) is not supported; train a plain LoRA adapter");
  if (c.fan_in_fan_out) fail("fan_in_fan_out is for GPT-2-style Conv1D layers, which the Llama family does not have");
  for (const key of ["rank_pattern", "alpha_pattern"] as const) {
    const v = c[key];
    if (v && typeof v === "object" && Object.keys(v).length) fail(`${key} (per-module r or lora_alpha) is not supported; use one r and lora_alpha for every module`);
  }
  const t = c.target_modules;
  if (!(typeof t === "string" || (Array.isArray(t) && t.every((x) => typeof x === "string")))) {
    fail(`target_modules must be a list of module names, a regular expression or "all-linear", got ${JSON.stringify(t)}`);
  }
  return c;
}

/** Whether PEFT would adapt the module at `path` (model.layers.3.self_attn.q_proj). */
function targets(c: ResolvedLoraConfig, path: string): boolean {
  const t = c.target_modules;
  const layer = Number(/\.layers\.(\d+)\./.exec(path)?.[1]);
  const only = c.layers_to_transform;
  if (only !== null && only !== undefined && !(Array.isArray(only) ? only : [only]).includes(layer)) return false;
  if (t === "all-linear") return true;
  if (typeof t === "string") return new RegExp(`^(?:${t})$`).test(path);
  return t.some((name) => path === name || path.endsWith(`.${name}`));
}

/** A model with LoRA adapters on its target modules and its base weights frozen. */
export class PeftModel {
  readonly peft_config: ResolvedLoraConfig;
  readonly base_model: { model: CausalLM };
  /** The adapted layers. */
  readonly adapted: Linear[];

  private constructor(model: CausalLM, config: ResolvedLoraConfig, adapted: Linear[]) {
    this.base_model = { model };
    this.peft_config = config;
    this.adapted = adapted;
  }

  /** @internal Wraps `model` with fresh adapters (see get_peft_model). */
  static wrap(model: CausalLM, config: LoraConfig, options: { seed?: number; trainable?: boolean } = {}): PeftModel {
    if (config.target_modules == null && NO_DEFAULT_TARGETS.includes(model.config.model_type)) {
      // PEFT 0.21 has no default targets for these model types (Phi-3's attention is one fused qkv_proj).
      const names = [...new Set(model.linears().map((l) => l.name.split(".").pop()))];
      throw new Error(`LoraConfig: PEFT has no default target_modules for model_type "${model.config.model_type}"; give target_modules (its linear layers are ${names.join(", ")}, or "all-linear")`);
    }
    const c = resolve(config);
    if (model.linears().some((l) => l.lora)) throw new Error("get_peft_model: this model already has LoRA adapters");
    const adapted = model.linears().filter((l) => targets(c, l.name));
    if (!adapted.length) {
      const names = [...new Set(model.linears().map((l) => l.name.split(".").pop()))];
      throw new Error(`LoraConfig: target_modules ${JSON.stringify(c.target_modules)} match no module of the model; its linear layers are ${names.join(", ")} (or use "all-linear")`);
    }
    const scaling = c.use_rslora ? c.lora_alpha / Math.sqrt(c.r) : c.lora_alpha / c.r;
    const seed = options.seed ?? 0;
    for (const [, t] of model.named_parameters()) t.requires_grad = false;
    for (const lin of adapted) {
      // Each adapted layer's dropout stream and init seed: its name hashed from the seed.
      const s = fnv1a(lin.name, (FNV_OFFSET ^ seed) >>> 0);
      const { A, B } = initLoraWeights(lin.in_features, lin.out_features, c.r, s);
      lin.lora = { A: keep(A), B: keep(B), scaling, dropout: c.lora_dropout, seed: s };
      A.requires_grad = B.requires_grad = options.trainable ?? true;
    }
    return new PeftModel(model, c, adapted);
  }

  /**
   * Loads a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors, saved by webtune or by
   * Python PEFT) onto `model`. Frozen unless is_trainable.
   */
  static async from_pretrained(
    model: CausalLM,
    location: ModelLocation,
    options: SourceOptions & { is_trainable?: boolean } = {},
  ): Promise<PeftModel> {
    const source = await openSource(location, options);
    if (!(await source.exists("adapter_config.json"))) {
      throw new Error(`adapter_config.json not found in ${source.name}: a PEFT adapter directory holds adapter_config.json and adapter_model.safetensors`);
    }
    const raw = await source.json<LoraConfig>("adapter_config.json");
    if (!(await source.exists("adapter_model.safetensors"))) {
      const bin = await source.exists("adapter_model.bin");
      throw new Error(`adapter_model.safetensors not found in ${source.name}${bin ? " (it has adapter_model.bin: re-save the adapter with safe_serialization=True)" : ""}`);
    }
    const peft = PeftModel.wrap(model, raw, { trainable: options.is_trainable ?? false });
    const file = await SafetensorsFile.open(source, "adapter_model.safetensors");
    const expected = new Set<string>();
    try {
      for (const lin of peft.adapted) {
        for (const which of ["A", "B"] as const) {
          const name = `${PREFIX}${lin.name}.lora_${which}.weight`;
          expected.add(name);
          const alt = `${PREFIX}${lin.name}.lora_${which}.default.weight`;
          const stored = file.has(name) ? name : file.has(alt) ? alt : null;
          if (!stored) throw new Error(`adapter_model.safetensors in ${source.name} lacks "${name}", which adapter_config.json's target_modules imply`);
          const t = lin.lora![which];
          const info = file.info(stored);
          if (info.shape.join() !== t.shape.join()) {
            throw new Error(`adapter_model.safetensors in ${source.name}: "${stored}" is [${info.shape.join(", ")}] but the model needs [${t.shape.join(", ")}] (r=${peft.peft_config.r}); was the adapter trained on another model?`);
          }
          const loaded = keep(Tensor.fromArray(await file.readF32(stored), t.shape, { requires_grad: t.requires_grad }));
          t.dispose();
          lin.lora![which] = loaded;
        }
      }
    } catch (e) {
      peft.unload();
      throw e;
    }
    const extra = file.names.filter((n) => !expected.has(n) && !expected.has(n.replace(".default.weight", ".weight")));
    if (extra.length) {
      peft.unload();
      throw new Error(`adapter_model.safetensors in ${source.name} has tensors webtune cannot place: ${extra.slice(0, 3).join(", ")}${extra.length > 3 ? ", …" : ""}`);
    }
    return peft;
  }

  /** The wrapped model (for generate(), config, …). */
  get model(): CausalLM {
    return this.base_model.model;
  }

  get config() {
    return this.model.config;
  }

  forward(inputs: ForwardInputs): CausalLMOutput {
    return this.model.forward(inputs);
  }

  /** Generation with the adapters applied (see generate). */
  generate(input_ids: TokenBatch, options: GenerateOptions = {}): Promise<number[][]> {
    return generate(this.model, input_ids, options);
  }

  train(mode = true): this {
    this.model.train(mode);
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /**
   * Every parameter by PEFT's name: base weights of adapted layers as …q_proj.base_layer.weight, adapters as
   * base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight (the saved-file name), the rest prefixed.
   */
  named_parameters(): [string, Tensor][] {
    const adapted = new Set(this.adapted.map((l) => l.name));
    const out: [string, Tensor][] = [];
    for (const [name, t] of this.model.named_parameters()) {
      const mod = name.slice(0, name.lastIndexOf("."));
      out.push([adapted.has(mod) ? `${PREFIX}${mod}.base_layer${name.slice(mod.length)}` : PREFIX + name, t]);
    }
    for (const lin of this.adapted) {
      out.push([`${PREFIX}${lin.name}.lora_A.weight`, lin.lora!.A], [`${PREFIX}${lin.name}.lora_B.weight`, lin.lora!.B]);
    }
    return out;
  }

  /** The trainable parameters (the adapters, unless base weights were unfrozen). */
  parameters(): Tensor[] {
    return this.named_parameters()
      .map(([, t]) => t)
      .filter((t) => t.requires_grad);
  }

  /** [trainable, all] parameter counts, as PEFT's get_nb_trainable_parameters. */
  get_nb_trainable_parameters(): [number, number] {
    let trainable = 0;
    let all = 0;
    for (const [, t] of this.named_parameters()) {
      all += t.size;
      if (t.requires_grad) trainable += t.size;
    }
    return [trainable, all];
  }

  /** "trainable params: … || all params: … || trainable%: …", as PEFT prints it. */
  print_trainable_parameters(): string {
    const [t, a] = this.get_nb_trainable_parameters();
    const line = `trainable params: ${t.toLocaleString("en-US")} || all params: ${a.toLocaleString("en-US")} || trainable%: ${((100 * t) / a).toFixed(4)}`;
    console.log(line);
    return line;
  }

  /** adapter_config.json as PEFT writes it (sorted keys, indent 2). */
  adapter_config(): Record<string, unknown> {
    const c: Record<string, unknown> = {
      alpha_pattern: {},
      base_model_name_or_path: this.model.name_or_path || null,
      bias: "none",
      fan_in_fan_out: false,
      inference_mode: true,
      init_lora_weights: true,
      layers_pattern: null,
      layers_to_transform: null,
      lora_alpha: this.peft_config.lora_alpha,
      lora_dropout: this.peft_config.lora_dropout,
      modules_to_save: null,
      peft_type: "LORA",
      r: this.peft_config.r,
      rank_pattern: {},
      revision: null,
      target_modules: this.peft_config.target_modules,
      task_type: "CAUSAL_LM",
      use_dora: false,
      use_rslora: this.peft_config.use_rslora,
    };
    for (const [k, v] of Object.entries(this.peft_config)) if (!(k in c)) c[k] = v;
    // all-linear is resolved to the module names, as PEFT saves it.
    if (c.target_modules === "all-linear") c.target_modules = [...new Set(this.adapted.map((l) => l.name.split(".").pop()!))].sort();
    return Object.fromEntries(Object.keys(c).sort().map((k) => [k, c[k]]));
  }

  /** The adapter's files: adapter_config.json and adapter_model.safetensors ({"format": "pt"}, f32). */
  async adapter_files(): Promise<Record<string, Uint8Array>> {
    const tensors: Record<string, SafetensorsEntry> = {};
    for (const lin of this.adapted) {
      for (const which of ["A", "B"] as const) {
        const t = lin.lora![which];
        tensors[`${PREFIX}${lin.name}.lora_${which}.weight`] = { dtype: "F32", shape: t.shape, data: (await t.toArray()) as Float32Array };
      }
    }
    return {
      "adapter_config.json": new TextEncoder().encode(JSON.stringify(this.adapter_config(), null, 2)),
      "adapter_model.safetensors": writeSafetensors(tensors, { format: "pt" }),
    };
  }

  /**
   * The adapter as a llama.cpp LoRA GGUF (`llama-cli -m base.gguf --lora adapter.gguf`, Ollama's ADAPTER), as
   * llama.cpp's convert_lora_to_gguf.py (--outtype f32) writes it: llama.cpp's tensor names, q/k rows permuted
   * for Llama-converted architectures, adapter.lora.alpha (see gguf_writer.ts's loraGGUF). `name`: general.name.
   */
  async adapter_gguf(options: { name?: string } = {}): Promise<Uint8Array> {
    const tensors: LoraGGUFInput["tensors"] = {};
    for (const lin of this.adapted) {
      for (const which of ["A", "B"] as const) {
        const t = lin.lora![which];
        tensors[`${PREFIX}${lin.name}.lora_${which}.weight`] = { shape: t.shape, data: (await t.toArray()) as Float32Array };
      }
    }
    const c = this.model.config;
    const config = { architectures: [c.architecture], num_attention_heads: c.num_attention_heads, num_key_value_heads: c.num_key_value_heads };
    return loraGGUF({ config, adapter_config: this.adapter_config(), tensors, name: options.name });
  }

  /**
   * Writes the adapter to a directory (Deno/Node), as PEFT's save_pretrained: as one save (io/local.ts
   * writeDirectory: staged, fsync'd, committed, then moved in), so a crash never leaves files of two saves.
   */
  async save_pretrained(dir: string): Promise<void> {
    await writeDirectory(dir, await this.adapter_files());
  }

  /** Folds every adapter into its base weight (W += scaling · B·A) and returns the plain model. */
  merge_and_unload(): CausalLM {
    const frozen = this.adapted.find((l) => !isTrainable(l.weight.dtype));
    if (frozen) throw new Error(`merge_and_unload: ${frozen.name}.weight is stored as ${frozen.weight.dtype}; merging needs f32 weights (load with dtype "float32")`);
    for (const lin of this.adapted) {
      const { A, B, scaling } = lin.lora!;
      const [O, I] = lin.weight.shape as [number, number];
      const R = A.shape[0]!;
      productInto(B, false, A, false, lin.weight, O, I, R, { accumulate: true, alpha: scaling });
    }
    return this.unload();
  }

  /** Removes the adapters (without merging) and returns the plain model. */
  unload(): CausalLM {
    for (const lin of this.adapted) {
      lin.lora?.A.dispose();
      lin.lora?.B.dispose();
      lin.lora = null;
    }
    return this.model;
  }
}

/** PEFT's get_peft_model: LoRA on the target modules of `model`, the base frozen, adapters initialised as PEFT does. */
export function get_peft_model(model: CausalLM, config: LoraConfig, options: { seed?: number } = {}): PeftModel {
  return PeftModel.wrap(model, config, options);
}
