// webtune's command line: TRL's `trl sft`, on WebGPU. train.ts (in the repository) and the package's
// `webtune` bin (src/bin.ts, built to lib/bin.js) both run this.
//   sftMain(["--max_steps", "3", "--output_dir", "out"])       one run; resolves to the exit code
//   webtuneMain(["sft", "--help"])                             the `webtune` command: its subcommands and --help
import { deviceInfo, getDevice } from "../gpu/device.ts";
import { AutoModelForCausalLM } from "../models/auto.ts";
import type { LoraConfig, PeftModel } from "../models/peft.ts";
import { FACTS } from "../data/facts.ts";
import { loadSFTDatasets } from "../data/hub_datasets.ts";
import { tinyModelSource } from "../data/tiny.ts";
import { AutoTokenizer } from "../data/tokenizer.ts";
import { assertMaxStepsForStream, isSecretKey, SFT_DEFAULTS } from "./config.ts";
import { readSFTConfigFile, splitConfig } from "./config_file.ts";
import { exportTRLConfig } from "./export_config.ts";
import { fs } from "../io/fs.ts";
import { SFTTrainer, type TrainerCallback } from "./trainer.ts";

/** Which command prints --help: train.ts from the repository, or `webtune sft` from the package. */
export type CliProgram = "train.ts" | "webtune sft";

/** Where the command line prints. defaultHost() is the process's stdout/stderr (Deno or Node). */
export interface CliHost {
  /** stdout without a newline (the progress bar, --help). */
  write(s: string): void;
  /** A line on stdout. */
  log(s: string): void;
  /** A line on stderr (notes and errors). */
  error(s: string): void;
  /** Whether stdout is a terminal: a progress bar when it is, a line per log otherwise. */
  isTTY: boolean;
  /** How --help names the command (default "train.ts"). */
  program?: CliProgram;
}

type DenoLike = { args: string[]; exit(c: number): never; stdout: { isTerminal(): boolean; writeSync(b: Uint8Array): number } };
type ProcessLike = { argv: string[]; exit(c: number): never; stdout: { isTTY?: boolean; write(s: string): void } };
const g = globalThis as unknown as { Deno?: DenoLike; process?: ProcessLike };

/** The running process's stdout and stderr, under Deno or Node. */
export function defaultHost(program: CliProgram = "train.ts"): CliHost {
  const write = g.Deno
    ? (s: string) => void g.Deno!.stdout.writeSync(new TextEncoder().encode(s))
    : (s: string) => void g.process!.stdout.write(s);
  const isTTY = g.Deno ? g.Deno.stdout.isTerminal() : !!g.process!.stdout.isTTY;
  return { write, isTTY, log: (s) => console.log(s), error: (s) => console.error(s), program };
}

/** The process's arguments after the script (Deno.args, or process.argv from the third on) and its exit. */
export function processArgs(): { args: string[]; exit(code: number): never } {
  return g.Deno
    ? { args: g.Deno.args, exit: (c) => g.Deno!.exit(c) }
    : { args: g.process!.argv.slice(2), exit: (c) => g.process!.exit(c) };
}

const WEBTUNE_HELP = `webtune — fine-tune language models on WebGPU (TRL's SFTTrainer, in the browser, Deno and Node)

usage:
  webtune sft [options]     supervised fine-tuning, as \`trl sft\`: the flags train.ts takes
                            (webtune sft --help lists them; with none it runs the embedded default)
  webtune --help            this text

Node: npx webtune sft …   Deno: deno run -A npm:webtune sft …   (the library: import { SFTTrainer } from "webtune")
`;

/**
 * The package's `webtune` command: `webtune sft [flags]` is sftMain (train.ts's program), `webtune --help` this
 * usage. Resolves to the exit code; with no command it prints the usage on stderr and gives 1.
 */
export async function webtuneMain(argv: string[], host: CliHost = defaultHost("webtune sft")): Promise<number> {
  const [command, ...rest] = argv;
  if (command === "sft") return sftMain(rest, { ...host, program: "webtune sft" });
  if (command === "--help" || command === "-h" || command === "help") {
    host.write(WEBTUNE_HELP);
    return 0;
  }
  host.error(command === undefined ? WEBTUNE_HELP.trimEnd() : `error: unknown command "${command}": webtune's command is \`webtune sft [options]\` (see webtune --help)`);
  return 1;
}

