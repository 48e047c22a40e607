// webtune as a package, as a user gets it: the library is built (tools/tsconfig.build.json → lib/), `npm pack`ed,
// and the tarball installed with npm into an empty project in a temporary folder. There, with no loader:
//   - `node app.mjs` imports "webtune" and trains three LoRA steps of the embedded default model, saving an adapter;
//   - `deno run -A app.ts` does the same, resolving "webtune" through that project's package.json (node_modules);
//   - the installed `webtune` bin: `npx webtune --help`, `webtune sft --help` and errors under Node (one of them
//     after Dawn's device is up), `webtune sft --max_steps 3` under Deno (Deno running the bin's module; a Node run
//     of it would train the same SFTTrainer app.mjs trains, another ~25 s of SwiftShader compiles);
//   - a fresh Vite app importing "webtune" is built and trains three steps in headless Chromium (SwiftShader).
// Deno and Node run with XDG_RUNTIME_DIR unset: their stderr must not carry Wayland's "XDG_RUNTIME_DIR is invalid
// or not set" line (src/gpu/device.ts withRuntimeDir), while a real error still shows there.
// The build skips type checking (--noCheck): `npm test` type-checks these same sources (tsc --noEmit) first, and
// `npm pack`'s prepack (build:lib) checks them on a release. The install reads the npm cache (--prefer-offline),
// which `npm ci` filled with these same dependencies.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { extname, join, relative } from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import { build } from "vite";
import { CHROMIUM, QUIET, WEBGPU } from "../browser/harness.ts";

const ROOT = join(import.meta.dirname, "../..");
const DENO = join(ROOT, "node_modules/.bin/deno");
const XDG_LINE = /XDG_RUNTIME_DIR is invalid or not set/;

let work = ""; // the temporary folder: the tarball and the user's project
let project = "";
let tarball = "";
let packed: { path: string; size: number }[] = [];
let nodeApp: Promise<Run> | null = null;
let browserRun: Promise<Awaited<ReturnType<typeof browserApp>>> | null = null;

type Run = { code: number; stdout: string; stderr: string };

/** Runs a command to its end; the environment has no npm_* variables of this `npm test` (a user's shell has none). */
function run(cmd: string, args: string[], options: { cwd: string; env?: Record<string, string | undefined>; unset?: string[] }): Promise<Run> {
  const env: Record<string, string | undefined> = { ...process.env, NO_COLOR: "1", ...options.env };
  for (const k of Object.keys(env)) if (/^npm_/i.test(k) || options.unset?.includes(k)) delete env[k];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: options.cwd, env: env as NodeJS.ProcessEnv, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

const show = (r: Run) => `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
const seconds = (t0: number) => ((performance.now() - t0) / 1000).toFixed(1);

before(async () => {
  let t0 = performance.now();
  work = await mkdtemp(join(tmpdir(), "webtune-package-"));
  const gen = await run(process.execPath, ["tools/gen-shaders.mjs"], { cwd: ROOT });
  assert.equal(gen.code, 0, show(gen));
  rmSync(join(ROOT, "lib"), { recursive: true, force: true }); // no module of an older build may ship
  const tsc = await run(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tools/tsconfig.build.json", "--noCheck"], { cwd: ROOT });
  assert.equal(tsc.code, 0, show(tsc));
  console.log(`# build: ${seconds(t0)} s`);
  t0 = performance.now();
  const pack = await run("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", work], { cwd: ROOT });
  assert.equal(pack.code, 0, show(pack));
  const [info] = JSON.parse(pack.stdout) as { filename: string; files: { path: string; size: number }[] }[];
  tarball = join(work, info!.filename);
  packed = info!.files;
  project = join(work, "app");
  await mkdir(project);
  await writeFile(join(project, "package.json"), JSON.stringify({ name: "webtune-user", private: true, type: "module" }, null, 2));
  const install = await run("npm", ["install", tarball, "--prefer-offline", "--no-audit", "--no-fund"], { cwd: project });
  assert.equal(install.code, 0, show(install));
  console.log(`# pack + install: ${seconds(t0)} s`);
  await writeFile(join(project, "app.mjs"), APP);
  await writeFile(join(project, "app.ts"), APP);
  // The two long runs, both mostly shader compiles on SwiftShader, side by side (a core each); the tests below
  // await them. Deno's runs (llvmpipe) follow one at a time.
  nodeApp = run(process.execPath, ["app.mjs", join(project, "out-node")], { cwd: project, unset: ["XDG_RUNTIME_DIR"] });
  browserRun = browserApp();
  browserRun.catch(() => {}); // awaited (and so reported) by its test
});

