// The safetensors reader: exact values back for F32, F16 and BF16 through a streaming ModelSource, ranged and
// unaligned reads, sharded indexes, and one test per kind of broken file, each asserting that the error
// names the file and the tensor.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { LocalDirectorySource } from "../../src/io/local.ts";
import { MemorySource, type ModelSource } from "../../src/io/source.ts";
import {
  bf16ToF32,
  bytesToF16,
  bytesToF32,
  f32ToBF16,
  openWeights,
  parseSafetensorsHeader,
  SafetensorsFile,
  writeSafetensors,
} from "../../src/models/safetensors.ts";
import { f32ToF16 } from "../../src/tensor/half.ts";

let dir = "";
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "webtune-st-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
/** A fresh model directory holding `files`. */
async function modelDir(files: Record<string, Uint8Array | string>): Promise<LocalDirectorySource> {
  const d = join(dir, `m${n++}`);
  await import("node:fs/promises").then((fs) => fs.mkdir(d));
  for (const [name, data] of Object.entries(files)) await writeFile(join(d, name), data);
  return new LocalDirectorySource(d);
}

/** A safetensors file from a header object (padded to 8 bytes) and `dataBytes` bytes of data. */
function rawFile(header: unknown, dataBytes: number, headerLength?: number): Uint8Array {
  const json = new TextEncoder().encode(typeof header === "string" ? header : JSON.stringify(header));
  const head = new Uint8Array(json.length + ((8 - (json.length % 8)) % 8)).fill(0x20);
  head.set(json);
  const out = new Uint8Array(8 + head.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength ?? head.length), true);
  out.set(head, 8);
  return out;
}

/** Records every ranged read a source serves. */
class Spy implements ModelSource {
  reads: [string, number, number | undefined][] = [];
  constructor(private readonly inner: ModelSource) {}
  get name() {
    return this.inner.name;
  }
  exists(f: string) {
    return this.inner.exists(f);
  }
  size(f: string) {
    return this.inner.size(f);
  }
  read(f: string, s?: number, e?: number) {
    this.reads.push([f, s ?? 0, e]);
    return this.inner.read(f, s, e);
  }
  text(f: string) {
    return this.inner.text(f);
  }
  json<T>(f: string) {
    return this.inner.json<T>(f);
  }
}

// Values exactly representable in bf16 and f16.
const A = Float32Array.from([1, -2, 0.5, 3.25, -0.125, 1024, 0, -0]);
const BF16_WORDS = Uint16Array.from([0x3f80, 0xc000, 0x3f00, 0x4050, 0xbe00, 0x4480, 0x0000, 0x8000]); // A, by hand

test("bf16 words by hand and the conversions agree", () => {
  assert.deepEqual([...bf16ToF32(BF16_WORDS)], [...A]);
  assert.deepEqual([...f32ToBF16(A)], [...BF16_WORDS]);
  // Round to nearest even: 1 + 2^-8 is halfway between bf16 1 and 1 + 2^-7 -> 1 (even); 1 + 3·2^-8 -> 1 + 2^-6.
  assert.deepEqual([...f32ToBF16(Float32Array.from([1 + 2 ** -8, 1 + 3 * 2 ** -8]))], [0x3f80, 0x3f82]);
});

test("F32, F16 and BF16 tensors read back exactly, one ranged read per tensor", async () => {
  const w = new Float32Array(6 * 5).map((_, i) => Math.sin(i) * 3);
  const bytes = writeSafetensors(
    {
      "a.f32": { dtype: "F32", shape: [6, 5], data: w },
      "b.f16": { dtype: "F16", shape: [2, 4], data: f32ToF16(A) },
      "c.bf16": { dtype: "BF16", shape: [8], data: BF16_WORDS },
      "d.empty": { dtype: "F32", shape: [0, 3], data: new Float32Array(0) },
    },
    { format: "pt" },
  );
  const src = new Spy(await modelDir({ "model.safetensors": bytes }));
  const f = await SafetensorsFile.open(src, "model.safetensors");
  assert.deepEqual(src.reads.slice(0, 2), [
    ["model.safetensors", 0, 8],
    ["model.safetensors", 8, f.header.dataStart],
  ]);
  assert.deepEqual(f.names, ["a.f32", "b.f16", "c.bf16", "d.empty"]);
  assert.deepEqual(f.metadata, { format: "pt" });
  assert.deepEqual(f.info("b.f16").shape, [2, 4]);
  assert.deepEqual(await f.readF32("a.f32"), w);
  assert.deepEqual([...(await f.readF32("b.f16"))], [...A]);
  assert.deepEqual([...(await f.readF32("c.bf16"))], [...A]);
  assert.deepEqual([...(await f.readF32("d.empty"))], []);
  // f16 storage: F16 words as stored, F32 and BF16 rounded.
  assert.deepEqual([...(await f.readF16("b.f16"))], [...f32ToF16(A)]);
  assert.deepEqual([...(await f.readF16("c.bf16"))], [...f32ToF16(A)]);
  assert.deepEqual([...(await f.readF16("a.f32"))], [...f32ToF16(w)]);
  // Each tensor read is exactly its own range (never the whole file).
  const t = f.info("c.bf16");
  assert.ok(src.reads.some(([file, s, e]) => file === "model.safetensors" && s === t.start && e === t.end));
  assert.ok(src.reads.every(([, s, e]) => e !== undefined && e - s < bytes.length));
  assert.throws(() => f.info("c.bf17"), /no tensor "c\.bf17" in model\.safetensors in .*nearest: "c\.bf16"/);
});

