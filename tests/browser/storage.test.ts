// Checkpoint storage on IndexedDB, in headless Chromium (the system's, through playwright-core), page on
// localhost. The page (storage-page.ts) runs the checks and reports them on window.__result.
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { after, before, test } from "node:test";
import { build } from "esbuild";
import { chromium, type Browser, type Page } from "playwright-core";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const QUIET = ["--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"];

let server: Server;
let origin = "";
let browser: Browser;

before(async () => {
  const bundle = await build({
    entryPoints: [new URL("./storage-page.ts", import.meta.url).pathname],
    bundle: true,
    format: "esm",
    platform: "browser",
    write: false,
    logLevel: "error",
  });
  const js = bundle.outputFiles[0]!.text;
  assert.doesNotMatch(js, /dawn\.node|node_modules\/webgpu/, "the browser bundle pulls in Dawn");
  const html = `<!doctype html><meta charset="utf-8"><title>webtune storage</title><link rel="icon" href="data:,"><script type="module" src="/storage.js"></script>`;
  server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/storage.js") res.writeHead(200, { "content-type": "text/javascript" }).end(js);
    else if (path === "/") res.writeHead(200, { "content-type": "text/html" }).end(html);
    else res.writeHead(404).end();
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const addr = server.address();
  origin = `http://localhost:${typeof addr === "object" && addr ? addr.port : 0}`;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: QUIET, headless: true });
});

after(async () => {
  await browser?.close();
  await new Promise<void>((ok) => (server ? server.close(() => ok()) : ok()));
});

type Results = { name: string; ok: boolean; error?: string }[];

/** Loads the page at `query` and waits for its results. */
async function results(page: Page, query: string): Promise<Results> {
  await page.goto(`${origin}/${query}`);
  await page.waitForFunction(() => (globalThis as { __result?: unknown }).__result !== undefined, null, { timeout: 60_000 });
  return (await page.evaluate(() => (globalThis as unknown as { __result: Promise<unknown> }).__result)) as Results;
}

test("Chromium: checkpoints in IndexedDB: chunked files, interrupted writes unseen, delete, rotate; kept across a reload", { timeout: 180_000 }, async () => {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const console: string[] = [];
    page.on("console", (m) => m.type() === "error" && console.push(m.text()));
    page.on("pageerror", (e) => console.push(String(e)));
    const first = await results(page, "");
    for (const r of first) assert.ok(r.ok, `${r.name}: ${r.error}`);
    assert.equal(first.length, 8, first.map((r) => r.name).join("\n"));
    const second = await results(page, "?mode=reload");
    for (const r of second) assert.ok(r.ok, `${r.name}: ${r.error}`);
    assert.equal(second.length, 1);
    assert.deepEqual(console, [], "no console errors");
  } finally {
    await context.close();
  }
});
