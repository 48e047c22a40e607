// llama.cpp LoRA adapter GGUFs (src/models/gguf_writer.ts): the same bytes that tools/fixtures/lora_gguf.py read
// back with the `gguf` package and found identical to gguf.GGUFWriter's (sha256 in tests/fixtures/lora_gguf.json),
// llama.cpp's names, shapes, adapter.lora.alpha and the PEFT tensors (q/k lora_b rows permuted for Llama) through a
// small GGUF parse here; the writer alone byte for byte against gguf.GGUFWriter for fixed contents; PeftModel's
// adapter_gguf() on a loaded adapter; and the errors for what llama.cpp adapters cannot hold.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { AutoModelForCausalLM, FACTS, PeftModel, SFTTrainer } from "../../src/index.ts";
import { GGUFValueType, GGUFWriter, loraGGUF, loraGGUFFromFiles, type LoraGGUFInput } from "../../src/models/gguf_writer.ts";
import { GGUFFile } from "../../src/models/gguf.ts";
import { bytesToF32, parseSafetensorsHeader } from "../../src/models/safetensors.ts";
import { dequantize, quantize } from "../../src/tensor/quant.ts";
import { makeAdapter, makeModel, randomAdapter, randomModel, type Arch } from "../../tools/make-model.ts";
import { setup } from "../helpers.ts";

interface Case {
  arch: Arch;
  seed: number;
  adapter_seed: number;
  r: number;
  alpha: number;
  targets: string;
  rslora: boolean;
  architecture: string;
  permuted: boolean;
  adapter_lora_alpha: number;
  tensors: { name: string; ne: number[]; type: string }[];
  size: number;
  sha256: string;
}
const FIXTURE = JSON.parse(await readFile(new URL("../fixtures/lora_gguf.json", import.meta.url), "utf8")) as {
  cases: Record<string, Case>;
  writer: Record<string, { alignment: number | null; size: number; sha256: string }>;
  writer_values: { f32: number[]; f16: number[] };
};

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

// ---- a small GGUF parse, independent of the writer ----
interface Parsed {
  version: number;
  kv: Map<string, { type: number; value: unknown }>;
  tensors: { name: string; ne: number[]; type: number; offset: number; bytes: Uint8Array }[];
}

function parseGGUF(b: Uint8Array): Parsed {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let p = 0;
  const u32 = () => ((p += 4), v.getUint32(p - 4, true));
  const u64 = () => ((p += 8), Number(v.getBigUint64(p - 8, true)));
  const str = () => {
    const n = u64();
    p += n;
    return new TextDecoder("utf-8", { fatal: true }).decode(b.subarray(p - n, p));
  };
  const val = (t: number): unknown => {
    switch (t) {
      case 0: return ((p += 1), v.getUint8(p - 1));
      case 1: return ((p += 1), v.getInt8(p - 1));
      case 2: return ((p += 2), v.getUint16(p - 2, true));
      case 3: return ((p += 2), v.getInt16(p - 2, true));
      case 4: return u32();
      case 5: return ((p += 4), v.getInt32(p - 4, true));
      case 6: return ((p += 4), v.getFloat32(p - 4, true));
      case 7: return ((p += 1), v.getUint8(p - 1) !== 0);
      case 8: return str();
      case 9: {
        const it = u32();
        const n = u64();
        return Array.from({ length: n }, () => val(it));
      }
      case 10: return ((p += 8), v.getBigUint64(p - 8, true));
      case 11: return ((p += 8), v.getBigInt64(p - 8, true));
      case 12: return ((p += 8), v.getFloat64(p - 8, true));
      default: throw new Error(`bad value type ${t}`);
    }
  };
  assert.equal(u32(), 0x46554747, "magic GGUF");
  const version = u32();
  const nt = u64();
  const nkv = u64();
  const kv = new Map<string, { type: number; value: unknown }>();
  for (let i = 0; i < nkv; i++) {
    const k = str();
    const t = u32();
    kv.set(k, { type: t, value: val(t) });
  }
  const infos: { name: string; ne: number[]; type: number; offset: number }[] = [];
  for (let i = 0; i < nt; i++) {
    const name = str();
    const nd = u32();
    const ne = Array.from({ length: nd }, () => u64());
    infos.push({ name, ne, type: u32(), offset: u64() });
  }
  const align = (kv.get("general.alignment")?.value as number | undefined) ?? 32;
  const start = Math.ceil(p / align) * align;
  const tensors = infos.map((t) => {
    assert.equal(t.offset % align, 0, `${t.name} offset aligned`);
    const n = t.ne.reduce((a, c) => a * c, 1) * (t.type === 0 ? 4 : 2);
    return { ...t, bytes: b.subarray(start + t.offset, start + t.offset + n) };
  });
  const last = infos.at(-1);
  if (last) {
    const n = last.ne.reduce((a, c) => a * c, 1) * (last.type === 0 ? 4 : 2);
    assert.equal(b.length, start + last.offset + Math.ceil(n / align) * align, "file ends at the padded last tensor");
  }
  return { version, kv, tensors };
}

