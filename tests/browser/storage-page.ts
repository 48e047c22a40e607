// Runs in headless Chromium (bundled by storage.test.ts): checkpoint storage on IndexedDB. Results go to
// window.__result for the Node side to assert on. "?mode=reload" checks what the first load left behind.
import { createStore, del, get, keys } from "idb-keyval";
import { SafetensorsFile, writeSafetensors } from "../../src/models/safetensors.ts";
import { CHUNK_SIZE, IndexedDBStorage, MANIFEST, openStorage, rotateCheckpoints, type CheckpointManifest } from "../../src/trainer/storage.ts";
import { check, type Result } from "./page-check.ts";
import { faultBytes } from "../trainer/fault-files.ts";


const DB = "webtune-storage-test";
const raw = createStore(DB, "files");


function assert(cond: unknown, what: string): asserts cond {
  if (!cond) throw new Error(what);
}

function same(a: unknown, b: unknown, what: string): void {
  const [x, y] = [JSON.stringify(a), JSON.stringify(b)];
  if (x !== y) throw new Error(`${what}: got ${x}, expected ${y}`);
}

function equalBytes(a: Uint8Array, b: Uint8Array, what: string): void {
  if (a.length !== b.length) throw new Error(`${what}: ${a.length} bytes, expected ${b.length}`);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) throw new Error(`${what}: byte ${i} is ${a[i]}, expected ${b[i]}`);
}

async function rejects(p: Promise<unknown>, re: RegExp, what: string): Promise<void> {
  try {
    await p;
  } catch (e) {
    if (!re.test((e as Error).message)) throw new Error(`${what}: wrong error: ${(e as Error).message}`);
    return;
  }
  throw new Error(`${what}: did not fail`);
}

/** Deterministic pseudo-random bytes (the fault battery's). */
const bytes = faultBytes;

const BIG = 2 * CHUNK_SIZE + 12345; // three chunks, the last one partial

async function rawKeys(prefix = ""): Promise<string[]> {
  return ((await keys(raw)) as string[]).filter((k) => k.startsWith(prefix)).sort();
}

