// Headless Chromium (the system's, through playwright-core) with WebGPU on SwiftShader, page on localhost.
import assert from "node:assert/strict";
import { readFileSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { build } from "esbuild";
import { chromium, type Browser } from "playwright-core";
import { makeAdapter, makeModel } from "../../tools/make-model.ts";
import { fixtures } from "../fixtures.ts";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const QUIET = ["--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"];
const WEBGPU = ["--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader", "--enable-features=Vulkan"];

let server: Server;
let origin = "";
let modelDir = "";
/** Requests for model files (/model/…) the server has answered. */
let modelRequests = 0;
// The llama case of the PyTorch fixture: the page loads its model and adapter and must reproduce it.
const llama = fixtures("models")["llama"] as unknown as {
  model: Parameters<typeof makeModel>[1];
  adapter: Omit<Parameters<typeof makeAdapter>[1], "model">;
  padded: { loss: number };
  generate: { adapter: number[] };
};
// A sentence and the ids transformers gives it with the fixture tokenizer (tools/fixtures/tokenizer.py).
const sentence = (JSON.parse(readFileSync(new URL("../fixtures/tokenizer.json", import.meta.url), "utf8")) as {
  texts: Record<string, { text: string; ids: number[] }>;
}).texts["sentence"]!;
const CASE_TEXT = sentence.text;
const CASE_IDS = sentence.ids;

/** A file of the model directory, honouring Range requests as the Hub does. */
function serveFile(path: string, range: string | undefined, res: import("node:http").ServerResponse, head: boolean): void {
  let size: number;
  try {
    size = statSync(path).size;
  } catch {
    res.writeHead(404).end();
    return;
  }
  const m = range && /^bytes=(\d+)-(\d*)$/.exec(range);
  if (m) {
    const start = Number(m[1]);
    const end = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
    const body = readFileSync(path).subarray(start, end + 1);
    res.writeHead(206, { "content-range": `bytes ${start}-${end}/${size}`, "content-length": body.length, "accept-ranges": "bytes" });
    res.end(head ? undefined : body);
    return;
  }
  res.writeHead(200, { "content-length": size, "accept-ranges": "bytes" });
  res.end(head ? undefined : readFileSync(path));
}

before(async () => {
  modelDir = await mkdtemp(join(tmpdir(), "webtune-browser-"));
  await makeModel(modelDir, llama.model);
  await makeAdapter(join(modelDir, "adapter"), { model: modelDir, ...llama.adapter });
  const bundle = await build({
    entryPoints: [new URL("./smoke.ts", import.meta.url).pathname],
    bundle: true,
    format: "esm",
    platform: "browser",
    write: false,
    logLevel: "error",
  });
  const js = bundle.outputFiles[0]!.text;
  // Dawn (the `webgpu` package) is for Node only and must never reach a browser bundle.
  assert.doesNotMatch(js, /dawn\.node|node_modules\/webgpu/, "the browser bundle pulls in Dawn");
  const html = `<!doctype html><meta charset="utf-8"><title>webtune smoke</title><link rel="icon" href="data:,"><script type="module" src="/smoke.js"></script>`;
  server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path.startsWith("/model/")) {
      modelRequests++;
      serveFile(join(modelDir, path.slice("/model/".length)), req.headers.range, res, req.method === "HEAD");
      return;
    }
    if (path === "/requests") res.writeHead(200, { "content-type": "application/json" }).end(String(modelRequests));
    else if (path === "/case.json") res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ ...llama, text: CASE_TEXT }));
    else if (path === "/smoke.js") res.writeHead(200, { "content-type": "text/javascript" }).end(js);
    else if (path === "/") res.writeHead(200, { "content-type": "text/html" }).end(html);
    else res.writeHead(404).end();
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const addr = server.address();
  origin = `http://localhost:${typeof addr === "object" && addr ? addr.port : 0}`;
});

after(async () => {
  await new Promise<void>((ok) => (server ? server.close(() => ok()) : ok()));
  if (modelDir) await rm(modelDir, { recursive: true, force: true });
});

interface PageOut {
  results: { name: string; ok: boolean; error?: string }[];
  adapter?: string;
  report?: { loss?: number; tokens?: number[]; encoded?: number[]; progress_files?: string[] };
  console: string[];
}

async function runPage(args: string[], query = ""): Promise<PageOut> {
  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: [...QUIET, ...args], headless: true });
  try {
    const page = await browser.newPage();
    const console: string[] = [];
    page.on("console", (m) => m.type() === "error" && console.push(m.text()));
    page.on("pageerror", (e) => console.push(String(e)));
    await page.goto(`${origin}/${query}`);
    await page.waitForFunction(() => (globalThis as { __webtune?: unknown }).__webtune !== undefined, null, { timeout: 60_000 });
    const out = await page.evaluate(() => (globalThis as unknown as { __webtune: Promise<unknown> }).__webtune);
    return { ...(out as Omit<PageOut, "console">), console };
  } finally {
    await browser.close();
  }
}

test("Chromium + SwiftShader: device, matmul and a backward pass on the GPU", { timeout: 120_000 }, async () => {
  const { results, adapter, console } = await runPage(WEBGPU);
  assert.equal(results.length, 3, "device, matmul, backward");
  for (const r of results) assert.ok(r.ok, `${r.name}: ${r.error}`);
  assert.ok(adapter, "the page reports its adapter");
  assert.deepEqual(console, [], "no console errors");
});

test("Chromium without WebGPU: getDevice() says which browsers and flags", { timeout: 60_000 }, async () => {
  const { results } = await runPage(["--disable-features=Vulkan", "--disable-unsafe-webgpu"], "?mode=no-webgpu");
  for (const r of results) assert.ok(r.ok, `${r.name}: ${r.error}`);
  assert.equal(results.length, 1);
});

test("Chromium: a model and adapter from a URL (Cache API on reload) and a tokenizer from File objects reproduce PyTorch", { timeout: 300_000 }, async () => {
  const { results, report, console } = await runPage(WEBGPU, "?mode=model");
  for (const r of results) assert.ok(r.ok, `${r.name}: ${r.error}`);
  assert.equal(results.length, 3);
  assert.ok(Math.abs(report!.loss! - llama.padded.loss) <= 1e-4 * Math.abs(llama.padded.loss), `loss ${report!.loss} vs ${llama.padded.loss}`);
  assert.deepEqual(report!.tokens, llama.generate.adapter, "greedy tokens");
  assert.deepEqual(report!.encoded, CASE_IDS, "tokenizer ids");
  assert.ok(report!.progress_files!.includes("model.safetensors"), "progress_callback saw the weights download");
  assert.deepEqual(console, [], "no console errors");
});
