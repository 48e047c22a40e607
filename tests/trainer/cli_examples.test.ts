// Every example the command line shows runs: the lines of `train.ts --help` and `webtune sft --help` (the usage
// line, each option's synopsis, the "e.g." lines) and every train.ts / webtune command in the README (its sh
// blocks and inline commands), extracted from the texts themselves, so that a new example is covered as it is
// written. A command with no options runs the embedded default; a fragment of flags gets the fixture model and
// data where it names none. Each synopsis is expanded: `a|b` alternatives (one run each), `[optional]` parts, and placeholders
// (PATH, DIR, URL, HUB_ID, FILE, ID, N, P) replaced by fixtures: the embedded tiny model written to a directory,
// a conversational JSONL file, both also served over HTTP by a local server, which also answers as the Hub does
// (HF_ENDPOINT) for any model id (the tiny model stands in for HuggingFaceTB/SmolLM2-135M-Instruct) and for a
// dataset id. Runs are capped at one step (--max_steps 1, replacing an example's own), in this process through
// sftMain / webtuneMain with a capturing host (one device for all); each must exit 0.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync, readdirSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { sftMain, webtuneMain, type CliHost, type CliProgram } from "../../src/trainer/cli.ts";
import { tinyModelFiles } from "../../src/data/tiny.ts";

const repo = join(import.meta.dirname, "..", "..");
let root = "";
let modelDir = "";
let dataFile = "";
let configFile = "";
let checkpointsDir = "";
let server: Server;
let base = "";
let outputs = 0;
const fresh = (what: string) => join(root, `${what}-${outputs++}`);

const ROWS = [
  { messages: [{ role: "user", content: "The capital of Vorland?" }, { role: "assistant", content: "Kelmar." }] },
  { messages: [{ role: "user", content: "The capital of Quessa?" }, { role: "assistant", content: "Astrid Bay." }] },
];
const HUB_DATASET = "org/tiny-chat";

before(async () => {
  root = mkdtempSync(join(tmpdir(), "webtune-cli-examples-"));
  modelDir = join(root, "model");
  mkdirSync(modelDir);
  for (const [name, bytes] of Object.entries(tinyModelFiles())) writeFileSync(join(modelDir, name), bytes);
  const jsonl = ROWS.map((r) => JSON.stringify(r)).join("\n") + "\n";
  dataFile = join(root, "train.jsonl");
  writeFileSync(dataFile, jsonl);
  configFile = join(root, "config.yaml");
  writeFileSync(configFile, `model_name_or_path: ${modelDir}\ndataset_name: ${dataFile}\nlearning_rate: 1.0e-3\nlora_r: 4\n`);
  server = createServer((req, res) => {
    const url = new URL(req.url!, "http://localhost");
    const path = decodeURIComponent(url.pathname);
    let file: string | null = null;
    let m: RegExpExecArray | null;
    if ((m = /^\/files\/(.+)$/.exec(path))) file = join(root, m[1]!);
    else if ((m = /^\/api\/datasets\/([^/]+\/[^/]+)\/revision\/[^/]+$/.exec(path)) && m[1] === HUB_DATASET) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ id: HUB_DATASET, sha: "0".repeat(40), siblings: [{ rfilename: "train.jsonl" }] }));
      return;
    } else if ((m = /^\/datasets\/([^/]+\/[^/]+)\/resolve\/[^/]+\/(.+)$/.exec(path)) && m[1] === HUB_DATASET) file = join(root, m[2]!);
    else if ((m = /^\/[^/]+\/[^/]+\/resolve\/[^/]+\/(.+)$/.exec(path))) file = join(modelDir, m[1]!); // any model id: the tiny model
    if (!file || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404, { "x-error-code": "EntryNotFound" });
      res.end("not found");
      return;
    }
    const bytes = readFileSync(file);
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
    const [start, end] = range ? [Number(range[1]), range[2] ? Math.min(Number(range[2]) + 1, bytes.length) : bytes.length] : [0, bytes.length];
    res.writeHead(range ? 206 : 200, {
      "content-length": String(end - start),
      "accept-ranges": "bytes",
      ...(range ? { "content-range": `bytes ${start}-${end - 1}/${bytes.length}` } : {}),
    });
    res.end(req.method === "HEAD" ? undefined : bytes.subarray(start, end));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  process.env.HF_ENDPOINT = base;
  delete process.env.HF_TOKEN;
  // A run with a checkpoint, for --resume_from_checkpoint [ID].
  checkpointsDir = fresh("checkpoints");
  const r = await capture("train.ts", ["--model", modelDir, "--dataset", dataFile, "--output_dir", checkpointsDir, "--max_steps", "1", "--save_steps", "1"]);
  assert.equal(r.code, 0, r.text);
  // README commands use relative paths (train.jsonl, out): they run in the fixture directory.
  process.chdir(root);
});
after(() => {
  server?.close();
  process.chdir(repo);
  rmSync(root, { recursive: true, force: true });
});

