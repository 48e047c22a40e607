// The weights' GPU memory known before loading (src/models/memory.ts) against what from_pretrained really
// holds: each tensor's format and storage bytes, and memoryStats().liveBytes (the pool's size classes of them),
// for a tiny llama (sizes multiples of 64, so nf4 blocks fit) in f32, nf4 (double quant), nf4 with a bf16
// embedding (QLoRA's dtype bfloat16), bf16 and f16, and for a Q8_0 GGUF file (its header only).
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { AutoModelForCausalLM, deviceInfo, memoryStats, type LlamaForCausalLM } from "../../src/index.ts";
import { sizeClass } from "../../src/gpu/buffers.ts";
import { GGUFFile } from "../../src/models/gguf.ts";
import { ggufWeightBytes, ggufWeightMemory, linearsLabel, loadFormats, weightBytes, weightMemory, type WeightMemory } from "../../src/models/memory.ts";
import { presetConfig } from "../../src/models/presets.ts";
import { makeModel } from "../../tools/make-model.ts";
import { setup } from "../helpers.ts";

const CONFIG = { hidden_size: 64, intermediate_size: 128, num_attention_heads: 4, num_key_value_heads: 2 };
const GGUF = new URL("../fixtures/gguf/llama-q8_0.gguf", import.meta.url);

