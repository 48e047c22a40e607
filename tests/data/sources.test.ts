// Dataset sources: arrays, iterables, JSON Lines / JSON / Parquet from paths, URLs (a local HTTP server), File
// objects and shards; streaming in chunks, skip(n), re-iteration, and the errors. No GPU.
// Runs under Node (node --import tsx --test) and Deno (deno test -A --no-check).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { Dataset, jsonLines, loadDataset, rowSource, type Row } from "../../src/data/sources.ts";
import { rejects } from "../helpers.ts";

const FIXTURES = new URL("../fixtures/data/", import.meta.url);
const fixturePath = (name: string) => decodeURIComponent(new URL(name, FIXTURES).pathname);

const dir = mkdtempSync(join(tmpdir(), "webtune-data-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, content: string | Uint8Array): string {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
}


/** n rows with multi-byte text (so chunk boundaries fall inside characters). */
function bigRows(n: number): Row[] {
  return Array.from({ length: n }, (_, i) => ({ id: i, text: `row ${i}: café 🦊 ${"x".repeat(i % 17)}` }));
}

const CHAT_ROWS = [
  { messages: [{ role: "user", content: "Hi" }, { role: "assistant", content: "Hello!" }] },
  { messages: [{ role: "user", content: "What is the time?" }, { role: "assistant", content: "Time to rest." }] },
  {
    messages: [
      { role: "user", content: "Weather?" },
      { role: "assistant", content: "", tool_calls: [{ type: "function", function: { name: "get_weather", arguments: "{}" } }] },
      { role: "tool", content: "sunny" },
      { role: "assistant", content: "Sunny." },
    ],
  },
  { messages: [{ role: "user", content: "Bye" }, { role: "assistant", content: "Goodbye." }] },
  { messages: [{ role: "user", content: "One more" }, { role: "assistant", content: "Sure." }] },
];

/** Rows with null / undefined struct fields left out (what Arrow fills in for missing keys). */
function dropNulls(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(dropNulls);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== null && x !== undefined).map(([k, x]) => [k, dropNulls(x)]));
  return v;
}

describe("in-memory sources", () => {
  test("an array: re-iterable, skip, num_rows", async () => {
    const rows = [{ a: 1 }, { a: 2 }, { a: 3 }];
    const ds = loadDataset(rows);
    assert.ok(ds instanceof Dataset);
    assert.equal(ds.num_rows, 3);
    assert.deepEqual(await ds.toArray(), rows);
    assert.deepEqual(await ds.toArray(), rows, "a second pass (epoch) sees every row again");
    assert.deepEqual(await ds.skip(2).toArray(), [{ a: 3 }]);
    assert.deepEqual(await ds.skip(1).skip(1).toArray(), [{ a: 3 }]);
    assert.equal(ds.skip(2).num_rows, 1);
    assert.deepEqual(await ds.skip(5).toArray(), []);
    assert.equal(loadDataset(ds), ds);
  });

  test("iterables, async iterables and functions; a generator can be read once", async () => {
    assert.deepEqual(await loadDataset(new Set([{ a: 1 }, { a: 2 }])).toArray(), [{ a: 1 }, { a: 2 }]);
    const asyncRows = {
      async *[Symbol.asyncIterator]() {
        yield { b: 1 };
        yield { b: 2 };
        yield { b: 3 };
      },
    };
    const ds = loadDataset(asyncRows);
    assert.deepEqual(await ds.skip(1).toArray(), [{ b: 2 }, { b: 3 }]);
    assert.deepEqual(await ds.toArray(), [{ b: 1 }, { b: 2 }, { b: 3 }]);
    const fn = loadDataset(function* () {
      yield { c: 1 };
      yield { c: 2 };
    });
    assert.deepEqual(await fn.toArray(), [{ c: 1 }, { c: 2 }]);
    assert.deepEqual(await fn.skip(1).toArray(), [{ c: 2 }]);

    async function* gen() {
      yield { d: 1 };
    }
    const once = loadDataset(gen());
    assert.deepEqual(await once.toArray(), [{ d: 1 }]);
    await rejects(() => once.toArray(), /can be read only once/, /loadDataset\(\(\) => gen\(\)\)/);
  });

  test("a row that is not an object is an error naming it", async () => {
    await rejects(loadDataset([{ a: 1 }, [1, 2] as unknown as Row]).toArray(), /row 1 of .*: a row must be a JSON object, got an array/);
    await rejects(loadDataset(["x" as unknown as Row, { a: 1 }]).toArray(), /cannot open|a row must be/);
    assert.throws(() => loadDataset(42 as never), /cannot read a number as a dataset/);
  });
});

