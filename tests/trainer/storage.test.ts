// Checkpoint storage on the filesystem (Node and Deno): atomic writes, what list() treats as complete, reads
// through the storage and through its ModelSource, delete and rotation. The IndexedDB backend is tested in
// Chromium by tests/browser/storage.test.ts.
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { SafetensorsFile, writeSafetensors } from "../../src/models/safetensors.ts";
import { openSource } from "../../src/io/open.ts";
import { recoverDirectory, SAVE_RECORD, writeDirectory } from "../../src/io/local.ts";
import { FileSystemStorage, MANIFEST, openStorage, rotateCheckpoints, type CheckpointManifest } from "../../src/trainer/storage.ts";
import { faultBytes } from "./fault-files.ts";

let root = "";
let n = 0;
/** A fresh, not yet existing output directory. */
const outDir = () => join(root, `run-${n++}`, "out");

/** Deterministic pseudo-random bytes. */
const bytes = faultBytes;

before(async () => {
  root = await mkdtemp(join(tmpdir(), "webtune-storage-"));
});

after(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

test("write, list, files, read and readText round trip; the layout on disk", async () => {
  const dir = outDir();
  const s = openStorage(dir);
  assert.ok(s instanceof FileSystemStorage);
  assert.equal(s.name, dir);
  assert.deepEqual(await s.list(), [], "a directory that does not exist yet has no checkpoints");
  const bin = bytes(1000, 1);
  for (const step of [1000, 500, 1500]) {
    await s.writeCheckpoint(`checkpoint-${step}`, {
      "adapter_config.json": JSON.stringify({ r: 8, step }),
      "adapter_model.safetensors": bin,
      "state/trainer_state.json": `{"global_step": ${step}}`,
      "empty.bin": new Uint8Array(0),
    });
  }
  assert.deepEqual(await s.list(), ["checkpoint-500", "checkpoint-1000", "checkpoint-1500"], "by step, not by name");
  assert.deepEqual(await s.files("checkpoint-500"), ["adapter_config.json", "adapter_model.safetensors", "empty.bin", "state/trainer_state.json"]);
  assert.deepEqual(JSON.parse(await s.readText("checkpoint-1000", "adapter_config.json")), { r: 8, step: 1000 });
  assert.equal(await s.readText("checkpoint-1500", "state/trainer_state.json"), '{"global_step": 1500}');
  assert.deepEqual(await s.read("checkpoint-500", "adapter_model.safetensors"), bin);
  assert.deepEqual(await s.read("checkpoint-500", "adapter_model.safetensors", 10, 20), bin.subarray(10, 20));
  assert.deepEqual(await s.read("checkpoint-500", "empty.bin"), new Uint8Array(0));
  assert.equal(await s.size("checkpoint-500", "adapter_model.safetensors"), 1000);
  assert.equal(await s.has("checkpoint-500", "adapter_config.json"), true);
  assert.equal(await s.has("checkpoint-500", "nope.json"), false);
  assert.equal(await s.has("checkpoint-7", "adapter_config.json"), false);
  await assert.rejects(s.read("checkpoint-500", "nope.json"), /nope\.json not found in checkpoint "checkpoint-500"/);
  await assert.rejects(s.read("checkpoint-500", "adapter_model.safetensors", 990, 1001), /bytes \[990, 1001\).*1000 bytes/);
  await assert.rejects(s.files("checkpoint-7"), /no complete checkpoint "checkpoint-7"/);

  // On disk: <dir>/<id>/<files> and the manifest; no temporary directories left behind.
  assert.deepEqual((await readdir(dir)).sort(), ["checkpoint-1000", "checkpoint-1500", "checkpoint-500"]);
  assert.deepEqual((await readdir(join(dir, "checkpoint-500"))).sort(), ["adapter_config.json", "adapter_model.safetensors", "empty.bin", "state", MANIFEST]);
  assert.deepEqual(await readFile(join(dir, "checkpoint-500", "adapter_model.safetensors")), Buffer.from(bin));
  const m = JSON.parse(await readFile(join(dir, "checkpoint-500", MANIFEST), "utf8")) as CheckpointManifest;
  assert.equal(m.format, "webtune-checkpoint");
  assert.equal(m.id, "checkpoint-500");
  assert.deepEqual(m.files, { "adapter_config.json": 18, "adapter_model.safetensors": 1000, "state/trainer_state.json": 20, "empty.bin": 0 });
});

test("a several-MB binary file comes back byte-exact, whole and in ranges", async () => {
  const s = openStorage(outDir());
  const big = bytes(5 * 1024 * 1024 + 123, 7);
  await s.writeCheckpoint("checkpoint-1", { "model.safetensors": big });
  const back = await s.read("checkpoint-1", "model.safetensors");
  assert.equal(back.length, big.length);
  assert.ok(Buffer.from(back).equals(Buffer.from(big)), "bytes differ");
  const [a, b] = [3 * 1024 * 1024 - 5, 4 * 1024 * 1024 + 17];
  assert.ok(Buffer.from(await s.read("checkpoint-1", "model.safetensors", a, b)).equals(Buffer.from(big.subarray(a, b))));
});

test("rewriting a checkpoint replaces it whole: new files only, nothing left aside", async () => {
  const dir = outDir();
  const s = openStorage(dir);
  await s.writeCheckpoint("checkpoint-10", { "a.txt": "old", "old-only.txt": "x" });
  await s.writeCheckpoint("checkpoint-10", { "a.txt": "new!" });
  assert.deepEqual(await s.list(), ["checkpoint-10"]);
  assert.deepEqual(await s.files("checkpoint-10"), ["a.txt"]);
  assert.equal(await s.readText("checkpoint-10", "a.txt"), "new!");
  assert.deepEqual((await readdir(dir)).sort(), ["checkpoint-10"]);
});

test("interrupted writes are not listed: temp dir, no manifest, sizes that disagree, a bad manifest", async () => {
  const dir = outDir();
  const s = openStorage(dir);
  await s.writeCheckpoint("checkpoint-100", { "a.bin": bytes(100, 3), "b.json": "{}" });
  // 1. Killed while writing the temporary directory: files, no manifest.
  await mkdir(join(dir, ".webtune-tmp-checkpoint-200-0123456789ab"));
  await writeFile(join(dir, ".webtune-tmp-checkpoint-200-0123456789ab", "a.bin"), bytes(50, 4));
  // 2. A final directory without the manifest (copied by hand, or written by something else).
  await mkdir(join(dir, "checkpoint-300"));
  await writeFile(join(dir, "checkpoint-300", "a.bin"), bytes(100, 3));
  // 3. A manifest whose sizes disagree with the files (a file truncated later).
  await s.writeCheckpoint("checkpoint-400", { "a.bin": bytes(100, 3) });
  await truncate(join(dir, "checkpoint-400", "a.bin"), 60);
  // 4. A manifest that names a missing file.
  await s.writeCheckpoint("checkpoint-500", { "a.bin": bytes(100, 3), "b.bin": bytes(10, 3) });
  await rm(join(dir, "checkpoint-500", "b.bin"));
  // 5. A manifest that is not JSON (torn write).
  await s.writeCheckpoint("checkpoint-600", { "a.bin": bytes(100, 3) });
  await writeFile(join(dir, "checkpoint-600", MANIFEST), '{"format": "webtune-checkpoint", "fi');
  // 6. A stray file.
  await writeFile(join(dir, "notes.txt"), "hello");

  // A fresh object (as after a restart) sees the same thing.
  for (const t of [s, openStorage(dir)]) {
    assert.deepEqual(await t.list(), ["checkpoint-100"]);
    for (const id of ["checkpoint-200", "checkpoint-300", "checkpoint-400", "checkpoint-500", "checkpoint-600"]) {
      assert.equal(await t.has(id, "a.bin"), false, id);
      await assert.rejects(t.read(id, "a.bin"), /no complete checkpoint/, id);
    }
  }
  // The next write removes the stale temporary directory; a delete removes an incomplete checkpoint.
  await s.writeCheckpoint("checkpoint-700", { "a.bin": bytes(1, 1) });
  assert.ok(!(await readdir(dir)).some((f) => f.startsWith(".")), "temporary directories collected");
  for (const id of ["checkpoint-300", "checkpoint-400", "checkpoint-500", "checkpoint-600"]) await s.delete(id);
  assert.deepEqual((await readdir(dir)).sort(), ["checkpoint-100", "checkpoint-700", "notes.txt"]);
  assert.deepEqual(await s.list(), ["checkpoint-100", "checkpoint-700"]);
});

test("a crash between the two renames of a replacement: the old checkpoint comes back on the next open", async () => {
  const dir = outDir();
  await openStorage(dir).writeCheckpoint("checkpoint-5", { "w.bin": bytes(64, 5) });
  // What a crash after `rename(<id>, .webtune-old-<id>-*)` and before `rename(.webtune-tmp-<id>-*, <id>)` leaves.
  await rename(join(dir, "checkpoint-5"), join(dir, ".webtune-old-checkpoint-5-00ff00ff00ff"));
  await mkdir(join(dir, ".webtune-tmp-checkpoint-5-11ee11ee11ee"));
  const s = openStorage(dir);
  assert.deepEqual(await s.list(), ["checkpoint-5"]);
  assert.deepEqual(await s.read("checkpoint-5", "w.bin"), bytes(64, 5));
  assert.deepEqual(await readdir(dir), ["checkpoint-5"]);
});

test("a write that fails leaves nothing behind", async () => {
  const dir = outDir();
  const s = openStorage(dir);
  // "x" is a file, so "x/y" cannot be made: the write fails after writing "x".
  await assert.rejects(s.writeCheckpoint("checkpoint-1", { x: "1", "x/y": "2" }), /writing checkpoint "checkpoint-1" to .* failed/);
  assert.deepEqual(await s.list(), []);
  assert.deepEqual(await readdir(dir), []);
});

test("ids and file names are checked; the manifest name is reserved", async () => {
  const s = openStorage(outDir());
  for (const id of ["", ".hidden", "a/b", "..", "a#1"]) await assert.rejects(s.writeCheckpoint(id, { a: "1" }), /not a valid checkpoint id/, id);
  for (const f of ["", "/abs", "a/../b", "a//b", "./a"]) await assert.rejects(s.writeCheckpoint("c-1", { [f]: "1" }), /not a valid checkpoint file name/, f);
  await assert.rejects(s.writeCheckpoint("c-1", { [MANIFEST]: "{}" }), /reserved/);
});

test("delete: gone from list and disk; deleting a missing checkpoint is fine", async () => {
  const dir = outDir();
  const s = openStorage(dir);
  await s.writeCheckpoint("checkpoint-1", { a: "1" });
  await s.writeCheckpoint("checkpoint-2", { a: "2" });
  await s.delete("checkpoint-1");
  await s.delete("checkpoint-1");
  await s.delete("checkpoint-99");
  assert.deepEqual(await s.list(), ["checkpoint-2"]);
  assert.deepEqual(await readdir(dir), ["checkpoint-2"]);
});

test("rotateCheckpoints keeps the newest save_total_limit and never deletes `keep`", async () => {
  const s = openStorage(outDir());
  for (const step of [10, 20, 30, 40, 50]) await s.writeCheckpoint(`checkpoint-${step}`, { "step.txt": String(step) });
  assert.deepEqual(await rotateCheckpoints(s, null), []);
  assert.deepEqual(await rotateCheckpoints(s, 0), []);
  assert.deepEqual(await rotateCheckpoints(s, 10), []);
  assert.deepEqual(await rotateCheckpoints(s, 3, "checkpoint-10"), ["checkpoint-20", "checkpoint-30"]);
  assert.deepEqual(await s.list(), ["checkpoint-10", "checkpoint-40", "checkpoint-50"]);
  assert.deepEqual(await rotateCheckpoints(s, 2), ["checkpoint-10"]);
  assert.deepEqual(await rotateCheckpoints(s, 1, "checkpoint-50"), ["checkpoint-40"]);
  assert.deepEqual(await s.list(), ["checkpoint-50"]);
  assert.deepEqual(await rotateCheckpoints(s, 1, "checkpoint-50"), []);
});

test("cleanup touches only what webtune made: a user's .<x>.tmp-<hex> / .<x>.old-<hex> files and directories stay", async () => {
  const dir = outDir();
  await mkdir(dir, { recursive: true });
  // Names webtune 0.1 treated as its own temporary directories (and removed), made by a user.
  await writeFile(join(dir, ".notes.tmp-0a1b2c"), "mine");
  await mkdir(join(dir, ".data.old-deadbeef"));
  await writeFile(join(dir, ".data.old-deadbeef", "x.txt"), "mine too");
  await mkdir(join(dir, ".checkpoint-3.tmp-0123abcd"));
  const s = openStorage(dir);
  await s.writeCheckpoint("checkpoint-1", { a: "1" });
  await s.writeCheckpoint("checkpoint-1", { a: "2" });
  await s.delete("checkpoint-1");
  await s.list();
  await openStorage(dir).list();
  assert.deepEqual((await readdir(dir)).sort(), [".checkpoint-3.tmp-0123abcd", ".data.old-deadbeef", ".notes.tmp-0a1b2c"]);
  assert.equal(await readFile(join(dir, ".notes.tmp-0a1b2c"), "utf8"), "mine");
  assert.equal(await readFile(join(dir, ".data.old-deadbeef", "x.txt"), "utf8"), "mine too");
});

test("rotateCheckpoints deletes only checkpoint-<step>: \"final\", other ids and a save_model in the directory stay", async () => {
  const dir = outDir();
  const s = openStorage(dir);
  await writeDirectory(dir, { "adapter_config.json": "{}", "adapter_model.safetensors": bytes(10, 1) });
  await s.writeCheckpoint("final", { "adapter_config.json": "{}" });
  await s.writeCheckpoint("best", { "a.txt": "b" });
  for (const step of [1, 2, 3]) await s.writeCheckpoint(`checkpoint-${step}`, { "step.txt": String(step) });
  assert.deepEqual(await rotateCheckpoints(s, 1, "checkpoint-3"), ["checkpoint-1", "checkpoint-2"]);
  assert.deepEqual((await s.list()).sort(), ["best", "checkpoint-3", "final"]);
  assert.deepEqual((await readdir(dir)).sort(), [SAVE_RECORD, "adapter_config.json", "adapter_model.safetensors", "best", "checkpoint-3", "final"]);
});

test("damaged(): what looks like a checkpoint but is not complete, and why", async () => {
  const dir = outDir();
  const s = openStorage(dir);
  await s.writeCheckpoint("checkpoint-1", { "a.bin": bytes(10, 1) });
  await mkdir(join(dir, "checkpoint-2"));
  await s.writeCheckpoint("checkpoint-3", { "a.bin": bytes(10, 1) });
  await writeFile(join(dir, "checkpoint-3", MANIFEST), "{not json");
  await s.writeCheckpoint("checkpoint-4", { "a.bin": bytes(10, 1) });
  await truncate(join(dir, "checkpoint-4", "a.bin"), 3);
  const d = (await s.damaged!()).sort((x, y) => (x.id < y.id ? -1 : 1));
  assert.deepEqual(d.map((x) => x.id), ["checkpoint-2", "checkpoint-3", "checkpoint-4"]);
  assert.match(d[0]!.problem, /webtune_checkpoint\.json is missing/);
  assert.match(d[1]!.problem, /webtune_checkpoint\.json is not valid JSON/);
  assert.match(d[2]!.problem, /a\.bin is 3 bytes, the manifest says 10/);
});

test("writeDirectory: one save replaces the previous whole (files it drops removed), other files untouched, no temp left", async () => {
  const dir = outDir();
  await mkdir(join(dir, "checkpoint-1"), { recursive: true });
  await writeFile(join(dir, "user.txt"), "mine");
  await writeDirectory(dir, { "adapter_config.json": '{"v":1}', "adapter_model.safetensors": bytes(1000, 1), "adapter_model.gguf": bytes(10, 2), "sub/x.json": "1" });
  await writeDirectory(dir, { "adapter_config.json": '{"v":2}', "adapter_model.safetensors": bytes(500, 3), "sub/x.json": "2" });
  assert.deepEqual((await readdir(dir)).sort(), [SAVE_RECORD, "adapter_config.json", "adapter_model.safetensors", "checkpoint-1", "sub", "user.txt"]);
  assert.equal(await readFile(join(dir, "adapter_config.json"), "utf8"), '{"v":2}');
  assert.deepEqual(new Uint8Array(await readFile(join(dir, "adapter_model.safetensors"))), bytes(500, 3));
  assert.equal(await readFile(join(dir, "sub", "x.json"), "utf8"), "2");
  assert.equal(await readFile(join(dir, "user.txt"), "utf8"), "mine");
  await assert.rejects(writeDirectory(dir, { [SAVE_RECORD]: "x" }), /reserves/);
});

test("writeDirectory after a crash: an uncommitted staging directory is dropped (old save stays), a committed one is finished", async () => {
  const dir = outDir();
  await writeDirectory(dir, { "a.json": "old-a", "b.bin": "old-b" });
  // Killed before the commit record: files staged, no .webtune_commit.json.
  await mkdir(join(dir, ".webtune-save-0123456789ab"));
  await writeFile(join(dir, ".webtune-save-0123456789ab", "a.json"), "new-a");
  await recoverDirectory(dir);
  assert.deepEqual((await readdir(dir)).sort(), [SAVE_RECORD, "a.json", "b.bin"]);
  assert.equal(await readFile(join(dir, "a.json"), "utf8"), "old-a");
  // Killed after the commit record, with a.json already moved: the listing of the storage finishes the save.
  const stage = join(dir, ".webtune-save-abcdefabcdef");
  await mkdir(stage);
  await writeFile(join(dir, "a.json"), "new-a");
  await writeFile(join(stage, "b.bin"), "new-b");
  await writeFile(join(stage, SAVE_RECORD), JSON.stringify({ format: "webtune-save", files: { "a.json": 5, "b.bin": 5 } }));
  await writeFile(join(stage, ".webtune_commit.json"), JSON.stringify({ format: "webtune-save", files: { "a.json": 5, "b.bin": 5, [SAVE_RECORD]: 10 }, remove: [] }));
  assert.deepEqual(await openStorage(dir).list(), []);
  assert.deepEqual((await readdir(dir)).sort(), [SAVE_RECORD, "a.json", "b.bin"]);
  assert.equal(await readFile(join(dir, "b.bin"), "utf8"), "new-b");
});

test("writeDirectory into a directory of its own saves swaps the directory whole (a new one renamed in); with other files it commits in place", async () => {
  const parent = join(outDir(), "..");
  const dir = join(parent, "adapter");
  await writeDirectory(dir, { "adapter_config.json": '{"v":1}', "adapter_model.safetensors": bytes(300, 1) });
  const first = (await stat(dir)).ino;
  await writeDirectory(dir, { "adapter_config.json": '{"v":2}', "adapter_model.safetensors": bytes(200, 2) });
  // A new directory took the old one's place: a reader saw one save or the other, never a mix.
  assert.notEqual((await stat(dir)).ino, first, "the directory was replaced by a rename");
  assert.deepEqual((await readdir(dir)).sort(), [SAVE_RECORD, "adapter_config.json", "adapter_model.safetensors"]);
  assert.equal(await readFile(join(dir, "adapter_config.json"), "utf8"), '{"v":2}');
  assert.deepEqual((await readdir(parent)).sort(), ["adapter"], "nothing left beside it");
  // A file of the user's in it: the directory is kept, the save committed in place, the file untouched.
  await writeFile(join(dir, "notes.txt"), "mine");
  const kept = (await stat(dir)).ino;
  await writeDirectory(dir, { "adapter_config.json": '{"v":3}', "adapter_model.safetensors": bytes(100, 3) });
  assert.equal((await stat(dir)).ino, kept, "a directory with other files is not replaced");
  assert.equal(await readFile(join(dir, "notes.txt"), "utf8"), "mine");
  assert.equal(await readFile(join(dir, "adapter_config.json"), "utf8"), '{"v":3}');
});

test("a swap a crash interrupted: a complete new directory goes in, an incomplete one goes, a set-aside old one comes back; look-alikes stay", async () => {
  const parent = join(outDir(), "..");
  await mkdir(parent, { recursive: true });
  const record = (files: Record<string, string>) =>
    JSON.stringify({ format: "webtune-save", files: Object.fromEntries(Object.entries(files).map(([k, v]) => [k, v.length])) });
  const stageDir = async (name: string, files: Record<string, string>, withRecord: boolean) => {
    await mkdir(join(parent, name));
    for (const [k, v] of Object.entries(files)) await writeFile(join(parent, name, k), v);
    if (withRecord) await writeFile(join(parent, name, SAVE_RECORD), record(files));
  };
  // Killed between the renames: "a" set aside, its complete replacement not yet in.
  await stageDir(".webtune-prev-a-0123456789ab", { "x.json": "old" }, true);
  await stageDir(".webtune-swap-a-abcdefabcdef", { "x.json": "new" }, true);
  // Killed while writing the new "b": no record yet; the old "b" stays.
  await stageDir("b", { "x.json": "old" }, true);
  await stageDir(".webtune-swap-b-abcdefabcdef", { "x.json": "ne" }, false);
  // Set aside with nothing to replace it (its stage gone): it comes back.
  await stageDir(".webtune-prev-c-0123456789ab", { "x.json": "old" }, true);
  // A record whose sizes disagree (a torn write) is no commit.
  await stageDir(".webtune-swap-d-abcdefabcdef", { "x.json": "new" }, false);
  await writeFile(join(parent, ".webtune-swap-d-abcdefabcdef", SAVE_RECORD), record({ "x.json": "longer" }));
  await writeFile(join(parent, ".webtune-swap-notes"), "mine");
  await openStorage(parent).list();
  assert.deepEqual((await readdir(parent)).sort(), [".webtune-swap-notes", "a", "b", "c"]);
  assert.equal(await readFile(join(parent, "a", "x.json"), "utf8"), "new");
  assert.equal(await readFile(join(parent, "b", "x.json"), "utf8"), "old");
  assert.equal(await readFile(join(parent, "c", "x.json"), "utf8"), "old");
  // writeDirectory finishes its own directory's interrupted swap before deciding how to save.
  await stageDir(".webtune-prev-e-0123456789ab", { "x.json": "old" }, true);
  await stageDir(".webtune-swap-e-abcdefabcdef", { "x.json": "new" }, true);
  await writeDirectory(join(parent, "e"), { "x.json": "newer" });
  assert.equal(await readFile(join(parent, "e", "x.json"), "utf8"), "newer");
  assert.deepEqual((await readdir(parent)).filter((n) => n.startsWith(".webtune-") && n !== ".webtune-swap-notes"), []);
});

test("source(id) is a ModelSource: exists, size, ranged read, text, json; safetensors reads through it", async () => {
  const s = openStorage(outDir());
  const w = Float32Array.from({ length: 300_000 }, (_, i) => Math.sin(i));
  const st = writeSafetensors({ "lora_A.weight": { dtype: "F32", shape: [300, 1000], data: w }, "lora_B.weight": { dtype: "F32", shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) } });
  await s.writeCheckpoint("checkpoint-3", { "adapter_model.safetensors": st, "adapter_config.json": JSON.stringify({ r: 4, lora_alpha: 8 }), "bad.json": "{" });
  const src = s.source("checkpoint-3");
  assert.match(src.name, /checkpoint-3$/);
  assert.equal(await openSource(src), src, "openSource accepts it as a ModelSource");
  assert.equal(await src.exists("adapter_config.json"), true);
  assert.equal(await src.exists("missing.json"), false);
  assert.equal(await src.size("adapter_model.safetensors"), st.length);
  assert.deepEqual(await src.read("adapter_model.safetensors", 8, 40), st.subarray(8, 40));
  assert.deepEqual(await src.json("adapter_config.json"), { r: 4, lora_alpha: 8 });
  assert.equal(await src.text("adapter_config.json"), '{"r":4,"lora_alpha":8}');
  await assert.rejects(src.json("bad.json"), /bad\.json in .*checkpoint-3 is not valid JSON/);
  await assert.rejects(src.read("missing.json"), /missing\.json not found/);
  await assert.rejects(src.size("missing.json"), /missing\.json not found/);
  const f = await SafetensorsFile.open(src, "adapter_model.safetensors");
  assert.deepEqual(f.names.sort(), ["lora_A.weight", "lora_B.weight"]);
  assert.deepEqual(await f.readF32("lora_B.weight"), Float32Array.from([1, 2, 3, 4, 5, 6]));
  assert.deepEqual(await f.readF32("lora_A.weight"), w);
});

test("openStorage: paths, IndexedDB names (none here), a storage as is, bad locations", () => {
  const dir = outDir();
  const s = openStorage(dir);
  assert.equal(openStorage(s), s);
  assert.throws(() => openStorage("indexeddb:runs"), /no IndexedDB here.*"indexeddb:runs"/);
  assert.throws(() => openStorage({ indexeddb: "runs" }), /no IndexedDB here/);
  assert.throws(() => openStorage(""), /empty/);
  assert.throws(() => openStorage(42 as unknown as string), /expected a directory path/);
});
