// tools/make-model.ts: the model directories it writes (files, config keys, tensor names and shapes, shards,
// dtypes), its determinism, the LoRA adapters, and that it re-makes the exact files of tests/fixtures/models.json.
import assert from "node:assert/strict";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";

import { f16ToF32 } from "../../src/tensor/half.ts";
import { fileSha256, makeAdapter, makeModel, modelTensors, tensorValues, type Arch, type StorageDType } from "../../tools/make-model.ts";

const root = await mkdtemp(join(tmpdir(), "webtune-make-model-"));
after(() => rm(root, { recursive: true, force: true }));
let n = 0;
const fresh = () => join(root, String(n++));

interface Header {
  meta: Record<string, string> | undefined;
  tensors: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  start: number;
  bytes: Uint8Array;
}

async function readHeader(path: string): Promise<Header> {
  const bytes = new Uint8Array(await readFile(path));
  const len = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const json = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + len))) as Record<string, unknown>;
  const meta = json.__metadata__ as Record<string, string> | undefined;
  delete json.__metadata__;
  return { meta, tensors: json as Header["tensors"], start: 8 + len, bytes };
}

function tensorBytes(h: Header, name: string): Uint8Array {
  const t = h.tensors[name]!;
  return h.bytes.subarray(h.start + t.data_offsets[0], h.start + t.data_offsets[1]);
}

async function json(path: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(path, "utf8")) as Record<string, unknown>;
}

