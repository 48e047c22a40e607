// The embedded tiny model (src/data/tiny.ts: weights from src/models/tiny.ts, tokenizer from the committed
// src/data/tiny_tokenizer.ts): its in-memory files are byte for byte what tools/make-model.ts writes for the
// same preset and seed, the committed tokenizer is what tools/tiny-tokenizer.ts writes, it loads and runs from
// memory, and it bundles for the browser without Node's modules.
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { build } from "esbuild";

import { AutoModelForCausalLM, AutoTokenizer, tidy } from "../../src/index.ts";
import { tinyModelFiles, tinyModelSource } from "../../src/data/tiny.ts";
import { DEFAULT_TINY_CONFIG } from "../../src/models/tiny.ts";
import { makeModel } from "../../tools/make-model.ts";
import { TINY_TOKENIZER_MODULE, tinyTokenizerModule } from "../../tools/tiny-tokenizer.ts";
import { setup } from "../helpers.ts";

let root = "";
before(async () => {
  await setup();
  root = await mkdtemp(join(tmpdir(), "webtune-tiny-"));
});
after(() => rm(root, { recursive: true, force: true }));

const TINY = { hidden_size: 64, intermediate_size: 128, num_attention_heads: 4, num_key_value_heads: 2, num_hidden_layers: 2, vocab_size: 320 };

test("the in-memory files equal, byte for byte, what makeModel writes for the llama preset with seed 2026", async () => {
  const dir = join(root, "made");
  await makeModel(dir, { arch: "llama", seed: 2026, config: TINY });
  const files = tinyModelFiles();
  const names = (await readdir(dir)).sort();
  assert.deepEqual(Object.keys(files).sort(), names);
  assert.deepEqual(names, ["config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]);
  for (const name of names) {
    const want = new Uint8Array(await readFile(join(dir, name)));
    assert.ok(Buffer.from(files[name]!).equals(want), `${name} differs from makeModel's`);
  }
  // DEFAULT_TINY_CONFIG is exactly those options, and makeModel(dir, DEFAULT_TINY_CONFIG) writes the same.
  assert.deepEqual(JSON.parse(JSON.stringify(DEFAULT_TINY_CONFIG)), { arch: "llama", seed: 2026, config: TINY });
  const config = JSON.parse(new TextDecoder().decode(files["config.json"]!)) as Record<string, unknown>;
  assert.equal(config.model_type, "llama");
  assert.equal(config.vocab_size, 320);
  assert.equal(config.hidden_size, 64);
});

test("src/data/tiny_tokenizer.ts is what tools/tiny-tokenizer.ts writes from the BPE trainer", async () => {
  assert.equal(await readFile(TINY_TOKENIZER_MODULE, "utf8"), tinyTokenizerModule(), "rerun node --import tsx tools/tiny-tokenizer.ts");
});

test("tinyModelFiles options change the defaults they name and keep the rest", () => {
  const base = tinyModelFiles();
  const other = tinyModelFiles({ seed: 7, config: { num_hidden_layers: 1 } });
  const config = JSON.parse(new TextDecoder().decode(other["config.json"]!)) as Record<string, unknown>;
  assert.equal(config.num_hidden_layers, 1);
  assert.equal(config.hidden_size, 64, "the other config keys stay");
  assert.ok(other["model.safetensors"]!.length < base["model.safetensors"]!.length);
  assert.ok(Buffer.from(other["tokenizer.json"]!).equals(base["tokenizer.json"]!));
  assert.ok(!("tokenizer.json" in tinyModelFiles({ tokenizer: false })));
});

test("the model and tokenizer load from tinyModelSource() and a forward with labels gives a finite loss", async () => {
  const source = tinyModelSource();
  assert.equal(source.name, "the embedded tiny model");
  const model = await AutoModelForCausalLM.from_pretrained(tinyModelSource());
  const tokenizer = await AutoTokenizer.from_pretrained(tinyModelSource());
  try {
    const ids = tokenizer.encode("The capital of France is Paris.");
    assert.ok(ids.length > 3 && ids.every((t) => t >= 0 && t < 320));
    assert.equal(tokenizer.eos_token_id, 2);
    const chat = tokenizer.apply_chat_template([{ role: "user", content: "hi" }], { tokenize: false, add_generation_prompt: true });
    assert.equal(chat, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    const out = tidy(() => model.forward({ input_ids: [ids], labels: [ids] }));
    const loss = await out.loss!.item();
    out.loss!.dispose();
    assert.ok(Number.isFinite(loss) && loss > 0, `loss ${loss}`);
  } finally {
    model.dispose();
  }
});

test("a browser bundle of src/data/tiny.ts imports none of Node's modules", async () => {
  const entry = new URL("../../src/data/tiny.ts", import.meta.url).pathname;
  const bundle = await build({ entryPoints: [entry], bundle: true, format: "esm", platform: "browser", write: false, logLevel: "error" });
  const js = bundle.outputFiles[0]!.text;
  assert.ok(js.includes("tinyModelSource"));
  assert.doesNotMatch(js, /dawn\.node|node_modules\/webgpu/);
  assert.doesNotMatch(js, /\bfrom\s*["']node:|\bimport\s*\(\s*["']node:|\brequire\s*\(\s*["']node:/, "a static node: import");
  // The only node: strings allowed are the variable specifier of src/io/fs.ts (`const spec = "node:fs/promises"`),
  // when the bundler keeps them at all.
  for (const m of js.matchAll(/["'`](node:[\w/]+)["'`]/g)) assert.equal(m[1], "node:fs/promises");
  for (const m of js.matchAll(/(.{0,20})["'`]node:[\w/]+["'`]/g)) assert.match(m[1]!, /=\s*$/, `node: string not assigned to a variable: ${m[0]}`);
});