/** --help's text; `program` is how the command was started (train.ts from the repository, or the package's bin). */
const help = (program: CliProgram): string => `webtune ${program === "train.ts" ? "train.ts" : "sft"} — supervised fine-tuning (TRL's SFTTrainer) on WebGPU

usage:
  ${program === "train.ts" ? "deno run -A train.ts [options]          (or: npx tsx train.ts [options])" : "webtune sft [options]                   (or: npx webtune sft, deno run -A npm:webtune sft)"}

With no options it runs the embedded default: a tiny Llama made from a fixed seed learns 64 made-up
facts (src/data/facts.ts) with LoRA, then shows what it generates for some of the prompts.

Model and data:
  --model PATH|URL|HUB_ID        a Llama/Mistral/Qwen2/Qwen3 directory, URL or Hub id (model_name_or_path)
  --dataset HUB_ID|FILE|URL      a Hub dataset id (org/name), or JSONL, JSON, Parquet, CSV or text rows in any TRL
                                 format (dataset_name; --dataset_config, --dataset_train_split, --dataset_test_split,
                                 --dataset_streaming as trl sft; a datasets: mixture in --config)
  --config FILE                  a YAML or JSON file with the keys \`trl sft --config\` takes; flags override it
  --output_dir DIR               checkpoints and the final adapter (default ${SFT_DEFAULTS.output_dir})
  --resume_from_checkpoint [ID]  continue from the newest complete checkpoint (or the one named)
  --export_config FILE           write the run (config file and flags) as a YAML that Python TRL runs unchanged,
                                 \`trl sft --config FILE\` (local data as a datasets: mixture), then exit without training
  --report_to tensorboard        TensorBoard event files in output_dir/runs/<date>_<host> (or --logging_dir DIR,
                                 or $TENSORBOARD_LOGGING_DIR), with transformers' tags (train/loss, eval/loss, …)

LoRA (TRL's ModelConfig keys):
  --use_peft [true|false]        train a LoRA adapter (default true here; false trains every weight)
  --lora_r N  --lora_alpha N  --lora_dropout P
  --lora_target_modules all-linear|q_proj,v_proj
  --lora_target_modules q_proj v_proj
                                 the linears that get adapters: all-linear, module names (commas or spaces
                                 between them; a module whose name is or ends with one), or one regular
                                 expression, which PEFT fullmatches against the module's whole name
  --save_gguf_adapter            also save the adapter as a llama.cpp LoRA GGUF, output_dir/adapter_model.gguf
                                 (llama-cli -m base.gguf --lora adapter_model.gguf; Ollama's ADAPTER)

Quantized base, QLoRA (TRL's ModelConfig keys; the base's linear weights are quantized as they load, LoRA trains in f32):
  --load_in_4bit [--bnb_4bit_quant_type nf4|fp4] [--use_bnb_nested_quant]   4-bit (default nf4; nested:
                                 double-quantized absmax statistics, as bitsandbytes)
  --load_in_8bit                 LLM.int8 weights (row-wise absmax int8)

Any SFTConfig key, as --key value (booleans: --key, --key false), e.g.:
  --learning_rate 2e-4 --num_train_epochs 3 --max_steps 200 --per_device_train_batch_size 8
  --gradient_accumulation_steps 4 --max_length 1024 --packing --packing_strategy bfd
  --completion_only_loss true --assistant_only_loss true --lr_scheduler_type cosine --warmup_steps 0.03
  --logging_steps 10 --save_steps 500 --save_total_limit 2 --eval_strategy steps --seed 42
Unknown keys are errors that suggest the nearest valid name.

Output: a progress bar on a terminal (plain log lines otherwise), then a summary; the adapter (or the
model) is saved to output_dir as PEFT / transformers files.
`;

/**
 * The flags that take several values, as TRL's list fields do (HfArgumentParser's nargs="+"):
 * `--lora_target_modules q_proj v_proj`, `--report_to tensorboard`.
 */