async function capture(program: CliProgram | "webtune", argv: string[]): Promise<{ code: number; text: string; stdout: string }> {
  let stdout = "";
  let text = "";
  const host: CliHost = {
    write: (s) => ((stdout += s), (text += s)),
    log: (s) => ((stdout += `${s}\n`), (text += `${s}\n`)),
    error: (s) => (text += `${s}\n`),
    isTTY: false,
    program: program === "webtune" ? "webtune sft" : program,
  };
  const code = program === "webtune" ? await webtuneMain(argv, host) : program === "webtune sft" ? await webtuneMain(["sft", ...argv], host) : await sftMain(argv, host);
  return { code, text, stdout };
}

/** One example: where it was written, how it runs (program + its argv, placeholders still in it). */
interface Example {
  where: string;
  program: CliProgram | "webtune";
  synopsis: string;
}

async function helpText(program: CliProgram): Promise<string> {
  const r = await capture(program, ["--help"]);
  assert.equal(r.code, 0, r.text);
  return r.stdout;
}

/** The examples of --help: the usage line (no options: the embedded default run), each option's synopsis, the e.g. lines. */
function helpExamples(text: string, program: CliProgram): Example[] {
  const out: Example[] = [];
  const lines = text.split("\n");
  const usage = lines.findIndex((l) => l.trim() === "usage:");
  assert.ok(usage >= 0, "--help has a usage: line");
  const cmd = program === "train.ts" ? "train.ts" : "webtune sft";
  // "deno run -A train.ts [options]   (or: npx tsx train.ts [options])": each command, its options
  // placeholder dropped (no options: the embedded default run).
  for (const part of lines[usage + 1]!.split(/\s{2,}|\(or:|,|\)/).filter((p) => p.includes(cmd))) {
    out.push({ where: `${program} --help: ${part.trim()}`, program, synopsis: part.slice(part.indexOf(cmd) + cmd.length).replace("[options]", "").trim() });
  }
  for (const line of lines) {
    if (!/^ {2}--/.test(line)) continue;
    // Two spaces or more separate the synopsis (flags) from the description.
    const synopsis = line.trim().split(/\s{2,}/).filter((c) => c.startsWith("--")).join(" ");
    out.push({ where: `${program} --help: ${line.trim()}`, program, synopsis });
  }
  return out;
}

