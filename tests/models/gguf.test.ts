// GGUF files: the tiny presets written as llama.cpp's converter writes them (tools/fixtures/gguf_models.py: llama
// F32 and Q8_0, qwen2/qwen3/gemma2/gemma3/phi3 F16; llama's Q/K permutation, Gemma's 1 + w norms, Phi-3's RoPE
// factor tensors) load through from_pretrained (a path, a URL with ranged reads, a File / Blob, gguf_file in a
// directory) with transformers' config, tensor names and values: logits and loss equal transformers' on the same
// file (1e-4 relative), the weights equal the safetensors model they were made from; the tokenizer built from
// tokenizer.ggml.* encodes and decodes as transformers' from the same file. The container parser reads every
// value type, and bad files (not GGUF, truncated, unknown types, a tensor past the end or over another, headers
// lying about counts and lengths) are clear errors, fast.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { AutoModelForCausalLM, openSource, PeftModel, Tensor, tidy, type LlamaForCausalLM } from "../../src/index.ts";
import { AutoTokenizer, PreTrainedTokenizer } from "../../src/data/tokenizer.ts";
import { GGUFFile, ggufConfig, ggufTensorName, ggufTokenizer, GGUFWeights, reversePermute } from "../../src/models/gguf.ts";
import { parseConfig } from "../../src/models/config.ts";
import { openWeights } from "../../src/models/safetensors.ts";
import { f16ToF32, f32ToF16 } from "../../src/tensor/half.ts";
import { fileSha256, makeAdapter, makeModel } from "../../tools/make-model.ts";
import type { FixtureTensor } from "../fixtures.ts";
import { expectAllClose, rejects, setup } from "../helpers.ts";

const DIR = fileURLToPath(new URL("../fixtures/gguf/", import.meta.url));
interface Case {
  file: string;
  size: number;
  model: { arch: "llama" | "qwen2" | "qwen3" | "gemma2" | "gemma3" | "phi3"; seed: number; config?: Record<string, unknown> };
  outtype: "f32" | "f16" | "q8_0";
  /** "gguf": transformers ran the file; "safetensors": it cannot (qwen3), so it ran the source model with the file's roundings. */
  reference: "gguf" | "safetensors";
  config: Record<string, unknown>;
  tensor_map: Record<string, string>;
  input_ids: number[][];
  labels: number[][];
  logits: FixtureTensor;
  loss: number;
  tokenizer: TokenizerRecord;
  /** PEFT's LoRA on transformers' model of the file: the adapter made by makeAdapter, the loss and its gradients (float64). */
  lora?: { adapter: { seed: number; r: number; alpha: number; targets: "all-linear"; dropout: number }; sha256: string; loss: number; grads: Record<string, FixtureTensor> };
}
interface TokenizerRecord {
  class: string;
  special: Record<"bos_token" | "eos_token" | "pad_token" | "unk_token", string | null>;
  texts: string[];
  input_ids: number[][];
  decoded: string[];
  length: number;
  added: Record<string, string>;
  has_chat_template: boolean;
}
/** A tokenizer-only file of a SentencePiece vocabulary. */
interface TokenizerCase extends TokenizerRecord {
  file: string;
  architecture: string;
}
const fixture = JSON.parse(readFileSync(join(DIR, "gguf_models.json"), "utf8")) as { cases: Record<string, Case>; tokenizers: Record<string, TokenizerCase> };
const cases = fixture.cases;
const bytesOf = (c: Case) => new Uint8Array(readFileSync(join(DIR, c.file)));
let root = "";

before(async () => {
  await setup();
  root = await mkdtemp(join(tmpdir(), "webtune-gguf-"));
});
after(() => rm(root, { recursive: true, force: true }));

/** The last position's logits of each row and the loss of `model` on the case's batch. */
async function run(model: LlamaForCausalLM, c: Case): Promise<{ loss: number; logits: number[] }> {
  const out = tidy(() => model.forward({ input_ids: c.input_ids, labels: c.labels, return_logits: true }));
  const all = (await out.logits!.toArray()) as Float32Array;
  const loss = await out.loss!.item();
  out.loss!.dispose();
  out.logits!.dispose();
  const [B, T] = [c.input_ids.length, c.input_ids[0]!.length];
  const V = all.length / (B * T);
  const last: number[] = [];
  for (let b = 0; b < B; b++) last.push(...all.subarray((b * T + T - 1) * V, (b * T + T) * V));
  return { loss, logits: last };
}

