// Issue 11's architectures from their published configs: Gemma 2 2B, Gemma 3 270M and 1B, SmolLM3-3B, Phi-3-mini
// 4k and 128k, Phi-4-mini parse, with transformers 5.18's defaults and per-layer rules, and their weight lists
// have the published shapes; v4-style keys (rope_scaling, rope_local_base_freq, sliding_window_pattern, top-level
// rope_theta / partial_rotary_factor) and v5's (rope_parameters, by layer type for Gemma 3; layer_types) parse
// alike; each published config, shrunk (fewer layers, smaller sizes, the same keys), runs a forward pass on
// seeded random weights; a Gemma checkpoint with tensors its config does not have is refused, naming them; Gemma's
// norms are held as 1 + w and saved back as w.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { AutoModelForCausalLM, get_peft_model, parseConfig, tidy } from "../../src/index.ts";
import { weightsOf, type LlamaFamilyConfig } from "../../src/models/architecture.ts";
import { architectureOf } from "../../src/models/config.ts";
import { presetConfig } from "../../src/models/presets.ts";
import { makeModel, tensorValues } from "../../tools/make-model.ts";
import { setup } from "../helpers.ts";

/** google/gemma-2-2b's config.json. */
const GEMMA2_2B = {
  architectures: ["Gemma2ForCausalLM"], attention_bias: false, attention_dropout: 0.0, attn_logit_softcapping: 50.0, bos_token_id: 2,
  cache_implementation: "hybrid", eos_token_id: 1, final_logit_softcapping: 30.0, head_dim: 256, hidden_act: "gelu_pytorch_tanh",
  hidden_activation: "gelu_pytorch_tanh", hidden_size: 2304, initializer_range: 0.02, intermediate_size: 9216, max_position_embeddings: 8192,
  model_type: "gemma2", num_attention_heads: 8, num_hidden_layers: 26, num_key_value_heads: 4, pad_token_id: 0, query_pre_attn_scalar: 256,
  rms_norm_eps: 1e-6, rope_theta: 10000.0, sliding_window: 4096, torch_dtype: "float32", transformers_version: "4.42.4", use_cache: true,
  vocab_size: 256000,
};

/** microsoft/Phi-3-mini-4k-instruct's config.json (auto_map left out). */
const PHI3_MINI_4K = {
  architectures: ["Phi3ForCausalLM"], attention_bias: false, attention_dropout: 0.0, bos_token_id: 1, embd_pdrop: 0.0, eos_token_id: 32000,
  hidden_act: "silu", hidden_size: 3072, initializer_range: 0.02, intermediate_size: 8192, max_position_embeddings: 4096, model_type: "phi3",
  num_attention_heads: 32, num_hidden_layers: 32, num_key_value_heads: 32, original_max_position_embeddings: 4096, pad_token_id: 32000,
  resid_pdrop: 0.0, rms_norm_eps: 1e-5, rope_scaling: null, rope_theta: 10000.0, sliding_window: 2047, tie_word_embeddings: false,
  torch_dtype: "bfloat16", transformers_version: "4.40.2", use_cache: true, vocab_size: 32064,
};

/** microsoft/Phi-3-mini-128k-instruct's config.json: the 4k one with longrope (its 48 factors stand in for the published ones). */
const PHI3_MINI_128K = {
  ...PHI3_MINI_4K,
  max_position_embeddings: 131072,
  rope_scaling: { long_factor: Array.from({ length: 48 }, (_, i) => 1 + i), short_factor: Array.from({ length: 48 }, () => 1.05), type: "longrope" },
  sliding_window: 262144,
};

interface Published {
  name: string;
  config: Record<string, unknown>;
  arch: string;
  tied: boolean;
  /** Expected shapes by weight name. */
  shapes: Record<string, number[]>;
  check?: (c: LlamaFamilyConfig) => void;
}

