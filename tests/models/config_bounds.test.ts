// Untrusted model configs (issue 14's fault battery): parseConfig bounds every size and checks every value before
// anything is allocated, naming the key — from config.json and from a GGUF file's metadata. No GPU.
// Runs under Node (node --import tsx --test) and Deno (deno test -A --no-check).
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { CONFIG_LIMITS, parseConfig } from "../../src/models/config.ts";
import { GGUFFile, ggufConfig } from "../../src/models/gguf.ts";

const LLAMA = {
  architectures: ["LlamaForCausalLM"],
  vocab_size: 64,
  hidden_size: 16,
  intermediate_size: 32,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  max_position_embeddings: 128,
};

/** parseConfig of LLAMA with `delta` fails, fast, with a message matching every pattern. */
function bad(delta: Record<string, unknown>, ...patterns: RegExp[]): void {
  const t0 = performance.now();
  assert.throws(
    () => parseConfig({ ...LLAMA, ...delta }, "config.json of test/model"),
    (e: Error) => {
      assert.match(e.message, /^config\.json of test\/model: /);
      for (const re of patterns) assert.match(e.message, re);
      return true;
    },
  );
  const ms = performance.now() - t0;
  assert.ok(ms < 100, `rejecting took ${ms.toFixed(1)} ms`);
}

describe("config.json bounds", () => {
  test("the base config parses", () => {
    const c = parseConfig({ ...LLAMA });
    assert.equal(c.num_hidden_layers, 2);
    assert.equal(c.head_dim, 4);
  });

  test("sizes past any model fail at once, naming the key", () => {
    bad({ num_hidden_layers: 1e9 }, /`num_hidden_layers` is 1000000000, past the 1024 webtune accepts/);
    bad({ num_hidden_layers: 1e9, layer_types: ["full_attention"] }, /`num_hidden_layers`/);
    bad({ architectures: ["SmolLM3ForCausalLM"], num_hidden_layers: 1e9 }, /`num_hidden_layers`/);
    bad({ architectures: ["Gemma2ForCausalLM"], num_hidden_layers: 2 ** 40 }, /`num_hidden_layers`/);
    bad({ hidden_size: 1e7 }, /`hidden_size` is 10000000/);
    bad({ intermediate_size: 2 ** 30 }, /`intermediate_size`/);
    bad({ vocab_size: 2 ** 31 }, /`vocab_size`/);
    bad({ num_attention_heads: 4096, num_key_value_heads: 4096, hidden_size: 4096 * 4 }, /`num_attention_heads`/);
    bad({ head_dim: 1e6 }, /`head_dim`/);
    bad({ max_position_embeddings: 1e12 }, /`max_position_embeddings`/);
    bad({ architectures: ["MistralForCausalLM"], sliding_window: 1e12 }, /`sliding_window`/);
    bad({ architectures: ["Qwen2ForCausalLM"], use_sliding_window: true, max_window_layers: 2 ** 40 }, /`max_window_layers`/);
    assert.equal(CONFIG_LIMITS.num_hidden_layers, 1024);
  });

  test("wrong types, zero, negative, fractional and non-finite sizes", () => {
    bad({ hidden_size: 0 }, /`hidden_size` must be a positive integer, got 0/);
    bad({ vocab_size: -5 }, /`vocab_size` must be a positive integer/);
    bad({ intermediate_size: 3.5 }, /`intermediate_size`/);
    bad({ num_hidden_layers: "2" }, /`num_hidden_layers` must be a positive integer, got "2"/);
    bad({ num_key_value_heads: 3 }, /num_attention_heads 4 is not a multiple of num_key_value_heads 3/);
    bad({ hidden_size: 18 }, /hidden_size 18 is not a multiple of num_attention_heads 4/);
    bad({ head_dim: 5 }, /`head_dim` 5 .*RoPE needs an even head_dim/);
  });

  test("rope_theta, rope_parameters and rope_scaling: positive and finite", () => {
    bad({ rope_theta: -5 }, /`rope_theta` must be a positive finite number, got -5/);
    bad({ rope_theta: 0 }, /`rope_theta`/);
    bad({ rope_theta: undefined, rope_parameters: { rope_type: "default", rope_theta: -5 } }, /`rope_parameters\.rope_theta` must be a positive finite number, got -5/);
    bad({ rope_parameters: { rope_type: "default", rope_theta: "1e4" } }, /`rope_parameters\.rope_theta`/);
    bad({ rope_scaling: { rope_type: "linear", factor: -2 } }, /`rope_scaling\.factor` must be a positive finite number, got -2/);
    bad({ rope_scaling: { rope_type: "linear" } }, /`rope_scaling\.factor` is needed/);
    bad({ rope_parameters: { rope_type: "linear", factor: 0, rope_theta: 1e4 } }, /`rope_parameters\.factor`/);
    bad(
      { rope_scaling: { rope_type: "llama3", factor: 8, low_freq_factor: 4, high_freq_factor: 1, original_max_position_embeddings: 8192 } },
      /`rope_scaling\.high_freq_factor` \(1\) must be greater than low_freq_factor \(4\)/,
    );
    bad({ rope_scaling: { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: -1 } }, /`rope_scaling\.original_max_position_embeddings`/);
    bad({ rope_scaling: "linear" }, /`rope_scaling` must be an object or null, got "linear"/);
    bad({ architectures: ["Gemma3ForCausalLM"], rope_parameters: { full_attention: { rope_type: "default", rope_theta: 1e6 }, sliding_attention: { rope_type: "default", rope_theta: -1 } } }, /rope_theta/);
    bad({ architectures: ["Gemma3ForCausalLM"], rope_local_base_freq: Infinity }, /rope_theta/);
    bad({ architectures: ["Phi3ForCausalLM"], rope_theta: Infinity }, /rope_theta/);
    bad({ architectures: ["Phi3ForCausalLM"], rope_scaling: { rope_type: "longrope", short_factor: [1, -1], long_factor: [1, 1] } }, /`rope_scaling\.short_factor`/);
    // Real ones still parse.
    const c = parseConfig({ ...LLAMA, rope_scaling: { rope_type: "llama3", factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 } });
    assert.equal(c.rope_scaling?.rope_type, "llama3");
  });

  test("eps, soft-caps, partial_rotary_factor", () => {
    bad({ rms_norm_eps: -1e-6 }, /`rms_norm_eps` must be a positive finite number/);
    bad({ rms_norm_eps: 5 }, /`rms_norm_eps` must be a small positive number/);
    bad({ architectures: ["Gemma2ForCausalLM"], head_dim: 4, attn_logit_softcapping: -50 }, /`attn_logit_softcapping`/);
    bad({ architectures: ["Gemma2ForCausalLM"], head_dim: 4, final_logit_softcapping: 0 }, /`final_logit_softcapping`/);
    bad({ architectures: ["Gemma2ForCausalLM"], head_dim: 4, query_pre_attn_scalar: -1 }, /`query_pre_attn_scalar`/);
    bad({ architectures: ["Phi3ForCausalLM"], partial_rotary_factor: 1.5 }, /`partial_rotary_factor` must be a number in \(0, 1\]/);
    bad({ architectures: ["Phi3ForCausalLM"], partial_rotary_factor: 0 }, /`partial_rotary_factor`/);
    assert.equal(parseConfig({ ...LLAMA, architectures: ["Gemma2ForCausalLM"], head_dim: 4, attn_logit_softcapping: null }).attn_logit_softcapping, null);
  });

  test("a layer tensor past what one binding can index", () => {
    bad({ hidden_size: 131072, num_attention_heads: 512, num_key_value_heads: 512, intermediate_size: 1048576 }, /makes a layer tensor of \d+ elements/);
  });
});

