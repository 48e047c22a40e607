// `trl sft` configs: a flat mapping split into SFTConfig, model, dataset and LoRA parts (a command line, or
// a config file), and the YAML/JSON files `trl sft --config` takes, read from a path, a URL, a File or text.
import { parse as parseYaml, YAMLParseError } from "yaml";
import { isFileLocation, openFile } from "../io/open.ts";
import { decodeUtf8 } from "../io/utf8.ts";
import type { LoraConfig } from "../models/peft.ts";
import {
  DATASET_CHECKS, DATASET_DEFAULTS, MODEL_CHECKS, MODEL_DEFAULTS, MODEL_IGNORED, MODEL_INACTIVE, PEFT_CHECKS, PEFT_DEFAULTS,
  quantizationConfigOf, type DatasetArgs, type ModelArgs,
} from "./cli_args.ts";
import type { BitsAndBytesConfig } from "../models/quantization.ts";
import { checked, isDict, isInactive, show, type Check } from "./config_checks.ts";
import { sftConfig, SFTConfigError, shownValue, type ResolvedSFTConfig, type SFTConfigOptions } from "./config.ts";

export interface LoadedSFTConfig {
  args: ResolvedSFTConfig;
  model: ModelArgs;
  dataset: DatasetArgs;
  /** A LoraConfig from use_peft and the lora_* keys (TRL's ModelConfig defaults); null without use_peft. */
  peft: LoraConfig | null;
  /**
   * TRL's get_quantization_config of the model keys (load_in_4bit, bnb_4bit_quant_type, use_bnb_nested_quant,
   * load_in_8bit): the quantization_config for from_pretrained / SFTTrainer, or null.
   */
  quantization_config: BitsAndBytesConfig | null;
  /** TRL's `env:` mapping (environment variables the run wants, e.g. HF_TOKEN); webtune sets none itself. */
  env: Record<string, string>;
  /** args.notes and the notes of the model/dataset/LoRA keys. */
  notes: string[];
}

export interface LoadOptions extends SFTConfigOptions {
  /** "json" or "yaml"; default: from the file extension, else JSON when the text starts with "{", else YAML. */
  format?: "json" | "yaml";
}

/** Where JSON.parse failed (its message has no position on every runtime): a validating scan of `text`. */
function jsonErrorOffset(text: string): number {
  let i = 0;
  const fail = (): never => {
    throw i;
  };
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i]!)) i++;
  };
  const string = () => {
    for (i++; text[i] !== '"'; i++) {
      if (i >= text.length || text.charCodeAt(i) < 0x20) fail();
      if (text[i] === "\\") i++;
    }
    i++;
  };
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === "{" || c === "[") {
      const close = c === "{" ? "}" : "]";
      i++;
      ws();
      if (text[i] === close) return void i++;
      for (;;) {
        if (c === "{") {
          ws();
          if (text[i] !== '"') fail();
          string();
          ws();
          if (text[i] !== ":") fail();
          i++;
        }
        value();
        ws();
        if (text[i] === close) return void i++;
        if (text[i] !== ",") fail();
        i++;
      }
    }
    if (c === '"') return string();
    const m = /^(?:true|false|null|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?)/.exec(text.slice(i, i + 64));
    if (!m) fail();
    i += m![0].length;
  };
  try {
    value();
    ws();
    return i < text.length ? i : text.length;
  } catch (at) {
    return at as number;
  }
}

/** A YAML/JSON parse error as "file:line:column: message". */
function parseText(text: string, name: string, format: "json" | "yaml"): unknown {
  if (format === "json") {
    try {
      return JSON.parse(text);
    } catch (e) {
      const msg = (e as Error).message.replace(/,? (\.\.\.)?"[\s\S]*"(\.\.\.)? is not valid JSON$/, "").replace(/\s*(in JSON )?at position \d+.*$/, "").replace(/\s*\(line \d+ column \d+\)/, "");
      const before = text.slice(0, jsonErrorOffset(text));
      const where = `:${before.split("\n").length}:${before.length - before.lastIndexOf("\n")}`;
      throw new SyntaxError(`${name}${where}: invalid JSON: ${msg}`);
    }
  }
  try {
    return parseYaml(text);
  } catch (e) {
    if (e instanceof YAMLParseError) {
      const at = e.linePos?.[0];
      const first = e.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "");
      throw new SyntaxError(`${name}${at ? `:${at.line}:${at.col}` : ""}: invalid YAML: ${first}`);
    }
    throw e;
  }
}