test("every tiny preset: files, config keys and the state dict's names and shapes", async () => {
  const expect: Record<string, { arch: string; type: string; tied: boolean; extra: string[]; absent: string[] }> = {
    llama: { arch: "LlamaForCausalLM", type: "llama", tied: true, extra: [], absent: ["model.layers.0.self_attn.q_proj.bias"] },
    llama3: { arch: "LlamaForCausalLM", type: "llama", tied: false, extra: ["lm_head.weight"], absent: [] },
    qwen2: {
      arch: "Qwen2ForCausalLM",
      type: "qwen2",
      tied: true,
      extra: ["model.layers.1.self_attn.q_proj.bias", "model.layers.1.self_attn.k_proj.bias", "model.layers.1.self_attn.v_proj.bias"],
      absent: ["model.layers.1.self_attn.o_proj.bias", "lm_head.weight"],
    },
    qwen3: { arch: "Qwen3ForCausalLM", type: "qwen3", tied: true, extra: ["model.layers.0.self_attn.q_norm.weight", "model.layers.1.self_attn.k_norm.weight"], absent: [] },
    mistral: { arch: "MistralForCausalLM", type: "mistral", tied: false, extra: ["lm_head.weight"], absent: ["model.layers.0.self_attn.q_norm.weight"] },
  };
  for (const [arch, e] of Object.entries(expect)) {
    const dir = fresh();
    const made = await makeModel(dir, { arch: arch as Arch, seed: 7 });
    const files = (await readdir(dir)).sort();
    assert.deepEqual(files, ["config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]);
    assert.deepEqual(made.files, files);
    const config = await json(join(dir, "config.json"));
    assert.deepEqual(config.architectures, [e.arch], arch);
    assert.equal(config.model_type, e.type);
    assert.equal(config.tie_word_embeddings, e.tied);
    assert.equal(config.torch_dtype, "float32");
    for (const [k, v] of Object.entries({ hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 400 })) {
      assert.equal(config[k], v, `${arch} ${k}`);
    }
    assert.equal(config.eos_token_id, 2); // <|im_end|> in the fixture tokenizer
    assert.equal(config.pad_token_id, 0); // <|endoftext|>
    if (arch === "qwen2") assert.ok(!("attention_bias" in config), "qwen2 configs have no attention_bias key");
    if (arch === "qwen3") assert.equal(config.head_dim, 16);
    if (arch === "llama3") assert.deepEqual(config.rope_scaling, { factor: 8, high_freq_factor: 4, low_freq_factor: 1, original_max_position_embeddings: 64, rope_type: "llama3" });
    if (arch === "mistral") assert.equal(config.sliding_window, null);
    const gen = await json(join(dir, "generation_config.json"));
    assert.equal(gen.eos_token_id, 2);

    const h = await readHeader(join(dir, "model.safetensors"));
    assert.deepEqual(h.meta, { format: "pt" });
    const names = Object.keys(h.tensors);
    assert.deepEqual(names, [...names].sort(), "tensors in name order");
    assert.deepEqual(names, modelTensors(config).map((t) => t.name).sort());
    for (const x of e.extra) assert.ok(names.includes(x), `${arch} has ${x}`);
    for (const x of e.absent) assert.ok(!names.includes(x), `${arch} has no ${x}`);
    const D = arch === "qwen3" ? 16 : 8;
    const shape = (name: string) => h.tensors[name]!.shape;
    assert.deepEqual(shape("model.embed_tokens.weight"), [400, 32]);
    assert.deepEqual(shape("model.layers.1.self_attn.q_proj.weight"), [4 * D, 32]);
    assert.deepEqual(shape("model.layers.1.self_attn.k_proj.weight"), [2 * D, 32]);
    assert.deepEqual(shape("model.layers.1.self_attn.v_proj.weight"), [2 * D, 32]);
    assert.deepEqual(shape("model.layers.1.self_attn.o_proj.weight"), [32, 4 * D]);
    assert.deepEqual(shape("model.layers.0.mlp.gate_proj.weight"), [64, 32]);
    assert.deepEqual(shape("model.layers.0.mlp.up_proj.weight"), [64, 32]);
    assert.deepEqual(shape("model.layers.0.mlp.down_proj.weight"), [32, 64]);
    assert.deepEqual(shape("model.layers.0.input_layernorm.weight"), [32]);
    assert.deepEqual(shape("model.layers.0.post_attention_layernorm.weight"), [32]);
    assert.deepEqual(shape("model.norm.weight"), [32]);
    if (arch === "qwen2") assert.deepEqual(shape("model.layers.0.self_attn.k_proj.bias"), [2 * D]);
    if (arch === "qwen3") assert.deepEqual(shape("model.layers.0.self_attn.q_norm.weight"), [D]);
    for (const name of names) assert.equal(h.tensors[name]!.dtype, "F32");
  }
});

test("the same seed gives identical bytes, a different seed different bytes; values are sensible", async () => {
  const [a, b, c] = [fresh(), fresh(), fresh()];
  await makeModel(a, { arch: "qwen2", seed: 123 });
  await makeModel(b, { arch: "qwen2", seed: 123 });
  await makeModel(c, { arch: "qwen2", seed: 124 });
  for (const f of ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json"]) {
    assert.deepEqual(await readFile(join(a, f)), await readFile(join(b, f)), f);
  }
  const ha = await readHeader(join(a, "model.safetensors"));
  const hc = await readHeader(join(c, "model.safetensors"));
  for (const name of Object.keys(ha.tensors)) assert.notDeepEqual(tensorBytes(ha, name), tensorBytes(hc, name), name);

  const f32 = (name: string) => new Float32Array(tensorBytes(ha, name).slice().buffer);
  const norm = f32("model.norm.weight");
  assert.ok(norm.every((x) => Math.abs(x - 1) < 0.35) && norm.some((x) => x !== 1));
  const q = f32("model.layers.0.self_attn.q_proj.weight");
  const bound = 1.5 / Math.sqrt(32);
  assert.ok(q.every((x) => Math.abs(x) <= bound) && Math.max(...q.map(Math.abs)) > 0.9 * bound);
  const bias = f32("model.layers.0.self_attn.q_proj.bias");
  assert.ok(bias.every((x) => Math.abs(x) < 0.35) && bias.some((x) => x !== 0));
  const emb = f32("model.embed_tokens.weight");
  const std = Math.sqrt(emb.reduce((s, x) => s + x * x, 0) / emb.length);
  assert.ok(Math.abs(std - 0.5) < 0.02, `embedding std ${std}`);
  const spec = modelTensors((await json(join(a, "config.json"))))[1]!;
  assert.deepEqual(f32(spec.name), tensorValues(123, spec));
});

test("shards: index.json as transformers writes it, the same tensors as the single file", async () => {
  const one = fresh();
  const three = fresh();
  await makeModel(one, { arch: "llama3", seed: 5, tokenizer: false });
  await makeModel(three, { arch: "llama3", seed: 5, tokenizer: false, shards: 3 });
  const files = (await readdir(three)).sort();
  assert.deepEqual(files, [
    "config.json",
    "generation_config.json",
    "model-00001-of-00003.safetensors",
    "model-00002-of-00003.safetensors",
    "model-00003-of-00003.safetensors",
    "model.safetensors.index.json",
  ]);
  const index = (await json(join(three, "model.safetensors.index.json"))) as { metadata: { total_size: number; total_parameters: number }; weight_map: Record<string, string> };
  const single = await readHeader(join(one, "model.safetensors"));
  assert.deepEqual(Object.keys(index.weight_map), Object.keys(single.tensors));
  let total = 0;
  for (const file of new Set(Object.values(index.weight_map))) {
    const h = await readHeader(join(three, file));
    assert.deepEqual(h.meta, { format: "pt" });
    for (const name of Object.keys(h.tensors)) {
      assert.equal(index.weight_map[name], file);
      assert.deepEqual(tensorBytes(h, name), tensorBytes(single, name), name);
      total += tensorBytes(h, name).length;
    }
  }
  assert.equal(index.metadata.total_size, total);
  assert.equal(index.metadata.total_parameters, total / 4);
});

test("float16 and bfloat16 storage", async () => {
  const ref = await readHeader(join((await makeModel(fresh(), { arch: "llama", seed: 9, tokenizer: false })).dir, "model.safetensors"));
  for (const dtype of ["float16", "bfloat16"] as StorageDType[]) {
    const dir = fresh();
    await makeModel(dir, { arch: "llama", seed: 9, tokenizer: false, dtype });
    assert.equal((await json(join(dir, "config.json"))).torch_dtype, dtype);
    const h = await readHeader(join(dir, "model.safetensors"));
    const name = "model.layers.1.mlp.up_proj.weight";
    assert.equal(h.tensors[name]!.dtype, dtype === "float16" ? "F16" : "BF16");
    const words = new Uint16Array(tensorBytes(h, name).slice().buffer);
    const got = dtype === "float16" ? f16ToF32(words) : new Float32Array(new Uint32Array(Array.from(words, (w) => w << 16)).buffer);
    const want = new Float32Array(tensorBytes(ref, name).slice().buffer);
    const tol = dtype === "float16" ? 2 ** -11 : 2 ** -8;
    for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i]! - want[i]!) <= Math.abs(want[i]!) * tol + 1e-7, `${dtype} ${i}`);
  }
});

