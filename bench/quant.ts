// Quantized bases side by side (issue 12's benchmark): for each preset, the same random-weight model loaded as an
// f32, f16, NF4 and Q4_K base, its peak GPU bytes (while loading, and over a LoRA training step) and the step's
// tokens/s: LoRA r 16 on every linear layer (all-linear), BENCH_TOKENS tokens (default 512), gradient
// checkpointing on, forward + backward + AdamW. Then the matmul each base's linears run, on the preset's linear
// shapes at M = BENCH_MATMUL_M tokens (default 512): x·Wᵀ with W in f32, f16, NF4, Q4_K and Q8_0 (the packed
// ones dequantized inside the kernel as they are read; also Q5_0, the Q4_K file's fallback), GFLOP/s side by side.
// Runs under Deno (`deno run -A bench/quant.ts`: wgpu; llvmpipe without a GPU) and Node
// (`node --import tsx bench/quant.ts`: Dawn; SwiftShader without a GPU). Prints the tables and writes
// bench/results/quant-<preset>-<host>-<adapter>-<date>.json, one file per preset (a run of some bases keeps the
// other bases' results, and the matmul rows when it skips them, of the same day's file).
//
// The bases, all from the same weights (tools/make-model.ts, seed 1, the preset's published config.json):
//   f32   from_pretrained(dir): the safetensors model as it is.
//   f16   from_pretrained(dir, { dtype: "float16" }): decoder linears, embedding and head in f16 (norms f32);
//         skipped, with a note, where the adapter lacks shader-f16.
//   nf4   from_pretrained(dir, { dtype: "bfloat16", quantization_config: { load_in_4bit: true,
//         bnb_4bit_quant_type: "nf4" } }): QLoRA as `trl sft --dtype bfloat16 --load_in_4bit` loads it: the
//         linears bitsandbytes NF4 (blocks of 64, f32 absmax) quantized on the host while loading, the embedding
//         and head in bf16 (norms f32).
//   q4_k  from_pretrained("<preset>-q4_k.gguf"): a GGUF file written here in TS (src/models/gguf_writer.ts, no
//         Python), loaded through the real GGUF path, which keeps block-format linears packed on the GPU. Every
//         2-D weight whose rows are whole blocks of 256 is Q4_K; the others (Qwen2.5-0.5B's 896-wide rows)
//         take llama.cpp's fallback for Q4_K, Q5_0 (llama-quant.cpp: a row not divisible by QK_K); norms and
//         biases F32; Llama's q/k rows permuted as convert_hf_to_gguf does (the loader un-permutes them). So it
//         is a Q4_K_S-like file (Q4_K_M also keeps some attn_v/ffn_down in Q6_K; the bytes differ little). The
//         embedding (token_embd, tied as the LM head in both presets) is written the same way; whether it stays
//         packed on the GPU is the loader's choice (src/models/auto.ts), which the peak shows.
// Targets (issue 12, for the 4-bit bases, 1 GB = 10⁹ bytes): Llama 3.2 1B at most 1.5 GB peak, Qwen2.5-0.5B
// at most 0.9 GB; the table marks each met or not (peak = the larger of the load and step peaks).
//
// BENCH_MODEL: comma-separated presets (default "qwen2.5-0.5b,llama-3.2-1b"); BENCH_BASES (default
// "f32,f16,nf4,q4_k"); BENCH_TOKENS (default 512; another count is named in the file: quant-…-t64.json);
// BENCH_STEPS: timed steps after the warm-up (default 2; 0 runs the warm-up alone, for the peaks, its time
// compilation included and marked warm_up_only);
// BENCH_MATMUL_M (default 512; 0 skips the matmul part); BENCH_MATMUL_FORMATS (default
// "f32,f16,nf4,q4_k,q5_0,q8_0": q5_0 is what the Q4_K file holds where rows are not whole 256-blocks).
// One failing base or preset (out of memory) is reported and the others still run; the exit status says so.
// The f32 model directory and the GGUF file are made once per machine under the OS temp directory
// (webtune-bench-<preset>, webtune-bench-<preset>-q4_k.gguf) and re-made when the preset's config changes.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AdamW, AutoModelForCausalLM, get_peft_model, getDevice, matmul, memoryStats, sync, Tensor, type LlamaForCausalLM } from "../src/index.ts";
import { gpu } from "../src/gpu/device.ts";
import { GGUFWriter, permuteRows, type GGMLTypeName } from "../src/models/gguf_writer.ts";
import { parameterCount, presetOf, type ModelPreset } from "../src/models/presets.ts";
import { jsonText } from "../src/models/tiny.ts";
import { blockShapeError, quantize } from "../src/tensor/quant.ts";
import { randomModel, tensorValues } from "../tools/make-model.ts";
import { adapterOf, env, intEnv, median, MiB, modelDir, modelOptions, random, trainSteps, type StepResult } from "./util.ts";

