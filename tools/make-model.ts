// Hugging Face model directories with seeded random weights, and PEFT LoRA adapters for them: the models
// the loader, trainer and benchmark tests run on, and that tools/fixtures/models.py loads with transformers
// + peft to write the reference outputs (tests/fixtures/models.json).
//
// The files are made by tools/random-model.ts (host-neutral: presets, safetensors layout, adapters; re-exported
// here) from the architectures' descriptions and src/models/init.ts's seeded values; this module writes them to disk. makeModel(dir, options) writes
// config.json, generation_config.json, model.safetensors (or, with `shards: n`, model-0000i-of-0000n.safetensors
// + model.safetensors.index.json) and the fixture tokenizer's files, generating and writing tensors one chunk
// at a time, so real-size models (smollm2-135m) need no big buffer. makeAdapter(dir, options) writes
// adapter_config.json + adapter_model.safetensors of a PEFT LoRA adapter for such a model.
//
// CLI (Node: `node --import tsx tools/make-model.ts …`, Deno: `deno run -A tools/make-model.ts …`):
//   make-model.ts --arch ARCH --out DIR [--seed N] [--dtype float32|float16|bfloat16] [--shards N]
//                 [--no-tokenizer] [--config JSON]
//                 [--adapter DIR [--adapter-seed N] [--r 4] [--alpha 8] [--targets all-linear|q_proj,v_proj,…]
//                  [--dropout 0] [--rslora]]
//   ARCH: llama | llama3 | qwen2 | qwen3 | mistral | gemma2 | gemma3 | smollm3 | phi3 | phi4 (tiny: hidden 32,
//   2 layers, vocab 400; see tools/random-model.ts for what each exercises) | smollm2-135m.
//   --config '{"num_hidden_layers": 3}' merges keys into the preset's config.json. The adapter's seed
//   defaults to the model's seed + 1.
import { createHash } from "node:crypto";
import { mkdir, open, writeFile, readFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { runIfMain } from "./cli.ts";

import type { WeightSpec } from "../src/models/architecture.ts";
import {
  ARCHS, randomAdapter, randomModel, type Arch, type ModelConfig, type RandomAdapter, type RandomAdapterOptions, type RandomModelFile,
  type RandomModelOptions, type StorageDType,
} from "./random-model.ts";

export * from "./random-model.ts";
export type MakeModelOptions = RandomModelOptions;

export interface MadeModel {
  dir: string;
  config: ModelConfig;
  /** Every file written, relative to dir, sorted. */
  files: string[];
  /** The tensors, in file order. */
  tensors: WeightSpec[];
}

export interface MakeAdapterOptions extends Omit<RandomAdapterOptions, "model"> {
  /** The model's config.json (an object), or the model directory to read it from. */
  model: ModelConfig | string;
}

export interface MadeAdapter extends Omit<RandomAdapter, "files"> {
  dir: string;
}

/** Writes one file, chunk by chunk. */
async function writeChunks(path: string, file: RandomModelFile): Promise<void> {
  const fh = await open(path, "w");
  try {
    let pos = 0;
    for (const bytes of file.chunks()) {
      let done = 0;
      while (done < bytes.length) {
        const { bytesWritten } = await fh.write(bytes, done, bytes.length - done, pos);
        done += bytesWritten;
        pos += bytesWritten;
      }
    }
  } finally {
    await fh.close();
  }
}

/** Writes a Hugging Face model directory with seeded random weights (see tools/random-model.ts). */
export async function makeModel(dir: string, options: MakeModelOptions = {}): Promise<MadeModel> {
  const made = randomModel(options);
  await mkdir(dir, { recursive: true });
  for (const file of made.files) await writeChunks(join(dir, file.name), file);
  return { dir, config: made.config, files: made.files.map((f) => f.name).sort(), tensors: made.tensors };
}

/** Writes a PEFT LoRA adapter directory for a model (see randomAdapter in tools/random-model.ts). */
export async function makeAdapter(dir: string, options: MakeAdapterOptions): Promise<MadeAdapter> {
  const model = typeof options.model === "string" ? (JSON.parse(await readFile(join(options.model, "config.json"), "utf8")) as ModelConfig) : options.model;
  const { files, ...made } = randomAdapter({ ...options, model });
  await mkdir(dir, { recursive: true });
  for (const [name, bytes] of Object.entries(files)) await writeFile(join(dir, name), bytes);
  return { dir, ...made };
}

/** sha256 (hex) of a file: for comparing made directories. */
export async function fileSha256(path: string): Promise<string> {
  return createHash("sha256").update(await readFile(path)).digest("hex");
}

// ---------------------------------------------------------------------------------------------------------
// CLI.

const USAGE = `usage: make-model.ts --arch ${ARCHS.join("|")} --out DIR [--seed N] [--dtype float32|float16|bfloat16]
                     [--shards N] [--no-tokenizer] [--config JSON]
                     [--adapter DIR [--adapter-seed N] [--r N] [--alpha N] [--targets all-linear|q_proj,v_proj,…] [--dropout P] [--rslora]]`;

export async function main(argv: string[]): Promise<void> {
  const opts: Record<string, string | true> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith("--")) throw new Error(`unexpected argument "${a}"\n${USAGE}`);
    const key = a.slice(2);
    if (key === "no-tokenizer" || key === "rslora" || key === "help") opts[key] = true;
    else {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value\n${USAGE}`);
      opts[key] = v;
    }
  }
  const known = ["arch", "out", "seed", "dtype", "shards", "no-tokenizer", "config", "adapter", "adapter-seed", "r", "alpha", "targets", "dropout", "rslora", "help"];
  for (const k of Object.keys(opts)) if (!known.includes(k)) throw new Error(`unknown option --${k}\n${USAGE}`);
  if (opts.help || typeof opts.out !== "string") {
    console.log(USAGE);
    if (!opts.help) process.exitCode = 2;
    return;
  }
  const int = (k: string): number | undefined => {
    const v = opts[k];
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n)) throw new Error(`--${k} must be an integer (got ${String(v)})`);
    return n;
  };
  const arch = (opts.arch ?? "llama") as Arch;
  if (!ARCHS.includes(arch)) throw new Error(`--arch must be one of ${ARCHS.join(", ")}`);
  const seed = int("seed") ?? 0;
  const made = await makeModel(opts.out, {
    arch,
    seed,
    dtype: (opts.dtype as StorageDType | undefined) ?? "float32",
    shards: int("shards") ?? 1,
    tokenizer: !opts["no-tokenizer"],
    config: typeof opts.config === "string" ? (JSON.parse(opts.config) as ModelConfig) : undefined,
  });
  console.log(`wrote ${arch} (seed ${seed}, ${made.tensors.length} tensors) to ${made.dir}: ${made.files.join(", ")}`);
  if (typeof opts.adapter === "string") {
    const targets = typeof opts.targets === "string" && opts.targets !== "all-linear" ? opts.targets.split(",").map((s) => s.trim()) : "all-linear";
    const adapter = await makeAdapter(opts.adapter, {
      model: made.config,
      seed: int("adapter-seed") ?? (seed + 1) >>> 0,
      r: int("r") ?? 4,
      alpha: opts.alpha === undefined ? undefined : Number(opts.alpha),
      targets,
      dropout: opts.dropout === undefined ? undefined : Number(opts.dropout),
      rslora: opts.rslora === true,
    });
    console.log(`wrote LoRA adapter (r ${String(adapter.config.r)}, ${adapter.tensors.length} tensors) to ${adapter.dir}`);
  }
}

runIfMain(import.meta, main);