/** Whether a string is config text rather than a path: it has a line break, is a JSON object or reads as `key: value`. */
function looksLikeText(s: string): boolean {
  return s.includes("\n") || /^\s*\{/.test(s) || /^\s*[A-Za-z_][\w-]*\s*:(\s|$)/.test(s);
}

/** Where a `trl sft --config` file comes from: a path (Deno/Node), a URL, a File/Blob, or the text itself. */
export type ConfigSource = string | URL | Blob | { text: string; name?: string };

/**
 * The flat mapping of a `trl sft --config` file (YAML or JSON), unchecked, and the file's name. Syntax
 * errors name the file and the line. For merging with other keys (a command line) before splitConfig().
 */
export async function readSFTConfigFile(source: ConfigSource, options: Pick<LoadOptions, "format"> = {}): Promise<{ data: Record<string, unknown>; name: string }> {
  let text: string;
  let name: string;
  if (typeof source === "string" && looksLikeText(source)) [text, name] = [source, "<config text>"];
  else if (isFileLocation(source)) {
    // A path, a URL or a Blob, read through src/io (its errors name the file and say what to check).
    const file = openFile(source, {}, "config");
    name = typeof source === "string" ? source : source instanceof URL ? source.href : ((source as File).name || "<config blob>");
    try {
      text = decodeUtf8(await file.bytes.read(), name);
    } catch (e) {
      throw new Error(`loadSFTConfig: cannot read ${name}: ${(e as Error).message}`, { cause: e });
    }
  } else {
    const s = source as { text: string; name?: string };
    [text, name] = [s.text, s.name ?? "<config text>"];
  }
  const format = options.format ?? (/\.json$/i.test(name) ? "json" : /\.ya?ml$/i.test(name) ? "yaml" : /^\s*\{/.test(text) ? "json" : "yaml");
  const data = parseText(text, name, format);
  if (data === null || data === undefined) return { data: {}, name };
  if (!isDict(data)) throw new SFTConfigError(name, [`expected a mapping of options at the top level, got ${Array.isArray(data) ? "a list" : typeof data === "string" ? "a string (is it the config file? its text is not shown: it may be a token)" : show(data)}`]);
  return { data, name };
}

/**
 * Reads a `trl sft --config` file (readSFTConfigFile) and splits it (splitConfig): SFTConfig keys go through
 * sftConfig(); TRL's model keys (model_name_or_path, model_revision, dtype, …), dataset keys (dataset_name,
 * dataset_config, dataset_train_split, …) and LoRA keys (use_peft, lora_r, lora_alpha, lora_dropout,
 * lora_target_modules, …) are returned apart. Errors name the file.
 */
export async function loadSFTConfig(source: ConfigSource, options: LoadOptions = {}): Promise<LoadedSFTConfig> {
  const { data, name } = await readSFTConfigFile(source, options);
  return splitConfig(data, name, options);
}

/** Splits a flat `trl sft` mapping into SFTConfig, model, dataset and LoRA parts, validating each. */
export function splitConfig(data: Record<string, unknown>, name = "<config>", options: SFTConfigOptions = {}): LoadedSFTConfig {
  const problems: string[] = [];
  const notes: string[] = [];
  const sft: Record<string, unknown> = {};
  const model: Record<string, unknown> = { ...MODEL_DEFAULTS };
  const dataset: Record<string, unknown> = { ...DATASET_DEFAULTS };
  const lora: Record<string, unknown> = { ...PEFT_DEFAULTS };
  let env: Record<string, string> = {};
  const keep = (checks: Record<string, Check>, target: Record<string, unknown>, key: string, raw: unknown) => {
    const r = checked(checks[key]!, key, raw, options.coerce);
    if ("problem" in r) problems.push(r.problem);
    else target[key] = r.value;
  };
  for (const [key, raw] of Object.entries(data)) {
    if (raw === undefined) continue;
    if (key === "env") {
      if (isDict(raw) && Object.values(raw).every((v) => ["string", "number", "boolean"].includes(typeof v))) {
        env = Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, String(v)]));
      } else problems.push(`env=${shownValue("env", raw)} is not allowed: expected a mapping of environment variable names to values`);
    } else if (key in MODEL_CHECKS) keep(MODEL_CHECKS, model, key, raw);
    else if (key in DATASET_CHECKS) keep(DATASET_CHECKS, dataset, key, raw);
    else if (key in PEFT_CHECKS) keep(PEFT_CHECKS, lora, key, raw);
    else if (key in MODEL_IGNORED) {
      if (!isInactive(raw, MODEL_INACTIVE[key])) notes.push(`${key}=${shownValue(key, raw)}: ${MODEL_IGNORED[key]}`);
    } else sft[key] = raw;
  }
  let args: ResolvedSFTConfig | null = null;
  try {
    args = sftConfig(sft, { coerce: options.coerce });
  } catch (e) {
    if (!(e instanceof SFTConfigError)) throw e;
    problems.unshift(...e.problems);
  }
  // TRL's ModelConfig.__post_init__, and its help: "Works only with LoRA" (a quantized base is frozen).
  if (model.load_in_4bit === true && model.load_in_8bit === true) problems.push("load_in_4bit and load_in_8bit are both true: you can't use 8 bit and 4 bit precision at the same time");
  else if ((model.load_in_4bit === true || model.load_in_8bit === true) && lora.use_peft !== true) {
    problems.push(`${model.load_in_4bit === true ? "load_in_4bit" : "load_in_8bit"}=true needs use_peft: true: a quantized base model is frozen, so only LoRA adapters on top of it can be trained`);
  }
  if (problems.length || !args) throw new SFTConfigError(name, problems);

  if ("torch_dtype" in model) {
    if (data.dtype === undefined) model.dtype = model.torch_dtype;
    delete model.torch_dtype;
  }
  if ("streaming" in dataset) {
    if (data.dataset_streaming === undefined) dataset.dataset_streaming = dataset.streaming;
    delete dataset.streaming;
  }
  if (model.dtype === "bfloat16" || model.dtype === "float16") {
    notes.push(
      `dtype=${show(model.dtype)}: ${model.dtype === "bfloat16" ? "bf16" : "f16 (shader-f16)"} storage of the frozen base weights (linears, embedding, LM head) under LoRA; compute stays f32`,
    );
  }
  if (model.trust_remote_code === true) notes.push("trust_remote_code=true: ignored: webtune runs no model code from the Hub; it loads the architectures it implements (Llama, Mistral, Qwen2/3, Gemma 2/3, SmolLM3, Phi-3)");
  if (model.attn_implementation !== null) notes.push(`attn_implementation=${show(model.attn_implementation)}: ignored: webtune's own flash attention over packed sequences is always used`);

  let peft: LoraConfig | null = null;
  if (lora.use_peft === true) {
    let target = lora.lora_target_modules as string | string[] | null;
    // TRL collapses a one-element list to its string, which is what makes ["all-linear"] mean "all-linear".
    if (Array.isArray(target) && target.length === 1 && target[0] === "all-linear") target = "all-linear";
    peft = {
      r: lora.lora_r as number,
      lora_alpha: lora.lora_alpha as number,
      lora_dropout: lora.lora_dropout as number,
      target_modules: target,
      use_rslora: lora.use_rslora as boolean,
      bias: "none",
      task_type: "CAUSAL_LM",
    };
  } else {
    // Set to something but ModelConfig's default (a config dumped from Python holds them all, at their defaults).
    const set = Object.keys(data).filter(
      (k) => (k.startsWith("lora_") || k === "use_rslora" || k === "use_dora") && JSON.stringify(data[k]) !== JSON.stringify((PEFT_DEFAULTS as Record<string, unknown>)[k] ?? null),
    );
    if (set.length) notes.push(`${set.join(", ")}: ignored without use_peft: true (full fine-tuning)`);
  }
  for (const n of notes) options.warn?.(n);
  for (const n of args.notes) options.warn?.(n);
  return {
    args,
    model: model as unknown as ModelArgs,
    dataset: dataset as unknown as DatasetArgs,
    peft,
    quantization_config: quantizationConfigOf(model as unknown as ModelArgs),
    env,
    notes: [...args.notes, ...notes],
  };
}