const LIST_FLAGS = ["lora_target_modules", "lora_modules_to_save", "lora_target_parameters", "report_to"];
/** Module-name lists, which also take the comma form `q_proj,v_proj`. */
const MODULE_LIST_FLAGS = ["lora_target_modules", "lora_modules_to_save", "lora_target_parameters"];

/**
 * A module list's values as a user means them: names, space- or comma-separated (`q_proj v_proj`,
 * `q_proj,v_proj`) → a list, matched as PEFT matches a list (a module whose name is, or ends with, one of them);
 * "all-linear", or one value with regular-expression characters (`.*\.(q|v)_proj`), → that string (PEFT
 * fullmatches a string). TRL turns a one-element list into its string, so `trl sft --lora_target_modules q_proj`
 * (or `q_proj,v_proj`) is a regular expression that matches no module there; here both mean the names.
 */
function moduleList(key: string, values: string[]): string | string[] {
  if (values.length === 1 && (values[0] === "all-linear" || /[*+?^$()[\]{}|\\]/.test(values[0]!))) return values[0]!;
  const names = values.flatMap((v) => v.split(",")).map((v) => v.trim()).filter((v) => v);
  if (!names.length) throw new Error(`--${key} needs module names: --${key} q_proj v_proj (or q_proj,v_proj, or all-linear)`);
  return names;
}

/**
 * --key value / --key=value / --flag / --no-flag → a flat mapping of strings and booleans; a list flag
 * (LIST_FLAGS) takes every value up to the next --flag (a module list: split on commas as well).
 */
function parseFlags(argv: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith("--")) throw new Error(`unexpected argument "${a}": options are --key value (see --help)`);
    let key = a.slice(2);
    let value: unknown;
    const values: string[] = [];
    const eq = key.indexOf("=");
    if (eq >= 0) [key, value] = [key.slice(0, eq), key.slice(eq + 1)];
    else if (key.startsWith("no-") || key.startsWith("no_")) [key, value] = [key.slice(3), false];
    else {
      while (i + 1 < argv.length && !argv[i + 1]!.startsWith("--")) values.push(argv[++i]!);
      value = values.length ? values[0] : true;
    }
    key = key.replaceAll("-", "_");
    if (key in out) throw new Error(`--${key} is given twice`);
    if (LIST_FLAGS.includes(key) && typeof value === "string") {
      const all = values.length ? values : [value];
      value = MODULE_LIST_FLAGS.includes(key) ? moduleList(key, all) : all.length === 1 ? all[0] : all;
    } else if (values.length > 1) {
      // secrets: a token's values are not shown.
      const shown = isSecretKey(key) ? `${values.length} values` : values.map((v) => JSON.stringify(v)).join(" ");
      throw new Error(`--${key} takes one value, got ${values.length} (${shown}); quote a value with spaces`);
    }
    out[key] = value;
  }
  return out;
}

const ALIASES: Record<string, string> = { model: "model_name_or_path", dataset: "dataset_name" };

/**
 * `trl sft` on WebGPU: train.ts's and `webtune sft`'s whole program. `argv` holds the flags (no program name);
 * the result is the exit code (0 done, 1 an error, printed as `error: …` on stderr).
 */
