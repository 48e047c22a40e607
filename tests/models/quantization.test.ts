// Quantize on load (src/models/quantization.ts): from_pretrained(dir, { quantization_config }) with
// bitsandbytes' keys stores the decoder's linear weights as nf4 / fp4 / int8 (nf4_dq / fp4_dq, the absmax
// double-quantized and stored packed, for bnb_4bit_use_double_quant) and leaves the embedding, norms and LM head f32; the loss and every LoRA gradient
// equal transformers + PEFT in float64 with the weights replaced by bitsandbytes' dequantization, computed
// independently in numpy (tools/fixtures/quantized.py → tests/fixtures/quantized.json). Also: the linears'
// bytes (about 1/7 of f32; double quantization's 33 bytes a block and 8 a group of 256 instead of 36 a block), memoryStats,
// the frozen base, the saved adapter, and errors for bad configs.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { AutoModelForCausalLM, memoryStats, PeftModel, tidy, type LlamaForCausalLM } from "../../src/index.ts";
import { parseQuantizationConfig, type BitsAndBytesConfig } from "../../src/models/quantization.ts";
import { formatBytes } from "../../src/tensor/format.ts";
import { dequantize, DYNAMIC_MAP, quantize } from "../../src/tensor/quant.ts";
import { makeAdapter, makeModel } from "../../tools/make-model.ts";
import { expectAllClose, setup } from "../helpers.ts";

interface Case {
  quantization_config: BitsAndBytesConfig | null;
  loss: number;
  grad_norms: Record<string, number>;
  grads: Record<string, { shape: number[]; data: number[] }>;
}
const FIX = JSON.parse(await readFile(new URL("../fixtures/quantized.json", import.meta.url), "utf8")) as {
  model: { arch: "llama"; seed: number; config: Record<string, unknown> };
  adapter: { seed: number; r: number; alpha: number; targets: string };
  input_ids: number[][];
  attention_mask: number[][];
  labels: number[][];
  dynamic_map: number[];
  nested: { weight: string; absmax: number[] };
  cases: Record<string, Case>;
};

let dir = "";
let adapterDir = "";
before(async () => {
  await setup();
  dir = await mkdtemp(join(tmpdir(), "webtune-qload-"));
  adapterDir = join(dir, "adapter");
  await makeModel(dir, { arch: FIX.model.arch, seed: FIX.model.seed, config: FIX.model.config, tokenizer: false });
  await makeAdapter(adapterDir, { model: dir, seed: FIX.adapter.seed, r: FIX.adapter.r, alpha: FIX.adapter.alpha, targets: FIX.adapter.targets as "all-linear" });
});
after(() => rm(dir, { recursive: true, force: true }));

const load = (q: BitsAndBytesConfig | null) => AutoModelForCausalLM.from_pretrained(dir, q ? { quantization_config: q } : {});
const weightBytes = (m: LlamaForCausalLM, role: (name: string) => boolean) =>
  m.named_parameters().filter(([n]) => role(n)).reduce((s, [, t]) => s + t.storage.bytes, 0);
const isLinear = (n: string) => /_proj\.weight$/.test(n);

test("the dynamic map of the nested statistics is bitsandbytes' create_dynamic_map(signed=True), float32 bit for bit", () => {
  assert.equal(DYNAMIC_MAP.length, 256);
  assert.deepEqual([...DYNAMIC_MAP], FIX.dynamic_map);
});

test("double quantization: nf4_dq's values are nf4's codes times bitsandbytes' dequantized nested statistics, on the GPU too", async () => {
  const model = await load(null);
  const dq = await load({ load_in_4bit: true, bnb_4bit_quant_type: "nf4", bnb_4bit_use_double_quant: true });
  try {
    const w = model.named_parameters().find(([n]) => n === FIX.nested.weight)![1];
    const values = (await w.toArray()) as Float32Array;
    // Plain nf4 with each block's absmax word replaced by numpy's nested absmax' (the offset, their mean, is summed
    // in float64 here and by numpy: equal to the last bit).
    const plain = quantize("nf4", values, w.shape[1]!);
    const view = new DataView(plain.buffer);
    assert.equal(plain.length / 36, FIX.nested.absmax.length);
    FIX.nested.absmax.forEach((a, i) => view.setFloat32(36 * i, a, true));
    const want = dequantize("nf4", plain);
    assert.deepEqual(dequantize("nf4_dq", quantize("nf4_dq", values, w.shape[1]!)), want, "host");
    const stored = dq.named_parameters().find(([n]) => n === FIX.nested.weight)![1];
    assert.equal(stored.dtype, "nf4_dq");
    assert.deepEqual(await stored.toArray(), want, "the loaded model's buffer");
  } finally {
    model.dispose();
    dq.dispose();
  }
});

