// Model file sources: a local HTTP server (with and without Range support) stands in for a URL base and for
// the Hub; Node's global File stands in for a browser's File list; a fake Cache API and directory handle
// for the browser's.
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { DirectoryHandleSource, FileListSource } from "../../src/io/blob.ts";
import { HttpSource, type ProgressInfo } from "../../src/io/http.ts";
import { LocalDirectorySource } from "../../src/io/local.ts";
import { openSource } from "../../src/io/open.ts";
import { openWeights, writeSafetensors } from "../../src/models/safetensors.ts";

let dir = "";
const big = new Float32Array(300_000).map((_, i) => (i % 1000) / 7 - 50); // 1.2 MB: several body chunks
const small = Float32Array.from([1, 2, 3, 4, 5, 6]);
let weights: Uint8Array<ArrayBuffer>;

interface Served {
  server: Server;
  base: string;
  log: { method: string; url: string; range?: string; auth?: string }[];
}

/**
 * Serves `dir` under any prefix ending in "/m/" or "/resolve/<rev>/"; honours Range when `ranges`.
 * "/private/..." answers 401 and "/gated/..." 403, like the Hub; other missing files 404.
 */
async function serve(ranges: boolean): Promise<Served> {
  const log: Served["log"] = [];
  const server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    const url = decodeURIComponent(req.url ?? "");
    log.push({ method: req.method ?? "", url, range: req.headers.range, auth: req.headers.authorization });
    if (url.startsWith("/private/")) {
      res.writeHead(401, { "X-Error-Code": "RepoNotFound" }).end();
      return;
    }
    if (url.startsWith("/gated/")) {
      res.writeHead(403, { "X-Error-Code": "GatedRepo" }).end();
      return;
    }
    const m = /^\/(?:m|[^/]+\/[^/]+\/resolve\/[^/]+)\/(.+)$/.exec(url);
    let data: Buffer;
    try {
      data = await readFile(join(dir, m?.[1] ?? "\0"));
    } catch {
      res.writeHead(404, url.includes("/resolve/") ? { "X-Error-Code": "EntryNotFound" } : {}).end("not found");
      return;
    }
    const r = ranges ? /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? "") : null;
    let body = data;
    if (r) {
      const [s, e] = [Number(r[1]), Math.min(Number(r[2]), data.length - 1)];
      if (s >= data.length) {
        res.writeHead(416, { "Content-Range": `bytes */${data.length}` }).end();
        return;
      }
      body = data.subarray(s, e + 1);
      res.writeHead(206, { "Content-Range": `bytes ${s}-${e}/${data.length}`, "Content-Length": body.length, "Accept-Ranges": "bytes" });
    } else {
      res.writeHead(200, { "Content-Length": body.length });
    }
    if (req.method === "HEAD") {
      res.end();
      return;
    }
    for (let i = 0; i < body.length; i += 65536) {
      if (!res.write(body.subarray(i, i + 65536))) await new Promise((ok) => res.once("drain", ok));
    }
    res.end();
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  return { server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, log };
}

let withRanges: Served;
let noRanges: Served;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "webtune-src-"));
  weights = writeSafetensors({
    big: { dtype: "F32", shape: [300, 1000], data: big },
    "model.norm.weight": { dtype: "F32", shape: [6], data: small },
  });
  await writeFile(join(dir, "model.safetensors"), weights);
  await writeFile(join(dir, "config.json"), JSON.stringify({ model_type: "llama", hidden_size: 8 }));
  await mkdir(join(dir, "sub"));
  await writeFile(join(dir, "sub", "x.txt"), "nested");
  withRanges = await serve(true);
  noRanges = await serve(false);
});

after(async () => {
  for (const s of [withRanges, noRanges]) await new Promise((ok) => s.server.close(ok));
  await rm(dir, { recursive: true, force: true });
});

/** Reads the same things through any source of `dir`. */
async function checkReads(src: Awaited<ReturnType<typeof openSource>>): Promise<void> {
  assert.equal(await src.exists("config.json"), true);
  assert.equal(await src.exists("nope.json"), false);
  assert.deepEqual(await src.json("config.json"), { model_type: "llama", hidden_size: 8 });
  assert.equal(await src.text("sub/x.txt"), "nested");
  assert.equal(await src.size("model.safetensors"), weights.length);
  assert.deepEqual(await src.read("model.safetensors", 100, 117), weights.subarray(100, 117));
  assert.deepEqual(await src.read("model.safetensors", 0, 0), new Uint8Array(0));
  await assert.rejects(src.read("model.safetensors", 10, weights.length + 1), /model\.safetensors.*bytes \[10, \d+\) asked for, but the file has \d+ bytes/);
  await assert.rejects(src.read("nope.json"), /nope\.json/);
  const w = await openWeights(src);
  assert.deepEqual(w.names, ["big", "model.norm.weight"]);
  assert.deepEqual(await w.readF32("model.norm.weight"), small);
  assert.deepEqual(await w.readF32("big"), big);
}