describe("JSON Lines", () => {
  test("a file bigger than the chunk size, read in chunks: multi-byte characters across chunks, blank lines, CRLF, no final newline", async () => {
    const rows = bigRows(500);
    const lines = rows.map((r) => JSON.stringify(r));
    // Blank and whitespace-only lines are skipped (as datasets' JSON loader skips them); CRLF endings are fine.
    const text = "\uFEFF" + lines.slice(0, 100).join("\n") + "\n\n   \n" + lines.slice(100, 200).join("\r\n") + "\r\n" + lines.slice(200).join("\n");
    const path = write("big.jsonl", text);
    assert.ok(text.length > 20_000);
    const ds = loadDataset(path, { chunk_size: 61 });
    const got = await ds.toArray();
    assert.equal(got.length, 500);
    assert.deepEqual(got, rows);
    assert.equal(rowSource(got[0]), `${path}:1`);
    assert.equal(rowSource(got[100]), `${path}:103`, "line numbers count the blank lines");
    assert.deepEqual(await ds.skip(498).toArray(), rows.slice(498));
    assert.deepEqual(await ds.skip(150).first(), rows[150]);
    assert.equal(ds.num_rows, null);
  });

  test("never reads the whole file at once: rows arrive before the stream ends", async () => {
    let pulled = 0;
    const encoder = new TextEncoder();
    const chunks = {
      async *[Symbol.asyncIterator]() {
        for (let i = 0; i < 1000; i++) {
          pulled++;
          yield encoder.encode(`{"i": ${i}}\n`);
        }
      },
    };
    const it = jsonLines(chunks, "stream")[Symbol.asyncIterator]();
    assert.deepEqual((await it.next()).value, { i: 0 });
    assert.ok(pulled <= 2, `read ${pulled} chunks for the first row`);
    await it.return?.(undefined);
  });

  test("a malformed line is an error with the file, the line number and JSON.parse's message", async () => {
    const path = write("bad.jsonl", '{"text": "a"}\n\n{"text": "b"}\n{"text": "c",}\n{"text": "d"}\n');
    const err = await rejects(loadDataset(path).toArray(), /bad\.jsonl:4: not valid JSON: /, /The line: \{"text": "c",\}/);
    assert.ok(err.message.includes(`${path}:4`));
    // Skipped lines are not parsed, so skipping past the bad line reads on.
    assert.deepEqual(await loadDataset(path).skip(3).toArray(), [{ text: "d" }]);
    await rejects(loadDataset(write("arr.jsonl", '{"a": 1}\n[1, 2]\n')).toArray(), /arr\.jsonl:2: a row must be a JSON object, got an array/);
    await rejects(loadDataset(write("str.jsonl", '"just text"\n')).toArray(), /str\.jsonl:1: a row must be a JSON object, got a string/);
    await rejects(loadDataset(write("nul.jsonl", "null\n")).toArray(), /nul\.jsonl:1: a row must be a JSON object, got null/);
  });

  test("a missing file is an error naming it", async () => {
    await rejects(loadDataset(join(dir, "nope.jsonl")).toArray(), /cannot open the dataset file .*nope\.jsonl/);
  });

  test(".jsonl.gz is decompressed as it streams", async () => {
    const rows = bigRows(50);
    const path = write("rows.jsonl.gz", gzipSync(rows.map((r) => JSON.stringify(r)).join("\n")));
    assert.deepEqual(await loadDataset(path, { chunk_size: 100 }).toArray(), rows);
    // A Blob has no path: the name it is given says it is gzipped.
    const blob = new Blob([gzipSync(rows.map((r) => JSON.stringify(r)).join("\n"))]);
    assert.deepEqual(await loadDataset(blob, { name: "rows.jsonl.gz", chunk_size: 100 }).toArray(), rows);
  });

  test("the format is sniffed when the name has no extension", async () => {
    assert.deepEqual(await loadDataset(write("noext1", '{"a": 1}\n{"a": 2}\n')).toArray(), [{ a: 1 }, { a: 2 }]);
    assert.deepEqual(await loadDataset(write("noext2", '[{"a": 1}]')).toArray(), [{ a: 1 }]);
    assert.equal((await loadDataset(write("noext3", readFileSync(fixturePath("chat.parquet")))).toArray()).length, 5);
  });
});