describe("GGUF models equal transformers on the same file", () => {
  for (const [name, c] of Object.entries(cases)) {
    test(`${name}: logits and loss equal transformers'${c.reference === "safetensors" ? " (on the source model)" : ""}, the weights the safetensors model's`, async () => {
      const model = await AutoModelForCausalLM.from_pretrained(join(DIR, c.file));
      try {
        const classes = { llama: "LlamaForCausalLM", qwen2: "Qwen2ForCausalLM", qwen3: "Qwen3ForCausalLM", gemma2: "Gemma2ForCausalLM", gemma3: "Gemma3ForCausalLM", phi3: "Phi3ForCausalLM" };
        assert.equal(model.config.architecture, classes[c.model.arch]);
        for (const k of ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim", "rms_norm_eps", "max_position_embeddings", "tie_word_embeddings", "bos_token_id", "eos_token_id", "rope_theta"]) {
          // (Qwen2Config has no head_dim: null in the fixture, hidden_size / heads here.)
          // (The file holds rms_norm_eps as f32; a safetensors reference's config has the f64 value.)
          const got = (model.config as unknown as Record<string, unknown>)[k];
          if (k === "rms_norm_eps") assert.equal(got, Math.fround(c.config[k] as number), "config rms_norm_eps");
          else if (c.config[k] !== null) assert.equal(got, c.config[k], `config ${k}`);
        }
        const { loss, logits } = await run(model, c);
        expectAllClose([loss], [c.loss], { atol: 0, rtol: 1e-4 }, "loss");
        const scale = Math.max(...c.logits.data.map(Math.abs));
        expectAllClose(logits, c.logits.data, { atol: 1e-4 * scale, rtol: 1e-4 }, "logits");
        // The weights: those of the safetensors model the file was made from (F16 files: its 2-D tensors rounded to
        // f16; Q8_0: within a step of the largest block, absmax / 127: half a step plus the f16 rounding of d).
        const dir = join(root, name);
        await makeModel(dir, { ...c.model, tokenizer: false });
        const want = await openWeights(await openSource(dir));
        const got = await model.state_dict();
        assert.deepEqual([...got.keys()].sort(), [...want.names].sort());
        // Q8_0 decoder linears stay packed on the GPU (the kernels dequantize them); the rest is f32.
        for (const lin of model.linears()) assert.equal(lin.weight.dtype, c.outtype === "q8_0" ? "q8_0" : "f32", lin.name);
        for (const [w, t] of got) {
          let ref = await want.readF32(w);
          if (c.outtype === "f16" && t.shape.length > 1) ref = f16ToF32(f32ToF16(ref));
          // Gemma's norms went through 1 + w (llama.cpp), - 1 (transformers), + 1 and - 1 (webtune's held 1 + w): f32 roundings.
          const gemmaNorm = c.model.arch.startsWith("gemma") && w.endsWith("norm.weight");
          const q8 = c.outtype === "q8_0" && t.shape.length > 1;
          const absmax = ref.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
          expectAllClose(t.data, ref, { atol: q8 ? absmax / 127 : gemmaNorm ? 3e-7 : 0, rtol: 0 }, w);
        }
      } finally {
        model.dispose();
      }
    });
  }

  for (const [name, c] of Object.entries(cases)) {
    if (!c.lora) continue;
    const lora = c.lora;
    test(`${name}: LoRA on the GGUF base (${c.outtype}${c.outtype === "q8_0" ? ", packed" : ""}): loss and every LoRA gradient equal PEFT's on transformers' model of the file`, async () => {
      const dir = join(root, `${name}-src`);
      await makeModel(dir, { ...c.model, tokenizer: false });
      const adapter = join(root, `${name}-adapter`);
      await makeAdapter(adapter, { model: dir, ...lora.adapter });
      assert.equal(await fileSha256(join(adapter, "adapter_model.safetensors")), lora.sha256, "the adapter the reference used");
      const model = await AutoModelForCausalLM.from_pretrained(join(DIR, c.file));
      try {
        const peft = await PeftModel.from_pretrained(model, adapter, { is_trainable: true });
        peft.eval();
        const out = peft.forward({ input_ids: c.input_ids, labels: c.labels });
        out.loss!.backward();
        expectAllClose([await out.loss!.item()], [lora.loss], { atol: 0, rtol: 1e-4 }, "loss");
        const got = new Map(peft.named_parameters());
        assert.equal(Object.keys(lora.grads).length, peft.adapted.length * 2, "one gradient per LoRA matrix");
        for (const [n, w] of Object.entries(lora.grads)) {
          const g = got.get(n)?.grad;
          assert.ok(g, `${n} has a gradient`);
          const scale = Math.max(...w.data.map(Math.abs));
          expectAllClose(await g.toArray(), w.data, { atol: 1e-3 * scale, rtol: 1e-4 }, n);
        }
      } finally {
        model.dispose();
      }
    });
  }

  test("llama.cpp's tensor names map to transformers' as transformers maps them", () => {
    for (const c of Object.values(cases)) {
      if (c.reference !== "gguf") continue;
      const arch = c.model.arch;
      for (const [g, hf] of Object.entries(c.tensor_map)) assert.equal(ggufTensorName(arch, g), hf, `${arch}: ${g}`);
    }
  });

  test("the config of each file is transformers' and parses", async () => {
    for (const c of Object.values(cases)) {
      const g = await GGUFFile.open(bytesOf(c), c.file);
      const raw = ggufConfig(g);
      assert.equal(raw.model_type, c.config.model_type);
      const cfg = parseConfig(raw, c.file);
      assert.equal(cfg.sliding_window, c.config.sliding_window ?? null, `${c.file}: sliding_window`);
      assert.equal(cfg.tie_word_embeddings, c.config.tie_word_embeddings);
      assert.equal(g.version, 3);
      assert.equal(g.alignment, 32);
      assert.equal((g.metadata.get("tokenizer.ggml.tokens") as string[]).length, c.config.vocab_size);
      assert.equal(g.types.get("tokenizer.ggml.token_type"), "array<i32>");
      assert.ok(g.dataStart % 32 === 0 && g.dataStart <= g.size);
    }
  });

  test("a File / Blob and gguf_file in a directory load the same model", async () => {
    const c = cases["llama-q8_0"]!;
    const fromPath = await AutoModelForCausalLM.from_pretrained(join(DIR, c.file));
    const fromBlob = await AutoModelForCausalLM.from_pretrained(new File([bytesOf(c)], c.file));
    const fromDir = await AutoModelForCausalLM.from_pretrained(DIR, { gguf_file: c.file });
    const fromList = await AutoModelForCausalLM.from_pretrained([new File([bytesOf(c)], c.file)]);
    // The Q8_0 embedding (the tied head too) stays packed; past a binding limit as packed row blocks.
    const blocked = await AutoModelForCausalLM.from_pretrained(join(DIR, c.file), { max_tensor_bytes: 10000 });
    try {
      assert.equal((fromPath.embed_tokens as Tensor).dtype, "q8_0");
      const blocks = blocked.embed_tokens as readonly Tensor[];
      assert.ok(Array.isArray(blocks) && blocks.length > 1 && blocks.every((b) => b.dtype === "q8_0"), "packed row blocks");
      const ref = await run(fromPath, c);
      expectAllClose((await run(blocked, c)).logits, ref.logits, { atol: 1e-6, rtol: 1e-5 }, "row blocks");
      for (const m of [fromBlob, fromDir, fromList]) assert.deepEqual(await run(m, c), ref);
      assert.match(fromBlob.name_or_path, /llama-q8_0\.gguf/);
      expectAllClose([ref.loss], [c.loss], { atol: 0, rtol: 1e-4 }, "loss");
    } finally {
      for (const m of [fromPath, fromBlob, fromDir, fromList, blocked]) m.dispose();
    }
    await rejects(AutoModelForCausalLM.from_pretrained(DIR, { gguf_file: "missing.gguf" }), /missing\.gguf/);
  });

  /** webtune's tokenizer of `file` against transformers' record of it. */
  async function checkTokenizer(file: string, t: TokenizerRecord): Promise<void> {
    const g = await GGUFFile.open(new Uint8Array(readFileSync(join(DIR, file))), file);
    const { tokenizer, config } = ggufTokenizer(g);
    const tok = new PreTrainedTokenizer(tokenizer, config, { name: file });
    // AutoTokenizer reads the same file as the model's loader does (a .gguf path; gguf_file in a directory).
    const auto = await AutoTokenizer.from_pretrained(join(DIR, file));
    const inDir = await AutoTokenizer.from_pretrained(DIR, { gguf_file: file });
    for (const text of t.texts) {
      assert.deepEqual(auto.encode(text), tok.encode(text), `${file}: AutoTokenizer on ${JSON.stringify(text)}`);
      assert.deepEqual(inDir.encode(text), tok.encode(text), `${file}: AutoTokenizer gguf_file on ${JSON.stringify(text)}`);
    }
    assert.equal(auto.chat_template, tok.chat_template);
    for (const k of ["bos_token", "eos_token", "pad_token", "unk_token"] as const) assert.equal(tok[k], t.special[k], `${file}: ${k}`);
    t.texts.forEach((text, i) => {
      const ids = tok.encode(text);
      assert.deepEqual(ids, t.input_ids[i], `${file}: ${JSON.stringify(text)}`);
      assert.equal(tok.decode(ids), t.decoded[i], `${file}: decode ${JSON.stringify(text)}`);
    });
    assert.equal(tok.length, t.length, `${file}: length`);
    assert.deepEqual(Object.fromEntries([...tok.get_added_vocab()].map(([c, id]) => [String(id), c]).sort((a, b) => Number(a[0]) - Number(b[0]))), t.added, `${file}: added tokens`);
    assert.equal(tok.chat_template !== null, t.has_chat_template);
  }

  test("the tokenizer from tokenizer.ggml.* (byte-level BPE) encodes and decodes as transformers' from the same file", async () => {
    for (const c of Object.values(cases)) await checkTokenizer(c.file, c.tokenizer);
  });

  test("SentencePiece vocabularies (Llama, Gemma, Phi-3 builders; merges from the scores) encode and decode as transformers'", async () => {
    for (const c of Object.values(fixture.tokenizers)) await checkTokenizer(c.file, c);
    const bad = writeGGUF({ kvs: [ARCH, { key: "tokenizer.ggml.model", type: 8, value: "bert" }] });
    await rejects(async () => ggufTokenizer(await GGUFFile.open(bad, "wp.gguf")), /wp\.gguf: tokenizer.ggml.model is "bert"; webtune builds tokenizers from GGUF files of byte-level BPE/);
  });

  test("a URL loads with ranged reads: the header in a chunk, each tensor its own range, nothing read twice", async () => {
    const c = cases["qwen2-f16"]!;
    const bytes = bytesOf(c);
    const ranges: string[] = [];
    let served = 0;
    const server = createServer((req, res) => {
      if (req.url !== `/${c.file}`) return void res.writeHead(404).end();
      if (req.method === "HEAD") return void res.writeHead(200, { "Content-Length": bytes.length, "Accept-Ranges": "bytes" }).end();
      const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? "");
      if (!m) return void res.writeHead(200, { "Content-Length": bytes.length }).end(bytes);
      const [s, e] = [Number(m[1]), Math.min(Number(m[2]), bytes.length - 1)];
      ranges.push(`${s}-${e}`);
      served += e - s + 1;
      res.writeHead(206, { "Content-Range": `bytes ${s}-${e}/${bytes.length}`, "Content-Length": e - s + 1 }).end(bytes.subarray(s, e + 1));
    });
    await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/${c.file}`;
      const model = await AutoModelForCausalLM.from_pretrained(url);
      try {
        const { loss } = await run(model, c);
        expectAllClose([loss], [c.loss], { atol: 0, rtol: 1e-4 }, "loss");
      } finally {
        model.dispose();
      }
      const g = await GGUFFile.open(bytes);
      // The size (the HTTP reader's 1-byte probe), one read for the header (this file is smaller than the first
      // 1 MiB chunk), then one per tensor.
      assert.equal(ranges.filter((r) => r !== "0-0").length, 1 + g.tensors.size, ranges.join(" "));
      assert.ok(served <= 2 * bytes.length, `served ${served} bytes of a ${bytes.length}-byte file`);
    } finally {
      await new Promise((ok) => server.close(ok));
    }
  });

  test("reversePermute undoes llama.cpp's permute (per head: rows (2, d/2) -> (d/2, 2))", () => {
    const heads = 2, dim = 6, cols = 3, rows = heads * dim;
    const hf = Float32Array.from({ length: rows * cols }, (_, i) => i);
    // convert_hf_to_gguf LlamaModel.permute: reshape(heads, 2, dim/2, cols).swapaxes(1, 2).
    const permuted = new Float32Array(rows * cols);
    for (let h = 0; h < heads; h++) for (let j = 0; j < 2; j++) for (let d = 0; d < dim / 2; d++) {
      const src = h * dim + j * (dim / 2) + d, dst = h * dim + d * 2 + j;
      permuted.set(hf.subarray(src * cols, (src + 1) * cols), dst * cols);
    }
    assert.deepEqual(reversePermute(permuted, rows, heads), hf);
  });
});

// ---------------------------------------------------------------------------------------------------------
// A GGUF writer for synthetic files, with every count, length and type overridable to make lying headers.

type KV = { key: string; type: number; value: unknown; itemType?: number; keyLength?: bigint; arrayLength?: bigint; stringLength?: bigint };
interface TensorSpec { name: string; dims: number[]; type: number; offset?: number; bytes: number; nDims?: number }
interface Spec {
  magic?: string;
  version?: number;
  kvs?: KV[];
  tensors?: TensorSpec[];
  tensorCount?: bigint;
  kvCount?: bigint;
  alignment?: number;
  /** Cut the file to this many bytes. */
  truncate?: number;
}

function writeGGUF(spec: Spec): Uint8Array<ArrayBuffer> {
  const out: number[] = [];
  const u8 = (...b: number[]) => out.push(...b);
  const u32 = (n: number) => { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, n, true); u8(...b); };
  const u64 = (n: bigint | number) => { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt(n), true); u8(...b); };
  const str = (s: string, len?: bigint) => { const b = new TextEncoder().encode(s); u64(len ?? BigInt(b.length)); u8(...b); };
  const value = (type: number, v: unknown, kv: KV) => {
    const dv = (n: number, set: (d: DataView) => void) => { const b = new Uint8Array(n); set(new DataView(b.buffer)); u8(...b); };
    switch (type) {
      case 0: return dv(1, (d) => d.setUint8(0, v as number));
      case 1: return dv(1, (d) => d.setInt8(0, v as number));
      case 2: return dv(2, (d) => d.setUint16(0, v as number, true));
      case 3: return dv(2, (d) => d.setInt16(0, v as number, true));
      case 4: return dv(4, (d) => d.setUint32(0, v as number, true));
      case 5: return dv(4, (d) => d.setInt32(0, v as number, true));
      case 6: return dv(4, (d) => d.setFloat32(0, v as number, true));
      case 7: return u8(typeof v === "number" ? v : v ? 1 : 0);
      case 8: return str(v as string, kv.stringLength);
      case 9: {
        const items = v as unknown[];
        u32(kv.itemType!);
        u64(kv.arrayLength ?? BigInt(items.length));
        for (const it of items) value(kv.itemType!, it, { ...kv, itemType: Array.isArray(it) ? 4 : kv.itemType, arrayLength: undefined, stringLength: undefined });
        return;
      }
      case 10: return dv(8, (d) => d.setBigUint64(0, BigInt(v as number), true));
      case 11: return dv(8, (d) => d.setBigInt64(0, BigInt(v as number), true));
      case 12: return dv(8, (d) => d.setFloat64(0, v as number, true));
      default: return u32(0);
    }
  };
  const kvs = spec.kvs ?? [];
  const tensors = spec.tensors ?? [];
  u8(...new TextEncoder().encode(spec.magic ?? "GGUF"));
  u32(spec.version ?? 3);
  u64(spec.tensorCount ?? BigInt(tensors.length));
  u64(spec.kvCount ?? BigInt(kvs.length));
  for (const kv of kvs) {
    str(kv.key, kv.keyLength);
    u32(kv.type);
    value(kv.type, kv.value, kv);
  }
  const align = spec.alignment ?? 32;
  let offset = 0;
  const placed = tensors.map((t) => {
    const o = t.offset ?? offset;
    offset = Math.ceil((o + t.bytes) / align) * align;
    return o;
  });
  tensors.forEach((t, i) => {
    str(t.name);
    u32(t.nDims ?? t.dims.length);
    for (const d of t.dims) u64(d);
    u32(t.type);
    u64(placed[i]!);
  });
  while (out.length % align) u8(0);
  const dataStart = out.length;
  const end = Math.max(0, ...tensors.map((t, i) => placed[i]! + t.bytes));
  for (let i = 0; i < end; i++) out.push(0);
  tensors.forEach((t, i) => {
    for (let j = 0; j < t.bytes; j++) out[dataStart + placed[i]! + j] = (j * 37 + i) & 0xff;
  });
  const bytes = Uint8Array.from(out);
  return spec.truncate === undefined ? bytes : bytes.subarray(0, spec.truncate);
}

const ARCH: KV = { key: "general.architecture", type: 8, value: "llama" };
const F32_TENSOR: TensorSpec = { name: "token_embd.weight", dims: [4, 3], type: 0, bytes: 48 };

/** Opening `bytes` rejects with a message matching every pattern, within 250 ms (a few ms unloaded). */
async function bad(bytes: Uint8Array, ...patterns: RegExp[]): Promise<void> {
  const t0 = performance.now();
  await rejects(GGUFFile.open(bytes, "bad.gguf"), /bad\.gguf/, ...patterns);
  const ms = performance.now() - t0;
  assert.ok(ms < 250, `the error took ${ms.toFixed(1)} ms`);
}

describe("the GGUF container", () => {
  test("reads every value type, arrays of each, and tensors' layout", async () => {
    const kvs: KV[] = [
      ARCH,
      { key: "a.u8", type: 0, value: 200 }, { key: "a.i8", type: 1, value: -5 }, { key: "a.u16", type: 2, value: 60000 },
      { key: "a.i16", type: 3, value: -30000 }, { key: "a.u32", type: 4, value: 4e9 }, { key: "a.i32", type: 5, value: -2e9 },
      { key: "a.f32", type: 6, value: 0.1 }, { key: "a.bool", type: 7, value: true }, { key: "a.str", type: 8, value: "héllo" },
      { key: "a.u64", type: 10, value: 2 ** 40 }, { key: "a.i64", type: 11, value: -(2 ** 40) }, { key: "a.f64", type: 12, value: 0.1 },
      { key: "a.ints", type: 9, itemType: 5, value: [1, -2, 3] }, { key: "a.floats", type: 9, itemType: 6, value: [0.5, -1] },
      { key: "a.strs", type: 9, itemType: 8, value: ["x", "", "zz"] }, { key: "a.bools", type: 9, itemType: 7, value: [true, false] },
      { key: "a.u64s", type: 9, itemType: 10, value: [7, 8] }, { key: "a.nested", type: 9, itemType: 9, value: [[1, 2], [3]] },
      { key: "general.alignment", type: 4, value: 64 },
    ];
    const tensors: TensorSpec[] = [F32_TENSOR, { name: "blk.0.attn_q.weight", dims: [32, 2], type: 8, bytes: 68 }, { name: "output_norm.weight", dims: [4], type: 1, bytes: 8 }];
    const g = await GGUFFile.open(writeGGUF({ kvs, tensors, alignment: 64 }), "ok.gguf");
    const m = g.metadata;
    assert.deepEqual([m.get("a.u8"), m.get("a.i8"), m.get("a.u16"), m.get("a.i16"), m.get("a.u32"), m.get("a.i32")], [200, -5, 60000, -30000, 4e9, -2e9]);
    assert.equal(m.get("a.f32"), Math.fround(0.1));
    assert.deepEqual([m.get("a.bool"), m.get("a.str"), m.get("a.u64"), m.get("a.i64"), m.get("a.f64")], [true, "héllo", 2 ** 40, -(2 ** 40), 0.1]);
    assert.deepEqual(m.get("a.ints"), Int32Array.from([1, -2, 3]));
    assert.deepEqual(m.get("a.floats"), Float32Array.from([0.5, -1]));
    assert.deepEqual(m.get("a.strs"), ["x", "", "zz"]);
    assert.deepEqual(m.get("a.bools"), [true, false]);
    assert.deepEqual(m.get("a.u64s"), BigUint64Array.from([7n, 8n]));
    assert.deepEqual(m.get("a.nested"), [Uint32Array.from([1, 2]), Uint32Array.from([3])]);
    assert.equal(g.types.get("a.strs"), "array<string>");
    assert.equal(g.alignment, 64);
    assert.equal(g.dataStart % 64, 0);
    const q = g.info("blk.0.attn_q.weight");
    assert.deepEqual([q.dims, q.shape, q.typeName, q.offset, q.end - q.start], [[32, 2], [2, 32], "Q8_0", 64, 68]);
    assert.equal((await g.readBytes("output_norm.weight")).length, 8);
    assert.equal((await g.readF32("token_embd.weight")).length, 12);
    // Q8_0 is a format quant.ts decodes: 2 blocks of 32.
    assert.equal((await g.readF32("blk.0.attn_q.weight")).length, 64);
  });

  test("a file that is not GGUF, or an old / big-endian one", async () => {
    await bad(new Uint8Array(10), /too short for a GGUF header/);
    await bad(writeGGUF({ magic: "GGML", kvs: [ARCH] }), /not a GGUF file/);
    await bad(writeGGUF({ version: 1, kvs: [ARCH] }), /version 1/);
    await bad(writeGGUF({ version: 0x03000000, kvs: [ARCH] }), /big-endian/);
    await bad(writeGGUF({ version: 7, kvs: [ARCH] }), /version 7; webtune reads versions 2 and 3/);
    const v2 = await GGUFFile.open(writeGGUF({ version: 2, kvs: [ARCH], tensors: [F32_TENSOR] }), "v2.gguf");
    assert.equal(v2.version, 2);
  });

  test("a truncated file: anywhere in the header or the data", async () => {
    const c = cases["llama-q8_0"]!;
    const bytes = bytesOf(c);
    const g = await GGUFFile.open(bytes, "full.gguf");
    for (const n of [30, 200, 3000, g.dataStart - 40, g.dataStart + 1000, bytes.length - 1]) {
      await bad(bytes.subarray(0, n), /truncated/);
    }
    await bad(writeGGUF({ kvs: [ARCH], tensors: [F32_TENSOR], truncate: 80 }), /ends at byte 80 in the middle of|truncated/);
  });

  test("unknown value and tensor types, and types webtune cannot read yet", async () => {
    await bad(writeGGUF({ kvs: [ARCH, { key: "x", type: 13, value: 0 }] }), /metadata "x" has value type 13/);
    await bad(writeGGUF({ kvs: [ARCH, { key: "x", type: 9, itemType: 42, value: [] }] }), /value type 42/);
    await bad(writeGGUF({ kvs: [ARCH], tensors: [{ ...F32_TENSOR, type: 99 }] }), /tensor "token_embd.weight" \[3, 4\] has ggml type 99/);
    await bad(writeGGUF({ kvs: [ARCH], tensors: [{ name: "t", dims: [40, 2], type: 8, bytes: 100 }] }), /rows of 40 elements are not whole blocks of 32/);
    // Q2_K (type 10) is a valid layout that webtune cannot decode yet: the header opens, reading it is the error.
    const g = await GGUFFile.open(writeGGUF({ kvs: [ARCH], tensors: [{ name: "token_embd.weight", dims: [256, 1], type: 10, bytes: 84 }] }), "q2k.gguf");
    await rejects(g.readF32("token_embd.weight"), /q2k\.gguf: tensor "token_embd.weight" is Q2_K, which webtune cannot read yet \(it reads F32, F16, .*Q4_K/);
  });

  test("a tensor past the end, off the alignment, or over another", async () => {
    await bad(writeGGUF({ kvs: [ARCH], tensors: [{ ...F32_TENSOR, offset: 1 << 20 }], truncate: 160 }), /token_embd\.weight.*past the end of the .*-byte file \(the file is truncated/);
    await bad(writeGGUF({ kvs: [ARCH], tensors: [{ ...F32_TENSOR, offset: 8 }] }), /data offset 8, not a multiple of the alignment 32/);
    await bad(
      writeGGUF({ kvs: [ARCH], tensors: [{ ...F32_TENSOR, bytes: 48 }, { ...F32_TENSOR, name: "output.weight", offset: 32 }] }),
      /tensor "output.weight" .*overlaps tensor "token_embd.weight"/,
    );
    await bad(writeGGUF({ kvs: [ARCH, { key: "general.alignment", type: 4, value: 3 }], tensors: [F32_TENSOR] }), /general.alignment .* power of two/);
    await bad(writeGGUF({ kvs: [ARCH], tensors: [F32_TENSOR, F32_TENSOR] }), /tensor "token_embd.weight" appears twice/);
    await bad(writeGGUF({ kvs: [ARCH, ARCH] }), /metadata key "general.architecture" appears twice/);
  });

  test("a header that lies about counts and lengths fails at once, allocating nothing for them", async () => {
    await bad(writeGGUF({ kvs: [ARCH], tensorCount: 1n << 40n }), /claims 1099511627776 tensors/);
    await bad(writeGGUF({ kvs: [ARCH], kvCount: 5000n }), /5000 metadata keys, more than its \d+ bytes can hold/);
    await bad(writeGGUF({ kvs: [{ ...ARCH, keyLength: 1n << 62n }] }), /the key of metadata entry 0 claims 4611686018427387904 bytes/);
    await bad(writeGGUF({ kvs: [{ ...ARCH, stringLength: 1000n }] }), /metadata "general.architecture" claims 1000 bytes, more than the \d+ left/);
    await bad(writeGGUF({ kvs: [ARCH, { key: "t", type: 9, itemType: 8, value: ["a"], arrayLength: 1n << 23n }] }), /metadata "t" claims 8388608 string items .* more than the \d+ bytes left/);
    await bad(writeGGUF({ kvs: [ARCH, { key: "t", type: 9, itemType: 0, value: [], arrayLength: 1n << 50n }] }), /claims 1125899906842624 items, more than the 16777216 allowed/);
    await bad(writeGGUF({ kvs: [ARCH], tensors: [{ ...F32_TENSOR, nDims: 9 }] }), /claims 9 dims/);
    await bad(writeGGUF({ kvs: [ARCH], tensors: [{ ...F32_TENSOR, name: "x".repeat(65) }] }), /the name of tensor 0 claims 65 bytes, more than the 64 allowed/);
    await bad(writeGGUF({ kvs: [ARCH], tensors: [{ ...F32_TENSOR, dims: [4, 2 ** 40] }] }), /past the end/);
    await bad(writeGGUF({ kvs: [ARCH, { key: "b", type: 7, value: 2 }] }), /metadata "b" is a bool of value 2/);
  });

  test("llama is Mistral when general.name is \"mistral\" (as transformers tests it); metadata keys map as transformers maps them", async () => {
    const kvs = (name: string): KV[] => [
      ARCH, { key: "general.name", type: 8, value: name }, { key: "llama.block_count", type: 4, value: 3 },
      { key: "llama.embedding_length", type: 4, value: 16 }, { key: "llama.rope.dimension_count", type: 4, value: 4 },
      { key: "llama.attention.head_count_kv", type: 4, value: 2 }, { key: "tokenizer.ggml.eos_token_id", type: 4, value: 7 },
      { key: "tokenizer.ggml.tokens", type: 9, itemType: 8, value: ["a", "b", "c"] },
    ];
    const m = ggufConfig(await GGUFFile.open(writeGGUF({ kvs: kvs("mistral"), tensors: [F32_TENSOR] })));
    assert.deepEqual(m, {
      architectures: ["MistralForCausalLM"], model_type: "mistral", num_hidden_layers: 3, hidden_size: 16, head_dim: 4,
      num_key_value_heads: 2, eos_token_id: 7, vocab_size: 3, tie_word_embeddings: true,
    });
    const l = ggufConfig(await GGUFFile.open(writeGGUF({ kvs: kvs("Mistral 7B"), tensors: [F32_TENSOR] })));
    assert.deepEqual([l.architectures, l.model_type], [["LlamaForCausalLM"], "llama"]);
  });

  test("an architecture webtune lacks, or a model file without one", async () => {
    const arch = (value: string) => writeGGUF({ kvs: [{ ...ARCH, value }], tensors: [F32_TENSOR] });
    await rejects(async () => ggufConfig(await GGUFFile.open(arch("mamba"), "m.gguf")), /m\.gguf: GGUF architecture "mamba" is not supported; webtune reads GGUF files of llama, qwen2, qwen3, gemma2, gemma3, phi3/);
    await rejects(async () => ggufConfig(await GGUFFile.open(arch("smollm3"), "s.gguf")), /"smollm3" is not supported.*transformers' GGUF loader does not read "smollm3" files either/);
    await rejects(async () => ggufConfig(await GGUFFile.open(writeGGUF({ tensors: [F32_TENSOR] }), "n.gguf")), /n\.gguf: no general.architecture/);
    await rejects(async () => GGUFWeights.of(await GGUFFile.open(writeGGUF({ kvs: [ARCH], tensors: [{ ...F32_TENSOR, name: "blk.0.mystery.weight" }] }), "u.gguf")), /u\.gguf: tensor "blk.0.mystery.weight" is not one of the tensors of a llama model/);
    await rejects(AutoModelForCausalLM.from_pretrained(new Blob([arch("mamba") as Uint8Array<ArrayBuffer>])), /architecture "mamba" is not supported/);
    // A model whose tensors do not match its metadata: missing ones, a wrong shape (a header that lies about the model).
    const llama = (tensors: TensorSpec[]) =>
      new Blob([writeGGUF({
        kvs: [
          ARCH, { key: "llama.block_count", type: 4, value: 1 }, { key: "llama.embedding_length", type: 4, value: 4 },
          { key: "llama.feed_forward_length", type: 4, value: 8 }, { key: "llama.attention.head_count", type: 4, value: 1 },
          { key: "llama.vocab_size", type: 4, value: 3 },
        ],
        tensors,
      })]);
    await rejects(AutoModelForCausalLM.from_pretrained(llama([F32_TENSOR])), /a Blob of \d+ bytes: the weights lack 10 tensor\(s\) a LlamaForCausalLM with this GGUF metadata needs: model.layers.0.self_attn.q_proj.weight/);
    const names = ["blk.0.attn_norm.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight", "blk.0.attn_output.weight", "blk.0.ffn_norm.weight", "blk.0.ffn_gate.weight", "blk.0.ffn_up.weight", "blk.0.ffn_down.weight", "output_norm.weight"];
    const dims = (n: string) => (n.endsWith("norm.weight") ? [4] : n.includes("ffn_down") ? [8, 4] : n.includes("ffn_") ? [4, 8] : [4, 4]);
    const full = names.map((name) => ({ name, dims: dims(name), type: 0, bytes: 4 * dims(name).reduce((a, b) => a * b, 1) }));
    await rejects(AutoModelForCausalLM.from_pretrained(llama([{ ...F32_TENSOR, dims: [4, 3] }, ...full.map((t) => (t.name.includes("ffn_up") ? { ...t, dims: [8, 4] } : t))])), /tensor "blk.0.ffn_up.weight" in a Blob .*: tensor "model.layers.0.mlp.up_proj.weight" is \[4, 8\] but GGUF metadata implies \[8, 4\]/);
  });
});