// A GGUF file with metadata only (no tensors): enough for ggufConfig and parseConfig.
function gguf(kvs: [string, "u32" | "f32" | "str", number | string][]): Uint8Array {
  const out: number[] = [];
  const push = (n: number, set: (d: DataView) => void) => {
    const b = new Uint8Array(n);
    set(new DataView(b.buffer));
    out.push(...b);
  };
  const str = (s: string) => {
    const b = new TextEncoder().encode(s);
    push(8, (d) => d.setBigUint64(0, BigInt(b.length), true));
    out.push(...b);
  };
  out.push(...new TextEncoder().encode("GGUF"));
  push(4, (d) => d.setUint32(0, 3, true));
  push(8, (d) => d.setBigUint64(0, 0n, true));
  push(8, (d) => d.setBigUint64(0, BigInt(kvs.length), true));
  for (const [key, type, v] of kvs) {
    str(key);
    push(4, (d) => d.setUint32(0, type === "u32" ? 4 : type === "f32" ? 6 : 8, true));
    if (type === "u32") push(4, (d) => d.setUint32(0, v as number, true));
    else if (type === "f32") push(4, (d) => d.setFloat32(0, v as number, true));
    else str(v as string);
  }
  while (out.length % 32) out.push(0);
  return Uint8Array.from(out);
}

describe("GGUF metadata bounds", () => {
  const base: [string, "u32" | "f32" | "str", number | string][] = [
    ["general.architecture", "str", "llama"],
    ["llama.block_count", "u32", 2],
    ["llama.embedding_length", "u32", 16],
    ["llama.feed_forward_length", "u32", 32],
    ["llama.attention.head_count", "u32", 4],
    ["llama.attention.head_count_kv", "u32", 2],
    ["llama.attention.layer_norm_rms_epsilon", "f32", 1e-6],
    ["llama.rope.freq_base", "f32", 10000],
    ["llama.context_length", "u32", 128],
    ["llama.vocab_size", "u32", 64],
  ];
  const lying = async (key: string, value: number, ...patterns: RegExp[]) => {
    const kvs = base.map(([k, t, v]): [string, "u32" | "f32" | "str", number | string] => [k, t, k === key ? value : v]);
    const g = await GGUFFile.open(gguf(kvs), "lying.gguf");
    const t0 = performance.now();
    assert.throws(() => parseConfig(ggufConfig(g), `the metadata of ${g.name}`), (e: Error) => {
      assert.match(e.message, /^the metadata of lying\.gguf: /);
      for (const re of patterns) assert.match(e.message, re);
      return true;
    });
    assert.ok(performance.now() - t0 < 100);
  };

  test("the honest file parses", async () => {
    const g = await GGUFFile.open(gguf(base), "ok.gguf");
    assert.equal(parseConfig(ggufConfig(g)).num_hidden_layers, 2);
  });

  test("lying values are caught, naming the config key and the GGUF key", async () => {
    await lying("llama.block_count", 1e9, /`num_hidden_layers` is 1000000000/, /the GGUF metadata key llama\.block_count/);
    await lying("llama.embedding_length", 0, /`hidden_size` must be a positive integer/, /llama\.embedding_length/);
    await lying("llama.rope.freq_base", -5, /`rope_theta` must be a positive finite number/, /llama\.rope\.freq_base/);
    await lying("llama.attention.layer_norm_rms_epsilon", NaN, /`rms_norm_eps`/);
    await lying("llama.vocab_size", 4e9, /`vocab_size`/);
    await lying("llama.context_length", 4e9, /`max_position_embeddings`/);
  });
});
