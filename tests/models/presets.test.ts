// src/models/presets.ts: the published configs of the presets, their parameter counts (equal to transformers
// 5.18's sum of parameters of AutoModelForCausalLM.from_config on the meta device for all nine configs, checked
// when written, and to the sizes the model cards publish), the byte sizes, lookup and its errors, and that the
// count agrees with the loader's own weight list (weightsOf) for every architecture webtune describes.
import assert from "node:assert/strict";
import { test } from "node:test";

import { weightsOf } from "../../src/models/architecture.ts";
import { architectureOf, parseConfig, SUPPORTED_ARCHITECTURES } from "../../src/models/config.ts";
import {
  findPreset, formatBytes, formatParameters, MODEL_PRESETS, parameterCount, presetConfig, presetLabel, presetOf, presetSize,
} from "../../src/models/presets.ts";

// transformers 5.18, sum(p.numel() for p in model.parameters()) (tied weights once).
const PARAMETERS: Record<string, number> = {
  "HuggingFaceTB/SmolLM2-135M": 134_515_008,
  "google/gemma-3-270m": 268_098_176,
  "HuggingFaceTB/SmolLM2-360M": 361_821_120,
  "Qwen/Qwen2.5-0.5B": 494_032_768,
  "Qwen/Qwen3-0.6B": 596_049_920,
  "google/gemma-3-1b-it": 999_885_952,
  "meta-llama/Llama-3.2-1B": 1_235_814_400,
  "HuggingFaceTB/SmolLM3-3B": 3_075_098_624,
  "microsoft/Phi-4-mini-instruct": 3_836_021_760,
};

test("the nine presets, by Hub id, with unique short names", () => {
  assert.deepEqual(MODEL_PRESETS.map((p) => p.id), Object.keys(PARAMETERS));
  assert.equal(new Set(MODEL_PRESETS.map((p) => p.name)).size, MODEL_PRESETS.length);
  for (const p of MODEL_PRESETS) assert.match(p.name, /^[a-z0-9.-]+$/);
});

test("parameter counts equal transformers' for every preset", () => {
  for (const p of MODEL_PRESETS) assert.equal(parameterCount(p.config).parameters, PARAMETERS[p.id], p.id);
});

test("sizes: parts add up, tied heads counted once, bytes per dtype", () => {
  const s = presetSize("gemma-3-270m");
  assert.equal(s.tied, true); // Gemma3TextConfig's default: the file has no tie_word_embeddings
  assert.equal(s.head, 0);
  assert.equal(s.embedding, 262144 * 640);
  assert.equal(s.embedding + s.layers + s.norm + s.head, s.parameters);
  assert.equal(s.layers, 18 * s.per_layer);
  assert.deepEqual(s.bytes, { float32: 4 * 268_098_176, bfloat16: 2 * 268_098_176 });

  // Untying adds the LM head: vocab x hidden.
  const untied = parameterCount({ ...presetConfig("Qwen/Qwen3-0.6B"), tie_word_embeddings: false });
  assert.equal(untied.parameters, 596_049_920 + 151936 * 1024);
  assert.equal(untied.tied, false);
  // Llama's default is untied.
  const cfg = presetConfig("meta-llama/Llama-3.2-1B");
  delete cfg.tie_word_embeddings;
  assert.equal(parameterCount(cfg).tied, false);
  // Biases: Qwen2 always (q/k/v), Llama with attention_bias (q/k/v/o) and mlp_bias (gate/up/down).
  const qwen2 = presetSize("Qwen/Qwen2.5-0.5B");
  assert.equal(qwen2.per_layer, 2 * 896 * 896 + 2 * 896 * 128 + (896 + 2 * 128) + 3 * 896 * 4864 + 2 * 896);
  const smol = presetConfig("smollm2-135m");
  const base = parameterCount(smol).per_layer;
  assert.equal(parameterCount({ ...smol, attention_bias: true }).per_layer, base + 576 + 2 * 192 + 576);
  assert.equal(parameterCount({ ...smol, mlp_bias: true }).per_layer, base + 2 * 1536 + 576);
});

