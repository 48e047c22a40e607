// dtype "float16" / "bfloat16": the frozen linear weights, the embedding and the LM head stored as f16 (bf16)
// compute what the f32 model computes from the same (f16- / bf16-representable) weights. float16 runs where the
// adapter has shader-f16 (Deno's wgpu on llvmpipe here; elsewhere, loading with dtype "float16" is a clear
// error); bfloat16 (read by bit operations) on every adapter.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { AutoModelForCausalLM, deviceInfo, PeftModel, tidy } from "../../src/index.ts";
import { makeAdapter, makeModel } from "../../tools/make-model.ts";
import { expectAllClose, setup } from "../helpers.ts";

let dir = "";
let bf16Dir = "";
before(async () => {
  await setup();
  dir = await mkdtemp(join(tmpdir(), "webtune-f16-"));
  // A float16 file: its weights are exactly representable, so f16 storage loses nothing (bfloat16 likewise).
  await makeModel(dir, { arch: "qwen2", seed: 9, dtype: "float16", tokenizer: false });
  await makeAdapter(join(dir, "adapter"), { model: dir, seed: 4, r: 4 });
  bf16Dir = join(dir, "bf16");
  await makeModel(bf16Dir, { arch: "qwen2", seed: 9, dtype: "bfloat16", tokenizer: false });
  await makeAdapter(join(bf16Dir, "adapter"), { model: bf16Dir, seed: 4, r: 4 });
});
after(() => rm(dir, { recursive: true, force: true }));

const ids = [[3, 17, 33, 65, 129, 257, 11, 5, 99], [8, 6, 7, 5, 3, 0, 9, 0, 0]];
const mask = [[1, 1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 0, 0]];
const labels = ids.map((r, b) => r.map((x, t) => (mask[b]![t] ? x : -100)));

async function run(dtype: "float32" | "float16" | "bfloat16", from = dir) {
  const model = await AutoModelForCausalLM.from_pretrained(from, { dtype });
  try {
    const peft = await PeftModel.from_pretrained(model, join(from, "adapter"), { is_trainable: true });
    const out = tidy(() => peft.forward({ input_ids: ids, attention_mask: mask, labels, return_logits: true }));
    const logits = Array.from(await out.logits!.toArray());
    const loss = await out.loss!.item();
    tidy(() => out.loss!.backward());
    const grads = await Promise.all(peft.parameters().map(async (p) => Array.from(await p.grad!.toArray())));
    const tokens = await peft.generate(ids[0]!, { max_new_tokens: 5, eos_token_id: null });
    const dtypes = new Set(model.named_parameters().map(([, t]) => t.dtype));
    const vocab = new Set(model.named_parameters().filter(([n]) => /embed_tokens|lm_head/.test(n)).map(([, t]) => t.dtype));
    return { logits, loss, grads, tokens, dtypes, vocab, bytes: model.named_parameters().reduce((s, [, t]) => s + t.storage.bytes, 0) };
  } finally {
    model.dispose();
  }
}

test("f16 storage of the frozen linear weights: same logits, loss, LoRA gradients and tokens, fewer bytes", async (t) => {
  if (!deviceInfo().features.shader_f16) {
    await assert.rejects(AutoModelForCausalLM.from_pretrained(dir, { dtype: "float16" }), /dtype "float16" needs the adapter's shader-f16 feature/);
    t.skip("adapter has no shader-f16: checked the error instead");
    return;
  }
  const f32 = await run("float32");
  const f16 = await run("float16");
  assert.deepEqual([...f16.dtypes].sort(), ["f16", "f32"]);
  assert.deepEqual([...f16.vocab], ["f16"], "the embedding (tied head) is f16 too");
  assert.ok(f16.bytes < 0.6 * f32.bytes, `f16 storage: ${f16.bytes} bytes vs ${f32.bytes}`);
  same(f16, f32);
  // Full fine-tuning needs f32 weights.
  const model = await AutoModelForCausalLM.from_pretrained(dir, { dtype: "float16" });
  try {
    assert.throws(() => model.requires_grad_(true), /stored as f16.*dtype "float32" for full fine-tuning/);
  } finally {
    model.dispose();
  }
});

test("bf16 storage of the frozen weights (every adapter): same logits, loss, LoRA gradients and tokens, fewer bytes", async () => {
  const f32 = await run("float32", bf16Dir);
  const bf16 = await run("bfloat16", bf16Dir);
  assert.deepEqual([...bf16.dtypes].sort(), ["bf16", "f32"]);
  assert.deepEqual([...bf16.vocab], ["bf16"]);
  assert.ok(bf16.bytes < 0.6 * f32.bytes, `bf16 storage: ${bf16.bytes} bytes vs ${f32.bytes}`);
  same(bf16, f32);
  const model = await AutoModelForCausalLM.from_pretrained(bf16Dir, { dtype: "bfloat16" });
  try {
    assert.throws(() => model.requires_grad_(true), /stored as bf16, a format for frozen weights/);
  } finally {
    model.dispose();
  }
});

function same(a: Awaited<ReturnType<typeof run>>, f32: Awaited<ReturnType<typeof run>>): void {
  const tol = { atol: 1e-5, rtol: 1e-5 };
  expectAllClose(a.logits, f32.logits, tol, "logits");
  expectAllClose([a.loss], [f32.loss], tol, "loss");
  a.grads.forEach((g, i) => expectAllClose(g, f32.grads[i]!, { atol: 1e-5 * Math.max(...f32.grads[i]!.map(Math.abs)), rtol: 1e-5 }, `grad ${i}`));
  assert.deepEqual(a.tokens, f32.tokens);
}