test("a local directory", async () => {
  const src = await openSource(dir);
  assert.ok(src instanceof LocalDirectorySource);
  await checkReads(src);
});

test("a URL base whose server honours Range: ranged reads only", async () => {
  const events: ProgressInfo[] = [];
  const src = await openSource(`${withRanges.base}/m/`, { progress_callback: (e) => events.push(e) });
  assert.ok(src instanceof HttpSource);
  withRanges.log.length = 0;
  await checkReads(src);
  const st = withRanges.log.filter((r) => r.url === "/m/model.safetensors" && r.method === "GET");
  assert.ok(st.every((r) => r.range), "every GET of the weights is ranged");
  // Progress over the ranged reads of model.safetensors: increasing, ending with one "done" at the file size.
  const p = events.filter((e) => e.file === "model.safetensors");
  for (let i = 1; i < p.length; i++) assert.ok(p[i]!.loaded >= p[i - 1]!.loaded);
  const done = p.filter((e) => e.status === "done");
  assert.equal(done.length, 1);
  assert.equal(done[0]!.loaded, weights.length);
  assert.equal(done[0]!.total, weights.length);
});

test("a URL base whose server ignores Range: each file downloaded once, with progress", async () => {
  const events: ProgressInfo[] = [];
  const src = await openSource(`${noRanges.base}/m`, { progress_callback: (e) => events.push(e) });
  noRanges.log.length = 0;
  await checkReads(src);
  const gets = noRanges.log.filter((r) => r.url === "/m/model.safetensors" && r.method === "GET");
  assert.equal(gets.length, 1, JSON.stringify(gets));
  const p = events.filter((e) => e.file === "model.safetensors");
  assert.ok(p.length > 3, `${p.length} progress events`);
  for (let i = 1; i < p.length; i++) assert.ok(p[i]!.loaded > p[i - 1]!.loaded || p[i]!.status === "done");
  assert.deepEqual(p.at(-1), { status: "done", name: src.name, file: "model.safetensors", loaded: weights.length, total: weights.length, progress: 100 });
  assert.equal(p.filter((e) => e.status === "done").length, 1);
});

test("HTTP 404 names the URL and says what to check", async () => {
  const src = await openSource(`${withRanges.base}/m`);
  await assert.rejects(src.read("missing.json"), new RegExp(`${withRanges.base}/m/missing\\.json: HTTP 404 .*check the URL base`));
  const hub = await openSource("owner/name", { endpoint: withRanges.base });
  await assert.rejects(hub.json("missing.json"), /\/owner\/name\/resolve\/main\/missing\.json: HTTP 404 .*EntryNotFound.*check the model id "owner\/name" and the revision "main"/);
  // A private repository: exists() does not pretend the file is merely missing.
  const priv = await openSource("private/model", { endpoint: withRanges.base });
  await assert.rejects(priv.exists("model.safetensors"), /private\/model\/resolve\/main\/model\.safetensors: HTTP 401.*`token` option/);
  const gated = await openSource("gated/model", { endpoint: withRanges.base, token: "hf_x" });
  await assert.rejects(gated.read("config.json"), /HTTP 403.*gated: accept its terms on http:\/\/127\.0\.0\.1:\d+\/gated\/model/);
});

test("a Hub id maps to {endpoint}/{id}/resolve/{revision}/{file}, with the token as a bearer", async () => {
  withRanges.log.length = 0;
  const hub = await openSource("owner/name", { endpoint: `${withRanges.base}/`, token: "hf_secret" });
  assert.equal(hub.name, `owner/name on ${withRanges.base}`);
  assert.deepEqual(await hub.json("config.json"), { model_type: "llama", hidden_size: 8 });
  assert.deepEqual(withRanges.log.at(-1), { method: "GET", url: "/owner/name/resolve/main/config.json", range: undefined, auth: "Bearer hf_secret" });
  const rev = await openSource("owner/name", { endpoint: withRanges.base, revision: "v1.0" });
  await checkReads(rev);
  assert.ok(withRanges.log.at(-1)!.url.startsWith("/owner/name/resolve/v1.0/"));
  // A custom fetch sees the URLs.
  const seen: string[] = [];
  const viaFetch = await openSource("a-b/c.d_e", { endpoint: "https://hub.example", fetch: async (url) => (seen.push(url), new Response("{}")) });
  assert.deepEqual(await viaFetch.json("config.json"), {});
  assert.deepEqual(seen, ["https://hub.example/a-b/c.d_e/resolve/main/config.json"]);
});

