// Loading models and adapters: vocabulary-sized weights split into row blocks, shards and 16-bit files,
// full fine-tuning and gradient checkpointing, get_peft_model as PEFT does it, adapters saved and loaded
// again, and clear errors for bad files.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  AutoModelForCausalLM, AutoTokenizer, get_peft_model, Llama, openSource, PeftModel, registerArchitecture, SafetensorsFile, tidy, writeSafetensors,
  type LlamaForCausalLM, type WeightSpec,
} from "../../src/index.ts";
import { makeAdapter, makeModel } from "../../tools/make-model.ts";
import { fixtures, type FixtureTensor } from "../fixtures.ts";
import { expectAllClose, setup } from "../helpers.ts";

interface Case {
  model: { arch: "llama" | "qwen2"; seed: number; config?: Record<string, unknown> };
  adapter: { seed: number; r: number; alpha: number; targets: "all-linear"; dropout: number };
  vocab_size: number;
  padded: { input_ids: number[][]; attention_mask: number[][]; labels: number[][]; loss: number; logits: FixtureTensor; grads: Record<string, FixtureTensor> };
  generate: { prompt: number[]; max_new_tokens: number; adapter: number[]; base: number[] };
  full?: { loss: number; grads: Record<string, FixtureTensor> };
}
const cases = fixtures("models") as unknown as Record<string, Case>;
let root = "";

before(async () => {
  await setup();
  root = await mkdtemp(join(tmpdir(), "webtune-loading-"));
});
after(() => rm(root, { recursive: true, force: true }));

async function made(arch: string, sub: string, extra: Parameters<typeof makeModel>[1] = {}): Promise<{ dir: string; adapter: string; c: Case }> {
  const c = cases[arch]!;
  const dir = join(root, `${arch}-${sub}`);
  await makeModel(dir, { ...c.model, ...extra });
  await makeAdapter(join(dir, "adapter"), { model: dir, ...c.adapter });
  return { dir, adapter: join(dir, "adapter"), c };
}

const close = { atol: 1e-4, rtol: 1e-4 };
const gradClose = (want: number[]) => ({ atol: 1e-4 * Math.max(...want.map(Math.abs)), rtol: 1e-4 });

async function paddedLoss(m: LlamaForCausalLM | PeftModel, c: Case): Promise<{ loss: number; logits: Float32Array }> {
  const b = c.padded;
  const out = tidy(() => m.forward({ input_ids: b.input_ids, attention_mask: b.attention_mask, labels: b.labels, return_logits: true }));
  const logits = (await out.logits!.toArray()) as Float32Array;
  const loss = await out.loss!.item();
  tidy(() => out.loss!.backward());
  return { loss, logits };
}

for (const arch of ["llama", "llama3"]) {
  test(`${arch}: an embedding and LM head stored as row blocks give the same loss, gradients and tokens`, async () => {
    const { dir, adapter, c } = await made(arch, "split");
    // 400 × 32 f32 is 51,200 bytes: a 20,000-byte limit makes 3 blocks or more.
    const model = await AutoModelForCausalLM.from_pretrained(dir, { max_tensor_bytes: 20000 });
    try {
      assert.ok(Array.isArray(model.embed_tokens) && model.embed_tokens.length >= 3, "the embedding was split");
      assert.ok(model.named_parameters().some(([n]) => n === "model.embed_tokens.weight:1"));
      const peft = await PeftModel.from_pretrained(model, adapter, { is_trainable: true });
      const { loss } = await paddedLoss(peft, c);
      expectAllClose([loss], [c.padded.loss], close, "loss");
      const grads = new Map(peft.named_parameters());
      for (const [name, want] of Object.entries(c.padded.grads)) {
        expectAllClose(await grads.get(name)!.grad!.toArray(), want.data, gradClose(want.data), name);
      }
      const g = c.generate;
      const out = await peft.generate(g.prompt, { max_new_tokens: g.max_new_tokens, eos_token_id: null });
      assert.deepEqual(out[0]!.slice(g.prompt.length), g.adapter);
    } finally {
      model.dispose();
    }
  });
}

for (const arch of ["llama", "qwen2", "llama-bias", "gemma2", "gemma3", "smollm3", "phi3", "phi4"]) {
  test(`${arch}: full fine-tuning — every base weight's gradient equals transformers'`, async () => {
    const { dir, c } = await made(arch, "full");
    const model = await AutoModelForCausalLM.from_pretrained(dir);
    try {
      model.requires_grad_(true);
      const { loss } = await paddedLoss(model, c);
      expectAllClose([loss], [c.full!.loss], close, "loss");
      const got = new Map(model.named_parameters());
      assert.deepEqual([...got.keys()].sort(), Object.keys(c.full!.grads).sort(), "named_parameters are transformers' names");
      for (const [name, want] of Object.entries(c.full!.grads)) {
        expectAllClose(await got.get(name)!.grad!.toArray(), want.data, gradClose(want.data), name);
      }
    } finally {
      model.dispose();
    }
  });
}