const T = intEnv("BENCH_TOKENS", 512, 1);
const STEPS = intEnv("BENCH_STEPS", 2, 0);
const MATMUL_M = intEnv("BENCH_MATMUL_M", 512, 0);
const list = (k: string, fallback: string) => (env(k) ?? fallback).split(",").map((s) => s.trim()).filter(Boolean);
const PRESETS = list("BENCH_MODEL", "qwen2.5-0.5b,llama-3.2-1b").map(presetOf);
const BASES = ["f32", "f16", "nf4", "q4_k"] as const;
type Base = (typeof BASES)[number];
const bases = list("BENCH_BASES", BASES.join(",")).map((b) => {
  if (!(BASES as readonly string[]).includes(b)) throw new Error(`BENCH_BASES: unknown base "${b}"; the bases are ${BASES.join(", ")}`);
  return b as Base;
});
const MATMUL_FORMATS = ["f32", "f16", "nf4", "q4_k", "q5_0", "q8_0"] as const;
type MatmulFormat = (typeof MATMUL_FORMATS)[number];
const matmulFormats = list("BENCH_MATMUL_FORMATS", MATMUL_FORMATS.join(",")).map((f) => {
  if (!(MATMUL_FORMATS as readonly string[]).includes(f)) throw new Error(`BENCH_MATMUL_FORMATS: unknown format "${f}"; the formats are ${MATMUL_FORMATS.join(", ")}`);
  return f as MatmulFormat;
});
/** Issue 12's peak targets for the 4-bit bases, in bytes (10⁹ a GB). */
const TARGETS: Record<string, number> = { "qwen2.5-0.5b": 0.9e9, "llama-3.2-1b": 1.5e9 };
const FOUR_BIT: readonly Base[] = ["nf4", "q4_k"];
const GB = (b: number) => +(b / 1e9).toFixed(3);

await getDevice();
const info = adapterOf();

// ---------------------------------------------------------------------------------------------------------
// The Q4_K GGUF file

/** llama.cpp's architecture names of the config's model_type (those whose GGUF tensors need no value change). */
const GGUF_ARCH: Record<string, string> = { llama: "llama", mistral: "llama", qwen2: "qwen2", qwen3: "qwen3" };
const LAYER_NAMES: Record<string, string> = {
  input_layernorm: "attn_norm",
  "self_attn.q_proj": "attn_q",
  "self_attn.k_proj": "attn_k",
  "self_attn.v_proj": "attn_v",
  "self_attn.o_proj": "attn_output",
  "self_attn.q_norm": "attn_q_norm",
  "self_attn.k_norm": "attn_k_norm",
  "mlp.gate_proj": "ffn_gate",
  "mlp.up_proj": "ffn_up",
  "mlp.down_proj": "ffn_down",
  post_attention_layernorm: "ffn_norm",
};