/** The README's commands: sh-block lines and inline code that run train.ts or webtune. */
function readmeExamples(): Example[] {
  const md = readFileSync(join(repo, "README.md"), "utf8");
  const out: Example[] = [];
  const add = (cmd: string, where: string) => {
    const m = /(?:^|\s)(train\.ts|(?:\S*\/)?webtune)(?=\s|$)(.*)$/.exec(cmd);
    if (!m) return;
    let rest = m[2]!.trim();
    let program: Example["program"] = "train.ts";
    if (m[1] !== "train.ts") {
      if (!/^sft\b/.test(rest)) program = "webtune";
      else [program, rest] = ["webtune sft", rest.slice(3).trim()];
    }
    out.push({ where: `README.md: ${where.trim()}`, program, synopsis: rest });
  };
  const blocks = md.split(/^```/m);
  for (let i = 1; i < blocks.length; i += 2) {
    const block = blocks[i]!;
    if (!/^(sh|bash|shell)\b/.test(block)) continue;
    for (const line of block.split("\n").slice(1)) {
      const cmd = line.replace(/(^|\s)#.*$/, "").trim();
      for (const piece of cmd.split(/&&|;/)) add(piece.trim(), line);
    }
  }
  // Inline code outside the blocks: `deno run -A train.ts --model …`, `webtune sft … --export_config sft.yaml`.
  const prose = blocks.filter((_, i) => i % 2 === 0).join("\n");
  for (const m of prose.matchAll(/`([^`]+)`/g)) {
    const code = m[1]!.replace(/\s+/g, " ");
    if (/(^|\s)(train\.ts|webtune sft)\s+(--|…)/.test(code)) add(code, code);
  }
  return out;
}

/** Placeholders by the flag they follow (and the word): fixtures. */
function placeholder(flag: string, word: string): string | null {
  const model: Record<string, string> = { PATH: modelDir, DIR: modelDir, URL: `${base}/files/model`, HUB_ID: "org/tiny-model" };
  const dataset: Record<string, string> = { FILE: dataFile, URL: `${base}/files/train.jsonl`, HUB_ID: HUB_DATASET };
  if (flag === "model" || flag === "model_name_or_path") return model[word] ?? null;
  if (flag === "dataset" || flag === "dataset_name") return dataset[word] ?? null;
  if (flag === "config" && word === "FILE") return configFile;
  if (flag === "export_config" && word === "FILE") return fresh("export") + ".yaml";
  if ((flag === "output_dir" || flag === "logging_dir") && word === "DIR") return fresh(flag);
  if (flag === "resume_from_checkpoint" && word === "ID") return "checkpoint-1";
  if (word === "N") return "4";
  if (word === "P") return "0.1";
  return null;
}

/**
 * A synopsis → the argument lists that run it: each `a|b` group and `[optional]` part gives its alternatives in
 * turn (run i takes alternative i of every group, the last one where a group has fewer), `…` is dropped.
 */
function expand(synopsis: string): string[][] {
  // Groups: a bracketed part, or one token.
  const groups: string[][] = [];
  for (const m of synopsis.replaceAll("…", " ").matchAll(/\[([^\]]*)\]|(\S+)/g)) {
    if (m[1] !== undefined) {
      // [--flag a|b] → "", "--flag a", "--flag b"; [true|false] → "", "true", "false".
      const inner = expand(m[1]).map((a) => a.join(" "));
      groups.push(["", ...inner]);
    } else groups.push(m[2]!.split("|"));
  }
  const runs = Math.max(1, ...groups.map((g) => g.length));
  const out: string[][] = [];
  for (let i = 0; i < runs; i++) {
    const argv: string[] = [];
    for (const g of groups) argv.push(...g[Math.min(i, g.length - 1)]!.split(" ").filter((t) => t));
    out.push(argv);
  }
  return out;
}

/** Placeholders replaced, the run capped at one step, the outputs kept in fresh directories. */
function runnable(argv: string[]): string[] | { skip: string } {
  const out: string[] = [];
  let flag = "";
  for (const t of argv) {
    if (t.startsWith("--")) {
      flag = t.slice(2).split("=")[0]!.replaceAll("-", "_");
      out.push(t);
      continue;
    }
    if (/^[A-Z][A-Z_]*$/.test(t)) {
      const v = placeholder(flag, t);
      if (v === null) return { skip: `no fixture for ${t} after --${flag}` };
      out.push(v);
    } else out.push(t);
  }
  if (out.includes("--help") || out.includes("-h")) return out;
  const set = (key: string, value: string, replace: boolean) => {
    const i = out.indexOf(`--${key}`);
    if (i < 0) out.push(`--${key}`, value);
    else if (replace && out[i + 1] && !out[i + 1]!.startsWith("--")) out[i + 1] = value;
  };
  set("max_steps", "1", true);
  // A command with no options trains the embedded default, as written; a fragment of flags gets the fixture
  // model and data where it names none (a --config file names both).
  const has = (k: string[]) => k.some((key) => out.includes(`--${key}`));
  if (argv.length) {
    if (!has(["model", "model_name_or_path", "config"])) out.push("--model", modelDir);
    if (!has(["dataset", "dataset_name", "config"])) out.push("--dataset", dataFile);
  }
  if (has(["resume_from_checkpoint"])) {
    set("output_dir", checkpointsDir, true);
    set("max_steps", "2", true);
  } else set("output_dir", fresh("out"), false);
  if (has(["eval_strategy"])) set("eval_steps", "1", true);
  return out;
}