const f32 = (b: Uint8Array) => new Float32Array(b.slice().buffer);

/** Reference permutation, written as numpy's reshape(n, 2, d/2, c).swapaxes(1, 2): out[h, i, j, :] = in[h, j, i, :]. */
function refPermute(x: Float32Array, rows: number, cols: number, n: number): Float32Array {
  const d2 = rows / n / 2;
  const out = new Float32Array(x.length);
  for (let h = 0; h < n; h++) for (let i = 0; i < d2; i++) for (let j = 0; j < 2; j++) {
    for (let c = 0; c < cols; c++) out[((h * d2 + i) * 2 + j) * cols + c] = x[((h * 2 + j) * d2 + i) * cols + c]!;
  }
  return out;
}

/** The case's base config.json and adapter files, made in memory as tools/make-model.ts writes them. */
function caseInputs(c: Case) {
  const config = randomModel({ arch: c.arch, seed: c.seed }).config as Record<string, unknown>;
  const adapter = randomAdapter({
    model: config as never,
    seed: c.adapter_seed,
    r: c.r,
    alpha: c.alpha,
    targets: c.targets === "all-linear" ? "all-linear" : c.targets.split(","),
    rslora: c.rslora,
  });
  return { config, adapter_config: adapter.config, safetensors: adapter.files["adapter_model.safetensors"]! };
}

const LLAMA_CPP: Record<string, string> = {
  q_proj: "attn_q", k_proj: "attn_k", v_proj: "attn_v", o_proj: "attn_output", qkv_proj: "attn_qkv",
  gate_proj: "ffn_gate", up_proj: "ffn_up", down_proj: "ffn_down", gate_up_proj: "ffn_up",
};

