// The composed check: one Llama decoder layer (RMSNorm → q/k/v → RoPE → packed causal GQA attention →
// o_proj → residual → RMSNorm → SwiGLU MLP → residual) built from webtune's ops, forward and backward,
// against the float64 PyTorch fixture written by tools/fixtures/block.py.
import { before, test } from "node:test";
import { add, attention, matmul, reshape, rmsnorm, rope, RotaryEmbedding, swiglu, Tensor, tidy } from "../../src/index.ts";
import { fixtures, tensorOf } from "../fixtures.ts";
import { expectAllClose, setup } from "../helpers.ts";

before(setup);

const WEIGHTS = [
  "input_layernorm", "q_proj", "k_proj", "v_proj", "o_proj",
  "post_attention_layernorm", "gate_proj", "up_proj", "down_proj",
] as const;

test("a Llama decoder layer, forward and backward, equals PyTorch (packed row, GQA, RoPE)", async () => {
  const c = fixtures("block")["packed_gqa"]!;
  const cfg = c.config as unknown as Record<string, number>;
  const { T, C, H, KVH, D, eps, rope_theta } = cfg as Record<"T" | "C" | "H" | "KVH" | "D" | "eps" | "rope_theta", number>;
  const param = (k: string) => {
    const f = tensorOf(c, k);
    return Tensor.fromArray(Float32Array.from(f.data), f.shape, { requires_grad: true });
  };
  const x = param("x");
  const w = Object.fromEntries(WEIGHTS.map((k) => [k, param(k)])) as Record<(typeof WEIGHTS)[number], Tensor>;
  const positions = Int32Array.from(tensorOf(c, "position_ids").data);
  const rotary = new RotaryEmbedding({ head_dim: D, rope_theta, max_position_embeddings: 64 });
  const linear = (h: Tensor, weight: Tensor) => matmul(h, weight, { transpose_b: true });

  const y = tidy(() => {
    const h = rmsnorm(x, w.input_layernorm, eps);
    const q = rope(reshape(linear(h, w.q_proj), [1, T, H, D]), positions, rotary);
    const k = rope(reshape(linear(h, w.k_proj), [1, T, KVH, D]), positions, rotary);
    const v = reshape(linear(h, w.v_proj), [1, T, KVH, D]);
    const a = reshape(attention(q, k, v, { position_ids: positions }), [T, H * D]);
    const x2 = add(x, linear(a, w.o_proj));
    const h2 = rmsnorm(x2, w.post_attention_layernorm, eps);
    const mlp = linear(swiglu(linear(h2, w.gate_proj), linear(h2, w.up_proj)), w.down_proj);
    return add(x2, mlp);
  });
  expectAllClose(await y.toArray(), tensorOf(c, "y").data, { atol: 2e-5, rtol: 1e-4 }, "y");

  const dy = tensorOf(c, "dy");
  tidy(() => y.backward(Tensor.fromArray(Float32Array.from(dy.data), [T, C])));
  // Gradients pass through ~10 f32 kernels (sums over up to 48 terms): 1e-4 relative + 5e-5 absolute.
  const tol = { atol: 5e-5, rtol: 1e-4 };
  expectAllClose(await x.grad!.toArray(), tensorOf(c, "dx").data, tol, "dx");
  for (const k of WEIGHTS) expectAllClose(await w[k].grad!.toArray(), tensorOf(c, `d_${k}`).data, tol, `d ${k}`);
  rotary.dispose();
});
