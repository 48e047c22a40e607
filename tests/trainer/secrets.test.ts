// Secrets (issue 14, defect 1): a token given as a flag (--hub_token), in a --config file (push_to_hub_token,
// env HF_TOKEN, model_init_kwargs.token) or in the environment ($HF_TOKEN) never reaches stdout/stderr, a
// checkpoint (training_args.json, trainer_state.json, webtune_state.json), the adapter, an exported YAML, a
// note, an error, or a Hub/HTTP error message. training_args.json masks as transformers' to_dict() does.
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { AutoModelForCausalLM, FACTS, sftConfig } from "../../src/index.ts";
import { loadDataset } from "../../src/data/sources.ts";
import { AutoTokenizer } from "../../src/data/tokenizer.ts";
import { sftMain, type CliHost } from "../../src/trainer/cli.ts";
import { isSecretKey, trainingArgsJSON, withoutSecrets } from "../../src/trainer/config.ts";
import { loadSFTConfig, splitConfig } from "../../src/trainer/config_file.ts";
import { exportTRLConfig } from "../../src/trainer/export_config.ts";
import { makeModel } from "../../tools/make-model.ts";
import { setup } from "../helpers.ts";

const SECRETS = ["hf_SECRET123", "hf_SECRETcfg456", "hf_SECRETenv789", "hf_SECRETkw000", "hf_SECRETprocess"];
/** Any of the secrets, or a part of one long enough to identify it. */
const LEAK = /hf_SECRET|SECRET123|SECRETcfg|SECRETenv|SECRETkw|SECRETprocess/;

let root = "";
let modelDir = "";
let data = "";

before(async () => {
  await setup();
  root = await mkdtemp(join(tmpdir(), "webtune-secrets-"));
  modelDir = join(root, "model");
  await makeModel(modelDir, { arch: "llama", seed: 3 });
  data = join(root, "facts.jsonl");
  await writeFile(data, FACTS.slice(0, 4).map((r) => JSON.stringify(r)).join("\n") + "\n");
});
after(() => rm(root, { recursive: true, force: true }));

function capture(): { host: CliHost; text: () => string } {
  const out: string[] = [];
  return { host: { write: (s) => out.push(s), log: (s) => out.push(s), error: (s) => out.push(s), isTTY: false }, text: () => out.join("\n") };
}