describe("llama.cpp LoRA GGUF", () => {
  for (const [name, c] of Object.entries(FIXTURE.cases)) {
    test(`${name}: the bytes Python's gguf read (sha256), llama.cpp's names, shapes, alpha and the PEFT tensors`, () => {
      const inputs = caseInputs(c);
      const bytes = loraGGUFFromFiles(inputs);
      assert.equal(bytes.length, c.size);
      assert.equal(sha256(bytes), c.sha256, "the file tools/fixtures/lora_gguf.py read back with gguf.GGUFReader");

      const g = parseGGUF(bytes);
      assert.equal(g.version, 3);
      assert.deepEqual([...g.kv.keys()], ["general.architecture", "general.type", "adapter.type", "adapter.lora.alpha", "general.quantization_version"]);
      assert.equal(g.kv.get("general.architecture")!.value, c.architecture);
      assert.equal(g.kv.get("general.type")!.value, "adapter");
      assert.equal(g.kv.get("adapter.type")!.value, "lora");
      assert.equal(g.kv.get("adapter.lora.alpha")!.type, GGUFValueType.FLOAT32);
      const alpha = g.kv.get("adapter.lora.alpha")!.value as number;
      assert.equal(alpha, c.adapter_lora_alpha);
      // llama.cpp's scale alpha / r is PEFT's scaling.
      const peftScale = c.rslora ? c.alpha / Math.sqrt(c.r) : c.alpha / c.r;
      assert.ok(Math.abs(alpha / c.r - peftScale) < 1e-6 * peftScale);
      assert.deepEqual(g.tensors.map((t) => ({ name: t.name, ne: t.ne, type: "F32" })), c.tensors);

      // Values: each PEFT pair, lora_b permuted for q/k of Llama-converted archs.
      const st = parseSafetensorsHeader(inputs.safetensors);
      const heads = inputs.config.num_attention_heads as number;
      const kvHeads = (inputs.config.num_key_value_heads as number | undefined) ?? heads;
      const byName = new Map(g.tensors.map((t) => [t.name, t]));
      let permutedSeen = 0;
      for (const [pname, info] of st.tensors) {
        const m = /^base_model\.model\.model\.layers\.(\d+)\.\w+\.(\w+)\.lora_([AB])\.weight$/.exec(pname)!;
        const gname = `blk.${m[1]}.${LLAMA_CPP[m[2]!]}.weight.lora_${m[3]!.toLowerCase()}`;
        const t = byName.get(gname);
        assert.ok(t, `${gname} for ${pname}`);
        assert.equal(t.type, 0);
        assert.deepEqual(t.ne, [...info.shape].reverse());
        let want = bytesToF32(info.dtype, inputs.safetensors.slice(info.start, info.end));
        if (c.permuted && m[3] === "B" && (m[2] === "q_proj" || m[2] === "k_proj")) {
          want = refPermute(want, info.shape[0]!, info.shape[1]!, m[2] === "q_proj" ? heads : kvHeads);
          permutedSeen++;
        }
        assert.deepEqual(f32(t.bytes), want, gname);
      }
      assert.equal(permutedSeen > 0, c.permuted);
    });
  }

  test("the writer's bytes equal gguf.GGUFWriter's for fixed contents (every KV type, F32/F16, alignment 32 and 64)", () => {
    for (const [name, w] of Object.entries(FIXTURE.writer)) {
      const g = new GGUFWriter("llama");
      if (w.alignment !== null) g.add_custom_alignment(w.alignment);
      g.add_type("model");
      g.add_name("tiny ∂ test");
      g.add_uint8("t.u8", 200);
      g.add_int8("t.i8", -7);
      g.add_uint16("t.u16", 60000);
      g.add_int16("t.i16", -30000);
      g.add_uint32("t.u32", 4000000000);
      g.add_int32("t.i32", -2000000000);
      g.add_float32("t.f32", 0.1);
      g.add_uint64("t.u64", 2n ** 53n + 2n);
      g.add_int64("t.i64", -(2 ** 40));
      g.add_float64("t.f64", 1 / 3);
      g.add_bool("t.bool", true);
      g.add_string("t.empty", "");
      g.add_array("t.strs", ["a", "", "ü"]);
      g.add_array("t.ints", [1, -2, 3]);
      g.add_array("t.floats", [0.5, 1.25]);
      g.add_key_value("t.u32s", [7, 8], GGUFValueType.ARRAY, GGUFValueType.UINT32);
      g.add_uint32("t.u32", 5);
      g.add_tensor("a.weight", new Float32Array(FIXTURE.writer_values.f32), [3, 5]);
      g.add_tensor("b.weight", new Float32Array(FIXTURE.writer_values.f16), [2, 3], "F16");
      g.add_tensor("c.bias", new Float32Array([1.5]), [1]);
      const bytes = g.write();
      assert.equal(bytes.length, w.size, name);
      assert.equal(sha256(bytes), w.sha256, name);
      const p = parseGGUF(bytes);
      assert.equal(p.kv.has("t.empty"), false);
      assert.equal(p.kv.get("t.u32")!.value, 5);
      assert.equal([...p.kv.keys()].indexOf("t.u32"), w.alignment === null ? 7 : 8, "an overwritten key keeps its place");
    }
  });

  test("block-format tensors (Q4_K, Q5_0, Q8_0) are written as their packed bytes, and read back by the GGUF loader's reader", async () => {
    const values = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + seed) * 0.1);
    const cases = [
      { name: "blk.0.ffn_down.weight", shape: [3, 256], type: "Q4_K", format: "q4_k", ggml: 12 },
      { name: "blk.0.attn_q.weight", shape: [2, 32], type: "Q5_0", format: "q5_0", ggml: 6 },
      { name: "blk.0.attn_k.weight", shape: [1, 64], type: "Q8_0", format: "q8_0", ggml: 8 },
    ] as const;
    const g = new GGUFWriter("llama");
    const packed = cases.map((c, i) => quantize(c.format, values(c.shape[0] * c.shape[1], i), c.shape[1]));
    cases.forEach((c, i) => g.add_tensor(c.name, packed[i]!, c.shape, c.type));
    g.add_tensor("blk.0.attn_norm.weight", new Float32Array([1, 2, 3]), [3]);
    const bytes = g.write();
    const p = parseGGUF(bytes);
    cases.forEach((c, i) => {
      const t = p.tensors[i]!;
      assert.equal(t.name, c.name);
      assert.deepEqual(t.ne, [...c.shape].reverse());
      assert.equal(t.type, c.ggml);
      assert.equal(t.offset % 32, 0);
    });
    const file = await GGUFFile.open(bytes, "written.gguf");
    for (const [i, c] of cases.entries()) {
      assert.deepEqual(file.info(c.name).shape, [...c.shape]);
      assert.deepEqual(await file.readBytes(c.name), packed[i]);
      assert.deepEqual(await file.readF32(c.name), dequantize(c.format, packed[i]!));
    }
    assert.throws(() => new GGUFWriter("llama").add_tensor("x", packed[0]!.subarray(1), [3, 256], "Q4_K"), /in Q4_K is 432 bytes, got 431/);
    assert.throws(() => new GGUFWriter("llama").add_tensor("x", new Uint8Array(18), [1, 40], "Q4_0"), /cannot be Q4_0: .*not whole blocks of 32/);
    assert.throws(() => new GGUFWriter("llama").add_tensor("x", new Float32Array(256), [1, 256], "Q4_K"), /Q4_K data must be its packed bytes/);
    assert.throws(() => new GGUFWriter("llama").add_tensor("x", new Uint8Array(4), [1], "F32"), /bytes need a block type/);
  });

  test("what llama.cpp adapters cannot hold is a clear error", () => {
    const c = FIXTURE.cases.llama!;
    const inputs = caseInputs(c);
    const base = { ...inputs };
    assert.throws(() => loraGGUFFromFiles({ ...base, adapter_config: { ...base.adapter_config, use_dora: true } }), /use_dora \(DoRA\)/);
    assert.throws(() => loraGGUFFromFiles({ ...base, adapter_config: { ...base.adapter_config, modules_to_save: ["lm_head"] } }), /modules_to_save \(lm_head\)/);
    assert.throws(() => loraGGUFFromFiles({ ...base, adapter_config: { ...base.adapter_config, rank_pattern: { q_proj: 8 } } }), /rank_pattern is not empty/);
    assert.throws(() => loraGGUFFromFiles({ ...base, config: { ...base.config, architectures: ["GPT2LMHeadModel"] } }), /GPT2LMHeadModel has no llama\.cpp LoRA mapping/);
    assert.throws(() => loraGGUFFromFiles({ ...base, config: { ...base.config, architectures: undefined } }), /no "architectures"/);
    const lm: LoraGGUFInput["tensors"] = {
      "base_model.model.lm_head.lora_A.weight": { shape: [2, 3], data: new Float32Array(6) },
      "base_model.model.lm_head.lora_B.weight": { shape: [5, 2], data: new Float32Array(10) },
    };
    assert.throws(() => loraGGUF({ config: base.config, adapter_config: base.adapter_config, tensors: lm }), /lm_head has no llama\.cpp tensor name/);
    const bad: LoraGGUFInput["tensors"] = { "base_model.model.model.norm.weight": { shape: [3], data: new Float32Array(3) } };
    assert.throws(() => loraGGUF({ config: base.config, adapter_config: base.adapter_config, tensors: bad }), /not a lora_A or lora_B weight/);
    const half: LoraGGUFInput["tensors"] = { "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": { shape: [2, 3], data: new Float32Array(6) } };
    assert.throws(() => loraGGUF({ config: base.config, adapter_config: base.adapter_config, tensors: half }), /has lora_A but no lora_B/);
    // general.name when asked, right after adapter.type (as set_gguf_meta_model follows set_type).
    const named = parseGGUF(loraGGUFFromFiles({ ...base, name: "tiny-lora" }));
    assert.deepEqual([...named.kv.keys()].slice(0, 4), ["general.architecture", "general.type", "adapter.type", "general.name"]);
  });
});