for (const [name, c] of Object.entries(FIX.cases)) {
  test(`${name}: loss and LoRA gradients equal float64 PyTorch with bitsandbytes' dequantized linear weights`, async () => {
    const model = await load(c.quantization_config);
    try {
      // The cases are named by the linears' format: nf4, fp4, nf4_dq (double quant), int8.
      const want = c.quantization_config ? name : "f32";
      for (const [n, t] of model.named_parameters()) assert.equal(t.dtype, isLinear(n) ? want : "f32", `${n} is ${t.dtype}`);
      const peft = await PeftModel.from_pretrained(model, adapterDir, { is_trainable: true });
      const out = tidy(() => peft.forward({ input_ids: FIX.input_ids, attention_mask: FIX.attention_mask, labels: FIX.labels }));
      const loss = await out.loss!.item();
      tidy(() => out.loss!.backward());
      expectAllClose([loss], [c.loss], { atol: 1e-4, rtol: 1e-5 }, `${name} loss`);
      const grads = new Map<string, number[]>();
      for (const [n, t] of peft.named_parameters()) if (t.requires_grad) grads.set(n, Array.from((await t.grad!.toArray()) as Float32Array));
      assert.deepEqual([...grads.keys()].sort(), Object.keys(c.grad_norms).sort());
      const norms = [...grads.keys()].sort().map((n) => Math.hypot(...grads.get(n)!));
      expectAllClose(norms, [...grads.keys()].sort().map((n) => c.grad_norms[n]!), { atol: 1e-4, rtol: 1e-4 }, `${name} grad norms`);
      for (const [n, g] of Object.entries(c.grads)) {
        const scale = Math.max(...g.data.map(Math.abs));
        expectAllClose(grads.get(n)!, g.data, { atol: 1e-4 * scale, rtol: 1e-4 }, `${name} ${n}`);
      }
      // PEFT's adapter_config.json is that of the float base (bitsandbytes leaves it alone).
      const cfg = peft.adapter_config();
      assert.equal(cfg.base_model_name_or_path, dir);
      assert.ok(!("quantization_config" in cfg));
      if (c.quantization_config) {
        assert.equal((model.config as { quantization_config?: Record<string, unknown> }).quantization_config!.quant_method, "bitsandbytes");
      }
    } finally {
      model.dispose();
    }
  });
}

test("nf4 and int8 linears take 36/256 and 36/128 of their f32 bytes, double-quantized fp4_dq less than nf4; the rest stays f32 (memoryStats agrees)", async () => {
  const before0 = memoryStats().liveBytes;
  const f = await load(null);
  const floatLive = memoryStats().liveBytes - before0;
  const before1 = memoryStats().liveBytes;
  const q = await load({ load_in_4bit: true, bnb_4bit_quant_type: "nf4" });
  const nf4Live = memoryStats().liveBytes - before1;
  const i8 = await load({ load_in_8bit: true });
  const dq = await load({ load_in_4bit: true, bnb_4bit_quant_type: "fp4", bnb_4bit_use_double_quant: true });
  try {
    const lin = weightBytes(f, isLinear);
    assert.equal(weightBytes(q, isLinear), (lin * 36) / 256, "nf4: 4.5 bits a weight (≈ 1/7.1 of f32)");
    assert.equal(weightBytes(i8, isLinear), (lin * 36) / 128, "int8: 9 bits a weight");
    // Double quantization: 33 bytes a 64-block plus 8 per group of 256 blocks. Each linear here is one partial group
    // (q, o [64, 64]: 64 blocks; k, v [32, 64]: 32; gate, up [128, 64], down [64, 128]: 128), so per layer
    // 576 blocks in 7 groups: (576·33 + 7·8) / (576·36) = 19064 / 20736 of nf4's bytes.
    const linears = dq.named_parameters().filter(([n]) => isLinear(n));
    assert.ok(linears.every(([, t]) => t.dtype === "fp4_dq"));
    assert.equal(weightBytes(dq, isLinear), linears.reduce((s, [, t]) => s + formatBytes("fp4_dq", t.size), 0));
    assert.equal(weightBytes(dq, isLinear) * 20736, weightBytes(q, isLinear) * 19064, "fp4_dq: 19064/20736 of nf4 on this model");
    assert.equal(weightBytes(dq, (n) => !isLinear(n)), weightBytes(f, (n) => !isLinear(n)));
    const rest = (m: LlamaForCausalLM) => weightBytes(m, (n) => !isLinear(n));
    assert.equal(rest(q), rest(f));
    // The pool rounds buffers up to size classes: the saving shows within a few percent.
    assert.ok(Math.abs(floatLive - nf4Live - (lin - (lin * 36) / 256)) < 0.1 * lin, `live bytes ${floatLive} (f32) vs ${nf4Live} (nf4); linears ${lin}`);
    assert.throws(() => q.requires_grad_(true), /stored as nf4, a format for frozen weights/);
  } finally {
    f.dispose();
    q.dispose();
    i8.dispose();
    dq.dispose();
  }
});