test("a tensor at an unaligned offset is copied before it is viewed", async () => {
  // One F16 element first puts the F32 tensor 2 bytes past a 4-byte boundary; MemorySource reads are views.
  const x = Float32Array.from([1.5, -7, 3e-8]);
  const bytes = writeSafetensors({ h: { dtype: "F16", shape: [1], data: Uint16Array.from([0x3c00]) }, x: { dtype: "F32", shape: [3], data: x } });
  const f = await SafetensorsFile.open(new MemorySource({ "w.safetensors": bytes }), "w.safetensors");
  assert.equal(f.info("x").start % 4, 2);
  assert.deepEqual(await f.readF32("x"), x);
  assert.deepEqual([...(await f.readF32("h"))], [1]);
  // Odd offsets for 16-bit data, and views into a larger buffer are not aliased.
  const big = new Uint8Array(11);
  big.set(new Uint8Array(Uint16Array.from([0x3c00, 0xc000]).buffer), 3);
  const odd = big.subarray(3, 7);
  assert.deepEqual([...bytesToF32("F16", odd)], [1, -2]);
  assert.deepEqual([...bytesToF16("F16", odd)], [0x3c00, 0xc000]);
  const f32 = bytesToF32("F32", big.subarray(3, 7));
  f32[0] = 0;
  assert.equal(big[3], 0x00);
  assert.equal(big[4], 0x3c);
});

