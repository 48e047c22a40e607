// With no usable Vulkan driver, getDevice() fails with one message listing what it tried and what to install.
// Run in a child Node process whose Vulkan loader is pointed at a driver file that does not exist.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";

test("no adapter: the error lists what was tried and what to install", { skip: !!(globalThis as { Deno?: unknown }).Deno }, () => {
  const code = `import("./src/gpu/device.ts").then((m) => m.getDevice()).then(() => { console.log("GOT A DEVICE"); process.exit(0); }, (e) => { console.log(e.message); process.exit(3); });`;
  const r = spawnSync(process.execPath, ["--import", "tsx", "-e", code], {
    env: { ...process.env, VK_ICD_FILENAMES: "/nonexistent/icd.json", WEBTUNE_SWIFTSHADER_ICD: "/nonexistent/swiftshader.json" },
    encoding: "utf8",
    timeout: 60_000,
  });
  assert.equal(r.status, 3, `child exited ${r.status}: ${r.stdout}${r.stderr}`);
  assert.match(r.stdout, /No WebGPU adapter found/);
  assert.match(r.stdout, /Dawn requestAdapter\(\) with VK_ICD_FILENAMES=\/nonexistent\/icd\.json -> null/);
  assert.match(r.stdout, /apt-get install chromium/);
  assert.match(r.stdout, /mesa-vulkan-drivers/);
});