test("a PEFT LoRA adapter: config keys, tensor names and shapes, nonzero B", async () => {
  const model = fresh();
  const dir = fresh();
  await makeModel(model, { arch: "qwen3", seed: 3, tokenizer: false });
  const made = await makeAdapter(dir, { model, seed: 4, r: 4, alpha: 8, targets: "all-linear" });
  assert.deepEqual((await readdir(dir)).sort(), ["adapter_config.json", "adapter_model.safetensors"]);
  const text = await readFile(join(dir, "adapter_config.json"), "utf8");
  const config = JSON.parse(text) as Record<string, unknown>;
  assert.deepEqual(Object.keys(config), Object.keys(config).sort());
  assert.ok(text.startsWith('{\n  "alora_invocation_tokens"'));
  for (const [k, v] of Object.entries({ peft_type: "LORA", task_type: "CAUSAL_LM", r: 4, lora_alpha: 8, lora_dropout: 0, use_rslora: false, bias: "none", fan_in_fan_out: false, init_lora_weights: true, modules_to_save: null })) {
    assert.deepEqual(config[k], v, k);
  }
  assert.deepEqual(config.target_modules, ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]);
  const h = await readHeader(join(dir, "adapter_model.safetensors"));
  assert.deepEqual(h.meta, { format: "pt" });
  assert.equal(Object.keys(h.tensors).length, 2 * 7 * 2);
  assert.deepEqual(made.tensors.map((t) => t.name), Object.keys(h.tensors));
  const p = "base_model.model.model.layers.1";
  assert.deepEqual(h.tensors[`${p}.self_attn.q_proj.lora_A.weight`]!.shape, [4, 32]);
  assert.deepEqual(h.tensors[`${p}.self_attn.q_proj.lora_B.weight`]!.shape, [64, 4]);
  assert.deepEqual(h.tensors[`${p}.self_attn.k_proj.lora_B.weight`]!.shape, [32, 4]);
  assert.deepEqual(h.tensors[`${p}.self_attn.o_proj.lora_A.weight`]!.shape, [4, 64]);
  assert.deepEqual(h.tensors[`${p}.mlp.down_proj.lora_A.weight`]!.shape, [4, 64]);
  assert.deepEqual(h.tensors[`${p}.mlp.down_proj.lora_B.weight`]!.shape, [32, 4]);
  for (const name of Object.keys(h.tensors)) {
    assert.equal(h.tensors[name]!.dtype, "F32");
    assert.ok(new Float32Array(tensorBytes(h, name).slice().buffer).every((x) => x !== 0), `${name} has no zeros`);
  }
  const again = fresh();
  await makeAdapter(again, { model, seed: 4, r: 4, alpha: 8, targets: "all-linear" });
  assert.deepEqual(await readFile(join(again, "adapter_model.safetensors")), await readFile(join(dir, "adapter_model.safetensors")));

  const some = await makeAdapter(fresh(), { model, seed: 4, r: 2, targets: ["v_proj", "q_proj"] });
  assert.deepEqual(some.config.target_modules, ["q_proj", "v_proj"]);
  assert.equal(some.config.lora_alpha, 4);
  assert.equal(some.tensors.length, 2 * 2 * 2);
});

test("re-makes the exact model and adapter files of tests/fixtures/models.json", async () => {
  const doc = JSON.parse(await readFile(new URL("../fixtures/models.json", import.meta.url), "utf8")) as {
    cases: Record<string, { model: { arch: Arch; seed: number; dtype: StorageDType; shards: number; tokenizer: boolean; config?: Record<string, unknown> }; adapter: { seed: number; r: number; alpha: number; targets: "all-linear"; dropout: number }; sha256: Record<string, string> }>;
  };
  assert.deepEqual(Object.keys(doc.cases), ["llama", "llama3", "qwen2", "qwen3", "mistral", "llama-bias", "gemma2", "gemma3", "smollm3", "phi3", "phi4", "mistral-window", "qwen2-window"]);
  for (const [arch, c] of Object.entries(doc.cases)) {
    const model = fresh();
    const adapter = fresh();
    await makeModel(model, c.model);
    await makeAdapter(adapter, { model, ...c.adapter });
    assert.equal(await fileSha256(join(model, "model.safetensors")), c.sha256["model.safetensors"], `${arch} model.safetensors`);
    assert.equal(await fileSha256(join(adapter, "adapter_model.safetensors")), c.sha256["adapter_model.safetensors"], `${arch} adapter`);
  }
});