let dir = "";
let config: Record<string, unknown> = {};
before(async () => {
  await setup();
  dir = await mkdtemp(join(tmpdir(), "webtune-memory-"));
  await makeModel(dir, { arch: "llama", seed: 5, config: CONFIG, tokenizer: false });
  config = JSON.parse(await readFile(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
});
after(() => rm(dir, { recursive: true, force: true }));

/** Loads with `load()`, checking the breakdown tensor by tensor and the pool's live bytes. */
async function agrees(expected: WeightMemory[], load: () => Promise<LlamaForCausalLM>): Promise<void> {
  const before0 = memoryStats().liveBytes;
  const model = await load();
  const live = memoryStats().liveBytes - before0;
  try {
    const got = model.named_parameters().map(([name, t]) => ({ name, format: t.dtype, bytes: t.storage.bytes }));
    assert.deepEqual(got, expected.map(({ name, format, bytes }) => ({ name, format, bytes })));
    assert.equal(live, expected.reduce((s, w) => s + sizeClass(w.bytes), 0), "memoryStats: the size classes of exactly these tensors");
  } finally {
    model.dispose();
  }
}

test("weightBytes of a config equals what from_pretrained holds: f32, nf4 and nf4_dq (double quant) linears", async () => {
  const f32 = weightMemory(config, { linears: "f32" });
  await agrees(f32, () => AutoModelForCausalLM.from_pretrained(dir));
  const nf4 = weightMemory(config, { linears: "nf4" });
  await agrees(nf4, () => AutoModelForCausalLM.from_pretrained(dir, { quantization_config: { load_in_4bit: true, bnb_4bit_quant_type: "nf4" } }));
  const dq = weightMemory(config, loadFormats({ quantized: "nf4", double_quant: true }));
  await agrees(dq, () =>
    AutoModelForCausalLM.from_pretrained(dir, { quantization_config: { load_in_4bit: true, bnb_4bit_quant_type: "nf4", bnb_4bit_use_double_quant: true } }),
  );
  const lin = f32.filter((w) => w.role === "linear").reduce((s, w) => s + w.bytes, 0);
  assert.equal(weightBytes(config, { linears: "f32" }) - weightBytes(config, { linears: "nf4" }), lin - (lin * 36) / 256);
  assert.ok(weightBytes(config, { linears: "nf4_dq" }) < weightBytes(config, { linears: "nf4" }), "double quantization takes less");
  assert.equal(linearsLabel(dq), "4-bit linears");
  assert.equal(weightBytes(config), weightBytes(config, { linears: "f32" }));
  assert.equal(linearsLabel(nf4), "4-bit linears");
  assert.equal(linearsLabel(f32), "f32");
});

test("weightBytes with f16 linears equals dtype float16's (the embedding and head f16 too)", async (t) => {
  if (!deviceInfo().features.shader_f16) return t.skip("the adapter lacks shader-f16");
  const f16 = weightMemory(config, { linears: "f16" });
  assert.ok(f16.filter((w) => w.role === "embedding" || w.role === "lm_head").every((w) => w.format === "f16"));
  await agrees(f16, () => AutoModelForCausalLM.from_pretrained(dir, { dtype: "float16" }));
  assert.equal(linearsLabel(f16), "f16 linears");
});

test("dtype bfloat16: linears, embedding and head in bf16 on every adapter; with load_in_4bit the embedding and head bf16", async () => {
  assert.deepEqual(loadFormats({ dtype: "bfloat16" }), { linears: "bf16", vocab: "bf16" });
  assert.deepEqual(loadFormats({ dtype: "bfloat16", quantized: "nf4" }), { linears: "nf4", vocab: "bf16" });
  assert.deepEqual(loadFormats({ quantized: "int8" }), { linears: "int8", vocab: "f32" });
  const bf16 = weightMemory(config, { linears: "bf16" });
  await agrees(bf16, () => AutoModelForCausalLM.from_pretrained(dir, { dtype: "bfloat16" }));
  assert.equal(linearsLabel(bf16), "bf16 linears");
  const qlora = weightMemory(config, loadFormats({ dtype: "bfloat16", quantized: "nf4" }));
  assert.ok(qlora.filter((w) => w.role === "embedding" || w.role === "lm_head").every((w) => w.format === "bf16"));
  assert.ok(qlora.filter((w) => w.role === "norm").every((w) => w.format === "f32"), "norms stay f32");
  await agrees(qlora, () => AutoModelForCausalLM.from_pretrained(dir, { dtype: "bfloat16", quantization_config: { load_in_4bit: true, bnb_4bit_quant_type: "nf4" } }));
  assert.ok(weightBytes(config, { linears: "nf4", vocab: "bf16" }) < weightBytes(config, { linears: "nf4" }));
});

test("ggufWeightBytes of a Q8_0 file's header equals what from_pretrained holds (packed linears and embedding, norms f32)", async () => {
  const g = await GGUFFile.open(new Uint8Array(await readFile(GGUF)), "llama-q8_0.gguf");
  const mem = ggufWeightMemory(g);
  assert.ok(mem.some((w) => w.role === "linear" && w.format === "q8_0"), "the fixture's linears are Q8_0");
  assert.ok(mem.filter((w) => w.role === "norm" || w.role === "bias").every((w) => w.format === "f32"));
  await agrees(mem, () => AutoModelForCausalLM.from_pretrained(GGUF));
  assert.equal(ggufWeightBytes(g), mem.reduce((s, w) => s + w.bytes, 0));
  assert.equal(linearsLabel(mem), "q8_0 linears");
});

test("preset configs: nf4 linears take 36/256 of f32; a bad linears value or config is a clear error", () => {
  const cfg = presetConfig("Qwen/Qwen2.5-0.5B");
  const f32 = weightBytes(cfg, { linears: "f32" });
  const rest = weightMemory(cfg).filter((w) => w.role !== "linear").reduce((s, w) => s + w.bytes, 0);
  assert.equal(weightBytes(cfg, { linears: "nf4" }) - rest, ((f32 - rest) * 36) / 256);
  const vocab = weightMemory(cfg).filter((w) => w.role === "embedding" || w.role === "lm_head").reduce((s, w) => s + w.bytes, 0);
  assert.equal(weightBytes(cfg, { linears: "f16" }) - (rest - vocab), (f32 - rest + vocab) / 2, "f16: linears, embedding and head at half");
  assert.equal(weightBytes(cfg, { linears: "bf16" }), weightBytes(cfg, { linears: "f16" }));
  assert.equal(weightBytes(cfg, { linears: "nf4", vocab: "bf16" }), weightBytes(cfg, { linears: "nf4" }) - vocab / 2);
  assert.throws(() => weightBytes(cfg, { linears: "q4" as "f32" }), /linears "q4" is not one of "f32", "f16", "bf16", "nf4", "fp4", "nf4_dq"/);
  assert.throws(() => weightBytes(cfg, { vocab: "nf4" as "f32" }), /vocab "nf4" is not one of "f32", "f16", "bf16"/);
  assert.throws(() => weightBytes({ architectures: ["BertModel"] }), /unsupported architecture "BertModel"/);
});
