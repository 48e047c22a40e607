// The whole test suite, as the README and CI run it:
//   1. Node + Dawn (SwiftShader when there is no GPU): every tests/**/*.test.ts, the browser tests included
//      (they drive headless Chromium with WebGPU through playwright-core);
//   2. Deno + its own WebGPU (Mesa llvmpipe when there is no GPU): the smoke subset below, side by side with 1.
// Ends with one line "webtune: N passed, N failed" and a non-zero exit on any failure.
import { spawn } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";

const root = join(import.meta.dirname, "..");
const DENO_SMOKE = [
  "tests/gpu/device.test.ts",
  "tests/tensor/autograd.test.ts",
  "tests/ops/matmul.test.ts",
  "tests/ops/reduce.test.ts",
  "tests/ops/kv_cache.test.ts",
  "tests/models/safetensors.test.ts",
  "tests/io/files.test.ts",
  "tests/io/bytes.test.ts",
  // Checkpoint storage and atomic saves through Deno's fs (fsync, renames, crash cleanup).
  "tests/trainer/storage.test.ts",
  // The kill -9 fault battery with Deno children (Deno's fs under SIGKILL) and a killed Deno training run.
  "tests/trainer/faults.test.ts",
  "tests/data/tokenizer.test.ts",
  // Deno's wgpu has shader-f16 on llvmpipe (Node's Dawn + SwiftShader does not).
  "tests/ops/f16_weights.test.ts",
  "tests/models/f16.test.ts",
  // Their f16 cases (an f16 embedding table, dtype "float16"'s memory) run only where shader-f16 is.
  "tests/ops/quant_matmul.test.ts",
  "tests/models/memory.test.ts",
  // 200-step memorisation on an nf4 base: affordable on llvmpipe only (it skips on Node).
  "tests/trainer/quantized.test.ts",
];

function testFiles(dir: string): string[] {
  return readdirSync(dir)
    .flatMap((f) => {
      const p = join(dir, f);
      return statSync(p).isDirectory() ? testFiles(p) : p.endsWith(".test.ts") ? [relative(root, p)] : [];
    })
    .sort();
}

/** Runs a command, its stdout and stderr teed to ours as they come (`live`), or only collected. */
function run(cmd: string, args: string[], live = true): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const env = { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? "/tmp", NO_COLOR: "1" };
    const child = spawn(cmd, args, { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    const tee = (d: Buffer) => {
      out += d.toString();
      if (live) process.stdout.write(d);
    };
    child.stdout.on("data", tee);
    child.stderr.on("data", tee);
    child.on("close", (code) => resolve({ code: code ?? 1, out }));
  });
}

/** Passed and failed counts from a runner's closing lines; a runner that crashed counts as one failure. */
function tally(r: { code: number; out: string }, pass: RegExp, fail: RegExp): [number, number] {
  const p = Number(pass.exec(r.out)?.[1] ?? 0);
  const f = Number(fail.exec(r.out)?.[1] ?? 0);
  return [p, r.code !== 0 && f === 0 ? 1 : f];
}

// The two runners side by side: a test's GPU work is mostly one thread on a CPU adapter, so a 2-core machine runs
// two Node test files at a time and the Deno set beside them. Node's output streams; Deno's is printed after Node's.
const DENO_PASS = /(\d+) passed (?:\(\d+ steps?\) )?\| \d+ failed/;
const DENO_FAIL = /\d+ passed (?:\(\d+ steps?\) )?\| (\d+) failed/;
const denoTest = () => run(join(root, "node_modules/.bin/deno"), ["test", "-A", "--no-check", ...DENO_SMOKE], false);
const denoDone = (async () => {
  let r = await denoTest();
  let said = "";
  // Deno's WebGPU (wgpu on llvmpipe) now and then aborts in glibc's allocator while the process exits, after every
  // test has run and the summary says 0 failed. That crash is not a test's: say so, and run the set once more,
  // whose result is the one counted.
  const summary = /^ok \| \d+ passed (?:\(\d+ steps?\) )?\| 0 failed/m.exec(r.out);
  if (r.code !== 0 && summary && /corrupted|double free|free\(\)|malloc/.test(r.out.slice(summary.index))) {
    said = `${r.out}\nDeno aborted while exiting after all its tests passed (exit ${r.code}); running the Deno set again\n`;
    r = await denoTest();
  }
  return { ...r, shown: said + r.out };
})();
// Two test files at a time (each mostly one thread: a Dawn/SwiftShader device, or headless Chromium).
const nodeRun = await run(process.execPath, ["--import", "tsx", "--test", "--test-concurrency=2", "--test-reporter=spec", ...testFiles(join(root, "tests"))]);
const [nodePass, nodeFail] = tally(nodeRun, /^ℹ pass (\d+)$/m, /^ℹ fail (\d+)$/m);
const denoRun = await denoDone;
process.stdout.write(denoRun.shown);
const [denoPass, denoFail] = tally(denoRun, DENO_PASS, DENO_FAIL);

console.log(`\nNode + Dawn: ${nodePass} passed, ${nodeFail} failed; Deno: ${denoPass} passed, ${denoFail} failed`);
console.log(`webtune: ${nodePass + denoPass} passed, ${nodeFail + denoFail} failed`);
process.exit(nodeFail + denoFail > 0 ? 1 : 0);
