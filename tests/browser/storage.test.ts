// Checkpoint storage on IndexedDB, in headless Chromium (the system's, through playwright-core), page on
// localhost. The page (storage-page.ts) runs the checks and reports them on window.__result. The quota test
// shrinks the origin's real quota through DevTools (Storage.overrideQuotaForOrigin).
import assert from "node:assert/strict";
import type { Server } from "node:http";
import { after, before, test } from "node:test";
import { chromium, type Browser, type Page } from "playwright-core";

import { bundlePage, CHROMIUM, pageResults, QUIET, servePage } from "./harness.ts";

let server: Server;
let origin = "";
let browser: Browser;

before(async () => {
  ({ server, origin } = await servePage("webtune storage", await bundlePage(new URL("./storage-page.ts", import.meta.url))));
  browser = await chromium.launch({ executablePath: CHROMIUM, args: QUIET, headless: true });
});

after(async () => {
  await browser?.close();
  await new Promise<void>((ok) => (server ? server.close(() => ok()) : ok()));
});

type Results = { name: string; ok: boolean; error?: string }[];

/** Loads the page at `query` and waits for its results. */
function results(page: Page, query: string): Promise<Results> {
  return pageResults(page, `${origin}/${query}`, "__result");
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
    assert.equal(first.length, 9, first.map((r) => r.name).join("\n"));
    const second = await results(page, "?mode=reload");
    for (const r of second) assert.ok(r.ok, `${r.name}: ${r.error}`);
    assert.equal(second.length, 1);
    assert.deepEqual(console, [], "no console errors");
  } finally {
    await context.close();
  }
});

test("Chromium: a checkpoint write past the storage quota fails saying what to delete; nothing half-written is listed", { timeout: 120_000 }, async () => {
  // A real quota, made small: DevTools' Storage.overrideQuotaForOrigin (Chromium's own quota enforcement; no
  // mock of IndexedDB), in a fresh context so that nothing else of this origin counts against it.
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await results(page, "?mode=idle"); // the origin must be open for its quota to be overridden
    const cdp = await context.newCDPSession(page);
    await cdp.send("Storage.overrideQuotaForOrigin", { origin, quotaSize: 24 * 1024 * 1024 });
    const got = await results(page, "?mode=quota");
    assert.equal(got.length, 1);
    for (const r of got) assert.ok(r.ok, `${r.name}: ${r.error}`);
  } finally {
    await context.close();
  }
});