/** Every file under `dir`, recursively: path → the first secret found in its bytes, if any. */
async function leaks(dir: string): Promise<{ files: string[]; leaked: string[] }> {
  const files = (await readdir(dir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
  const leaked: string[] = [];
  for (const f of files) if (LEAK.test((await readFile(f)).toString("latin1"))) leaked.push(f);
  return { files, leaked };
}

test("a real CLI run with tokens in a flag, a config file and the environment writes and prints none of them", async () => {
  const out = join(root, "run");
  const config = join(root, "sft.yaml");
  await writeFile(
    config,
    [
      "push_to_hub_token: hf_SECRETcfg456",
      "env:",
      "  HF_TOKEN: hf_SECRETenv789",
      "  WANDB_PROJECT: demo",
      "model_init_kwargs:",
      "  token: hf_SECRETkw000",
      "learning_rate: 1.0e-3",
      "",
    ].join("\n"),
  );
  const before = process.env.HF_TOKEN;
  process.env.HF_TOKEN = "hf_SECRETprocess";
  const c = capture();
  let code: number;
  try {
    code = await sftMain(
      ["--config", config, "--model", modelDir, "--dataset", data, "--output_dir", out, "--hub_token", "hf_SECRET123", "--save_steps", "1",
        "--max_steps", "2", "--save_strategy", "steps", "--per_device_train_batch_size", "2", "--report_to", "tensorboard"],
      c.host,
    );
  } finally {
    if (before === undefined) delete process.env.HF_TOKEN;
    else process.env.HF_TOKEN = before;
  }
  const printed = c.text();
  assert.equal(code, 0, printed);
  assert.match(printed, /done: 2 steps/);
  // The notes still say the keys are ignored, without their values.
  assert.match(printed, /note: hub_token=<HUB_TOKEN>: ignored/);
  assert.match(printed, /note: push_to_hub_token=<PUSH_TO_HUB_TOKEN>: ignored/);
  assert.doesNotMatch(printed, LEAK);
  const { files, leaked } = await leaks(out);
  assert.deepEqual(leaked, []);
  assert.ok(files.some((f) => /[\\/]runs[\\/].*tfevents/.test(f)), "the TensorBoard event file (its \"args\" text) is checked too");
  for (const f of ["checkpoint-1/training_args.json", "checkpoint-2/trainer_state.json", "checkpoint-2/webtune_state.json", "adapter_config.json", "adapter_model.safetensors"]) {
    assert.ok(files.includes(join(out, f)), `${f} was written (${files.map((x) => x.slice(out.length)).join(", ")})`);
  }
  // training_args.json as transformers' to_dict() writes it: every *_token key as <KEY_NAME>.
  const saved = JSON.parse(await readFile(join(out, "checkpoint-2", "training_args.json"), "utf8")) as Record<string, unknown>;
  assert.equal(saved.hub_token, "<HUB_TOKEN>");
  assert.equal(saved.push_to_hub_token, "<PUSH_TO_HUB_TOKEN>");
  assert.equal(saved.eos_token, "<EOS_TOKEN>");
  assert.deepEqual(saved.model_init_kwargs, { token: "<TOKEN>" });
  assert.equal(saved.learning_rate, 1e-3);
  assert.ok(!("notes" in saved));
});

test("--export_config: the YAML holds no token (flag, config file, env, nested), and says each was left out", async () => {
  const file = join(root, "export.yaml");
  const config = join(root, "export-in.yaml");
  await writeFile(config, "push_to_hub_token: hf_SECRETcfg456\nenv:\n  HF_TOKEN: hf_SECRETenv789\n  WANDB_PROJECT: demo\nmodel_init_kwargs:\n  token: hf_SECRETkw000\n");
  const c = capture();
  const code = await sftMain(["--config", config, "--model", modelDir, "--dataset", data, "--hub_token", "hf_SECRET123", "--export_config", file], c.host);
  assert.equal(code, 0, c.text());
  const yaml = await readFile(file, "utf8");
  assert.doesNotMatch(yaml, LEAK);
  assert.doesNotMatch(c.text(), LEAK);
  assert.match(yaml, /WANDB_PROJECT: demo/);
  assert.match(c.text(), /hub_token left out: tokens are never written/);
  assert.match(c.text(), /env HF_TOKEN left out/);
  // A secret nested anywhere in the mapping is left out too.
  const notes: string[] = [];
  const text = exportTRLConfig(
    { model_name_or_path: modelDir, dataset_name: data, gradient_checkpointing_kwargs: { use_reentrant: false, api_key: "hf_SECRETkw000" } },
    { warn: (n) => notes.push(n) },
  );
  assert.doesNotMatch(text, LEAK);
  assert.ok(notes.some((n) => /gradient_checkpointing_kwargs\.api_key left out/.test(n)), notes.join("\n"));
});

test("notes, errors and saved mappings mask secrets; vocabulary tokens and counts are not secrets", async () => {
  const cfg = sftConfig({ hub_token: "hf_SECRET123", push_to_hub_token: "hf_SECRETcfg456" });
  assert.deepEqual(cfg.notes.filter((n) => /token/.test(n)).map((n) => n.split(":")[0]), ["hub_token=<HUB_TOKEN>", "push_to_hub_token=<PUSH_TO_HUB_TOKEN>"]);
  assert.doesNotMatch(cfg.notes.join("\n"), LEAK);
  const json = JSON.stringify(trainingArgsJSON({ ...cfg, model_init_kwargs: { token: "hf_SECRETkw000", revision: "main" } } as never));
  assert.doesNotMatch(json, LEAK);
  assert.match(json, /"hub_token": ?"<HUB_TOKEN>"/);
  assert.match(json, /"revision": ?"main"/);
  for (const k of ["hub_token", "push_to_hub_token", "token", "HF_TOKEN", "WANDB_API_KEY", "client_secret", "db_password", "apiKey"]) assert.ok(isSecretKey(k), k);
  for (const k of ["eos_token", "pad_token", "bos_token", "num_input_tokens_seen", "max_new_tokens", "dataset_text_field"]) assert.ok(!isSecretKey(k), k);
  assert.deepEqual(withoutSecrets({ a: [{ HF_TOKEN: "x", keep: 1 }], b: { password: null } }), { a: [{ HF_TOKEN: "<HF_TOKEN>", keep: 1 }], b: { password: null } });
  // An env mapping with a bad value: the error shows the mapping without the secret.
  assert.throws(() => splitConfig({ env: { HF_TOKEN: "hf_SECRETenv789", N: [1] } }, "sft.yaml"), (e: Error) => /env=/.test(e.message) && !LEAK.test(e.message));
  // A flag given two values: the error counts them, without showing a token's.
  const c = capture();
  assert.equal(await sftMain(["--hub_token", "hf_SECRET123", "hf_SECRET123"], c.host), 1);
  assert.match(c.text(), /--hub_token takes one value, got 2 \(2 values\)/);
  assert.doesNotMatch(c.text(), LEAK);
  // A token file given as the config: the error does not echo its text.
  const tokenFile = join(root, "token");
  await writeFile(tokenFile, "hf_SECRET123\n");
  await assert.rejects(loadSFTConfig(tokenFile), (e: Error) => /a string/.test(e.message) && !LEAK.test(e.message));
  // A JSON config with a syntax error near a token: the position, not the text around it.
  const bad = join(root, "bad.json");
  await writeFile(bad, '{"learning_rate": 1e-3, "hub_token": hf_SECRET123}');
  await assert.rejects(loadSFTConfig(bad), (e: Error) => /bad\.json:1:\d+: invalid JSON/.test(e.message) && !LEAK.test(e.message));
});

test("Hub and HTTP errors never include the token (refused, missing and failing files)", async () => {
  const seen: string[] = [];
  const server: Server = createServer((req, res) => {
    seen.push(String(req.headers.authorization ?? ""));
    const status = req.url!.includes("missing") ? 404 : req.url!.includes("broken") ? 500 : 401;
    // A server that echoes what it was sent: the body is never shown.
    res.writeHead(status, { "content-type": "text/plain" }).end(`refused ${req.headers.authorization ?? ""}`);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const token = "hf_SECRET123";
    const errors: string[] = [];
    const grab = async (p: Promise<unknown>) => errors.push(await p.then(() => "no error", (e: Error) => `${e.message} ${String((e.cause as Error | undefined)?.message ?? "")}`));
    await grab(AutoModelForCausalLM.from_pretrained("org/private", { endpoint: base, token }));
    await grab(AutoTokenizer.from_pretrained("org/private", { endpoint: base, token } as never));
    await grab(loadDataset(`${base}/broken/data.jsonl`, { token }).toArray());
    await grab(loadDataset(`${base}/missing/data.jsonl`, { token }).toArray());
    process.env.HF_TOKEN = "hf_SECRETprocess";
    try {
      await grab(AutoModelForCausalLM.from_pretrained("org/gated", { endpoint: base }));
    } finally {
      delete process.env.HF_TOKEN;
    }
    assert.ok(seen.includes(`Bearer ${token}`) && seen.includes("Bearer hf_SECRETprocess"), "the tokens were sent");
    assert.equal(errors.length, 5);
    for (const m of errors) {
      assert.notEqual(m, "no error");
      assert.doesNotMatch(m, LEAK, m);
    }
    assert.match(errors[0]!, /HTTP 401/);
  } finally {
    server.close();
  }
});

// SECRETS lists every value above; a test that adds one adds it here, so LEAK keeps up.
test("the leak pattern catches each secret", () => {
  for (const s of SECRETS) assert.match(s, LEAK);
});