const PUBLISHED: Published[] = [
  {
    name: "gemma-2-2b",
    config: GEMMA2_2B,
    arch: "Gemma2ForCausalLM",
    tied: true,
    shapes: {
      "model.embed_tokens.weight": [256000, 2304],
      "model.layers.0.self_attn.q_proj.weight": [2048, 2304],
      "model.layers.0.self_attn.k_proj.weight": [1024, 2304],
      "model.layers.0.self_attn.o_proj.weight": [2304, 2048],
      "model.layers.0.mlp.gate_proj.weight": [9216, 2304],
      "model.layers.25.pre_feedforward_layernorm.weight": [2304],
      "model.layers.25.post_feedforward_layernorm.weight": [2304],
    },
    check: (c) => {
      assert.equal(c.hidden_act, "gelu_pytorch_tanh");
      assert.equal(c.query_pre_attn_scalar, 256);
      assert.equal(c.attn_logit_softcapping, 50);
      assert.equal(c.final_logit_softcapping, 30);
      assert.deepEqual(c.layer_types.slice(0, 4), ["sliding_attention", "full_attention", "sliding_attention", "full_attention"]);
    },
  },
  {
    name: "gemma-3-270m",
    config: presetConfig("gemma-3-270m"),
    arch: "Gemma3ForCausalLM",
    tied: true,
    shapes: {
      "model.embed_tokens.weight": [262144, 640],
      "model.layers.0.self_attn.q_proj.weight": [1024, 640],
      "model.layers.0.self_attn.k_proj.weight": [256, 640],
      "model.layers.0.self_attn.q_norm.weight": [256],
      "model.layers.0.self_attn.k_norm.weight": [256],
      "model.layers.17.mlp.down_proj.weight": [640, 2048],
    },
    check: (c) => {
      assert.equal(c.num_hidden_layers, 18);
      assert.equal(c.layer_types[5], "full_attention");
      assert.equal(c.layer_types[4], "sliding_attention");
      assert.equal(c.sliding_window, 512);
      assert.equal(c.final_logit_softcapping, null);
      assert.equal(c.attn_logit_softcapping, null);
      assert.deepEqual(c.sliding_rope, { rope_theta: 10000, rope_scaling: null });
      assert.equal(c.rope_theta, 1000000);
    },
  },
  {
    name: "gemma-3-1b-it",
    config: presetConfig("gemma-3-1b-it"),
    arch: "Gemma3ForCausalLM",
    tied: true,
    shapes: {
      "model.embed_tokens.weight": [262144, 1152],
      "model.layers.0.self_attn.q_proj.weight": [1024, 1152],
      "model.layers.0.self_attn.k_proj.weight": [256, 1152],
      "model.layers.25.mlp.gate_proj.weight": [6912, 1152],
    },
    check: (c) => {
      // v4: sliding_window_pattern 6.
      assert.deepEqual(c.layer_types.slice(0, 7), [...Array(5).fill("sliding_attention"), "full_attention", "sliding_attention"]);
    },
  },
  {
    name: "smollm3-3b",
    config: presetConfig("smollm3-3b"),
    arch: "SmolLM3ForCausalLM",
    tied: true,
    shapes: {
      "model.embed_tokens.weight": [128256, 2048],
      "model.layers.0.self_attn.q_proj.weight": [2048, 2048],
      "model.layers.0.self_attn.k_proj.weight": [512, 2048],
      "model.layers.35.mlp.up_proj.weight": [11008, 2048],
    },
    check: (c) => {
      assert.deepEqual(c.use_rope.slice(0, 8), [true, true, true, false, true, true, true, false]);
      assert.equal(c.sliding_window, null);
    },
  },
  {
    name: "phi-3-mini-4k",
    config: PHI3_MINI_4K,
    arch: "Phi3ForCausalLM",
    tied: false,
    shapes: {
      "model.embed_tokens.weight": [32064, 3072],
      "model.layers.0.self_attn.qkv_proj.weight": [9216, 3072],
      "model.layers.0.self_attn.o_proj.weight": [3072, 3072],
      "model.layers.0.mlp.gate_up_proj.weight": [16384, 3072],
      "model.layers.31.mlp.down_proj.weight": [3072, 8192],
      "lm_head.weight": [32064, 3072],
    },
    check: (c) => {
      assert.equal(c.sliding_window, 2047);
      assert.ok(c.layer_types.every((t) => t === "sliding_attention"));
      assert.equal(c.rope_scaling, null);
    },
  },
  {
    name: "phi-3-mini-128k",
    config: PHI3_MINI_128K,
    arch: "Phi3ForCausalLM",
    tied: false,
    shapes: { "model.layers.0.self_attn.qkv_proj.weight": [9216, 3072], "lm_head.weight": [32064, 3072] },
    check: (c) => {
      assert.equal(c.rope_scaling?.type, "longrope");
      assert.equal(c.original_max_position_embeddings, 4096);
    },
  },
  {
    name: "phi-4-mini-instruct",
    config: presetConfig("phi-4-mini-instruct"),
    arch: "Phi3ForCausalLM",
    tied: true,
    shapes: {
      "model.embed_tokens.weight": [200064, 3072],
      "model.layers.0.self_attn.qkv_proj.weight": [5120, 3072],
      "model.layers.0.mlp.gate_up_proj.weight": [16384, 3072],
    },
    check: (c) => {
      assert.equal(c.partial_rotary_factor, 0.75);
      assert.equal(c.head_dim, 128);
    },
  },
];