test("a sharded model loads through model.safetensors.index.json", async () => {
  const e = Float32Array.from([1, 2, 3, 4]);
  const shard1 = writeSafetensors({ "model.embed_tokens.weight": { dtype: "F32", shape: [2, 2], data: e } });
  const shard2 = writeSafetensors({
    "model.norm.weight": { dtype: "BF16", shape: [8], data: BF16_WORDS },
    "lm_head.weight": { dtype: "F16", shape: [4, 2], data: f32ToF16(A) },
  });
  const index = {
    metadata: { total_size: 40 },
    weight_map: {
      "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
      "model.norm.weight": "model-00002-of-00002.safetensors",
      "lm_head.weight": "model-00002-of-00002.safetensors",
    },
  };
  const src = new Spy(
    await modelDir({ "model-00001-of-00002.safetensors": shard1, "model-00002-of-00002.safetensors": shard2, "model.safetensors.index.json": JSON.stringify(index) }),
  );
  const w = await openWeights(src);
  assert.deepEqual(w.names, ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"]);
  assert.deepEqual(w.info("lm_head.weight"), { dtype: "F16", shape: [4, 2], file: "model-00002-of-00002.safetensors" });
  assert.deepEqual(await w.readF32("model.embed_tokens.weight"), e);
  assert.deepEqual([...(await w.readF32("model.norm.weight"))], [...A]);
  assert.deepEqual([...(await w.readF32("lm_head.weight"))], [...A]);
  assert.deepEqual([...(await w.readF16("model.norm.weight"))], [...f32ToF16(A)]);
  // Each shard's header was read once (the 8-byte length read happens once per shard).
  assert.equal(src.reads.filter(([, s, e]) => s === 0 && e === 8).length, 2);
  assert.throws(() => w.info("model.norm.weights"), /no tensor "model\.norm\.weights" in the weights in .*nearest: "model\.norm\.weight"/);

  // A single model.safetensors wins over an index.
  const single = await openWeights(await modelDir({ "model.safetensors": shard1, "model.safetensors.index.json": "{}" }));
  assert.deepEqual(single.names, ["model.embed_tokens.weight"]);
});

/** Asserts that opening `bytes` as model.safetensors fails with every pattern. */
async function rejects(bytes: Uint8Array, ...patterns: RegExp[]): Promise<void> {
  const src = await modelDir({ "model.safetensors": bytes });
  await assert.rejects(SafetensorsFile.open(src, "model.safetensors"), (e: Error) => {
    assert.match(e.message, new RegExp(`model\\.safetensors in ${src.dir.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: `));
    for (const p of patterns) assert.match(e.message, p);
    return true;
  });
  // The in-memory parser agrees.
  assert.throws(() => parseSafetensorsHeader(bytes, { file: "x.safetensors" }), /^Error: x\.safetensors: /);
}

test("a truncated file is caught from the header and the file size", async () => {
  const whole = writeSafetensors({ a: { dtype: "F32", shape: [4], data: new Float32Array(4) }, "model.layers.0.b": { dtype: "F32", shape: [4], data: new Float32Array(4) } });
  await rejects(whole.subarray(0, whole.length - 1), /tensor "model\.layers\.0\.b"/, /past the end of the \d+-byte file/, /truncated/);
});

test("a header lying about a size", async () => {
  const header = { "model.layers.0.mlp.up_proj.weight": { dtype: "F32", shape: [64, 32], data_offsets: [0, 4096] } };
  await rejects(rawFile(header, 4096), /tensor "model\.layers\.0\.mlp\.up_proj\.weight" claims F32 \[64, 32\] \(8192 bytes\) but its data_offsets span 4096 bytes/);
});

test("overlapping ranges", async () => {
  const header = {
    a: { dtype: "F32", shape: [4], data_offsets: [0, 16] },
    "model.norm.weight": { dtype: "F16", shape: [4], data_offsets: [12, 20] },
  };
  await rejects(rawFile(header, 20), /tensor "model\.norm\.weight" \(data_offsets \[12, 20\]\) overlaps tensor "a" \(data_offsets \[0, 16\]\)/);
});

test("an unsupported dtype", async () => {
  await rejects(rawFile({ "model.ids": { dtype: "I64", shape: [2], data_offsets: [0, 16] } }, 16), /tensor "model\.ids" has dtype I64/, /F32, F16 and BF16/);
  await rejects(rawFile({ "w.fp8": { dtype: "F8_E4M3", shape: [2], data_offsets: [0, 2] } }, 2), /tensor "w\.fp8" has dtype F8_E4M3/);
});

test("a header length past the end of the file", async () => {
  await rejects(rawFile({}, 0, 4000), /header length is 4000 bytes, which runs past the end of the 16-byte file/);
  await rejects(rawFile({}, 0, 2 ** 40), /more than the 104857600-byte limit/);
});

test("a header that is not JSON, or not an object, or bad metadata", async () => {
  await rejects(rawFile("{not json", 0), /header is not valid UTF-8 JSON/);
  await rejects(rawFile("[1, 2]", 0), /not an object of tensors/);
  await rejects(rawFile({ __metadata__: { format: 1 } }, 0), /"__metadata__" value "format" is 1/);
  await rejects(rawFile({ t: { dtype: "F32", shape: [-1], data_offsets: [0, 0] } }, 0), /tensor "t" has shape \[-1\]/);
});

test("a file smaller than 8 bytes", async () => {
  await rejects(new Uint8Array(5), /the file is 5 bytes, too short for the 8-byte header length/);
});

test("an index naming a missing shard", async () => {
  const shard = writeSafetensors({ a: { dtype: "F32", shape: [1], data: new Float32Array(1) } });
  const index = { weight_map: { a: "model-00001-of-00002.safetensors", "model.layers.1.b": "model-00002-of-00002.safetensors" } };
  const src = await modelDir({ "model-00001-of-00002.safetensors": shard, "model.safetensors.index.json": JSON.stringify(index) });
  await assert.rejects(openWeights(src), (e: Error) => {
    assert.match(e.message, /model\.safetensors\.index\.json in .* names shard model-00002-of-00002\.safetensors \(holding "model\.layers\.1\.b"\), which is not in /);
    return true;
  });
  // ...and an index putting a tensor in a shard that does not hold it.
  const wrong = await modelDir({ "model-00001-of-00002.safetensors": shard, "model.safetensors.index.json": JSON.stringify({ weight_map: { a: "model-00001-of-00002.safetensors", zz: "model-00001-of-00002.safetensors" } }) });
  await assert.rejects(openWeights(wrong), /puts tensor "zz" in model-00001-of-00002\.safetensors, but that file's header has no such tensor/);
});

test("neither weights file present", async () => {
  const src = await modelDir({ "config.json": "{}", "pytorch_model.bin": "x" });
  await assert.rejects(openWeights(src), (e: Error) => {
    assert.match(e.message, /neither model\.safetensors nor model\.safetensors\.index\.json found in /);
    assert.ok(e.message.includes(src.dir), e.message);
    return true;
  });
});