describe("PeftModel.adapter_gguf", () => {
  let dir = "";
  before(async () => {
    await setup();
    dir = await mkdtemp(join(tmpdir(), "webtune-lora-gguf-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("a loaded adapter's GGUF is the converted adapter directory's, byte for byte", async () => {
    const c = FIXTURE.cases.llama!;
    const made = await makeModel(join(dir, "m"), { arch: c.arch, seed: c.seed, tokenizer: false });
    await makeAdapter(join(dir, "a"), { model: made.config, seed: c.adapter_seed, r: c.r, alpha: c.alpha, targets: "all-linear" });
    const model = await AutoModelForCausalLM.from_pretrained(made.dir);
    const peft = await PeftModel.from_pretrained(model, join(dir, "a"));
    const bytes = await peft.adapter_gguf();
    assert.equal(sha256(bytes), c.sha256);
    peft.unload();
  });

  test("SFTTrainer.save_model(dir, { gguf: true }) writes adapter_model.gguf, the saved PEFT adapter's GGUF", async () => {
    const made = await makeModel(join(dir, "t"), { arch: "llama", seed: 3 });
    const model = await AutoModelForCausalLM.from_pretrained(made.dir);
    const trainer = new SFTTrainer({
      model,
      args: { output_dir: join(dir, "out"), max_steps: 1, per_device_train_batch_size: 2, learning_rate: 1e-2, save_strategy: "no", report_to: "none", max_length: 32, gradient_checkpointing: false },
      train_dataset: [...FACTS.slice(0, 2)] as Record<string, unknown>[],
      peft_config: { r: 4, lora_alpha: 8, target_modules: "all-linear" },
      warn: () => {},
    });
    await trainer.train();
    const out = join(dir, "saved");
    await trainer.save_model(out, { gguf: true });
    const gguf = new Uint8Array(await readFile(join(out, "adapter_model.gguf")));
    const fromDir = loraGGUFFromFiles({
      config: JSON.parse(await readFile(join(made.dir, "config.json"), "utf8")),
      adapter_config: JSON.parse(await readFile(join(out, "adapter_config.json"), "utf8")),
      safetensors: new Uint8Array(await readFile(join(out, "adapter_model.safetensors"))),
    });
    assert.equal(sha256(gguf), sha256(fromDir));
    assert.equal(parseGGUF(gguf).tensors.length, 28);
    await assert.rejects(trainer.save_model(join(dir, "merged"), { gguf: true, merge: true }), /save_model\(gguf\): the GGUF is the LoRA adapter's/);
    model.dispose();
  });
});
