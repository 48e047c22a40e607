// SFTTrainer in headless Chromium (the system's, through playwright-core) with WebGPU on SwiftShader: LoRA
// checkpoints in IndexedDB resume exactly, a run whose device is destroyed mid-run recovers by itself (a new
// device, the model reloaded, the last checkpoint) with the uninterrupted run's results, and the checkpoints
// survive a page reload. The page (trainer-page.ts) loads a tiny llama (tools/make-model.ts, served with Range
// support under /model/) and its tokenizer from the URL, and reports on window.__webtune.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import type { Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { chromium, type Browser, type Page } from "playwright-core";
import { makeModel } from "../../tools/make-model.ts";
import type { PageReport, RunReport } from "./trainer-page.ts";

import { bundlePage, CHROMIUM, pageResults, QUIET, serveFile, servePage, WEBGPU } from "./harness.ts";

let server: Server;
let origin = "";
let modelDir = "";
let browser: Browser;

before(async () => {
  modelDir = await mkdtemp(join(tmpdir(), "webtune-browser-trainer-"));
  await makeModel(modelDir, { arch: "llama" });
  const page = await servePage("webtune trainer", await bundlePage(new URL("./trainer-page.ts", import.meta.url)), (path, req, res) => {
    if (!path.startsWith("/model/")) return false;
    serveFile(join(modelDir, path.slice("/model/".length)), req, res);
    return true;
  });
  ({ server, origin } = page);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: [...QUIET, ...WEBGPU], headless: true });
});

after(async () => {
  await browser?.close();
  await new Promise<void>((ok) => (server ? server.close(() => ok()) : ok()));
  if (modelDir) await rm(modelDir, { recursive: true, force: true });
});

type Results = { name: string; ok: boolean; error?: string }[];

/** Loads the page at `query` and waits for its results. */
function load(page: Page, query: string): Promise<{ results: Results; report: PageReport }> {
  return pageResults(page, `${origin}/${query}`);
}

const fmt = (xs: number[]) => xs.map((x) => x.toPrecision(9)).join(", ");

