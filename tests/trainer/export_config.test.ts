// exportTRLConfig: the YAML `trl sft --config` runs unchanged. Each case of tests/fixtures/trl_config.json (made by
// tools/fixtures/trl_config.py) holds a flat `trl sft` mapping, the YAML webtune exported for it, and what TRL's
// own parser (trl/scripts/sft.py's TrlParser over ScriptArguments, SFTConfig, ModelConfig, DatasetMixtureConfig)
// made of that YAML. Checked: the export is still that YAML; TRL knows every key; TRL's values are webtune's
// reading of the same file (key by key, in TRL's spelling); export → import → export is the same text and the
// same run; and `webtune sft --export_config`.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { parse } from "yaml";
import { CLI_KEYS } from "../../src/trainer/cli_args.ts";
import { sftMain } from "../../src/trainer/cli.ts";
import { reportIntegrations, SFT_DEFAULTS, SFTConfigError, suggestKey } from "../../src/trainer/config.ts";
import { loadSFTConfig, readSFTConfigFile, splitConfig, type LoadedSFTConfig } from "../../src/trainer/config_file.ts";
import { IGNORED, UNSUPPORTED } from "../../src/trainer/config_keys.ts";
import { exportTRLConfig, NOT_IN_TRL, WEBTUNE_ONLY } from "../../src/trainer/export_config.ts";

interface Case {
  name: string;
  input: Record<string, unknown>;
  yaml: string;
  remaining: string[];
  env: Record<string, string>;
  parsed: Record<string, unknown>;
  types: Record<string, string>;
  peft: { r: number; lora_alpha: number; lora_dropout: number; target_modules: string | string[]; use_rslora: boolean } | null;
}
const fx = JSON.parse(readFileSync(new URL("../fixtures/trl_config.json", import.meta.url), "utf8")) as { trl_keys: string[]; dumped: Record<string, unknown>; cases: Case[] };

let root = "";
before(async () => (root = await mkdtemp(join(tmpdir(), "webtune-export-"))));
after(() => rm(root, { recursive: true, force: true }));

const load = (c: Case) => loadSFTConfig({ text: c.yaml, name: `${c.name}.yaml` });
const dropNulls = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== null));

const MODEL_KEYS = ["model_name_or_path", "model_revision", "dtype", "trust_remote_code", "attn_implementation", "load_in_4bit", "load_in_8bit", "bnb_4bit_quant_type", "use_bnb_nested_quant", "bnb_4bit_quant_storage"];
const DATASET_KEYS = ["dataset_name", "dataset_config", "dataset_train_split", "dataset_test_split", "dataset_streaming", "test_split_size"];
const LORA_KEYS: Record<string, string> = { lora_r: "r", lora_alpha: "lora_alpha", lora_dropout: "lora_dropout", use_rslora: "use_rslora" };

/** webtune's value of a key TRL parsed, from the loaded parts. */
function webtuneValue(w: LoadedSFTConfig, key: string): unknown {
  if (MODEL_KEYS.includes(key)) return (w.model as unknown as Record<string, unknown>)[key];
  if (DATASET_KEYS.includes(key)) return (w.dataset as unknown as Record<string, unknown>)[key];
  if (key === "streaming") return w.dataset.dataset_streaming;
  if (key === "datasets") return w.dataset.datasets;
  if (key === "use_peft") return w.peft !== null;
  if (key === "lora_target_modules") return w.peft?.target_modules;
  if (key in LORA_KEYS) return (w.peft as Record<string, unknown> | null)?.[LORA_KEYS[key]!];
  return (w.args as unknown as Record<string, unknown>)[key];
}