after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

/**
 * The user's script: three LoRA steps of the embedded default model on the embedded facts, then the adapter
 * (batches of 4, not the default run's 16: on SwiftShader each step of 16 costs seconds).
 */
const APP = `import { AutoModelForCausalLM, AutoTokenizer, FACTS, SFTTrainer, tinyModelSource } from "webtune";

const g = globalThis;
const outputDir = g.Deno ? g.Deno.args[0] : g.process.argv[2];
const model = await AutoModelForCausalLM.from_pretrained(tinyModelSource());
const tokenizer = await AutoTokenizer.from_pretrained(tinyModelSource());
const trainer = new SFTTrainer({
  model,
  processing_class: tokenizer,
  train_dataset: FACTS,
  peft_config: { r: 16, lora_alpha: 32, lora_dropout: 0, target_modules: "all-linear" },
  args: { output_dir: outputDir, max_steps: 3, learning_rate: 1e-2, per_device_train_batch_size: 4, max_length: 64,
    logging_steps: 1, save_strategy: "no", gradient_checkpointing: false },
});
const out = await trainer.train();
await trainer.save_model();
const losses = trainer.state.log_history.filter((l) => "loss" in l && "grad_norm" in l).map((l) => l.loss);
console.log(JSON.stringify({ global_step: out.global_step, losses }));
(g.Deno ?? g.process).exit(0);
`;

/** The adapter saved in `dir`: PEFT's two files, LoRA r 16 on every linear, a safetensors header with lora_A/B. */
function assertAdapter(dir: string): void {
  const config = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8"));
  assert.equal(config.peft_type, "LORA");
  assert.equal(config.r, 16);
  const bytes = readFileSync(join(dir, "adapter_model.safetensors"));
  const n = Number(bytes.readBigUInt64LE(0));
  const names = Object.keys(JSON.parse(bytes.subarray(8, 8 + n).toString("utf8"))).filter((k) => k !== "__metadata__");
  assert.ok(names.some((k) => k.endsWith("lora_A.weight")) && names.some((k) => k.endsWith("lora_B.weight")), names.join(", "));
}

/** The JSON line app.mjs / app.ts print: three steps, three finite losses, falling. */
function assertTrained(r: Run): number[] {
  assert.equal(r.code, 0, show(r));
  const { global_step, losses } = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as { global_step: number; losses: number[] };
  assert.equal(global_step, 3);
  assert.equal(losses.length, 3);
  for (const l of losses) assert.ok(Number.isFinite(l) && l > 0, `loss ${l}`);
  assert.ok(losses[2]! < losses[0]!, `the loss falls over three steps at lr 1e-2: ${losses.join(", ")}`);
  return losses;
}