async function main(): Promise<Result[]> {
  const results: Result[] = [];
  if (new URLSearchParams(location.search).get("mode") === "idle") return results; // opens the origin, does nothing
  if (new URLSearchParams(location.search).get("mode") === "quota") {
    // The Node side has set this origin's quota (DevTools' Storage.overrideQuotaForOrigin) to QUOTA_MB.
    const q = openStorage("webtune-quota-test");
    await check("a write past the quota fails saying what to delete; nothing half-written is listed or kept", async () => {
      await q.writeCheckpoint("checkpoint-1", { "a.bin": bytes(4 * 1048576, 1) });
      let message = "";
      try {
        await q.writeCheckpoint("checkpoint-2", { "a.bin": bytes(48 * 1048576, 2), "adapter_config.json": "{}" });
      } catch (e) {
        message = (e as Error).message;
        same(((e as Error).cause as Error)?.name, "QuotaExceededError", "the cause is the browser's own QuotaExceededError");
      }
      assert(message !== "", "the write past the quota failed");
      assert(/writing checkpoint "checkpoint-2" to indexeddb:webtune-quota-test failed: the browser's storage quota is full \(QuotaExceededError\)/.test(message), message);
      assert(/Delete checkpoints you no longer need, oldest first: checkpoint-1 \(4\.0 MB\)/.test(message), message);
      same(await q.list(), ["checkpoint-1"], "list");
      same(await q.damaged!(), [], "nothing damaged");
      const left = ((await keys(createStore("webtune-quota-test", "files"))) as string[]).filter((k) => k.startsWith("checkpoint-2/"));
      same(left, [], "no chunk of the failed write is kept");
      equalBytes(await q.read("checkpoint-1", "a.bin"), bytes(4 * 1048576, 1), "the older checkpoint is intact");
      // Deleting what the message names makes room.
      await q.delete("checkpoint-1");
      await q.writeCheckpoint("checkpoint-2", { "a.bin": bytes(6 * 1048576, 3) });
      same(await q.list(), ["checkpoint-2"], "list after making room");
    }, results);
    return results;
  }
  if (new URLSearchParams(location.search).get("mode") === "reload") {
    await check("after a reload: the checkpoints are still there, byte-exact", async () => {
      const s = openStorage(DB);
      same(await s.list(), ["checkpoint-1", "checkpoint-5"], "list");
      equalBytes(await s.read("checkpoint-5", "big.bin"), bytes(BIG, 9), "big.bin");
    }, results);
    return results;
  }

  await check("openStorage: a plain name and indexeddb: names open IndexedDB", async () => {
    for (const loc of [DB, `indexeddb:${DB}`, { indexeddb: DB }]) {
      const s = openStorage(loc);
      assert(s instanceof IndexedDBStorage, `${JSON.stringify(loc)} opens IndexedDB`);
      same(s.name, `indexeddb:${DB}`, "name");
    }
  }, results);

  const s = openStorage(DB);
  const big = bytes(BIG, 1);
  await check("write a checkpoint with a file of three chunks; read it back byte-exact; the keys", async () => {
    same(await s.list(), [], "empty at first");
    await s.writeCheckpoint("checkpoint-1", { "big.bin": big, "adapter_config.json": JSON.stringify({ r: 8 }), "sub/empty.bin": new Uint8Array(0) });
    same(await s.list(), ["checkpoint-1"], "list");
    same(await s.files("checkpoint-1"), ["adapter_config.json", "big.bin", "sub/empty.bin"], "files");
    equalBytes(await s.read("checkpoint-1", "big.bin"), big, "big.bin");
    const [a, b] = [CHUNK_SIZE - 100, 2 * CHUNK_SIZE + 50]; // across both chunk boundaries
    equalBytes(await s.read("checkpoint-1", "big.bin", a, b), big.subarray(a, b), "a range across chunks");
    equalBytes(await s.read("checkpoint-1", "big.bin", CHUNK_SIZE, CHUNK_SIZE + 1), big.subarray(CHUNK_SIZE, CHUNK_SIZE + 1), "one byte");
    equalBytes(await s.read("checkpoint-1", "sub/empty.bin"), new Uint8Array(0), "empty file");
    same(await s.readText("checkpoint-1", "adapter_config.json"), '{"r":8}', "text");
    same(await s.size("checkpoint-1", "big.bin"), BIG, "size");
    same(await s.has("checkpoint-1", "big.bin"), true, "has");
    same(await s.has("checkpoint-1", "nope"), false, "has (missing file)");
    same(await s.has("checkpoint-9", "big.bin"), false, "has (missing checkpoint)");
    await rejects(s.read("checkpoint-1", "nope"), /nope not found in checkpoint "checkpoint-1"/, "a missing file");
    await rejects(s.read("checkpoint-1", "big.bin", 0, BIG + 1), /bytes \[0, \d+\)/, "past the end");
    const m = (await get<CheckpointManifest>(`checkpoint-1/${MANIFEST}`, raw))!;
    same(m.files, { "big.bin": BIG, "adapter_config.json": 7, "sub/empty.bin": 0 }, "manifest files");
    same(await rawKeys(), [
      `checkpoint-1/${m.gen}/adapter_config.json#0`,
      `checkpoint-1/${m.gen}/big.bin#0`,
      `checkpoint-1/${m.gen}/big.bin#1`,
      `checkpoint-1/${m.gen}/big.bin#2`,
      `checkpoint-1/${MANIFEST}`,
    ], "keys");
  }, results);

  await check("source(id): exists, size, ranged reads, json; a safetensors file read through it", async () => {
    const w = Float32Array.from({ length: 3000 }, (_, i) => Math.cos(i));
    await s.writeCheckpoint("checkpoint-2", { "adapter_model.safetensors": writeSafetensors({ w: { dtype: "F32", shape: [30, 100], data: w } }), "adapter_config.json": '{"r": 4}' });
    const src = s.source("checkpoint-2");
    same(src.name, `indexeddb:${DB}/checkpoint-2`, "name");
    same(await src.exists("adapter_config.json"), true, "exists");
    same(await src.exists("nope"), false, "exists (missing)");
    same(await src.json("adapter_config.json"), { r: 4 }, "json");
    const f = await SafetensorsFile.open(src, "adapter_model.safetensors");
    same(Array.from(await f.readF32("w")), Array.from(w), "tensor");
    const big1 = s.source("checkpoint-1");
    equalBytes(await big1.read("big.bin", 5, CHUNK_SIZE + 5), big.subarray(5, CHUNK_SIZE + 5), "source range");
    await s.delete("checkpoint-2");
  }, results);

  await check("an interrupted write (chunks, no manifest) is not listed; the next write collects its chunks", async () => {
    // Another object stands for a page that was closed mid-write: it staged chunks and never committed.
    const crashed = new IndexedDBStorage(DB);
    const staged = await crashed.stageCheckpoint("checkpoint-3", { "big.bin": bytes(BIG, 2), "a.txt": "a" });
    same((await rawKeys(`checkpoint-3/`)).length, 4, "the staged chunks are there");
    const fresh = openStorage(DB);
    same(await fresh.list(), ["checkpoint-1"], "list after the interrupted write");
    same(await fresh.has("checkpoint-3", "a.txt"), false, "has");
    await rejects(fresh.read("checkpoint-3", "a.txt"), /no complete checkpoint "checkpoint-3"/, "read");
    await fresh.writeCheckpoint("checkpoint-4", { "x.txt": "x" });
    same(await rawKeys(`checkpoint-3/`), [], "the interrupted write's chunks are collected");
    same(await fresh.list(), ["checkpoint-1", "checkpoint-4"], "list");
    // Committing it now fails: its chunks are gone; nothing half-made appears.
    await rejects(crashed.commitCheckpoint(staged), /chunks are gone/, "a commit after collection");
    same(await fresh.list(), ["checkpoint-1", "checkpoint-4"], "list after the failed commit");
    same(await rawKeys(`checkpoint-3/`), [], "no manifest either");
  }, results);

  await check("a manifest whose chunks are missing is not listed", async () => {
    await s.writeCheckpoint("checkpoint-6", { "big.bin": bytes(CHUNK_SIZE + 1, 3) });
    same(await s.list(), ["checkpoint-1", "checkpoint-4", "checkpoint-6"], "list");
    const chunk = (await rawKeys("checkpoint-6/")).find((k) => k.endsWith("big.bin#1"))!;
    await del(chunk, raw);
    same(await s.list(), ["checkpoint-1", "checkpoint-4"], "list without a chunk");
    await s.delete("checkpoint-6");
    same(await rawKeys("checkpoint-6/"), [], "deleted");
  }, results);

  await check("rewriting a checkpoint replaces it; the old generation's chunks go", async () => {
    await s.writeCheckpoint("checkpoint-4", { "y.txt": "yy" });
    same(await s.files("checkpoint-4"), ["y.txt"], "files");
    same(await s.readText("checkpoint-4", "y.txt"), "yy", "text");
    const m = (await get<CheckpointManifest>(`checkpoint-4/${MANIFEST}`, raw))!;
    same(await rawKeys("checkpoint-4/"), [`checkpoint-4/${m.gen}/y.txt#0`, `checkpoint-4/${MANIFEST}`], "keys");
  }, results);

  await check("delete: manifest and chunks gone; deleting a missing checkpoint is fine", async () => {
    await s.delete("checkpoint-4");
    await s.delete("checkpoint-4");
    same(await s.list(), ["checkpoint-1"], "list");
    same(await rawKeys("checkpoint-4/"), [], "keys");
  }, results);

  await check("damaged(): a manifest whose chunks are missing is named, with why", async () => {
    await s.writeCheckpoint("checkpoint-8", { "big.bin": bytes(CHUNK_SIZE + 1, 3) });
    const chunk = (await rawKeys("checkpoint-8/")).find((k) => k.endsWith("big.bin#1"))!;
    await del(chunk, raw);
    const d = await s.damaged!();
    same(d.map((x) => x.id), ["checkpoint-8"], "damaged ids");
    assert(/1 chunk\(s\) of its files are missing/.test(d[0]!.problem), d[0]!.problem);
    await s.delete("checkpoint-8");
    same(await s.damaged!(), [], "none after delete");
  }, results);

  await check("rotateCheckpoints keeps the newest and never `keep`", async () => {
    for (const step of [20, 10, 30]) await s.writeCheckpoint(`checkpoint-${step}`, { "s.txt": String(step) });
    same(await s.list(), ["checkpoint-1", "checkpoint-10", "checkpoint-20", "checkpoint-30"], "list by step");
    same(await rotateCheckpoints(s, 2, "checkpoint-1"), ["checkpoint-10", "checkpoint-20"], "deleted");
    same(await s.list(), ["checkpoint-1", "checkpoint-30"], "list");
    same(await rotateCheckpoints(s, 1, "checkpoint-1"), ["checkpoint-30"], "deleted");
    same((await rawKeys()).filter((k) => !k.startsWith("checkpoint-1/")), [], "only checkpoint-1's keys left");
    // save_model's "final" (and "final-merged") are no checkpoints of the rotation: save_total_limit 1 keeps them.
    await s.writeCheckpoint("final", { "adapter_config.json": "{}" });
    await s.writeCheckpoint("final-merged", { "config.json": "{}" });
    await s.writeCheckpoint("checkpoint-40", { "s.txt": "40" });
    same(await rotateCheckpoints(s, 1, "checkpoint-40"), ["checkpoint-1"], "deleted with limit 1");
    same(await s.list(), ["checkpoint-40", "final", "final-merged"], "final stays");
    for (const id of ["final", "final-merged", "checkpoint-40"]) await s.delete(id);
    await s.writeCheckpoint("checkpoint-1", { "big.bin": big, "adapter_config.json": JSON.stringify({ r: 8 }), "sub/empty.bin": new Uint8Array(0) });
    await s.writeCheckpoint("checkpoint-5", { "big.bin": bytes(BIG, 9) });
  }, results);
  return results;
}

(globalThis as { __result?: unknown }).__result = main();