for (const c of fx.cases) {
  test(`${c.name}: the export is the YAML TRL parsed, and TRL knows every key`, () => {
    assert.equal(exportTRLConfig(c.input, { header: false }), c.yaml, "the export changed: run .venv/bin/python tools/fixtures/trl_config.py");
    assert.deepEqual(c.remaining, []);
    for (const key of Object.keys(parse(c.yaml) as Record<string, unknown>)) assert.ok(key === "env" || fx.trl_keys.includes(key), `${key} is not a TRL key`);
    // Never a token, a webtune-only key or a key transformers 5 rejects.
    assert.doesNotMatch(c.yaml, /hf_secret|hub_token|HF_TOKEN|logging_dir|save_gguf_adapter|overwrite_output_dir|warmup_ratio|model_init_kwargs/);
  });

  test(`${c.name}: TRL's values are webtune's reading of the same file`, async () => {
    const w = await load(c);
    const yamlKeys = Object.keys(parse(c.yaml) as Record<string, unknown>);
    for (const [key, trl] of Object.entries(c.parsed)) {
      const mine = webtuneValue(w, key);
      const a = w.args;
      if (key === "report_to") assert.deepEqual(reportIntegrations(a.report_to), trl, key);
      // Keys TRL resolves later (in SFTTrainer) or not at all, which sftConfig() resolves at once, as TRL would.
      else if (key === "eval_steps" && trl === null) assert.equal(mine, a.logging_steps, key);
      else if (key === "data_seed" && trl === null) assert.equal(mine, a.seed, key);
      else if (key === "eval_packing" && trl === null) assert.equal(mine, a.packing, key);
      else if (key === "padding_free" && trl === false) assert.equal(mine, a.packing && a.packing_strategy !== "wrapped", key);
      // The same math: chunked_nll is nll in chunks; adamw_torch_fused is adamw_torch in one kernel.
      else if (key === "loss_type") assert.equal(mine === "chunked_nll" ? "nll" : mine, trl === "chunked_nll" ? "nll" : trl, key);
      else if (key === "optim" && !yamlKeys.includes("optim")) assert.deepEqual([mine, trl], ["adamw_torch", "adamw_torch_fused"]);
      else if (key === "datasets") assert.deepEqual(mine, (trl as Record<string, unknown>[]).map(dropNulls), key);
      else assert.deepEqual(mine, trl, `${key}: webtune ${JSON.stringify(mine)}, TRL ${JSON.stringify(trl)} (${c.types[key]})`);
    }
    assert.deepEqual(w.env, c.env);
    if (c.peft) {
      const p = w.peft!;
      assert.deepEqual({ r: p.r, lora_alpha: p.lora_alpha, lora_dropout: p.lora_dropout, target_modules: p.target_modules, use_rslora: p.use_rslora }, c.peft);
    } else assert.equal(w.peft, null);
  });

  test(`${c.name}: export → import → export is the same text and the same run`, async () => {
    const { data } = await readSFTConfigFile({ text: c.yaml, name: "x.yaml" });
    assert.equal(exportTRLConfig(data, { header: false }), c.yaml);
    const before = splitConfig(Object.fromEntries(Object.entries(c.input).filter(([k]) => !(k in WEBTUNE_ONLY))), "input", { coerce: true });
    const after = await load(c);
    for (const key of Object.keys(SFT_DEFAULTS)) {
      const want = (before.args as unknown as Record<string, unknown>)[key];
      const got = (after.args as unknown as Record<string, unknown>)[key];
      if (key === "bf16") assert.equal(got, want === true, "bf16: webtune's f32 default is written false");
      else if (key === "model_init_kwargs") assert.equal(got, null, "model_init_kwargs moves to ModelConfig keys (sft.py rebuilds it)");
      else assert.deepEqual(got, want, key);
    }
    const init = (c.input.model_init_kwargs ?? {}) as Record<string, unknown>;
    assert.deepEqual(after.model, { ...before.model, ...(init.dtype ? { dtype: init.dtype } : {}), ...(init.revision ? { model_revision: init.revision } : {}) });
    assert.deepEqual(after.quantization_config, before.quantization_config);
    const t = before.peft?.target_modules;
    if (Array.isArray(t) && t.length === 1) {
      // TRL would read a one-element list as a regex; the export writes the regex that means the list.
      const re = new RegExp(`^(?:${after.peft!.target_modules as string})$`);
      assert.ok(re.test(`model.layers.0.self_attn.${t[0]}`) && !re.test("model.layers.0.self_attn.k_proj"));
      assert.deepEqual({ ...after.peft, target_modules: t }, before.peft);
    } else assert.deepEqual(after.peft, before.peft);
    const name = before.dataset.dataset_name;
    if (name && /\.jsonl?$/.test(name)) {
      assert.deepEqual(after.dataset.datasets, [{ path: "json", data_files: name, split: "train" }], "a local file becomes a mixture entry");
      assert.equal(after.dataset.dataset_name, null);
    } else if (!before.dataset.datasets) assert.deepEqual(after.dataset, before.dataset);
  });
}

test("every key of a TRL config is one webtune reads; every key webtune reads is TRL's or left out of exports", () => {
  for (const key of fx.trl_keys) assert.equal(suggestKey(key), key, `${key}: TRL has it, webtune's config reader does not`);
  const ours = [...Object.keys(SFT_DEFAULTS), ...Object.keys(IGNORED), ...Object.keys(UNSUPPORTED), ...CLI_KEYS, "logging_dir"];
  for (const key of ours) assert.ok(fx.trl_keys.includes(key) || NOT_IN_TRL.includes(key) || key in WEBTUNE_ONLY, `${key}: neither TRL's nor listed as left out`);
  for (const key of NOT_IN_TRL) assert.ok(!fx.trl_keys.includes(key), `${key} is a TRL key: export it`);
});