test("the counts agree with the loader's weight list where webtune describes the architecture", () => {
  let compared = 0;
  for (const p of MODEL_PRESETS) {
    const name = (p.config.architectures as string[])[0]!;
    if (!SUPPORTED_ARCHITECTURES.includes(name)) continue; // Gemma3 / SmolLM3 / Phi3 until their descriptions land
    const cfg = parseConfig(presetConfig(p.id), p.id);
    const specs = weightsOf(architectureOf(cfg), cfg);
    const n = specs.reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1), 0);
    assert.equal(n, PARAMETERS[p.id], p.id);
    compared++;
  }
  assert.ok(compared >= 5, `compared ${compared} presets`); // SmolLM2 x2, Qwen2.5, Qwen3, Llama 3.2 today
});

test("the configs are the published files' (spot checks of the keys each architecture is read by)", () => {
  const g = presetConfig("google/gemma-3-270m");
  assert.equal((g.layer_types as string[]).length, 18);
  assert.deepEqual((g.layer_types as string[]).flatMap((t, i) => (t === "full_attention" ? [i] : [])), [5, 11, 17]);
  assert.equal(g.rope_local_base_freq, 10000);
  assert.equal(g.query_pre_attn_scalar, 256);
  assert.equal(g.hidden_activation, "gelu_pytorch_tanh");
  assert.equal(presetConfig("google/gemma-3-1b-it").sliding_window_pattern, 6);
  const s = presetConfig("HuggingFaceTB/SmolLM3-3B");
  assert.deepEqual((s.no_rope_layers as number[]).flatMap((f, i) => (f === 0 ? [i] : [])), [3, 7, 11, 15, 19, 23, 27, 31, 35]);
  const phi = presetConfig("microsoft/Phi-4-mini-instruct");
  const rs = phi.rope_scaling as { long_factor: number[]; short_factor: number[]; type: string };
  assert.equal(rs.type, "longrope");
  assert.equal(rs.long_factor.length, (128 * 0.75) / 2);
  assert.equal(rs.short_factor.length, 48);
  assert.equal(phi.original_max_position_embeddings, 4096);
  assert.deepEqual(presetConfig("meta-llama/Llama-3.2-1B").rope_scaling, {
    factor: 32.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 8192, rope_type: "llama3",
  });
  for (const p of MODEL_PRESETS) assert.equal(p.config.torch_dtype, "bfloat16", p.id);
});

test("lookup by Hub id or short name; copies; a named error listing the presets", () => {
  assert.equal(findPreset("qwen/qwen3-0.6b")?.name, "qwen3-0.6b");
  assert.equal(presetOf("qwen3-0.6b").id, "Qwen/Qwen3-0.6B");
  assert.equal(findPreset("gpt2"), undefined);
  const a = presetConfig("gemma-3-270m");
  (a.layer_types as string[])[0] = "changed";
  a.hidden_size = 1;
  assert.equal(presetConfig("gemma-3-270m").hidden_size, 640);
  assert.equal((presetConfig("gemma-3-270m").layer_types as string[])[0], "sliding_attention");
  assert.ok(Object.isFrozen(MODEL_PRESETS[0]!.config));
  assert.throws(() => presetConfig("gpt2"), /no model preset "gpt2"; the presets are smollm2-135m \(HuggingFaceTB\/SmolLM2-135M\), gemma-3-270m/);
  assert.throws(() => parameterCount({ hidden_size: 8 }), /`vocab_size` must be a positive integer/);
});

test("labels as the page lists them", () => {
  assert.equal(presetLabel(presetOf("gemma-3-270m")), "Gemma 3 270M · 268M params · 536 MB bf16");
  assert.equal(presetLabel(presetOf("llama-3.2-1b")), "Llama 3.2 1B · 1.24B params · 2.47 GB bf16");
  assert.equal(formatParameters(999_885_952), "1B");
  assert.equal(formatParameters(134_515_008), "135M");
  assert.equal(formatBytes(999_771_904), "1 GB");
  assert.equal(formatBytes(269_030_016), "269 MB");
});