/** llama.cpp's name of a transformers tensor (gguf-py's tensor map for these architectures). */
function ggufTensor(hf: string): string {
  const top: Record<string, string> = { "model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight" };
  if (top[hf]) return top[hf]!;
  const m = /^model\.layers\.(\d+)\.(.+)\.(weight|bias)$/.exec(hf);
  const name = m ? LAYER_NAMES[m[2]!] : undefined;
  if (!m || !name) throw new Error(`q4_k base: no llama.cpp name for tensor ${hf}`);
  return `blk.${m[1]}.${name}.${m[3]}`;
}

/** Q4_K where a row is whole 256-blocks, else llama.cpp's fallback Q5_0 (then Q8_0, F16 when even 32 fails). */
function blockType(shape: readonly number[]): GGMLTypeName {
  if (shape.length < 2) return "F32";
  if (!blockShapeError("q4_k", shape)) return "Q4_K";
  if (!blockShapeError("q5_0", shape)) return "Q5_0";
  return "F16";
}

/**
 * The preset's model as a Q4_K GGUF file (see the header), made unless the one there was made for the same
 * config.json; returns its path and the tensor types' counts.
 */
function q4kGGUF(preset: ModelPreset): { path: string; types: Record<string, number> } {
  const options = modelOptions(preset);
  const model = randomModel(options);
  const cfg = model.config as Record<string, unknown>;
  const stamp = jsonText({ format: "q4_k v1", config: cfg });
  const path = join(tmpdir(), `webtune-bench-${preset.name}-q4_k.gguf`);
  const side = `${path}.json`;
  const types: Record<string, number> = {};
  for (const w of model.tensors) types[blockType(w.shape)] = (types[blockType(w.shape)] ?? 0) + 1;
  if (existsSync(path) && existsSync(side) && readFileSync(side, "utf8") === stamp) return { path, types };

  const arch = GGUF_ARCH[cfg.model_type as string];
  if (!arch) throw new Error(`q4_k base: model_type ${JSON.stringify(cfg.model_type)} has no GGUF writer here (${Object.keys(GGUF_ARCH).join(", ")})`);
  const num = (k: string) => cfg[k] as number;
  const nHead = num("num_attention_heads");
  const nKV = (cfg.num_key_value_heads as number | undefined) ?? nHead;
  const headDim = (cfg.head_dim as number | undefined) ?? num("hidden_size") / nHead;
  console.log(`writing the Q4_K GGUF to ${path} …`);
  const t0 = performance.now();
  const w = new GGUFWriter(arch);
  w.add_type("model");
  w.add_name(`${preset.name} random weights`);
  w.add_uint32(`${arch}.block_count`, num("num_hidden_layers"));
  w.add_uint32(`${arch}.context_length`, num("max_position_embeddings"));
  w.add_uint32(`${arch}.embedding_length`, num("hidden_size"));
  w.add_uint32(`${arch}.feed_forward_length`, num("intermediate_size"));
  w.add_uint32(`${arch}.attention.head_count`, nHead);
  w.add_uint32(`${arch}.attention.head_count_kv`, nKV);
  w.add_float32(`${arch}.rope.freq_base`, num("rope_theta"));
  w.add_float32(`${arch}.attention.layer_norm_rms_epsilon`, num("rms_norm_eps"));
  w.add_uint32(`${arch}.vocab_size`, num("vocab_size"));
  if (arch === "llama") w.add_uint32(`${arch}.rope.dimension_count`, headDim);
  if (arch === "qwen3") w.add_uint32(`${arch}.attention.key_length`, headDim);
  w.add_file_type(15); // LLAMA_FTYPE_MOSTLY_Q4_K_M, the name a Q4_K file goes by
  if (typeof cfg.bos_token_id === "number") w.add_uint32("tokenizer.ggml.bos_token_id", cfg.bos_token_id);
  if (typeof cfg.eos_token_id === "number") w.add_uint32("tokenizer.ggml.eos_token_id", cfg.eos_token_id);
  w.add_quantization_version(2);
  for (const spec of model.tensors) {
    const name = ggufTensor(spec.name);
    let values = tensorValues(options.seed!, spec);
    // convert_hf_to_gguf LlamaModel.permute: q/k rows to llama.cpp's interleaved RoPE layout.
    if (arch === "llama" && /\.attn_[qk]\./.test(name)) {
      const [rows] = spec.shape as [number];
      values = permuteRows(values, rows, values.length / rows, name.includes(".attn_q.") ? nHead : nKV);
    }
    const type = blockType(spec.shape);
    const K = spec.shape[spec.shape.length - 1]!;
    if (type === "Q4_K") w.add_tensor(name, quantize("q4_k", values, K, name), spec.shape, "Q4_K");
    else if (type === "Q5_0") w.add_tensor(name, quantize("q5_0", values, K, name), spec.shape, "Q5_0");
    else w.add_tensor(name, values, spec.shape, type);
  }
  writeFileSync(path, w.write());
  writeFileSync(side, stamp);
  console.log(`  written in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return { path, types };
}

// ---------------------------------------------------------------------------------------------------------
// One base: load, LoRA step

interface BaseResult {
  base: Base;
  skipped?: string;
  error?: string;
  load?: { seconds: number; peak_bytes: number; peak_mib: number; gguf_tensor_types?: Record<string, number> };
  lora_training_checkpointing?: StepResult;
  /** The larger of the load and step peaks. */
  peak_bytes?: number;
  target_bytes?: number;
  target_met?: boolean;
}

async function load(preset: ModelPreset, base: Base, dir: string): Promise<{ model: LlamaForCausalLM; types?: Record<string, number> }> {
  if (base === "f32") return { model: await AutoModelForCausalLM.from_pretrained(dir) };
  if (base === "f16") return { model: await AutoModelForCausalLM.from_pretrained(dir, { dtype: "float16" }) };
  if (base === "nf4") {
    return { model: await AutoModelForCausalLM.from_pretrained(dir, { dtype: "bfloat16", quantization_config: { load_in_4bit: true, bnb_4bit_quant_type: "nf4" } }) };
  }
  const { path, types } = q4kGGUF(preset);
  return { model: await AutoModelForCausalLM.from_pretrained(path), types };
}

async function benchBase(preset: ModelPreset, base: Base, dir: string): Promise<BaseResult> {
  if (base === "f16" && !info.shader_f16) return { base, skipped: `the adapter (${info.adapter}) lacks shader-f16` };
  if (base === "q4_k") q4kGGUF(preset); // written before the peak is reset (host work)
  console.log(`${preset.name} ${base}:`);
  await sync();
  gpu().pool.trim();
  gpu().pool.resetPeak();
  const t0 = performance.now();
  const { model, types } = await load(preset, base, dir);
  let opt: AdamW | null = null;
  try {
    await sync();
    const seconds = +((performance.now() - t0) / 1000).toFixed(2);
    const loadPeak = memoryStats().peakBytes;
    console.log(`  load: ${seconds} s, peak ${MiB(loadPeak)} MiB`);
    const peft = get_peft_model(model, { r: 16, lora_alpha: 32, target_modules: "all-linear" });
    opt = new AdamW(peft.parameters(), { lr: 1e-4 });
    const V = model.config.vocab_size;
    const ids = [Array.from({ length: T }, (_, i) => (i * 7919 + 13) % V)];
    peft.train();
    const step = await trainSteps(model, peft, opt, ids, true, STEPS);
    model.gradient_checkpointing_disable();
    console.log(`  ${step.tokens_per_s} tokens/s, peak ${step.peak_mib} MiB`);
    const peak = Math.max(loadPeak, step.peak_bytes);
    const target = FOUR_BIT.includes(base) ? TARGETS[preset.name] : undefined;
    return {
      base,
      load: { seconds, peak_bytes: loadPeak, peak_mib: MiB(loadPeak), ...(types ? { gguf_tensor_types: types } : {}) },
      lora_training_checkpointing: step,
      peak_bytes: peak,
      ...(target ? { target_bytes: target, target_met: peak <= target } : {}),
    };
  } finally {
    opt?.dispose();
    model.dispose();
    await sync();
  }
}

// ---------------------------------------------------------------------------------------------------------
// The dequantizing matmul on the preset's linear shapes

interface MatmulRow {
  name: string;
  M: number;
  K: number;
  N: number;
  /** GFLOP/s per format (median of the timed runs), or why it did not run. */
  gflops: Partial<Record<MatmulFormat, number | string>>;
}

/** The preset's distinct decoder linear shapes [out N, in K]. */
function linearShapes(preset: ModelPreset): { name: string; K: number; N: number }[] {
  const c = preset.config as Record<string, number>;
  const H = c.hidden_size!;
  const heads = c.num_attention_heads!;
  const hd = c.head_dim ?? H / heads;
  const kv = (c.num_key_value_heads ?? heads) * hd;
  const I = c.intermediate_size!;
  const shapes = [
    { name: "q_proj", K: H, N: heads * hd },
    { name: "k/v_proj", K: H, N: kv },
    { name: "o_proj", K: heads * hd, N: H },
    { name: "gate/up_proj", K: H, N: I },
    { name: "down_proj", K: I, N: H },
  ];
  return shapes.filter((s, i) => shapes.findIndex((t) => t.K === s.K && t.N === s.N) === i);
}

async function benchMatmul(preset: ModelPreset, M: number): Promise<MatmulRow[]> {
  const rows: MatmulRow[] = [];
  for (const { name, K, N } of linearShapes(preset)) {
    const x = Tensor.fromArray(random(M * K, 1), [M, K]);
    const values = random(N * K, 2, 0.05);
    const row: MatmulRow = { name, M, K, N, gflops: {} };
    for (const f of matmulFormats) {
      if (f === "f16" && !info.shader_f16) { row.gflops[f] = "no shader-f16"; continue; }
      const err = f === "f32" || f === "f16" ? null : blockShapeError(f, [N, K]);
      if (err) { row.gflops[f] = `rows of ${K} are not whole ${f} blocks`; continue; }
      const w = Tensor.fromArray(values, [N, K], { dtype: f });
      const run = async () => {
        const t = performance.now();
        const y = matmul(x, w, { transpose_b: true });
        await sync();
        const ms = performance.now() - t;
        y.dispose();
        return ms;
      };
      const warm = await run(); // compiles the pipeline
      const n = Math.min(9, Math.max(3, Math.ceil(2000 / warm)));
      const times: number[] = [];
      for (let i = 0; i < n; i++) times.push(await run());
      row.gflops[f] = +((2 * M * N * K) / median(times) / 1e6).toFixed(2);
      w.dispose();
    }
    x.dispose();
    rows.push(row);
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------------------
// Tables

function printBases(preset: ModelPreset, results: BaseResult[]): void {
  const cols = (a: string, b: string, c: string, d: string, e: string) => `${a.padEnd(6)} ${b.padStart(16)} ${c.padStart(16)} ${d.padStart(10)}  ${e}`;
  const target = TARGETS[preset.name];
  console.log(`\n${preset.id}: LoRA r=16 all-linear, ${T} tokens, gradient checkpointing, on ${info.host}, ${info.adapter}`);
  const header = cols("base", "load peak MiB", "step peak MiB", "tokens/s", target ? `4-bit target ≤ ${target / 1e9} GB peak` : "");
  console.log(header);
  console.log("-".repeat(header.length));
  if (STEPS === 0) console.log("(tokens/s in parentheses: the warm-up step alone, pipeline compilation included)");
  for (const r of results) {
    if (r.skipped || r.error) {
      console.log(cols(r.base, "—", "—", "—", r.skipped ? `skipped: ${r.skipped}` : `failed: ${r.error}`));
      continue;
    }
    const step = r.lora_training_checkpointing!;
    const mark = r.target_bytes ? `${r.target_met ? "met" : "NOT met"} (${GB(r.peak_bytes!)} GB)` : "";
    const speed = step.warm_up_only ? `(${step.tokens_per_s})` : `${step.tokens_per_s}`;
    console.log(cols(r.base, `${r.load!.peak_mib}`, `${step.peak_mib}`, speed, mark));
  }
}

function printMatmul(preset: ModelPreset, rows: MatmulRow[]): void {
  console.log(`\n${preset.id}: x·Wᵀ GFLOP/s by W's format (M = ${rows[0]?.M} tokens)`);
  const head = `${"linear [M×K]·[N×K]ᵀ".padEnd(38)} ${matmulFormats.map((f) => f.padStart(9)).join(" ")}`;
  console.log(head);
  console.log("-".repeat(head.length));
  for (const r of rows) {
    const cells = matmulFormats.map((f) => (typeof r.gflops[f] === "number" ? `${r.gflops[f]}` : "n/a").padStart(9));
    console.log(`${`${r.name} [${r.M}×${r.K}]·[${r.N}×${r.K}]ᵀ`.padEnd(38)} ${cells.join(" ")}`);
  }
  const notes = new Set(rows.flatMap((r) => Object.entries(r.gflops).filter(([, v]) => typeof v === "string").map(([f, v]) => `${f}: ${v}`)));
  for (const n of notes) console.log(`  n/a ${n}`);
}

// ---------------------------------------------------------------------------------------------------------

let failed = 0;
for (const preset of PRESETS) {
  const size = parameterCount(preset.config);
  console.log(`\n${preset.id}: ${size.parameters.toLocaleString("en-US")} parameters, random weights, on ${info.host}, ${info.adapter}`);
  let dir: string;
  try {
    dir = await modelDir(preset);
  } catch (e) {
    failed++;
    console.error(`${preset.id}: ${e instanceof Error ? e.message : String(e)}`);
    continue;
  }
  const results: BaseResult[] = [];
  let matmulRows: MatmulRow[] = [];
  const name = `quant-${preset.name}-${info.host}-${info.slug}-${new Date().toISOString().slice(0, 10)}${T === 512 ? "" : `-t${T}`}.json`;
  const url = new URL(`./results/${name}`, import.meta.url);
  // The same day's file of this preset and adapter: its bases (and matmul rows) this run does not measure stay.
  const earlier = existsSync(url) ? (JSON.parse(readFileSync(url, "utf8")) as { bases?: BaseResult[]; matmul?: MatmulRow[] }) : null;
  /** The results so far (written after each part, so a run stopped midway keeps what it measured). */
  const save = () => {
    const kept = (earlier?.bases ?? []).filter((b) => !bases.includes(b.base) && !results.some((r) => r.base === b.base));
    const all = [...kept, ...results].sort((a, b) => BASES.indexOf(a.base) - BASES.indexOf(b.base));
    const record = {
      date: new Date().toISOString(),
      host: info.host,
      adapter: info.adapter,
      model: `${preset.id} config, random weights`,
      preset: preset.name,
      parameters: size.parameters,
      lora: { r: 16, lora_alpha: 32, target_modules: "all-linear", tokens: T, gradient_checkpointing: true, timed_steps: STEPS },
      bases: all,
      matmul: matmulRows.length ? matmulRows : (earlier?.matmul ?? []),
    };
    mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
    writeFileSync(url, JSON.stringify(record, null, 2) + "\n");
  };
  for (const base of bases) {
    try {
      results.push(await benchBase(preset, base, dir));
    } catch (e) {
      failed++;
      const error = e instanceof Error ? e.message : String(e);
      console.error(`${preset.id} ${base}: ${error}`);
      results.push({ base, error });
    }
    save();
  }
  if (MATMUL_M > 0) {
    try {
      matmulRows = await benchMatmul(preset, MATMUL_M);
    } catch (e) {
      failed++;
      console.error(`${preset.id} matmul: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  printBases(preset, results);
  if (matmulRows.length) printMatmul(preset, matmulRows);
  save();
  console.log(`\nwrote bench/results/${name}`);
}
if (failed) console.error(`${failed} part(s) failed`);
globalThis.process?.exit?.(failed ? 1 : 0);
(globalThis as { Deno?: { exit(code: number): never } }).Deno?.exit(failed ? 1 : 0);