describe("JSON files", () => {
  test("an array of rows", async () => {
    const path = write("rows.json", JSON.stringify([{ a: 1 }, { a: 2 }, { a: 3 }], null, 2));
    const ds = loadDataset(path);
    assert.deepEqual(await ds.toArray(), [{ a: 1 }, { a: 2 }, { a: 3 }]);
    assert.deepEqual(await ds.skip(2).toArray(), [{ a: 3 }]);
  });

  test("an object: an error listing its keys, or the rows under `field`", async () => {
    const path = write("dict.json", JSON.stringify({ version: 1, train: [{ a: 1 }, { a: 2 }] }, null, 2));
    await rejects(loadDataset(path).toArray(), /must hold an array of rows/, /keys version, train/, /pass \{ field: "train" \}/);
    assert.deepEqual(await loadDataset(path, { field: "train" }).toArray(), [{ a: 1 }, { a: 2 }]);
    await rejects(loadDataset(path, { field: "test" }).toArray(), /field "test" was asked for/);
    await rejects(loadDataset(write("elem.json", "[{\"a\": 1}, 3]")).toArray(), /element 1: a row must be a JSON object, got a number/);
    await rejects(loadDataset(write("broken.json", "[{\"a\": 1},")).toArray(), /broken\.json is not valid JSON/);
  });

  test("a .json file holding JSON Lines is read as JSON Lines", async () => {
    assert.deepEqual(await loadDataset(write("lines.json", '{"a": 1}\n{"a": 2}\n')).toArray(), [{ a: 1 }, { a: 2 }]);
  });
});

describe("Parquet", () => {
  test("row group by row group; null struct fields dropped; skip passes whole row groups", async () => {
    const ds = loadDataset(fixturePath("chat.parquet"));
    const rows = await ds.toArray();
    assert.deepEqual(dropNulls(rows), CHAT_ROWS);
    assert.equal(await ds.countIfCheap(), 5);
    assert.deepEqual(dropNulls(await ds.skip(3).toArray()), CHAT_ROWS.slice(3));
    assert.deepEqual(dropNulls(await ds.skip(1).toArray()), CHAT_ROWS.slice(1));
    assert.match(rowSource(rows[4]) ?? "", /chat\.parquet row 4$/);
  });

  test("int64 columns and lists become numbers", async () => {
    const rows = await loadDataset(fixturePath("pretokenized.parquet")).toArray();
    assert.deepEqual(rows, [
      { input_ids: [1, 2, 3, 2 ** 40], labels: [-100, 2, 3, 2 ** 40], id: 0 },
      { input_ids: [4, 5], labels: [4, 5], id: 1 },
      { input_ids: [6], labels: [6], id: 2 },
    ]);
  });

  test("a file that is not Parquet is an error naming it", async () => {
    await rejects(loadDataset(write("fake.parquet", "not parquet at all")).toArray(), /fake\.parquet is not a readable Parquet file/);
  });

  test("shards: several files in a row, skip passes over whole Parquet files", async () => {
    const jsonl = write("shard.jsonl", '{"s": 1}\n{"s": 2}\n');
    const ds = loadDataset([fixturePath("pretokenized.parquet"), jsonl, fixturePath("pretokenized.parquet")]);
    const all = await ds.toArray();
    assert.equal(all.length, 8);
    assert.deepEqual((await ds.skip(3).toArray()).slice(0, 2), [{ s: 1 }, { s: 2 }]);
    assert.deepEqual(await ds.skip(4).toArray(), all.slice(4));
    assert.deepEqual(await ds.skip(7).toArray(), all.slice(7));
  });
});

describe("browser File and Blob objects", () => {
  test("Node's global File: JSON Lines, JSON and Parquet", async () => {
    const rows = bigRows(40);
    const file = new File([rows.map((r) => JSON.stringify(r)).join("\n")], "data.jsonl");
    const ds = loadDataset(file, { chunk_size: 50 });
    assert.deepEqual(await ds.toArray(), rows);
    assert.deepEqual(await ds.skip(39).toArray(), rows.slice(39));
    assert.equal(ds.name, "the file data.jsonl");
    assert.deepEqual(await loadDataset(new File([JSON.stringify(rows)], "data.json")).toArray(), rows);
    const parquet = new File([readFileSync(fixturePath("chat.parquet"))], "chat.parquet");
    assert.deepEqual(dropNulls(await loadDataset(parquet).skip(2).toArray()), CHAT_ROWS.slice(2));
    await rejects(loadDataset(new File(['{"a": 1}\n{oops}\n'], "x.jsonl")).toArray(), /the file x\.jsonl:2: not valid JSON/);
    // A Blob without a name: the format is sniffed.
    assert.deepEqual(await loadDataset(new Blob(['{"a": 1}\n'])).toArray(), [{ a: 1 }]);
  });
});