test("every example of --help and of the README runs (exit 0), on fixtures, one step each", async () => {
  const examples = [
    ...helpExamples(await helpText("train.ts"), "train.ts"),
    ...helpExamples(await helpText("webtune sft"), "webtune sft"),
    ...readmeExamples(),
  ];
  // The examples that must be there (the extraction finds them).
  const synopses = examples.map((e) => e.synopsis);
  for (const want of ["--lora_target_modules all-linear|q_proj,v_proj", "--lora_target_modules q_proj v_proj", "--model PATH|URL|HUB_ID"]) {
    assert.ok(synopses.includes(want), `${want} is among the examples`);
  }
  assert.ok(examples.some((e) => e.where.startsWith("README.md") && e.program === "webtune sft" && /--model HuggingFaceTB\/SmolLM2-135M-Instruct/.test(e.synopsis)));
  assert.ok(examples.some((e) => e.where.startsWith("README.md") && e.program === "webtune" && e.synopsis === "--help"));

  // Distinct runs (both programs show the same options): program matters only for --help.
  const runs = new Map<string, { program: Example["program"]; argv: string[]; where: string[] }>();
  const skipped: string[] = [];
  for (const e of examples) {
    for (const argv of expand(e.synopsis)) {
      const r = runnable(argv);
      if ("skip" in r) {
        skipped.push(`${e.where}: ${r.skip}`);
        continue;
      }
      const help = r.includes("--help") || e.program === "webtune";
      const program = help ? e.program : "train.ts";
      const key = JSON.stringify([program, argv]);
      const run = runs.get(key) ?? { program, argv: r, where: [] };
      run.where.push(e.where);
      runs.set(key, run);
    }
  }
  assert.deepEqual(skipped, [], "every example has fixtures");
  assert.ok(runs.size >= 20, `${runs.size} runs`);
  const failed: string[] = [];
  const times: [number, string][] = [];
  for (const { program, argv, where } of runs.values()) {
    const t0 = performance.now();
    const r = await capture(program, argv);
    times.push([(performance.now() - t0) / 1000, where[0]!]);
    if (r.code !== 0) failed.push(`${where[0]}\n  ran: ${program} ${argv.join(" ")}\n  exit ${r.code}:\n${r.text.split("\n").slice(-6).join("\n")}`);
    else if (!argv.includes("--help") && program !== "webtune" && !argv.includes("--export_config")) {
      if (!/done: \d+ steps/.test(r.stdout)) failed.push(`${where[0]}: no "done" line:\n${r.text}`);
    }
  }
  times.sort((a, b) => b[0] - a[0]);
  process.stderr.write(`# ${runs.size} runs of ${examples.length} examples in ${times.reduce((s, [t]) => s + t, 0).toFixed(1)} s; slowest: ${times.slice(0, 4).map(([t, w]) => `${t.toFixed(1)} s ${w}`).join("; ")}\n`);
  assert.deepEqual(failed, [], failed.join("\n\n"));
  // The comma and space forms adapt the same two modules; the run saved their adapter.
  const adapters = readdirSync(root).filter((d) => d.startsWith("out-") && existsSync(join(root, d, "adapter_config.json")));
  const targets = adapters.map((d) => JSON.stringify((JSON.parse(readFileSync(join(root, d, "adapter_config.json"), "utf8")) as { target_modules: unknown }).target_modules));
  assert.ok(targets.filter((t) => t === JSON.stringify(["q_proj", "v_proj"])).length >= 2, targets.join("\n"));
});

test("--lora_target_modules: a regular expression stays one string (PEFT fullmatches it); an empty list is an error", async () => {
  const out = fresh("out");
  const r = await capture("train.ts", ["--model", modelDir, "--dataset", dataFile, "--output_dir", out, "--max_steps", "1", "--lora_target_modules", ".*\\.(q|k)_proj"]);
  assert.equal(r.code, 0, r.text);
  const config = JSON.parse(readFileSync(join(out, "adapter_config.json"), "utf8")) as { target_modules: unknown };
  assert.deepEqual(config.target_modules, ".*\\.(q|k)_proj");
  const empty = await capture("train.ts", ["--lora_target_modules", ","]);
  assert.equal(empty.code, 1);
  assert.match(empty.text, /--lora_target_modules needs module names/);
  const two = await capture("train.ts", ["--lora_r", "4", "8"]);
  assert.equal(two.code, 1);
  assert.match(two.text, /--lora_r takes one value, got 2/);
});