describe("published configs parse and imply the published weight shapes", () => {
  for (const p of PUBLISHED) {
    test(p.name, () => {
      const c = parseConfig({ ...p.config });
      assert.equal(c.architecture, p.arch);
      assert.equal(c.tie_word_embeddings, p.tied);
      assert.equal(c.layer_types.length, c.num_hidden_layers);
      const ws = new Map(weightsOf(architectureOf(c), c).map((w) => [w.name, w.shape]));
      for (const [name, shape] of Object.entries(p.shapes)) assert.deepEqual(ws.get(name), shape, name);
      assert.equal(ws.has("lm_head.weight"), !p.tied);
      p.check?.(c);
    });
  }
});

/** A parsed config without `raw`, for comparing two spellings. */
function parsed(raw: Record<string, unknown>): Omit<LlamaFamilyConfig, "raw"> {
  const { raw: _, ...rest } = parseConfig(raw);
  return rest;
}

describe("v4 and v5 config keys parse alike", () => {
  test("Gemma 3: rope_theta / rope_local_base_freq / rope_scaling / sliding_window_pattern vs rope_parameters by layer type / layer_types", () => {
    const base = { architectures: ["Gemma3ForCausalLM"], model_type: "gemma3_text", hidden_size: 32, intermediate_size: 64, num_hidden_layers: 4, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 8, vocab_size: 400 };
    const v4 = { ...base, rope_theta: 1e6, rope_local_base_freq: 1e4, rope_scaling: { rope_type: "linear", factor: 8.0 }, sliding_window_pattern: 2 };
    const v5 = {
      ...base,
      layer_types: ["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
      rope_parameters: { full_attention: { rope_type: "linear", factor: 8.0, rope_theta: 1e6 }, sliding_attention: { rope_type: "default", rope_theta: 1e4 } },
    };
    const a = parsed(v4);
    const b = parsed(v5);
    assert.deepEqual(a.layer_types, b.layer_types);
    assert.equal(a.rope_theta, b.rope_theta);
    assert.equal(a.rope_scaling?.factor, 8);
    assert.equal(b.rope_scaling?.factor, 8);
    assert.deepEqual(a.sliding_rope, b.sliding_rope);
    assert.deepEqual(a.sliding_rope, { rope_theta: 1e4, rope_scaling: null });
  });

  test("Qwen2: use_sliding_window + max_window_layers vs layer_types", () => {
    const base = { architectures: ["Qwen2ForCausalLM"], hidden_size: 32, intermediate_size: 64, num_hidden_layers: 3, num_attention_heads: 4, vocab_size: 400, use_sliding_window: true, sliding_window: 4 };
    const a = parsed({ ...base, max_window_layers: 1 });
    const b = parsed({ ...base, layer_types: ["full_attention", "sliding_attention", "sliding_attention"] });
    assert.deepEqual(a, b);
    assert.deepEqual(a.layer_types, b.layer_types);
    // Off without use_sliding_window, whatever layer_types says (Qwen2Config sets sliding_window None).
    assert.equal(parsed({ ...base, use_sliding_window: false }).sliding_window, null);
  });

  test("Phi-3: top-level rope_theta / partial_rotary_factor / rope_scaling vs rope_parameters", () => {
    const base = { architectures: ["Phi3ForCausalLM"], hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, vocab_size: 400, original_max_position_embeddings: 8 };
    const scaling = { long_factor: [1.5, 3.0], short_factor: [1.0, 1.25] };
    const a = parsed({ ...base, rope_theta: 500, partial_rotary_factor: 0.5, rope_scaling: { ...scaling, type: "su" } });
    const b = parsed({ ...base, rope_parameters: { ...scaling, rope_type: "longrope", rope_theta: 500, partial_rotary_factor: 0.5 } });
    assert.equal(a.rope_theta, 500);
    assert.equal(b.rope_theta, 500);
    assert.equal(a.partial_rotary_factor, 0.5);
    assert.equal(b.partial_rotary_factor, 0.5);
    assert.equal(a.rope_scaling?.rope_type, "longrope");
    assert.equal(b.rope_scaling?.rope_type, "longrope");
    assert.deepEqual(a.rope_scaling?.long_factor, b.rope_scaling?.long_factor);
  });

  test("SmolLM3: no_rope_layer_interval's default vs no_rope_layers", () => {
    const base = { architectures: ["SmolLM3ForCausalLM"], hidden_size: 32, intermediate_size: 64, num_hidden_layers: 8, num_attention_heads: 4, vocab_size: 400 };
    assert.deepEqual(parsed(base).use_rope, parsed({ ...base, no_rope_layers: [1, 1, 1, 0, 1, 1, 1, 0] }).use_rope);
    assert.deepEqual(parsed({ ...base, no_rope_layer_interval: 2 }).use_rope, [true, false, true, false, true, false, true, false]);
  });

  test("bad keys are errors naming them", () => {
    const base = { architectures: ["Gemma2ForCausalLM"], hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, vocab_size: 400 };
    assert.throws(() => parseConfig({ ...base, layer_types: ["full_attention"] }), /`layer_types` must list "full_attention" or "sliding_attention" for each of the 2 layers/);
    assert.throws(() => parseConfig({ ...base, use_bidirectional_attention: true }), /use_bidirectional_attention true is not supported/);
    assert.throws(() => parseConfig({ ...base, hidden_activation: "relu" }), /hidden_activation "relu" is not supported/);
    assert.throws(() => parseConfig({ ...base, architectures: ["SmolLM3ForCausalLM"], no_rope_layers: [1] }), /`no_rope_layers` must list 0 or 1 for each of the 2 layers/);
  });
});

let root = "";
before(async () => {
  await setup();
  root = await mkdtemp(join(tmpdir(), "webtune-archs-"));
});
after(() => rm(root, { recursive: true, force: true }));

/** A published config shrunk: 2 layers, hidden 32, 4 heads of 8, vocab 400; per-layer lists and rope factors cut to fit. */
function shrink(config: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...config, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, head_dim: 8, vocab_size: 400 };
  out.num_key_value_heads = (config.num_key_value_heads as number) === (config.num_attention_heads as number) ? 4 : 2;
  for (const k of ["layer_types", "no_rope_layers"]) if (Array.isArray(config[k])) out[k] = (config[k] as unknown[]).slice(0, 2);
  const s = config.rope_scaling as Record<string, unknown> | null | undefined;
  if (s?.long_factor) {
    const pairs = Math.floor((8 * ((config.partial_rotary_factor as number) ?? 1)) / 2);
    out.rope_scaling = { ...s, long_factor: (s.long_factor as number[]).slice(0, pairs), short_factor: (s.short_factor as number[]).slice(0, pairs) };
  }
  for (const k of ["bos_token_id", "eos_token_id", "pad_token_id"]) out[k] = 0;
  return out;
}

