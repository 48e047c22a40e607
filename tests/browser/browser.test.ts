// Headless Chromium (the system's, through playwright-core) with WebGPU on SwiftShader, page on localhost.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import type { Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { chromium, type Browser } from "playwright-core";
import { makeAdapter, makeModel } from "../../tools/make-model.ts";
import { fixtures } from "../fixtures.ts";

import { bundlePage, CHROMIUM, pageResults, QUIET, serveFile, servePage, WEBGPU } from "./harness.ts";

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

before(async () => {
  modelDir = await mkdtemp(join(tmpdir(), "webtune-browser-"));
  await makeModel(modelDir, llama.model);
  await makeAdapter(join(modelDir, "adapter"), { model: modelDir, ...llama.adapter });
  const page = await servePage("webtune smoke", await bundlePage(new URL("./smoke.ts", import.meta.url)), (path, req, res) => {
    if (path.startsWith("/model/")) {
      modelRequests++;
      serveFile(join(modelDir, path.slice("/model/".length)), req, res);
    } else if (path === "/requests") res.writeHead(200, { "content-type": "application/json" }).end(String(modelRequests));
    else if (path === "/case.json") res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ ...llama, text: CASE_TEXT }));
    else return false;
    return true;
  });
  ({ server, origin } = page);
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
    const out = await pageResults<Omit<PageOut, "console">>(page, `${origin}/${query}`);
    return { ...out, console };
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