test("a config with every key TRL resolved (a config dumped from Python) reads, and exports to TRL's keys only", () => {
  const c = splitConfig(fx.dumped, "dumped.yaml");
  assert.equal(c.model.model_name_or_path, "org/model");
  assert.equal(c.dataset.dataset_name, "org/data");
  assert.equal(c.args.optim, "adamw_torch_fused");
  assert.equal(c.args.loss_type, "chunked_nll");
  assert.deepEqual(reportIntegrations(c.args.report_to), []);
  // What TRL's defaults ask for that webtune does differently, each noted once; nothing else.
  assert.deepEqual(c.notes.map((n) => n.split(/[=: ]/)[0]).sort(), ["accelerator_config", "bf16", "loss_type", "use_cpu"]);
  const yaml = exportTRLConfig(fx.dumped, { header: false });
  for (const key of Object.keys(parse(yaml) as Record<string, unknown>)) assert.ok(fx.trl_keys.includes(key), key);
});

test("exportTRLConfig: values in TRL's types, the page's options, and clear errors", () => {
  const yaml = exportTRLConfig(
    { dataset_name: "my upload.csv", learning_rate: 2e-5, adam_epsilon: 1e-8, num_train_epochs: 2, eval_strategy: "no", save_strategy: "no", hub_token: "hf_x", push_to_hub_token: "hf_y" },
    { model_name_or_path: "HuggingFaceTB/SmolLM2-135M", dataFile: (p) => `data/${p}`, header: ["hello"] },
  );
  assert.match(yaml, /^# hello\nmodel_name_or_path: HuggingFaceTB\/SmolLM2-135M\ndatasets:\n- path: csv\n {2}data_files: data\/my upload.csv\n {2}split: train\n/);
  // PyYAML (YAML 1.1) reads "1e-8" as a string and `no` as false: floats carry a point, such strings quotes.
  assert.match(yaml, /\nlearning_rate: 0\.00002\n/);
  assert.match(yaml, /\nadam_epsilon: 1\.0e-8\n/);
  assert.match(yaml, /\nnum_train_epochs: 2\.0\n/);
  assert.match(yaml, /\neval_strategy: "no"\n/);
  assert.doesNotMatch(yaml, /hf_x|hf_y|token/);
  assert.equal(parse(yaml).learning_rate, 2e-5);
  const notes: string[] = [];
  exportTRLConfig({ model_name_or_path: "m", dataset_name: "org/data", save_gguf_adapter: true, hub_token: "x", group_by_length: false }, { warn: (n) => notes.push(n) });
  assert.deepEqual(notes.map((n) => n.split(" ")[0]), ["save_gguf_adapter", "hub_token"]);

  assert.throws(() => exportTRLConfig({ dataset_name: "d.jsonl" }), /no model_name_or_path: TRL loads the model from a directory or a Hub id .*tinyModelFiles\(\)/);
  assert.throws(() => exportTRLConfig({ model_name_or_path: "m" }), /no dataset: set dataset_name/);
  assert.throws(() => exportTRLConfig({ model_name_or_path: "m", dataset_name: "./data/rows.xml" }), /cannot tell which datasets builder reads "\.\/data\/rows\.xml"/);
  assert.throws(() => exportTRLConfig({ model_name_or_path: "m", dataset_name: "d.jsonl", learnig_rate: 1 }), (e: unknown) => e instanceof SFTConfigError && /did you mean learning_rate/.test((e as Error).message));
});

test("webtune sft --export_config writes the YAML and exits 0 without training", async () => {
  const path = join(root, "sft.yaml");
  const lines: string[] = [];
  const host = { write: () => {}, log: (s: string) => lines.push(s), error: (s: string) => lines.push(s), isTTY: false };
  const argv = ["--model", "org/model", "--dataset", "data/train.jsonl", "--max_steps", "3", "--learning_rate", "2e-4", "--logging_dir", "tb", "--report_to", "tensorboard"];
  assert.equal(await sftMain([...argv, "--export_config", path], host), 0, lines.join("\n"));
  const text = await readFile(path, "utf8");
  assert.equal(text, exportTRLConfig({ use_peft: true, model_name_or_path: "org/model", dataset_name: "data/train.jsonl", max_steps: "3", learning_rate: "2e-4", logging_dir: "tb", report_to: "tensorboard" }));
  assert.match(text, /\nmax_steps: 3\n/);
  assert.match(text, /\nlearning_rate: 0\.0002\n/);
  assert.match(text, /\ndatasets:\n- path: json\n {2}data_files: data\/train\.jsonl\n/);
  assert.ok(lines.some((l) => l.startsWith(`wrote ${path}: run it with Python TRL as \`trl sft --config ${path}\``)), lines.join("\n"));
  assert.ok(lines.some((l) => /note: --export_config: logging_dir left out/.test(l)));
  assert.ok(!lines.some((l) => /webtune on /.test(l)), "no device, no training");

  lines.length = 0;
  assert.equal(await sftMain(["--export_config", path], host), 1);
  assert.match(lines.join("\n"), /error: exportTRLConfig: no model_name_or_path/);
  lines.length = 0;
  assert.equal(await sftMain([...argv, "--export_config"], host), 1);
  assert.match(lines.join("\n"), /error: --export_config needs a file name/);
});
