// A PEFT LoRA adapter directory → a llama.cpp LoRA adapter GGUF, as llama.cpp's convert_lora_to_gguf.py
// --base BASE --outfile OUT ADAPTER does (src/models/gguf_writer.ts's loraGGUF: llama.cpp's tensor names,
// the Q/K row permutation of Llama-converted architectures, adapter.lora.alpha; F32 tensors).
//
// CLI (Node: `node --import tsx tools/lora-gguf.ts …`, Deno: `deno run -A tools/lora-gguf.ts …`):
//   lora-gguf.ts --base MODEL_DIR --outfile OUT.gguf [--name NAME] ADAPTER_DIR
// MODEL_DIR needs only config.json; ADAPTER_DIR holds adapter_config.json + adapter_model.safetensors.
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runIfMain } from "./cli.ts";

import { loraGGUFFromFiles } from "../src/models/gguf_writer.ts";

const USAGE = "usage: lora-gguf.ts --base MODEL_DIR --outfile OUT.gguf [--name NAME] ADAPTER_DIR";

/** Converts ADAPTER_DIR with the base's config.json from MODEL_DIR; returns the file's bytes. */
export async function convertLoraDir(base: string, adapter: string, name?: string): Promise<Uint8Array> {
  const json = async (p: string) => JSON.parse(await readFile(p, "utf8")) as Record<string, unknown>;
  return loraGGUFFromFiles({
    config: await json(join(base, "config.json")),
    adapter_config: await json(join(adapter, "adapter_config.json")),
    safetensors: new Uint8Array(await readFile(join(adapter, "adapter_model.safetensors"))),
    name,
  });
}

export async function main(argv: string[]): Promise<void> {
  const opts: Record<string, string> = {};
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--help" || a === "-h") return void console.log(USAGE);
    if (a.startsWith("--")) {
      const k = a.slice(2);
      if (!["base", "outfile", "name"].includes(k)) throw new Error(`lora-gguf: unknown option ${a}\n${USAGE}`);
      const v = argv[++i];
      if (v === undefined) throw new Error(`lora-gguf: ${a} needs a value\n${USAGE}`);
      opts[k] = v;
    } else rest.push(a);
  }
  if (!opts.base || !opts.outfile || rest.length !== 1) throw new Error(`lora-gguf: give --base, --outfile and one ADAPTER_DIR\n${USAGE}`);
  const bytes = await convertLoraDir(opts.base, rest[0]!, opts.name);
  await writeFile(opts.outfile, bytes);
  console.log(`wrote ${opts.outfile} (${bytes.length} bytes)`);
}

runIfMain(import.meta, main);