for (const arch of ["qwen2", "gemma2", "phi3"]) test(`${arch}: gradient checkpointing recomputes each layer and gives the same gradients (LoRA with dropout)`, async () => {
  const { dir, c } = await made(arch, "ckpt");
  const model = await AutoModelForCausalLM.from_pretrained(dir);
  try {
    const peft = get_peft_model(model, { r: 4, lora_alpha: 8, lora_dropout: 0.25, target_modules: "all-linear", init_lora_weights: true }, { seed: 5 });
    // B starts at zero: give it values so that every gradient is non-trivial.
    for (const lin of peft.adapted) {
      const B = lin.lora!.B;
      const v = Float32Array.from({ length: B.size }, (_, i) => Math.sin(i + 1) * 0.1);
      lin.lora!.B = (await import("../../src/index.ts")).Tensor.fromArray(v, B.shape, { requires_grad: true });
      B.dispose();
    }
    peft.train();
    peft.model.step = 3;
    const run = async () => {
      await paddedLoss(peft, c);
      const gs = await Promise.all(peft.parameters().map(async (p) => Array.from(await p.grad!.toArray())));
      for (const p of peft.parameters()) p.zero_grad();
      return gs;
    };
    const plain = await run();
    model.gradient_checkpointing_enable();
    const ckpt = await run();
    assert.equal(ckpt.length, plain.length);
    ckpt.forEach((g, i) => expectAllClose(g, plain[i]!, { atol: 1e-6, rtol: 1e-6 }, `parameter ${i}`));
  } finally {
    model.dispose();
  }
});