export async function sftMain(argv: string[], host: CliHost = defaultHost()): Promise<number> {
  try {
    await main(argv, host);
    return 0;
  } catch (e) {
    host.error(`error: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
}

async function main(argv: string[], host: CliHost): Promise<void> {
  const flags = parseFlags(argv);
  if (flags.help || flags.h) {
    host.write(help(host.program ?? "train.ts"));
    return;
  }
  for (const [short, long] of Object.entries(ALIASES)) {
    if (short in flags) {
      flags[long] = flags[short];
      delete flags[short];
    }
  }
  const configFile = flags.config;
  delete flags.config;
  const exportTo = flags.export_config;
  delete flags.export_config;
  if (exportTo !== undefined && (typeof exportTo !== "string" || !exportTo)) throw new Error("--export_config needs a file name: --export_config sft.yaml");
  // Not an SFTConfig key: webtune's own, read here.
  const saveGGUF = flags.save_gguf_adapter === true || flags.save_gguf_adapter === "true";
  delete flags.save_gguf_adapter;
  let fromFile: Record<string, unknown> = {};
  if (typeof configFile === "string") {
    fromFile = (await readSFTConfigFile(configFile)).data;
    splitConfig(fromFile, configFile, { coerce: true }); // the file's own problems, named by the file
  }
  const isDefault = !flags.model_name_or_path && !fromFile.model_name_or_path;
  const defaults: Record<string, unknown> = isDefault ? DEFAULT_RUN : { use_peft: true };
  // One mapping, split once: the file's keys as written (not resolved), so that a flag such as
  // --logging_steps still moves the eval_steps that follow it.
  const merged = { ...defaults, ...fromFile, ...flags };
  const notes: string[] = [];
  const cfg = splitConfig(merged, "the command line", { coerce: true, warn: (n) => notes.push(n) });
  for (const n of new Set(notes)) host.error(`note: ${n}`);
  if (typeof exportTo === "string") {
    const yaml = exportTRLConfig(merged, { warn: (n) => host.error(`note: --export_config: ${n}`) });
    await (await fs()).writeFile(exportTo, yaml);
    host.log(`wrote ${exportTo}: run it with Python TRL as \`trl sft --config ${exportTo}\` (or here: --config ${exportTo})`);
    return;
  }
  if (saveGGUF && !cfg.peft) throw new Error("--save_gguf_adapter saves a LoRA adapter, but this run trains every weight (use_peft false); convert the saved model with llama.cpp's convert_hf_to_gguf.py instead");

  await getDevice();
  const info = deviceInfo();
  host.log(`webtune on ${info.host}, ${info.adapter.description || info.adapter.vendor || "WebGPU"}`);
  const modelPath = isDefault ? tinyModelSource() : cfg.model.model_name_or_path;
  if (!modelPath) throw new Error("no model: give --model (a directory, URL or Hub id) or run without arguments for the default");
  const hasData = !!cfg.dataset.dataset_name || !!cfg.dataset.datasets?.length;
  if (!hasData && !isDefault) throw new Error("no dataset: give --dataset (a Hub dataset id, or a JSONL, JSON, Parquet, CSV or text file or URL), or a datasets: mixture in --config");
  // A stream has no length to count epochs over (transformers: max_steps must be set for an IterableDataset).
  if (hasData && cfg.dataset.dataset_streaming) assertMaxStepsForStream(cfg.args, "a streamed dataset (dataset_streaming / streaming)");
  // TRL's sft script: train on dataset_train_split; evaluate on dataset_test_split when eval_strategy != "no".
  const data = hasData
    ? await loadSFTDatasets(cfg.dataset, { eval: cfg.args.eval_strategy !== "no", seed: cfg.args.seed, warn: (m) => host.error(`note: ${m}`) })
    : { train: FACTS, eval: null };

  // TRL's model_revision: the Hub revision (branch, tag or commit) of the model and its tokenizer.
  const revision = cfg.model.model_revision && cfg.model.model_revision !== "main" ? { revision: cfg.model.model_revision } : {};
  const model = await AutoModelForCausalLM.from_pretrained(modelPath, {
    ...revision,
    // f16 / bf16 storage of the frozen base (LoRA); full fine-tuning trains f32 weights.
    dtype: cfg.peft && (cfg.model.dtype === "float16" || cfg.model.dtype === "bfloat16") ? cfg.model.dtype : "float32",
    quantization_config: cfg.quantization_config,
  });
  const tokenizer = await AutoTokenizer.from_pretrained(modelPath, revision);
  const trainer = new SFTTrainer({
    model,
    args: cfg.args,
    train_dataset: data.train as never,
    ...(data.eval ? { eval_dataset: data.eval } : {}),
    processing_class: tokenizer,
    ...(cfg.peft ? { peft_config: cfg.peft as LoraConfig } : {}),
    callbacks: [progress(host)],
    warn: (m) => host.error(`note: ${m}`),
  });
  const t0 = performance.now();
  const out = await trainer.train({ resume_from_checkpoint: cfg.args.resume_from_checkpoint ?? null });
  const secs = (performance.now() - t0) / 1000;
  await trainer.save_model(undefined, { gguf: saveGGUF });
  const logs = trainer.state.log_history.filter((l) => "loss" in l && "grad_norm" in l);
  const first = logs[0]?.loss;
  const last = logs[logs.length - 1];
  host.log(
    `\ndone: ${out.global_step} steps in ${secs.toFixed(1)} s, ${trainer.state.num_input_tokens_seen} tokens ` +
      `(${(trainer.state.num_input_tokens_seen / secs).toFixed(0)} tokens/s); loss ${first?.toFixed(4)} → ${last?.loss?.toFixed(4)}, ` +
      `token accuracy ${last ? (100 * last.mean_token_accuracy!).toFixed(1) : "-"}%; saved to ${cfg.args.output_dir}`,
  );
  if (isDefault) await showGenerations(host, trainer.peft!, tokenizer);
}