test("the tarball holds the built library (ESM + .d.ts + source maps), the CLI, README and LICENSE only", () => {
  const paths = packed.map((f) => f.path).sort();
  const lib = paths.filter((p) => p.startsWith("lib/"));
  assert.deepEqual(paths.filter((p) => !p.startsWith("lib/")), ["LICENSE", "README.md", "package.json"]);
  // One .js, .d.ts and .js.map per module of src/ (the generated shaders' module included), nothing else.
  const sources = (dir: string): string[] =>
    readdirSync(dir).flatMap((f) => (statSync(join(dir, f)).isDirectory() ? sources(join(dir, f)) : f.endsWith(".ts") ? [relative(join(ROOT, "src"), join(dir, f))] : []));
  const expected = sources(join(ROOT, "src")).flatMap((s) => [".js", ".d.ts", ".js.map"].map((e) => `lib/${s.replace(/\.ts$/, e)}`)).sort();
  assert.deepEqual(lib, expected);
  assert.ok(lib.includes("lib/gpu/shaders.generated.js") && lib.includes("lib/bin.js") && lib.includes("lib/index.d.ts"));
  assert.equal(paths.filter((p) => /(^|\/)(tests?|fixtures|bench|results|demo|tools|src)\//.test(p) && !p.startsWith("lib/")).length, 0);
  const bytes = packed.reduce((s, f) => s + f.size, 0);
  assert.ok(statSync(tarball).size < 2e6, `the tarball is ${statSync(tarball).size} bytes`);
  console.log(`# ${paths.length} files, ${(bytes / 1e6).toFixed(1)} MB unpacked, ${(statSync(tarball).size / 1e6).toFixed(2)} MB packed`);

  const pkg = JSON.parse(readFileSync(join(project, "node_modules/webtune/package.json"), "utf8"));
  assert.deepEqual(Object.keys(pkg.exports["."]), ["types", "node", "deno", "browser", "default"]);
  assert.equal(pkg.bin.webtune, "lib/bin.js");
  assert.match(pkg.scripts.prepack, /build:lib/, "npm pack builds the library first");
  const bin = readFileSync(join(project, "node_modules/webtune/lib/bin.js"), "utf8");
  assert.ok(bin.startsWith("#!/usr/bin/env node\n"), "the bin starts with a shebang");
  // Imports were rewritten to .js (no loader needed), and each module's map carries its TypeScript source.
  const index = readFileSync(join(project, "node_modules/webtune/lib/index.js"), "utf8");
  assert.doesNotMatch(index, /from "\.[^"]*\.ts"/);
  const map = JSON.parse(readFileSync(join(project, "node_modules/webtune/lib/trainer/cli.js.map"), "utf8"));
  assert.match(map.sourcesContent[0], /export async function sftMain/);
});

test("TypeScript: a user's file type-checks against the installed .d.ts (WebGPU's types come with them)", { timeout: 120_000 }, async () => {
  const dir = join(project, "typed");
  await mkdir(dir);
  await writeFile(join(dir, "check.ts"), `import { AutoModelForCausalLM, FACTS, getDevice, SFTTrainer, sftMain, tinyModelSource, type TrainerCallback } from "webtune";
const device: GPUDevice = await getDevice();
const model = await AutoModelForCausalLM.from_pretrained(tinyModelSource());
const log: TrainerCallback = { on_log: (_a, state) => console.log(state.global_step) };
const trainer = new SFTTrainer({ model, train_dataset: FACTS, args: { output_dir: "out", max_steps: 3 }, callbacks: [log] });
const code: number = await sftMain(["--help"]);
console.log(device.label, trainer.state.global_step, code);
// @ts-expect-error: SFTConfig keys are typed
new SFTTrainer({ model, train_dataset: FACTS, args: { output_dir: "out", max_steps: "3" } });
`);
  // No "types" of its own (so @webgpu/types is not picked up from the project's node_modules by default), Node's
  // module resolution. skipLibCheck: @huggingface/tokenizers' own .d.ts do not resolve under NodeNext.
  const options = { target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", strict: true, noEmit: true, skipLibCheck: true, lib: ["ES2022", "DOM"], types: [] };
  await writeFile(join(dir, "tsconfig.json"), JSON.stringify({ compilerOptions: options, files: ["check.ts"] }));
  const r = await run(process.execPath, [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", dir], { cwd: dir });
  assert.equal(r.code, 0, show(r));
});

test("Node: `node app.mjs` imports webtune and trains three LoRA steps of the embedded model, saving an adapter", { timeout: 240_000 }, async () => {
  const t0 = performance.now();
  const r = await nodeApp!;
  const losses = assertTrained(r);
  assertAdapter(join(project, "out-node"));
  assert.doesNotMatch(r.stderr, XDG_LINE, show(r)); // Dawn meets Mesa's device-select layer too
  console.log(`# node app.mjs: done ${seconds(t0)} s after the earlier tests, losses ${losses.join(", ")}`);
});

test("Deno: `deno run -A app.ts` resolves webtune through the project's package.json, trains and saves; no XDG_RUNTIME_DIR noise", { timeout: 240_000 }, async () => {
  const t0 = performance.now();
  const out = join(project, "out-deno");
  const r = await run(DENO, ["run", "-A", "app.ts", out], { cwd: project, unset: ["XDG_RUNTIME_DIR"] });
  const losses = assertTrained(r);
  assertAdapter(out);
  assert.doesNotMatch(r.stderr, XDG_LINE, show(r));
  // The same model, data and seed on another adapter (llvmpipe here, SwiftShader under Node): the same losses
  // up to float rounding.
  const nodeLosses = assertTrained(await nodeApp!);
  losses.forEach((l, i) => assert.ok(Math.abs(l - nodeLosses[i]!) < 1e-3 * nodeLosses[i]!, `step ${i + 1}: ${l} vs Node's ${nodeLosses[i]}`));
  console.log(`# deno run app.ts: ${seconds(t0)} s`);
});

test("the webtune bin: `npx webtune --help`, `webtune sft --help`, errors (Node and Deno), `webtune sft --max_steps 3` (Deno)", { timeout: 240_000 }, async () => {
  const t0 = performance.now();
  const help = await run("npx", ["--no-install", "webtune", "--help"], { cwd: project });
  assert.equal(help.code, 0, show(help));
  assert.match(help.stdout, /webtune sft \[options\]/);
  const bin = join(project, "node_modules/.bin/webtune");
  const sftHelp = await run(bin, ["sft", "--help"], { cwd: project });
  assert.equal(sftHelp.code, 0, show(sftHelp));
  assert.match(sftHelp.stdout, /^webtune sft — supervised fine-tuning/);
  assert.match(sftHelp.stdout, /--lora_r N/);
  const none = await run(bin, [], { cwd: project });
  assert.equal(none.code, 1, show(none));
  assert.match(none.stderr, /usage:/);
  const bad = await run(bin, ["sft", "--lora_rr", "8"], { cwd: project });
  assert.equal(bad.code, 1, show(bad));
  assert.match(bad.stderr, /^error: .*lora_rr/m);
  // Under Node the bin gets its device (Dawn) before it looks for the model; a real error still reaches stderr.
  await writeFile(join(project, "data.jsonl"), `${JSON.stringify({ prompt: "The capital of Vorland is", completion: " Kelmar." })}\n`);
  const missingModel = ["sft", "--model", join(work, "no-such-model"), "--dataset", join(project, "data.jsonl")];
  const nodeMissing = await run(bin, missingModel, { cwd: project, unset: ["XDG_RUNTIME_DIR"] });
  assert.equal(nodeMissing.code, 1, show(nodeMissing));
  assert.match(nodeMissing.stdout, /^webtune on node, /m);
  assert.match(nodeMissing.stderr, /^error: .*no-such-model/m);
  assert.doesNotMatch(nodeMissing.stderr, XDG_LINE, show(nodeMissing));

  // Deno running the installed bin's module: the default recipe, three steps, the adapter in --output_dir.
  const out = join(project, "out-bin");
  const sft = await run(DENO, ["run", "-A", bin, "sft", "--max_steps", "3", "--output_dir", out], { cwd: project, unset: ["XDG_RUNTIME_DIR"] });
  assert.equal(sft.code, 0, show(sft));
  assert.match(sft.stdout, /^webtune on deno, /m);
  assert.match(sft.stdout, /^done: 3 steps in .* saved to /m);
  assertAdapter(out);
  assert.doesNotMatch(sft.stderr, XDG_LINE, show(sft));
  // A real error after the adapter was requested still reaches stderr, and nothing else does.
  const missing = await run(DENO, ["run", "-A", bin, ...missingModel], { cwd: project, unset: ["XDG_RUNTIME_DIR"] });
  assert.equal(missing.code, 1, show(missing));
  assert.match(missing.stdout, /^webtune on deno, /m, "the device was created before the model was looked for");
  assert.match(missing.stderr, /^error: .*no-such-model/m);
  assert.doesNotMatch(missing.stderr, XDG_LINE, show(missing));
  console.log(`# bin: ${seconds(t0)} s`);
});

/** The fresh Vite app's page: three steps in the browser, reported on globalThis.__webtune. */
const PAGE = `import { AutoModelForCausalLM, AutoTokenizer, deviceInfo, FACTS, getDevice, SFTTrainer, tinyModelSource } from "webtune";

globalThis.__webtune = (async () => {
  try {
    await getDevice();
    const model = await AutoModelForCausalLM.from_pretrained(tinyModelSource());
    const tokenizer = await AutoTokenizer.from_pretrained(tinyModelSource());
    const trainer = new SFTTrainer({
      model, processing_class: tokenizer, train_dataset: FACTS,
      peft_config: { r: 16, lora_alpha: 32, lora_dropout: 0, target_modules: "all-linear" },
      args: { output_dir: "out", max_steps: 3, learning_rate: 1e-2, per_device_train_batch_size: 4, max_length: 64,
        logging_steps: 1, save_strategy: "no", gradient_checkpointing: false },
    });
    const out = await trainer.train();
    const files = await trainer.peft.adapter_files();
    const losses = trainer.state.log_history.filter((l) => "loss" in l && "grad_norm" in l).map((l) => l.loss);
    return { ok: true, adapter: deviceInfo().adapter.description, global_step: out.global_step, losses,
      files: Object.fromEntries(Object.entries(files).map(([k, v]) => [k, v.byteLength])) };
  } catch (e) {
    return { ok: false, error: String(e?.stack ?? e) };
  }
})();
`;

type PageResult = { ok: boolean; error?: string; adapter: string; global_step: number; losses: number[]; files: Record<string, number> };

/** Builds the fresh Vite app from the installed package, serves it on localhost and runs it in headless Chromium. */
async function browserApp(): Promise<{ warnings: string[]; bundle: string; errors: string[]; result: PageResult; buildSeconds: string; runSeconds: string }> {
  let t0 = performance.now();
  const site = join(project, "site");
  await mkdir(site);
  await writeFile(join(site, "index.html"), `<!doctype html><meta charset="utf-8"><title>webtune app</title><link rel="icon" href="data:,"><script type="module" src="./main.js"></script>\n`);
  await writeFile(join(site, "main.js"), PAGE);
  const warnings: string[] = [];
  const logger = {
    info() {}, clearScreen() {}, hasErrorLogged: () => false, hasWarned: false,
    warn: (m: string) => void warnings.push(m), warnOnce: (m: string) => void warnings.push(m), error: (m: string) => void warnings.push(m),
  };
  // The user's own Vite setup: no config file, nothing about webtune or Dawn.
  const dist = join(project, "dist");
  await build({ configFile: false, root: site, base: "./", logLevel: "warn", customLogger: logger, build: { outDir: dist, emptyOutDir: true, target: "es2022" } });
  const js = (dir: string): string[] => readdirSync(dir).flatMap((f) => (statSync(join(dir, f)).isDirectory() ? js(join(dir, f)) : f.endsWith(".js") ? [join(dir, f)] : []));
  const bundle = js(dist).map((f) => readFileSync(f, "utf8")).join("\n");
  const buildSeconds = seconds(t0);

  t0 = performance.now();
  const types: Record<string, string> = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm" };
  const server: Server = createServer(async (req, res) => {
    const path = decodeURIComponent((req.url ?? "/").split("?")[0]!);
    const file = join(dist, path === "/" ? "index.html" : path);
    if (!file.startsWith(dist) || !existsSync(file) || statSync(file).isDirectory()) return void res.writeHead(404).end();
    res.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream" }).end(await readFile(file));
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const port = (server.address() as { port: number }).port;
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: [...QUIET, ...WEBGPU], headless: true });
  try {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    page.on("console", (m) => void (m.type() === "error" && errors.push(m.text())));
    await page.goto(`http://localhost:${port}/`);
    await page.waitForFunction(() => (globalThis as { __webtune?: unknown }).__webtune !== undefined, null, { timeout: 60_000 });
    const result = (await page.evaluate(() => (globalThis as unknown as { __webtune: Promise<unknown> }).__webtune)) as PageResult;
    return { warnings, bundle, errors, result, buildSeconds, runSeconds: seconds(t0) };
  } finally {
    await browser.close();
    await new Promise<void>((ok) => server.close(() => ok()));
  }
}

test("a fresh Vite app built from the installed package trains three steps in Chromium (WebGPU on SwiftShader)", { timeout: 300_000 }, async () => {
  const { warnings, bundle, errors, result: r, buildSeconds, runSeconds } = await browserRun!;
  // The one warning allowed: the chunk holding the embedded WGSL (half a megabyte of shader text) is large.
  assert.deepEqual(warnings.filter((w) => !/Some chunks are larger than 500 kB/.test(w)), [], "vite build warns");
  assert.doesNotMatch(bundle, /dawn\.node|node_modules\/webgpu|dawn_node/i, "the browser bundle pulls in Dawn");
  assert.doesNotMatch(bundle, /\bfrom\s*["']node:|\bimport\s*\(\s*["']node:|\brequire\s*\(\s*["']node:|\bimport\s*["']node:/, "the browser bundle imports a node: module");
  assert.ok(r.ok, r.error);
  assert.deepEqual(errors, []);
  assert.equal(r.global_step, 3);
  assert.equal(r.losses.length, 3);
  for (const l of r.losses) assert.ok(Number.isFinite(l) && l > 0, `loss ${l}`);
  assert.ok(r.losses[2]! < r.losses[0]!, r.losses.join(", "));
  const nodeLosses = assertTrained(await nodeApp!);
  r.losses.forEach((l, i) => assert.ok(Math.abs(l - nodeLosses[i]!) < 1e-3 * nodeLosses[i]!, `step ${i + 1}: ${l} vs Node's ${nodeLosses[i]}`));
  assert.ok(r.files["adapter_model.safetensors"]! > 1000 && r.files["adapter_config.json"]! > 10, JSON.stringify(r.files));
  console.log(`# vite build ${buildSeconds} s; chromium (${r.adapter || "SwiftShader"}) ${runSeconds} s, losses ${r.losses.join(", ")}`);
});