describe("get_peft_model as PEFT", () => {
  test("names, default targets, identity at init, trainable counts; an adapter saved and loaded again", async () => {
    const { dir, c } = await made("llama", "peft");
    const model = await AutoModelForCausalLM.from_pretrained(dir);
    try {
      const before = (await tidy(() => model.forward({ input_ids: c.padded.input_ids }).logits!).toArray()) as Float32Array;
      const peft = get_peft_model(model, { r: 8, lora_alpha: 16 });
      const names = peft.named_parameters().map(([n]) => n);
      assert.ok(names.includes("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));
      assert.ok(names.includes("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"));
      assert.ok(names.includes("base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"));
      assert.ok(!names.some((n) => n.includes("k_proj.lora")), "PEFT's default targets are q_proj and v_proj");
      // B = 0: the adapted model computes exactly the base model.
      const after0 = (await tidy(() => peft.forward({ input_ids: c.padded.input_ids }).logits!).toArray()) as Float32Array;
      expectAllClose(after0, before, { atol: 0, rtol: 0 }, "logits at init");
      // Trainable: 2 layers × (q: 8·(32+32) + v: 8·(32+16)).
      const [trainable, all] = peft.get_nb_trainable_parameters();
      assert.equal(trainable, 2 * (8 * (32 + 32) + 8 * (32 + 16)));
      assert.ok(all > trainable);
      assert.ok(peft.parameters().every((p) => p.requires_grad) && peft.parameters().length === 8);
      // Train it a little so the adapter is not the identity, then save and load it onto a fresh model.
      for (const lin of peft.adapted) {
        const { A, B } = lin.lora!;
        const v = Float32Array.from({ length: B.size }, (_, i) => Math.cos(i) * 0.05);
        const { Tensor } = await import("../../src/index.ts");
        lin.lora!.B = Tensor.fromArray(v, B.shape, { requires_grad: true });
        B.dispose();
        void A;
      }
      const adapted = (await tidy(() => peft.forward({ input_ids: c.padded.input_ids }).logits!).toArray()) as Float32Array;
      const out = join(root, "saved-adapter");
      await peft.save_pretrained(out);
      const cfg = JSON.parse(await readFile(join(out, "adapter_config.json"), "utf8"));
      assert.deepEqual(Object.keys(cfg), Object.keys(cfg).sort(), "sorted keys");
      assert.equal(cfg.peft_type, "LORA");
      assert.equal(cfg.r, 8);
      assert.deepEqual(cfg.target_modules, ["q_proj", "v_proj"]);
      const fresh = await AutoModelForCausalLM.from_pretrained(dir);
      try {
        const loaded = await PeftModel.from_pretrained(fresh, out);
        assert.ok(loaded.parameters().length === 0, "frozen unless is_trainable");
        const again = (await tidy(() => loaded.forward({ input_ids: c.padded.input_ids }).logits!).toArray()) as Float32Array;
        expectAllClose(again, adapted, { atol: 0, rtol: 0 }, "logits after a save and load");
        // Merging folds the adapter into the weights: the same logits without it.
        const merged = loaded.merge_and_unload();
        const m = (await tidy(() => merged.forward({ input_ids: c.padded.input_ids }).logits!).toArray()) as Float32Array;
        expectAllClose(m, adapted, { atol: 1e-5, rtol: 1e-5 }, "merged");
      } finally {
        fresh.dispose();
      }
    } finally {
      model.dispose();
    }
  });

  test("target_modules that match nothing, and unsupported options, are errors naming them", async () => {
    const { dir } = await made("llama", "peft-errors");
    const model = await AutoModelForCausalLM.from_pretrained(dir);
    try {
      assert.throws(() => get_peft_model(model, { target_modules: ["query_key_value"] }), /match no module.*q_proj/s);
      assert.throws(() => get_peft_model(model, { r: 0 }), /r must be a positive integer/);
      assert.throws(() => get_peft_model(model, { bias: "all" as "none" }), /bias "all" is not supported/);
      const peft = get_peft_model(model, { target_modules: "all-linear" });
      assert.equal(peft.adapted.length, 14);
      assert.throws(() => get_peft_model(model, {}), /already has LoRA adapters/);
    } finally {
      model.dispose();
    }
  });
});

test("sharded and 16-bit weight files load: shards give the same logits, BF16 and F16 the rounded weights", async () => {
  const ids = [[5, 17, 33, 65, 129, 257, 3]];
  const logitsOf = async (sub: string, extra: Parameters<typeof makeModel>[1]) => {
    const { dir } = await made("qwen2", sub, extra);
    const m = await AutoModelForCausalLM.from_pretrained(dir);
    try {
      return (await tidy(() => m.forward({ input_ids: ids }).logits!).toArray()) as Float32Array;
    } finally {
      m.dispose();
    }
  };
  const single = await logitsOf("one", {});
  expectAllClose(await logitsOf("shards", { shards: 3 }), single, { atol: 0, rtol: 0 }, "3 shards");
  // 16-bit storage rounds the weights: close to the f32 model, not equal.
  const scale = Math.max(...Array.from(single, Math.abs));
  expectAllClose(await logitsOf("bf16", { dtype: "bfloat16" }), single, { atol: 0.05 * scale, rtol: 0 }, "bfloat16 file");
  expectAllClose(await logitsOf("f16", { dtype: "float16" }), single, { atol: 0.01 * scale, rtol: 0 }, "float16 file");
});

describe("bad model files give errors that name the problem", () => {
  const base = async (sub: string) => (await made("llama", sub)).dir;
  const config = async (dir: string, edit: (c: Record<string, unknown>) => void) => {
    const c = JSON.parse(await readFile(join(dir, "config.json"), "utf8"));
    edit(c);
    await writeFile(join(dir, "config.json"), JSON.stringify(c));
  };

  test("unknown architecture", async () => {
    const dir = await base("arch");
    await config(dir, (c) => (c.architectures = ["GPT2LMHeadModel"]));
    await assert.rejects(AutoModelForCausalLM.from_pretrained(dir), /unsupported architecture "GPT2LMHeadModel"; webtune supports LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM/);
  });

  test("a config whose shapes disagree with the weights", async () => {
    const dir = await base("shape");
    await config(dir, (c) => (c.intermediate_size = 48));
    await assert.rejects(AutoModelForCausalLM.from_pretrained(dir), /model\.safetensors.*"model\.layers\.0\.mlp\.gate_proj\.weight" is \[64, 32\] but config\.json implies \[48, 32\]/);
  });

  test("a missing weight, a missing config.json, no weights file", async () => {
    const dir = await base("missing");
    await config(dir, (c) => (c.num_hidden_layers = 3));
    await assert.rejects(AutoModelForCausalLM.from_pretrained(dir), /lack 9 tensor\(s\).*model\.layers\.2\.self_attn\.q_proj\.weight/);
    await rm(join(dir, "config.json"));
    await assert.rejects(AutoModelForCausalLM.from_pretrained(dir), /config\.json not found in/);
    const dir2 = await base("noweights");
    await rm(join(dir2, "model.safetensors"));
    await assert.rejects(AutoModelForCausalLM.from_pretrained(dir2), /neither model\.safetensors nor model\.safetensors\.index\.json found/);
  });

  test("tensors the architecture's description does not have are an error naming them", async () => {
    const dir = (await made("llama", "unexpected", { config: { attention_bias: true } })).dir;
    await config(dir, (c) => (c.attention_bias = false));
    await assert.rejects(
      AutoModelForCausalLM.from_pretrained(dir),
      /have 8 tensor\(s\) a LlamaForCausalLM with this config\.json does not have: model\.layers\.0\.self_attn\.k_proj\.bias, model\.layers\.0\.self_attn\.o_proj\.bias/,
    );
  });

  test("per-layer rotary_emb.inv_freq buffers of old checkpoints are read past, as transformers does", async () => {
    const dir = await base("inv-freq");
    const file = await SafetensorsFile.open(await openSource(dir), "model.safetensors");
    const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
    for (const name of file.names) tensors[name] = { dtype: "F32", shape: [...file.info(name).shape], data: await file.readF32(name) };
    for (const i of [0, 1]) tensors[`model.layers.${i}.self_attn.rotary_emb.inv_freq`] = { dtype: "F32", shape: [4], data: new Float32Array([1, 0.1, 0.01, 0.001]) };
    await writeFile(join(dir, "model.safetensors"), writeSafetensors(tensors, { format: "pt" }));
    const model = await AutoModelForCausalLM.from_pretrained(dir);
    try {
      assert.ok(!model.named_parameters().some(([n]) => n.includes("inv_freq")));
    } finally {
      model.dispose();
    }
  });

  test("forward's inputs: ragged rows, and a labels or attention_mask batch of another shape than input_ids, are errors saying so", async () => {
    const model = await AutoModelForCausalLM.from_pretrained(await base("inputs"));
    try {
      assert.throws(() => model.forward({ input_ids: [[1, 2, 3], [4, 5]] }), /input_ids: row 1 has 2 tokens but row 0 has 3: pad the rows to one length/);
      assert.throws(() => model.forward({ input_ids: [[1, 2, 3], [4, 5, 6]], labels: [[1, 2, 3]] }), /labels: is \[1, 3\] but input_ids is \[2, 3\]/);
      assert.throws(() => model.forward({ input_ids: [[1, 2, 3]], attention_mask: [[1, 1]] }), /attention_mask: is \[1, 2\] but input_ids is \[1, 3\]/);
    } finally {
      model.dispose();
    }
  });

  test("a registered description with load/save transforms: the model computes with the loaded form, saves transformers' tensors back", async () => {
    // "OffsetNorm" = Llama whose norm weights are stored as w - 1 (Gemma keeps w and computes with 1 + w).
    const offset = (d: number) => (w: WeightSpec, data: Float32Array) => (w.role === "norm" ? data.map((v) => v + d) : data);
    registerArchitecture({ ...Llama, name: "TestOffsetNormForCausalLM", transforms: { load: offset(1), save: offset(-1) } });
    assert.throws(() => registerArchitecture({ ...Llama, name: "TestOffsetNormForCausalLM" }), /already has a description/);
    const dir = await base("offset-norm");
    const file = await SafetensorsFile.open(await openSource(dir), "model.safetensors");
    const llama = await AutoModelForCausalLM.from_pretrained(dir);
    const stored: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
    for (const name of file.names) {
      const data = await file.readF32(name);
      stored[name] = { dtype: "F32", shape: [...file.info(name).shape], data: /norm\.weight$/.test(name) ? data.map((v) => v - 1) : data };
    }
    await writeFile(join(dir, "model.safetensors"), writeSafetensors(stored, { format: "pt" }));
    await config(dir, (c) => (c.architectures = ["TestOffsetNormForCausalLM"]));
    const model = await AutoModelForCausalLM.from_pretrained(dir);
    try {
      const ids = [[5, 17, 42, 99, 123, 7, 250]];
      const [a, b] = await Promise.all([llama, model].map((m) => tidy(() => m.forward({ input_ids: ids }).logits!).toArray()));
      assert.deepEqual(b, a, "the same model once the norms are loaded as w");
      const saved = await model.state_dict();
      for (const [name, t] of Object.entries(stored)) assert.deepEqual(saved.get(name)!.data, t.data, `${name} saved as stored`);
    } finally {
      llama.dispose();
      model.dispose();
    }
  });

  test("a truncated model.safetensors", async () => {
    const dir = await base("truncated");
    const size = (await readFile(join(dir, "model.safetensors"))).length;
    await truncate(join(dir, "model.safetensors"), size - 100);
    await assert.rejects(AutoModelForCausalLM.from_pretrained(dir), /model\.safetensors.*(truncated|past the end|ends)/i);
  });

  test("a tensor larger than the adapter binds", async () => {
    const dir = await base("toobig");
    // The MLP weights are 64 × 32 × 4 = 8,192 bytes: a 4,096-byte limit refuses them (vocab weights would be split).
    await assert.rejects(
      AutoModelForCausalLM.from_pretrained(dir, { max_tensor_bytes: 4096 }),
      /"model\.layers\.0\.mlp\.gate_proj\.weight" \[64, 32\] needs 8\.0 KiB in f32, but this adapter binds at most .*maxStorageBufferBindingSize.*the whole model needs/,
    );
  });

  test("a missing tokenizer file", async () => {
    const dir = await base("notok");
    await rm(join(dir, "tokenizer.json"));
    await assert.rejects(AutoTokenizer.from_pretrained(dir), /tokenizer\.json/);
  });

  test("an adapter for another model", async () => {
    const { dir } = await made("llama", "wrong-adapter");
    const other = join(root, "qwen3-adapter");
    await makeAdapter(other, { model: { ...(await JSON.parse(await readFile(join(dir, "config.json"), "utf8"))), hidden_size: 48 }, r: 4 });
    const model = await AutoModelForCausalLM.from_pretrained(dir);
    try {
      await assert.rejects(PeftModel.from_pretrained(model, other), /is \[4, 48\] but the model needs \[4, 32\].*another model/);
      assert.ok(model.linears().every((l) => !l.lora), "a failed load leaves no adapter behind");
    } finally {
      model.dispose();
    }
  });
});

test("adapter_config.json options webtune cannot honour are errors, not silently different adapters", async () => {
  const { dir } = await made("llama", "peft-config");
  const model = await AutoModelForCausalLM.from_pretrained(dir);
  try {
    assert.throws(() => get_peft_model(model, { use_dora: true }), /use_dora \(DoRA\) is not supported/);
    assert.throws(() => get_peft_model(model, { rank_pattern: { q_proj: 16 } }), /rank_pattern \(per-module r or lora_alpha\) is not supported/);
    assert.throws(() => get_peft_model(model, { modules_to_save: ["lm_head"] }), /modules_to_save \(lm_head\) is not supported yet/);
    assert.equal(model.linears().filter((l) => l.lora).length, 0);
  } finally {
    model.dispose();
  }
});

test("a merged model saved with save_pretrained loads back with the same logits (split head joined back)", async () => {
  const { dir, adapter, c } = await made("llama3", "merge-save");
  const model = await AutoModelForCausalLM.from_pretrained(dir, { max_tensor_bytes: 20000 });
  try {
    const peft = await PeftModel.from_pretrained(model, adapter);
    const want = (await tidy(() => peft.forward({ input_ids: c.padded.input_ids }).logits!).toArray()) as Float32Array;
    const merged = peft.merge_and_unload();
    const out = join(root, "merged");
    await merged.save_pretrained(out);
    const again = await AutoModelForCausalLM.from_pretrained(out);
    try {
      assert.ok(!Array.isArray(again.embed_tokens), "saved as one [V, C] tensor");
      const got = (await tidy(() => again.forward({ input_ids: c.padded.input_ids }).logits!).toArray()) as Float32Array;
      expectAllClose(got, want, { atol: 1e-5, rtol: 1e-5 }, "logits of the saved merged model");
    } finally {
      again.dispose();
    }
  } finally {
    model.dispose();
  }
});

test("gradient checkpointing lowers the peak memory of a forward + backward", async () => {
  const { gpu } = await import("../../src/gpu/device.ts");
  const { memoryStats } = await import("../../src/index.ts");
  const { dir } = await made("llama", "ckpt-memory", { config: { num_hidden_layers: 4 } });
  const model = await AutoModelForCausalLM.from_pretrained(dir);
  try {
    const peft = get_peft_model(model, { r: 4, target_modules: "all-linear" });
    peft.train();
    const ids = [0, 1].map((b) => Array.from({ length: 65 }, (_, t) => (t * 7 + b * 13 + 3) % 300));
    const peak = async () => {
      gpu().pool.resetPeak();
      const before = memoryStats().liveBytes;
      tidy(() => peft.forward({ input_ids: ids, labels: ids }).loss!.backward());
      for (const p of peft.parameters()) p.zero_grad();
      return memoryStats().peakBytes - before;
    };
    const plain = await peak();
    model.gradient_checkpointing_enable();
    const ckpt = await peak();
    // 4 layers of [2, 65] activations: keeping only each layer's input saves well over a third.
    assert.ok(ckpt < 0.66 * plain, `peak above the weights: ${ckpt} bytes with checkpointing, ${plain} without`);
  } finally {
    model.dispose();
  }
});