/** The embedded default run's settings: LoRA on a tiny model, enough epochs to memorise 64 short facts. */
export const DEFAULT_RUN: Readonly<Record<string, unknown>> = Object.freeze({
  use_peft: true,
  lora_r: 16,
  lora_alpha: 32,
  lora_dropout: 0,
  lora_target_modules: "all-linear",
  learning_rate: 1e-2,
  num_train_epochs: 24,
  per_device_train_batch_size: 16,
  lr_scheduler_type: "linear",
  warmup_steps: 5,
  logging_steps: 8,
  max_length: 64,
  gradient_checkpointing: false,
  save_strategy: "no",
  output_dir: "webtune-output",
});

/** A progress bar on a terminal; a line per log otherwise. */
function progress(host: CliHost): TrainerCallback {
  const tty = host.isTTY;
  let shown = false;
  return {
    on_log(_args, state, _control, logs) {
      // A non-finite step's record (nan_or_inf_step) is followed by the error that names it.
      if (!("loss" in logs) || "nan_or_inf_step" in logs) return;
      const f = (k: string, d = 4) => (logs[k] === undefined ? "-" : logs[k]!.toFixed(d));
      const line = `step ${state.global_step}/${state.max_steps}  loss ${f("loss")}  acc ${f("mean_token_accuracy", 3)}  lr ${logs.learning_rate === undefined ? "-" : logs.learning_rate.toExponential(2)}  ${f("tokens_per_second", 0)} tok/s`;
      if (tty) {
        const width = 24;
        const done = Math.round((width * state.global_step) / Math.max(1, state.max_steps));
        host.write(`\r[${"#".repeat(done)}${".".repeat(width - done)}] ${line}   `);
        shown = true;
      } else host.log(line);
    },
    on_train_end() {
      if (tty && shown) host.write("\n");
    },
  };
}

/** Greedy completions of every fact's prompt after training, and how many came out exactly. */
async function showGenerations(host: CliHost, peft: PeftModel, tokenizer: Awaited<ReturnType<typeof AutoTokenizer.from_pretrained>>): Promise<void> {
  const prompts = FACTS.map((f) => tokenizer.encode(f.prompt));
  const T = Math.max(...prompts.map((p) => p.length));
  const pad = tokenizer.pad_token_id ?? 0;
  const ids = prompts.map((p) => [...new Array<number>(T - p.length).fill(pad), ...p]);
  const mask = prompts.map((p) => [...new Array<number>(T - p.length).fill(0), ...p.map(() => 1)]);
  const out = await peft.generate(ids, { attention_mask: mask, max_new_tokens: 20, eos_token_id: tokenizer.eos_token_id ?? null });
  let exact = 0;
  const shown: string[] = [];
  FACTS.forEach((f, i) => {
    // The model's vocabulary may be padded past the tokenizer's: such ids have no text.
    let text = tokenizer.decode(out[i]!.slice(T).filter((t) => t < tokenizer.length), { skip_special_tokens: true });
    text = text.split("\n")[0]!;
    if (text.trim() === f.completion.trim()) exact++;
    if (i % 9 === 0) shown.push(`  ${f.prompt}${text}   ${text.trim() === f.completion.trim() ? "✓" : `✗ (expected${f.completion})`}`);
  });
  host.log(`\ngenerations after training (greedy):\n${shown.join("\n")}`);
  host.log(`${exact}/${FACTS.length} completions reproduced exactly`);
}
