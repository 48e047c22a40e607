// The TypeScript half of the PEFT interop check (tools/fixtures/peft_interop.py runs it): makes a tiny model,
// wraps it with get_peft_model, moves the adapter off its identity init, saves it with save_pretrained,
// and writes the logits webtune computes with it, for Python PEFT to load the adapter and compare; then
// merges the adapter and saves the whole model, for transformers to load.
//   node --import tsx tools/peft-interop.ts DIR
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { AutoModelForCausalLM, get_peft_model, getDevice, Tensor, tidy } from "../src/index.ts";
import { makeModel } from "./make-model.ts";

const dir = process.argv[2];
if (!dir) throw new Error("usage: peft-interop.ts DIR");
await getDevice();
const results: Record<string, unknown> = {};
// Issue 11's architectures too: Gemma's offset norms and soft-caps, SmolLM3's NoPE layer, Phi-3's fused
// qkv_proj / gate_up_proj (adapted whole, under those names) with longrope (11 tokens: past its switch at 8).
// Gemma 2 gets an integral final_logit_softcapping (30.0 is what the Hub files have), which config.json must keep
// as a float for transformers 5's strict config classes.
const ARCHS = ["llama", "qwen2", "qwen3", "gemma2", "gemma3", "smollm3", "phi3", "phi4"] as const;
for (const arch of ARCHS) {
  const modelDir = join(dir, arch);
  await makeModel(modelDir, { arch, seed: 5, tokenizer: false, ...(arch === "gemma2" ? { config: { final_logit_softcapping: 6 } } : {}) });
  const model = await AutoModelForCausalLM.from_pretrained(modelDir);
  const peft = get_peft_model(model, { r: 4, lora_alpha: 16, target_modules: "all-linear", lora_dropout: 0.1 });
  for (const lin of peft.adapted) {
    const B = lin.lora!.B;
    lin.lora!.B = Tensor.fromArray(Float32Array.from({ length: B.size }, (_, i) => Math.sin(i + lin.name.length) * 0.1), B.shape, { requires_grad: true });
    B.dispose();
  }
  const input_ids = [[3, 17, 33, 65, 129, 257, 11, 5, 77, 199, 301]];
  const logits = await tidy(() => peft.eval().forward({ input_ids }).logits!).toArray();
  await peft.save_pretrained(join(dir, `${arch}-adapter`));
  // The same adapter merged into the weights and saved as a whole model, for transformers alone.
  await peft.merge_and_unload().save_pretrained(join(dir, `${arch}-merged`));
  results[arch] = { input_ids, logits: Array.from(logits), targets: [...new Set(peft.adapted.map((l) => l.name.split(".").at(-1)))].sort() };
  model.dispose();
}
await writeFile(join(dir, "webtune.json"), JSON.stringify(results));
