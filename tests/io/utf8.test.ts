// Every text file webtune reads is strict UTF-8: a config, a tokenizer file, an adapter config, an SFT config
// file or a checkpoint's JSON with a byte that is not UTF-8 is an error naming the file and the offset, never
// text with U+FFFD in it (JSON Lines datasets: tests/data/sources.test.ts).
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { openSource } from "../../src/io/open.ts";
import { decodeUtf8, invalidUtf8At } from "../../src/io/utf8.ts";
import { AutoTokenizer, loadSFTConfig } from "../../src/index.ts";
import { openStorage } from "../../src/trainer/storage.ts";

let root = "";
before(async () => {
  root = await mkdtemp(join(tmpdir(), "webtune-utf8-"));
});
after(() => rm(root, { recursive: true, force: true }));

/** `text` as UTF-8 with the byte 0xff put in at `at`. */
function withBadByte(text: string, at: number): Uint8Array {
  const b = new TextEncoder().encode(text);
  return new Uint8Array([...b.subarray(0, at), 0xff, ...b.subarray(at)]);
}

test("invalidUtf8At finds the first bad sequence: stray bytes, overlongs, surrogates, truncation; decodeUtf8 names it", () => {
  const enc = (s: string) => [...new TextEncoder().encode(s)];
  assert.equal(invalidUtf8At(new Uint8Array(enc("héllo ✓ 𝄞"))), -1);
  assert.equal(invalidUtf8At(new Uint8Array([0x61, 0xff])), 1);
  assert.equal(invalidUtf8At(new Uint8Array([0x61, 0x62, 0xc0, 0xaf])), 2, "an overlong /");
  assert.equal(invalidUtf8At(new Uint8Array([0xed, 0xa0, 0x80])), 0, "a UTF-16 surrogate");
  assert.equal(invalidUtf8At(new Uint8Array([...enc("ab"), 0xe2, 0x9c])), 2, "a character cut at the end");
  assert.equal(decodeUtf8(new Uint8Array([0xef, 0xbb, 0xbf, ...enc("x")]), "f"), "x", "a byte-order mark is dropped");
  assert.throws(() => decodeUtf8(withBadByte('{"a": 1}', 5), "config.json in /m"), /^Error: config\.json in \/m is not UTF-8 text \(an invalid byte sequence at byte offset 5\); save it as UTF-8$/);
});

test("a model directory's config.json and tokenizer.json, an SFT config file and a checkpoint's JSON: not UTF-8 is an error naming the file", async () => {
  const dir = join(root, "model");
  await mkdir(dir);
  await writeFile(join(dir, "config.json"), withBadByte('{"model_type": "llama"}', 17));
  await assert.rejects((await openSource(dir)).json("config.json"), new RegExp(`config\\.json in ${dir} is not UTF-8 text \\(an invalid byte sequence at byte offset 17\\)`));
  await writeFile(join(dir, "tokenizer.json"), withBadByte('{"version": "1.0", "model": {}}', 3));
  await writeFile(join(dir, "tokenizer_config.json"), "{}");
  await assert.rejects(AutoTokenizer.from_pretrained(dir), /tokenizer\.json in .* is not UTF-8 text \(an invalid byte sequence at byte offset 3\)/);
  const yaml = join(root, "sft.yaml");
  await writeFile(yaml, withBadByte("learning_rate: 1e-4\nmax_steps: 3\n", 22));
  await assert.rejects(loadSFTConfig(yaml), /sft\.yaml is not UTF-8 text \(an invalid byte sequence at byte offset 22\)/);
  // A checkpoint whose trainer_state.json holds a bad byte: read through the storage, named with its id.
  const out = join(root, "out");
  const s = openStorage(out);
  await s.writeCheckpoint("checkpoint-1", { "trainer_state.json": withBadByte('{"global_step": 1}', 2) });
  await assert.rejects(s.readText("checkpoint-1", "trainer_state.json"), /trainer_state\.json in .*out\/checkpoint-1 is not UTF-8 text/);
});