describe("URLs", () => {
  let server: Server;
  let base = "";
  const requests: { url: string; range?: string; auth?: string }[] = [];
  const files: Record<string, Uint8Array> = {};

  before(async () => {
    files["/data.jsonl"] = new TextEncoder().encode(bigRows(300).map((r) => JSON.stringify(r)).join("\n") + "\n");
    files["/bad.jsonl"] = new TextEncoder().encode('{"a": 1}\n{"a": 2\n');
    files["/rows.json"] = new TextEncoder().encode(JSON.stringify([{ a: 1 }, { a: 2 }]));
    files["/datasets/x/resolve/refs%2Fconvert%2Fparquet/default/train/0000.parquet"] = readFileSync(fixturePath("chat.parquet"));
    files["/noranges.parquet"] = readFileSync(fixturePath("pretokenized.parquet"));
    server = createServer((req, res) => {
      const path = (req.url ?? "/").split("?")[0];
      requests.push({ url: path, range: req.headers.range, auth: req.headers.authorization });
      const body = files[path];
      if (!body) {
        res.writeHead(404).end("not found");
        return;
      }
      const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
      if (m && path !== "/noranges.parquet") {
        const start = Number(m[1]);
        const end = m[2] ? Math.min(Number(m[2]), body.length - 1) : body.length - 1;
        res.writeHead(206, { "Content-Range": `bytes ${start}-${end}/${body.length}`, "Content-Length": end - start + 1 });
        res.end(body.subarray(start, end + 1));
        return;
      }
      res.writeHead(200, { "Content-Length": body.length });
      // In pieces, so the client sees a streamed body.
      let at = 0;
      const step = () => {
        if (at >= body.length) return void res.end();
        res.write(body.subarray(at, (at += 1000)));
        setImmediate(step);
      };
      step();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const addr = server.address();
    base = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`;
  });
  after(() => new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections?.();
  }));

  test("JSON Lines over HTTP, streamed, with the token sent", async () => {
    const ds = loadDataset(`${base}/data.jsonl`, { token: "hf_secret" });
    assert.deepEqual(await ds.toArray(), bigRows(300));
    assert.deepEqual(await ds.skip(299).toArray(), bigRows(300).slice(299));
    assert.equal(requests.at(-1)?.auth, "Bearer hf_secret");
    await rejects(loadDataset(`${base}/bad.jsonl`).toArray(), new RegExp(`${base.replace(/[.]/g, "\\.")}/bad\\.jsonl:2: not valid JSON`));
    assert.deepEqual(await loadDataset(new URL(`${base}/rows.json`)).toArray(), [{ a: 1 }, { a: 2 }]);
    await rejects(loadDataset(`${base}/missing.jsonl`).toArray(), /HTTP 404/, /missing\.jsonl/, /no such file: check the URL/);
  });

  test("a .json file over HTTP is sniffed from one ranged read of its head, with no size probe and nothing kept", async () => {
    files["/lines.json"] = files["/data.jsonl"]!;
    requests.length = 0;
    assert.deepEqual(await loadDataset(`${base}/lines.json`).toArray(), bigRows(300));
    // The head (64 KiB, one ranged GET), then the whole body streamed (one plain GET).
    assert.deepEqual(requests.map((r) => r.range ?? null), ["bytes=0-65535", null]);
  });

  test("Parquet over HTTP with ranged reads (a Hub refs/convert/parquet-style path), and from a server without ranges", async () => {
    requests.length = 0;
    const url = `${base}/datasets/x/resolve/refs%2Fconvert%2Fparquet/default/train/0000.parquet`;
    const ds = loadDataset(url);
    assert.deepEqual(dropNulls(await ds.skip(2).toArray()), CHAT_ROWS.slice(2));
    assert.ok(requests.length > 0 && requests.every((r) => r.range), "every read is a ranged read");
    const rows = await loadDataset(`${base}/noranges.parquet`).toArray();
    assert.deepEqual(rows.map((r) => r.id), [0, 1, 2]);
  });
});
