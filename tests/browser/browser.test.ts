// Headless Chromium (the system's, through playwright-core) with WebGPU on SwiftShader, page on localhost.
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { after, before, test } from "node:test";
import { build } from "esbuild";
import { chromium, type Browser } from "playwright-core";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const QUIET = ["--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"];
const WEBGPU = ["--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader", "--enable-features=Vulkan"];

let server: Server;
let origin = "";

before(async () => {
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
    if (path === "/smoke.js") res.writeHead(200, { "content-type": "text/javascript" }).end(js);
    else if (path === "/") res.writeHead(200, { "content-type": "text/html" }).end(html);
    else res.writeHead(404).end();
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const addr = server.address();
  origin = `http://localhost:${typeof addr === "object" && addr ? addr.port : 0}`;
});

after(() => new Promise<void>((ok) => (server ? server.close(() => ok()) : ok())));

async function runPage(args: string[], query = ""): Promise<{ results: { name: string; ok: boolean; error?: string }[]; adapter?: string; console: string[] }> {
  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: [...QUIET, ...args], headless: true });
  try {
    const page = await browser.newPage();
    const console: string[] = [];
    page.on("console", (m) => m.type() === "error" && console.push(m.text()));
    page.on("pageerror", (e) => console.push(String(e)));
    await page.goto(`${origin}/${query}`);
    await page.waitForFunction(() => (globalThis as { __webtune?: unknown }).__webtune !== undefined, null, { timeout: 60_000 });
    const out = await page.evaluate(() => (globalThis as unknown as { __webtune: Promise<unknown> }).__webtune);
    return { ...(out as { results: { name: string; ok: boolean; error?: string }[]; adapter?: string }), console };
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