describe("shrunk published configs run a forward pass on random weights", () => {
  for (const p of PUBLISHED) {
    test(p.name, async () => {
      const dir = join(root, p.name);
      await makeModel(dir, { arch: "llama", seed: 3, config: shrink(p.config), tokenizer: false });
      const model = await AutoModelForCausalLM.from_pretrained(dir);
      try {
        assert.equal(model.config.architecture, p.arch);
        const ids = [[5, 9, 13, 17, 21, 25, 29, 33, 37, 41, 45]];
        const out = tidy(() => model.forward({ input_ids: ids, labels: ids, return_logits: true }));
        assert.deepEqual([...out.logits!.shape], [1, 11, 400]);
        const logits = await out.logits!.toArray();
        assert.ok(logits.every(Number.isFinite), "finite logits");
        const loss = await out.loss!.item();
        assert.ok(Number.isFinite(loss) && loss > 0, `loss ${loss}`);
        const gen = await model.generate(ids[0]!, { max_new_tokens: 3, do_sample: false, eos_token_id: null });
        assert.equal(gen[0]!.length, 14);
      } finally {
        model.dispose();
      }
    });
  }
});

describe("Gemma checkpoints", () => {
  test("tensors the config does not have are an error naming them", async () => {
    const dir = join(root, "gemma-extra");
    await makeModel(dir, { arch: "gemma2", seed: 1, config: { attention_bias: true }, tokenizer: false });
    const cfg = JSON.parse(await readFile(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
    await writeFile(join(dir, "config.json"), JSON.stringify({ ...cfg, attention_bias: false }));
    await assert.rejects(
      AutoModelForCausalLM.from_pretrained(dir),
      /have 8 tensor\(s\) a Gemma2ForCausalLM with this config\.json does not have: model\.layers\.0\.self_attn\.k_proj\.bias/,
    );
  });

  test("norms are held as 1 + w and saved as w", async () => {
    const dir = join(root, "gemma-norms");
    await makeModel(dir, { arch: "gemma3", seed: 2, tokenizer: false });
    const model = await AutoModelForCausalLM.from_pretrained(dir);
    try {
      const params = new Map(model.named_parameters());
      const saved = await model.state_dict();
      const specs = weightsOf(architectureOf(model.config), model.config).filter((w) => w.role === "norm");
      assert.ok(specs.some((w) => w.name.endsWith("q_norm.weight")) && specs.some((w) => w.name === "model.norm.weight"));
      for (const w of specs) {
        const stored = tensorValues(2, w);
        const held = await params.get(w.name)!.toArray();
        held.forEach((x, i) => assert.equal(x, Math.fround(1 + stored[i]!), w.name));
        saved.get(w.name)!.data.forEach((x, i) => assert.ok(Math.abs(x - stored[i]!) <= 1.2e-7, `${w.name} saved`));
      }
    } finally {
      model.dispose();
    }
  });
});

test("Phi-3 and SmolLM3 have no PEFT default target_modules: get_peft_model without them says so", async () => {
  const dir = join(root, "phi-targets");
  await makeModel(dir, { arch: "phi4", seed: 1, tokenizer: false });
  const model = await AutoModelForCausalLM.from_pretrained(dir);
  try {
    assert.throws(() => get_peft_model(model, { r: 4 }), /no default target_modules for model_type "phi3"; give target_modules \(its linear layers are o_proj, qkv_proj, gate_up_proj, down_proj/);
    const peft = get_peft_model(model, { r: 4, target_modules: ["qkv_proj"] });
    assert.equal(peft.adapted.length, 2);
    assert.deepEqual([...peft.adapted[0]!.lora!.A.shape], [4, 32]);
    assert.deepEqual([...peft.adapted[0]!.lora!.B.shape], [(4 + 2 * 2) * 8, 4]);
  } finally {
    model.dispose();
  }
});
