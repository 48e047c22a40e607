// train.ts as a child process (`node --import tsx train.ts …`): --help, a misspelt flag, a missing dataset
// file, a malformed JSONL line, a tiny real run (2 steps on the fixture model) that writes the adapter, and
// the same from a --config file with a flag over it.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, test } from "node:test";
import { makeModel } from "../../tools/make-model.ts";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
let root = "";
let model = "";
let data = "";

before(async () => {
  root = await mkdtemp(join(tmpdir(), "webtune-cli-"));
  model = join(root, "model");
  await makeModel(model, { arch: "llama", seed: 3 });
  data = join(root, "data.jsonl");
  const rows = [
    { prompt: "The capital of Vorland is", completion: " Kelmar." },
    { prompt: "The capital of Quessa is", completion: " Astrid Bay." },
  ];
  await writeFile(data, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
});
after(() => rm(root, { recursive: true, force: true }));

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ["--import", "tsx", "train.ts", ...args], { cwd: repo, timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

test("--help prints the usage and exits 0", async () => {
  const r = await cli(["--help"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^webtune train\.ts/);
  assert.match(r.stdout, /usage:/);
  assert.match(r.stdout, /--dataset HUB_ID\|FILE\|URL/);
});

test("a misspelt flag exits 1 and suggests the name", async () => {
  const r = await cli(["--model", model, "--dataset", data, "--learning_rat", "1e-3"]);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /learning_rat\b/);
  assert.match(r.stderr, /did you mean learning_rate/);
});

test("a missing dataset file exits 1 naming the file", async () => {
  const missing = join(root, "nope.jsonl");
  const r = await cli(["--model", model, "--dataset", missing, "--output_dir", join(root, "out-missing"), "--max_steps", "2"]);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.ok(r.stderr.includes(missing), r.stderr);
  assert.match(r.stderr, /^error: /m);
});

test("a malformed JSONL line exits 1 with file:line", async () => {
  const bad = join(root, "bad.jsonl");
  await writeFile(bad, '{"text": "fine"}\n{"text": "also fine"}\n{"text": oops}\n');
  const r = await cli(["--model", model, "--dataset", bad, "--output_dir", join(root, "out-bad"), "--max_steps", "2"]);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.ok(r.stderr.includes(`${bad}:3`), r.stderr);
});

test("a tiny real run: 2 steps, exit 0, the adapter and tokenizer written", async () => {
  const out = join(root, "out");
  const r = await cli([
    "--model", model, "--dataset", data, "--output_dir", out, "--max_steps", "2", "--per_device_train_batch_size", "2",
    "--logging_steps", "1", "--save_strategy", "no", "--gradient_checkpointing", "false", "--lora_r", "4",
  ]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /step 2\/2/);
  assert.match(r.stdout, /done: 2 steps/);
  const files = await readdir(out);
  for (const f of ["adapter_config.json", "adapter_model.safetensors", "tokenizer.json"]) assert.ok(files.includes(f), `${f} in ${files}`);
});

test("--config: the file's keys, flags over them; a problem in the file names the file", async () => {
  const out = join(root, "out-config");
  const file = join(root, "sft.yaml");
  const keys = {
    model_name_or_path: model, dataset_name: data, output_dir: out, use_peft: true, lora_r: 4, max_steps: 1,
    per_device_train_batch_size: 2, logging_steps: 1, save_strategy: "no", gradient_checkpointing: false,
  };
  await writeFile(file, Object.entries(keys).map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join("\n") + "\n");
  const r = await cli(["--config", file, "--max_steps", "2"]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /step 2\/2/);
  assert.ok((await readdir(out)).includes("adapter_model.safetensors"));

  const bad = join(root, "bad.yaml");
  await writeFile(bad, `model_name_or_path: ${JSON.stringify(model)}\nlearning_rat: 1.0e-4\n`);
  const b = await cli(["--config", bad, "--dataset", data]);
  assert.equal(b.code, 1, b.stdout + b.stderr);
  assert.ok(b.stderr.includes(`${bad}: unknown key "learning_rat" (did you mean learning_rate?)`), b.stderr);
});