test("the Cache API (cache: true; a browser's default) stores files and later sources reuse them", async () => {
  const store = new Map<string, Response>();
  const fake = {
    open: async (name: string) => {
      assert.equal(name, "webtune-models");
      return {
        match: async (url: string) => store.get(url)?.clone(),
        put: async (url: string, res: Response) => void store.set(url, new Response(await res.arrayBuffer(), { headers: res.headers })),
      };
    },
  };
  // Deno has a Cache API of its own (used only when asked for): shadow it with the fake, then restore it.
  const own = Object.getOwnPropertyDescriptor(globalThis, "caches");
  Object.defineProperty(globalThis, "caches", { value: fake, configurable: true, writable: true });
  try {
    noRanges.log.length = 0;
    const events: ProgressInfo[] = [];
    await checkReads(await openSource(`${noRanges.base}/m`, { cache: true, progress_callback: (e) => events.push(e) }));
    assert.ok(store.has(`${noRanges.base}/m/model.safetensors`));
    assert.equal(events.filter((e) => e.file === "model.safetensors" && e.status === "done").length, 1);
    // A second source reads every existing file from the cache (missing files still ask the server).
    const fetched = () => noRanges.log.filter((r) => r.method === "GET" && !r.url.includes("nope")).length;
    const before = fetched();
    await checkReads(await openSource(`${noRanges.base}/m`, { cache: true }));
    assert.equal(fetched(), before, "the second source read everything from the cache");
    // cache: false goes to the network.
    const src = await openSource(`${noRanges.base}/m`, { cache: false });
    await src.read("config.json");
    assert.equal(fetched(), before + 1);
  } finally {
    if (own) Object.defineProperty(globalThis, "caches", own);
    else delete (globalThis as { caches?: unknown }).caches;
  }
});

/** A Node File, with the webkitRelativePath a browser folder picker gives. */
function file(bytes: Uint8Array<ArrayBuffer> | string, path: string): File {
  const f = new File([bytes], path.split("/").at(-1)!);
  Object.defineProperty(f, "webkitRelativePath", { value: path });
  return f;
}

test("browser: File objects (an array, as a FileList would be)", async () => {
  const cfg = JSON.stringify({ model_type: "llama", hidden_size: 8 });
  const files = [file("decoy", "SmolLM/sub/deeper/config.json"), file(cfg, "SmolLM/config.json"), file(weights, "SmolLM/model.safetensors"), file("nested", "SmolLM/sub/x.txt")];
  const src = await openSource(files);
  assert.ok(src instanceof FileListSource);
  assert.equal(src.name, 'the folder "SmolLM" (4 files)');
  await checkReads(src);
  // Plain names (drag and drop) match by name.
  const plain = await openSource([new File([cfg], "config.json")]);
  assert.deepEqual(await plain.json("config.json"), { model_type: "llama", hidden_size: 8 });
  await assert.rejects(plain.size("model.safetensors"), /model\.safetensors not found in the 1 files given/);
});

test("browser: a FileSystemDirectoryHandle", async () => {
  const notFound = () => Object.assign(new Error("not found"), { name: "NotFoundError" });
  const handle = (name: string, entries: Record<string, File | object>): object => ({
    kind: "directory",
    name,
    getFileHandle: async (n: string) => {
      const f = entries[n];
      if (!(f instanceof File)) throw notFound();
      return { kind: "file", getFile: async () => f };
    },
    getDirectoryHandle: async (n: string) => {
      const d = entries[n];
      if (!d || d instanceof File) throw notFound();
      return d;
    },
  });
  const root = handle("SmolLM", {
    "config.json": new File([JSON.stringify({ model_type: "llama", hidden_size: 8 })], "config.json"),
    "model.safetensors": new File([weights], "model.safetensors"),
    sub: handle("sub", { "x.txt": new File(["nested"], "x.txt") }),
  });
  const src = await openSource(root as FileSystemDirectoryHandle);
  assert.ok(src instanceof DirectoryHandleSource);
  await checkReads(src);
});

test("what openSource refuses", async () => {
  await assert.rejects(openSource("./no/such/dir"), /\.\/no\/such\/dir: no such directory, and not a Hub model id "owner\/name" either/);
  await assert.rejects(openSource(join(dir, "config.json")), /is a file; give the model's directory/);
  await assert.rejects(openSource(42 as never), /openSource: got 42; expected a local directory path.*Hub model id.*FileSystemDirectoryHandle/);
  await assert.rejects(openSource({ foo: 1 } as never), /openSource: got a plain object; expected/);
  await assert.rejects(openSource([1] as never), /item 0 of the list is 1, not a File/);
  await assert.rejects(openSource([]), /the list of files is empty/);
});