test("Chromium + SwiftShader: SFTTrainer (LoRA) checkpoints to IndexedDB, resumes exactly, recovers from a destroyed device, and the checkpoints survive a reload", { timeout: 300_000 }, async () => {
  const db = `webtune-test-${randomBytes(6).toString("hex")}`;
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    page.setDefaultTimeout(240_000);
    const console: string[] = [];
    // Optional files a URL model source probes for (HEAD): a 404 there is Chromium's "Failed to load resource"
    // error, which a page cannot silence. The tokenizer probes chat_template.* on each load, and each checkpoint
    // save probes the tokenizer files to copy (SFTTrainer.modelFiles). Anything else is an error.
    const probes: string[] = [];
    page.on("console", (m) => {
      if (m.type() !== "error") return;
      const url = m.location().url;
      if (/status of 404/.test(m.text()) && /\/model\/chat_template\.(jinja|json)$/.test(url)) probes.push(url.slice(origin.length));
      else console.push(`${m.text()} (${url})`);
    });
    page.on("pageerror", (e) => console.push(String(e)));

    const t0 = performance.now();
    const { results, report } = await load(page, `?db=${db}`);
    for (const r of results) assert.ok(r.ok, `${r.name}: ${r.error}`);
    assert.equal(results.length, 4);
    const full = report.full!;
    const stopped = report.stopped!;
    const resumed = report.resumed!;
    const steps = (r: RunReport) => Object.keys(r.steps).map(Number).sort((a, b) => a - b);

    // 1. The uninterrupted run: 6 logged steps with finite losses, checkpoints every 2 steps.
    assert.equal(full.global_step, 6);
    assert.deepEqual(steps(full), [1, 2, 3, 4, 5, 6]);
    for (const s of steps(full)) assert.ok(Number.isFinite(full.steps[s]!.loss) && Number.isFinite(full.steps[s]!.grad_norm), `step ${s} finite`);
    assert.notEqual(full.steps[1]!.loss, full.steps[6]!.loss, "training moves the loss");
    assert.deepEqual(full.checkpoints, ["checkpoint-2", "checkpoint-4", "checkpoint-6"]);

    // 2. Stopped by the callback at step 2 (checkpoint-2 written), the same steps 1-2 as the full run.
    assert.equal(stopped.global_step, 2);
    assert.deepEqual(steps(stopped), [1, 2]);
    assert.deepEqual(stopped.checkpoints, ["checkpoint-2"]);
    for (const s of [1, 2]) assert.deepEqual(stopped.steps[s], full.steps[s], `step ${s} of the stopped run`);

    // 3. The resumed run logs steps 3-6 only, bit-identical to the uninterrupted run (loss, grad_norm, lr).
    assert.equal(resumed.global_step, 6);
    assert.deepEqual(steps(resumed).filter((s) => s > 2), [3, 4, 5, 6]);
    for (const s of [3, 4, 5, 6]) {
      const [got, want] = [resumed.steps[s]!, full.steps[s]!];
      assert.ok(got.loss === want.loss, `step ${s} loss: resumed ${got.loss}, uninterrupted ${want.loss}`);
      assert.ok(got.grad_norm === want.grad_norm, `step ${s} grad_norm: resumed ${got.grad_norm}, uninterrupted ${want.grad_norm}`);
      assert.ok(got.learning_rate === want.learning_rate, `step ${s} learning_rate: resumed ${got.learning_rate}, uninterrupted ${want.learning_rate}`);
    }
    assert.deepEqual(resumed.checkpoints, ["checkpoint-2", "checkpoint-4", "checkpoint-6"]);
    // The same adapter at the end: the same logits.
    assert.ok(full.logits && resumed.logits && full.logits.length > 0);
    assert.deepEqual(resumed.logits, full.logits, "the resumed model's logits equal the uninterrupted model's");

    // 4. device.destroy() at step 3: the trainer gets a new device, loads the model again from its URL, restores
    // checkpoint-2 from IndexedDB and ends as the uninterrupted run, bit for bit.
    const lost = report.lost!;
    assert.deepEqual(lost.destroyed, [3]);
    assert.equal(lost.global_step, 6);
    assert.deepEqual(lost.recoveries, [{ device_lost_recovery: 1, lost_at_step: 3, resumed_from_step: 2, step: 2 }]);
    assert.ok(lost.warnings.some((w) => /GPU device was lost at step 3 .*continues from checkpoint-2/.test(w)), lost.warnings.join("\n"));
    for (const s of [1, 2, 3, 4, 5, 6]) {
      const [got, want] = [lost.steps[s]!, full.steps[s]!];
      assert.ok(got.loss === want.loss && got.grad_norm === want.grad_norm, `step ${s} after the recovery: ${got.loss}/${got.grad_norm}, uninterrupted ${want.loss}/${want.grad_norm}`);
    }
    assert.deepEqual(lost.checkpoints, ["checkpoint-2", "checkpoint-4", "checkpoint-6"]);
    assert.deepEqual(lost.logits, full.logits, "the recovered run's logits equal the uninterrupted run's");
    const t1 = performance.now();

    // 4. A reload of the page: the checkpoints are still in IndexedDB, and checkpoint-6 is the trained adapter.
    const again = await load(page, `?db=${db}&mode=reload`);
    for (const r of again.results) assert.ok(r.ok, `${r.name}: ${r.error}`);
    assert.equal(again.results.length, 1);
    assert.deepEqual(again.report.listed, ["checkpoint-2", "checkpoint-4", "checkpoint-6"]);
    const got = again.report.reloaded_logits!;
    const want = resumed.logits!;
    assert.equal(got.length, want.length);
    const bad = got.findIndex((x, i) => x !== want[i]);
    assert.equal(bad, -1, bad < 0 ? "" : `logit ${bad}: from checkpoint-6 ${got[bad]}, trained ${want[bad]}; first values ${fmt(got.slice(0, 4))} vs ${fmt(want.slice(0, 4))}`);
    const t2 = performance.now();
    const cleanup = await load(page, `?db=${db}&mode=cleanup`);
    for (const r of cleanup.results) assert.ok(r.ok, `${r.name}: ${r.error}`);
    assert.equal(cleanup.results.length, 1);

    assert.deepEqual(console, [], "no console errors");
    process.stderr.write(
      `# trainer in Chromium on ${report.adapter}: full ${full.seconds.toFixed(1)} s, stopped ${stopped.seconds.toFixed(1)} s, ` +
        `resumed ${resumed.seconds.toFixed(1)} s, device lost ${lost.seconds.toFixed(1)} s (page ${((t1 - t0) / 1000).toFixed(1)} s); reload ${((t2 - t1) / 1000).toFixed(1)} s; ` +
        `losses ${fmt(steps(full).map((s) => full.steps[s]!.loss))}; ${probes.length} optional-file 404s (${[...new Set(probes)].join(", ")})` +
        (report.warnings.length ? `; warnings: ${[...new Set(report.warnings)].join(" | ")}` : "") + "\n",
    );
  } finally {
    await context.close();
  }
});