test("llm_int8_skip_modules keeps the named modules float, as transformers matches them", async () => {
  const m = await load({ load_in_4bit: true, bnb_4bit_quant_type: "nf4", llm_int8_skip_modules: ["lm_head", "down_proj", "model.layers.1.self_attn"] });
  try {
    for (const [n, t] of m.named_parameters()) {
      const float = !isLinear(n) || n.includes("down_proj") || n.startsWith("model.layers.1.self_attn");
      assert.equal(t.dtype, float ? "f32" : "nf4", n);
    }
  } finally {
    m.dispose();
  }
});

test("bad quantization_config: clear errors naming the key", async () => {
  const bad: [unknown, RegExp][] = [
    [{ load_in_4bit: true, load_in_8bit: true }, /load_in_4bit and load_in_8bit are both true/],
    [{ load_in_4bit: true, bnb_4bit_quant_type: "int4" }, /bnb_4bit_quant_type must be "nf4" or "fp4"/],
    [{ load_in_4bit: true, bits: 4 }, /unknown key\(s\) bits/],
    [{ load_in_4bit: "yes" }, /load_in_4bit must be true or false/],
    [{ load_in_8bit: true, bnb_4bit_use_double_quant: true }, /bnb_4bit_use_double_quant applies to load_in_4bit/],
    [{ load_in_8bit: true, llm_int8_has_fp16_weight: true }, /llm_int8_has_fp16_weight/],
    [{ load_in_4bit: true, bnb_4bit_compute_dtype: "int3" }, /bnb_4bit_compute_dtype must be one of/],
    [{ quant_method: "gptq", bits: 4 }, /unknown key|quant_method "gptq" is not supported/],
    [{ bnb_4bit_use_double_quant: true }, /neither load_in_4bit nor load_in_8bit/],
    ["nf4", /must be a mapping/],
  ];
  for (const [q, re] of bad) {
    assert.throws(() => parseQuantizationConfig(q), re, JSON.stringify(q));
  }
  await assert.rejects(load({ load_in_4bit: true, load_in_8bit: true }), /both true/);
  // transformers' defaults: fp4 when no quant type is given; a dumped BitsAndBytesConfig().to_dict() loads float.
  assert.equal(parseQuantizationConfig({ load_in_4bit: true })!.format, "fp4");
  assert.equal(parseQuantizationConfig({ load_in_4bit: true, bnb_4bit_compute_dtype: "torch.bfloat16", bnb_4bit_quant_storage: "bfloat16" })!.format, "fp4");
  assert.equal(parseQuantizationConfig({ load_in_4bit: false, load_in_8bit: false, bnb_4bit_quant_type: "fp4", llm_int8_threshold: 6.0 }), null);
});

test("a row that is not whole blocks: an error naming the weight before anything loads", async () => {
  const odd = join(dir, "odd");
  await makeModel(odd, { arch: "llama", seed: 3, tokenizer: false }); // hidden 32: half an nf4 block
  try {
    await assert.rejects(
      AutoModelForCausalLM.from_pretrained(odd, { quantization_config: { load_in_4bit: true, bnb_4bit_quant_type: "nf4" } }),
      /q_proj\.weight.*not whole blocks of 64.*llm_int8_skip_modules/,
    );
  } finally {
    await rm(odd, { recursive: true, force: true });
  }
});
