import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { optimizerNames } from "../../src/nn/optim.ts";
import { assertMaxStepsForStream, baseWeightsDtype, intervalSteps, SFT_DEFAULTS, sftConfig, SFTConfigError, suggestKey } from "../../src/trainer/config.ts";
import { loadSFTConfig } from "../../src/trainer/config_file.ts";

/** The problems of a config that must fail. */
function problemsOf(input: Record<string, unknown>): string[] {
  try {
    sftConfig(input);
  } catch (e) {
    assert.ok(e instanceof SFTConfigError, `expected an SFTConfigError, got ${e}`);
    return e.problems;
  }
  assert.fail(`sftConfig(${JSON.stringify(input)}) did not throw`);
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "webtune-config-"));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test("defaults are TRL's (spec: SFTConfig and the inherited training arguments)", () => {
  const expected = {
    // SFT-specific
    dataset_text_field: "text",
    max_length: 1024,
    truncation_mode: "keep_start",
    shuffle_dataset: false,
    packing: false,
    packing_strategy: "bfd",
    padding_free: false,
    pad_to_multiple_of: null,
    eval_packing: null,
    completion_only_loss: null,
    assistant_only_loss: false,
    loss_type: "nll",
    eos_token: null,
    pad_token: null,
    chat_template_path: null,
    model_init_kwargs: null,
    dataset_kwargs: null,
    // TrainingArguments, TRL's defaults
    output_dir: "trainer_output",
    learning_rate: 2e-5,
    weight_decay: 0,
    adam_beta1: 0.9,
    adam_beta2: 0.999,
    adam_epsilon: 1e-8,
    max_grad_norm: 1.0,
    num_train_epochs: 3,
    max_steps: -1,
    lr_scheduler_type: "linear",
    lr_scheduler_kwargs: null,
    warmup_steps: 0,
    warmup_ratio: null,
    gradient_accumulation_steps: 1,
    per_device_train_batch_size: 8,
    per_device_eval_batch_size: 8,
    gradient_checkpointing: true,
    gradient_checkpointing_kwargs: null,
    logging_strategy: "steps",
    logging_steps: 10,
    logging_first_step: false,
    save_strategy: "steps",
    save_steps: 500,
    save_total_limit: null,
    eval_strategy: "no",
    eval_steps: null,
    seed: 42,
    data_seed: null,
    run_name: null,
    resume_from_checkpoint: null,
    dataloader_drop_last: false,
    report_to: "none",
    bf16: null,
    fp16: false,
    optim: "adamw_torch",
  };
  assert.deepEqual({ ...SFT_DEFAULTS }, expected);
  assert.ok(Object.isFrozen(SFT_DEFAULTS));

  // Resolved: eval_steps = logging_steps, eval_packing = packing, data_seed = seed; no notes.
  const c = sftConfig();
  assert.deepEqual({ ...c }, { ...expected, eval_steps: 10, eval_packing: false, data_seed: 42 });
  assert.deepEqual(c.notes, []);
  assert.equal(JSON.parse(JSON.stringify(c)).notes, undefined, "notes are not serialised");
});

test("given values are kept; eval_steps follows logging_steps unless set", () => {
  const c = sftConfig({ learning_rate: 2e-4, logging_steps: 5, max_length: null, num_train_epochs: 1.5, max_steps: 100, run_name: "r" });
  assert.equal(c.learning_rate, 2e-4);
  assert.equal(c.eval_steps, 5);
  assert.equal(c.max_length, null);
  assert.equal(c.num_train_epochs, 1.5);
  assert.equal(sftConfig({ logging_steps: 5, eval_steps: 20 }).eval_steps, 20);
  assert.equal(sftConfig({ packing: true }).eval_packing, true);
  assert.equal(sftConfig({ packing: true, eval_packing: false }).eval_packing, false);
  assert.equal(sftConfig({ seed: 7 }).data_seed, 7);
  assert.equal(sftConfig({ seed: 7, data_seed: 3 }).data_seed, 3);
  assert.equal(sftConfig({ resume_from_checkpoint: true }).resume_from_checkpoint, true);
  assert.equal(sftConfig({ resume_from_checkpoint: "out/checkpoint-500" }).resume_from_checkpoint, "out/checkpoint-500");
  assert.deepEqual(sftConfig({ report_to: ["none"] }).notes, []);
});

test("unknown keys suggest the nearest valid name, all at once", () => {
  assert.match(problemsOf({ learning_rat: 1e-4 })[0]!, /unknown key "learning_rat" \(did you mean learning_rate\?\)/);
  const problems = problemsOf({
    lerning_rate: 1e-4,
    num_train_epoch: 2,
    gradient_accumulation: 4,
    warmup_ration: 0.1,
    "per-device-train-batch-size": 2,
    Packing: true,
    max_seq_length: 512,
    evaluation_strategy: "steps",
    per_device_batch_size: 4,
    dataset_batch_size: 8,
    completely_unrelated_thing: 1,
  });
  const want: [string, RegExp][] = [
    ["lerning_rate", /did you mean learning_rate\?/],
    ["num_train_epoch", /did you mean num_train_epochs\?/],
    ["gradient_accumulation", /did you mean gradient_accumulation_steps\?/],
    ["warmup_ration", /did you mean warmup_ratio\?/],
    ["per-device-train-batch-size", /did you mean per_device_train_batch_size\?/],
    ["Packing", /did you mean packing\?/],
    ["max_seq_length", /did you mean max_length\?/],
    ["evaluation_strategy", /did you mean eval_strategy\?/],
    ["per_device_batch_size", /did you mean per_device_train_batch_size\?/],
    ["dataset_batch_size", /removed from TRL/],
    ["completely_unrelated_thing", /no similar option/],
  ];
  assert.equal(problems.length, want.length, problems.join("\n"));
  for (const [key, re] of want) {
    const line = problems.find((p) => p.includes(`"${key}"`));
    assert.ok(line, `no problem names ${key}: ${problems.join("\n")}`);
    assert.match(line, re);
  }
  assert.equal(suggestKey("adam_beta"), "adam_beta1");
  assert.equal(suggestKey("lora_rr"), "lora_r");
  assert.equal(suggestKey("zzzzzz"), null);
});

test("the error message lists every problem, one per line", () => {
  assert.throws(() => sftConfig({ learning_rat: 1, seed: -1 }), (e: Error) => {
    assert.match(e.message, /^SFTConfig: 2 problems:\n {2}- unknown key "learning_rat" \(did you mean learning_rate\?\)\n {2}- seed=-1 is not allowed: expected an integer ≥ 0$/);
    return true;
  });
});

test("wrong types and ranges name the key, the value and what is allowed", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ learning_rate: "fast" }, /learning_rate="fast" is not allowed: expected a number ≥ 0/],
    [{ learning_rate: -1e-4 }, /learning_rate=-0.0001 is not allowed/],
    [{ per_device_train_batch_size: 0 }, /per_device_train_batch_size=0 is not allowed: expected an integer ≥ 1/],
    [{ gradient_accumulation_steps: 2.5 }, /gradient_accumulation_steps=2.5 .* an integer ≥ 1/],
    [{ max_length: 0 }, /max_length=0 .* an integer ≥ 1 or null/],
    [{ packing: "yes" }, /packing="yes" .* true or false/],
    [{ lr_scheduler_type: "cosine_with_restarts" }, /lr_scheduler_type="cosine_with_restarts" .* "linear", "cosine", "constant", "constant_with_warmup" \(webtune does not implement/],
    [{ lr_scheduler_type: "linera" }, /lr_scheduler_type="linera" .* one of "linear", "cosine"/],
    [{ packing_strategy: "ffd" }, /packing_strategy="ffd" .* one of "bfd", "bfd_split", "wrapped"/],
    [{ loss_type: "dpo" }, /loss_type="dpo" .* one of "nll", "dft", "chunked_nll"/],
    [{ truncation_mode: "keep_end" }, /truncation_mode="keep_end" .* "keep_start" \("keep_end" is deprecated/],
    [{ save_strategy: "best" }, /save_strategy="best" .* "no", "steps", "epoch"/],
    [{ eval_strategy: "always" }, /eval_strategy="always" .* one of "no", "steps", "epoch"/],
    [{ logging_strategy: 1 }, /logging_strategy=1 .* one of "no", "steps", "epoch"/],
    [{ optim: "adam" }, /optim="adam" is not allowed: expected one of "adamw_torch", "adamw_torch_fused" \(the optimizers webtune implements\)/],
    [{ warmup_steps: 1.5 }, /warmup_steps=1.5 .* an integer number of steps ≥ 0, or a fraction of the total steps in \[0, 1\)/],
    [{ warmup_steps: -1 }, /warmup_steps=-1 /],
    [{ warmup_ratio: 1.2 }, /warmup_ratio=1.2 .* a fraction in \[0, 1\)/],
    [{ max_steps: 0 }, /max_steps=0 .* a positive integer, or -1/],
    [{ num_train_epochs: 0 }, /num_train_epochs=0 .* a number > 0/],
    [{ adam_beta2: 1 }, /adam_beta2=1 .* \[0, 1\)/],
    [{ logging_steps: 0 }, /logging_steps=0 .* an integer ≥ 1 or a fraction in \(0, 1\)/],
    [{ save_steps: 2.5 }, /save_steps=2.5 /],
    [{ save_total_limit: 0 }, /save_total_limit=0 .* integer ≥ 1 or null/],
    [{ lr_scheduler_kwargs: { num_cycles: 2 } }, /lr_scheduler_kwargs=\{"num_cycles":2\} .* null or \{\}/],
    [{ model_init_kwargs: "dtype=float16" }, /model_init_kwargs="dtype=float16" .* a mapping/],
    [{ report_to: 3 }, /report_to=3 .* a name or a list of names/],
    [{ neftune_noise_alpha: 5 }, /neftune_noise_alpha=5 is not supported: NEFTune/],
    [{ group_by_length: true }, /group_by_length=true is not supported/],
    [{ bf16: true, fp16: true }, /bf16 and fp16 are both true/],
    [{ warmup_ratio: 0.1, warmup_steps: 10 }, /warmup_ratio=0.1 and warmup_steps=10 are both set/],
    [{ packing: true, max_length: null }, /packing needs max_length/],
    [{ target_modules: ["q_proj"] }, /"target_modules" is a LoraConfig \(PEFT\) key, not an SFTConfig option: .*lora_target_modules/],
    [{ model_name_or_path: "x" }, /"model_name_or_path" is a model\/dataset\/LoRA key of `trl sft`/],
  ];
  for (const [input, re] of cases) {
    const problems = problemsOf(input);
    assert.equal(problems.length, 1, `${JSON.stringify(input)}: ${problems.join("\n")}`);
    assert.match(problems[0]!, re, JSON.stringify(input));
  }
  assert.throws(() => sftConfig("lr=1" as unknown as Record<string, unknown>), /expected a mapping of options/);
});

test("inactive values of unsupported keys are accepted (a dumped TrainingArguments)", () => {
  const c = sftConfig({ neftune_noise_alpha: null, label_smoothing_factor: 0, group_by_length: false, load_best_model_at_end: false, ddp_timeout: 1800, push_to_hub: false, dataloader_num_workers: 0, tf32: null });
  assert.deepEqual(c.notes, []);
});

test("keys that mean nothing on WebGPU are accepted, each with its note, once", () => {
  const warned: string[] = [];
  const c = sftConfig(
    {
      bf16: true,
      dataloader_num_workers: 4,
      tf32: true,
      torch_compile: true,
      ddp_find_unused_parameters: false,
      ddp_backend: "nccl",
      deepspeed: "ds.json",
      fsdp: "full_shard",
      use_liger_kernel: true,
      push_to_hub: true,
      hub_model_id: "me/model",
      activation_offloading: true,
      gradient_checkpointing_kwargs: { use_reentrant: false },
      model_init_kwargs: { dtype: "bfloat16" },
    },
    { warn: (n) => warned.push(n) },
  );
  const expectNote = (re: RegExp) => assert.ok(c.notes.some((n) => re.test(n)), `no note matches ${re}:\n${c.notes.join("\n")}`);
  expectNote(/^bf16=true: f16 storage of the frozen base weights where the adapter has shader-f16 \(dtype float16\); compute stays f32$/);
  expectNote(/^dataloader_num_workers=4: ignored/);
  expectNote(/^tf32=true: ignored/);
  expectNote(/^torch_compile=true: ignored/);
  expectNote(/^ddp_backend="nccl": ignored: webtune trains on one WebGPU device/);
  expectNote(/^deepspeed="ds.json": ignored/);
  expectNote(/^fsdp="full_shard": ignored/);
  expectNote(/^use_liger_kernel=true: ignored/);
  expectNote(/^push_to_hub=true: ignored: webtune does not upload/);
  expectNote(/^hub_model_id="me\/model": ignored/);
  expectNote(/^activation_offloading=true: ignored/);
  expectNote(/^gradient_checkpointing_kwargs=\{"use_reentrant":false\}: accepted/);
  assert.ok(!c.notes.some((n) => n.startsWith("ddp_find_unused_parameters")), "false is inactive: no note");
  assert.deepEqual(warned, c.notes, "warn is called once per note");
  assert.equal(new Set(c.notes).size, c.notes.length);
  // The accepted keys are kept as given.
  assert.equal(c.bf16, true);
  assert.equal((c as unknown as Record<string, unknown>).deepspeed, "ds.json");
  assert.deepEqual(c.model_init_kwargs, { dtype: "bfloat16" });
  // The implemented optimizers and "none" are silent.
  for (const optim of optimizerNames()) assert.deepEqual(sftConfig({ optim, report_to: "none" }).notes, []);
  assert.match(sftConfig({ fp16: true }).notes[0]!, /^fp16=true: f16 storage/);
});

test("optim: a name with no implementation is an error listing the implemented ones; optim_args only empty", () => {
  const implemented = optimizerNames().map((n) => `"${n}"`).join(", ");
  assert.ok(implemented.includes('"adamw_torch"'), implemented);
  // Unknown names, and transformers' names webtune does not implement (adamw_hf is gone from transformers 5).
  for (const optim of ["adamw_trch", "adafactor", "paged_adamw_8bit", "sgd", "adamw_hf"]) {
    const problems = problemsOf({ optim });
    assert.equal(problems.length, 1, problems.join("\n"));
    assert.equal(problems[0], `optim="${optim}" is not allowed: expected one of ${implemented} (the optimizers webtune implements)`);
  }
  // transformers' older switch for Adafactor, and optimizer options AdamW does not read.
  assert.match(problemsOf({ adafactor: true })[0]!, new RegExp(`^adafactor=true is not supported: Adafactor is not implemented \\(optim is one of ${implemented}\\)`));
  assert.match(problemsOf({ optim_args: "betas=(0.9,0.95)" })[0]!, /^optim_args="betas=\(0.9,0.95\)" is not supported: webtune's optimizers take no optim_args; AdamW is set by learning_rate, adam_beta1\/2/);
  for (const optim_args of [null, ""]) assert.deepEqual(sftConfig({ optim_args, adafactor: false }).notes, [], `optim_args=${JSON.stringify(optim_args)}`);
  assert.equal(sftConfig({ optim: "adamw_torch_fused" }).optim, "adamw_torch_fused");
});

test("cross-key rules: padding_free by packing, warmup_ratio, loss_type, bfd-requeue", () => {
  for (const packing_strategy of ["bfd", "bfd_split"] as const) {
    const c = sftConfig({ packing: true, packing_strategy });
    assert.equal(c.padding_free, true);
    assert.match(c.notes.join("\n"), new RegExp(`packing_strategy "${packing_strategy}": padding_free is turned on`));
  }
  const wrapped = sftConfig({ packing: true, packing_strategy: "wrapped" });
  assert.equal(wrapped.padding_free, false);
  assert.match(wrapped.notes.join("\n"), /attention crosses example boundaries/);
  assert.deepEqual(sftConfig({ packing: true, padding_free: true }).notes, [], "no note when padding_free is already on");

  const w = sftConfig({ warmup_ratio: 0.1 });
  assert.equal(w.warmup_steps, 0.1);
  assert.equal(w.warmup_ratio, null);
  assert.match(w.notes[0]!, /warmup_ratio=0.1: read as warmup_steps=0.1/);
  assert.equal(sftConfig({ warmup_steps: 0.05 }).warmup_steps, 0.05);
  assert.equal(sftConfig({ warmup_steps: 100 }).warmup_steps, 100);

  const chunked = sftConfig({ loss_type: "chunked_nll" });
  assert.equal(chunked.loss_type, "chunked_nll");
  assert.match(chunked.notes[0]!, /same math as "nll"/);
  assert.equal(sftConfig({ packing_strategy: "bfd-requeue" }).packing_strategy, "bfd_split");
});

test("trainer helpers: stream needs max_steps, fractional intervals, base dtype", () => {
  assert.throws(() => assertMaxStepsForStream(sftConfig()), /a stream of unknown length.*set max_steps > 0 \(it is -1\)/);
  assertMaxStepsForStream(sftConfig({ max_steps: 10 }));
  assert.equal(intervalSteps(10, 1000), 10);
  assert.equal(intervalSteps(0.25, 10), 3);
  assert.equal(intervalSteps(0.001, 10), 1);
  assert.equal(baseWeightsDtype(sftConfig({ bf16: true }), true), "float16");
  assert.equal(baseWeightsDtype(sftConfig({ bf16: true }), false), "float32");
  assert.equal(baseWeightsDtype(sftConfig(), true), "float32");
});

test("coerce reads command-line strings", () => {
  const c = sftConfig({ learning_rate: "2e-4", packing: "false", max_length: "None", run_name: "123", eval_steps: "50" }, { coerce: true });
  assert.equal(c.learning_rate, 2e-4);
  assert.equal(c.packing, false);
  assert.equal(c.max_length, null);
  assert.equal(c.run_name, "123", "a string key keeps its string");
  assert.equal(c.eval_steps, 50);
  assert.throws(() => sftConfig({ learning_rate: "2e-4" }), /learning_rate="2e-4" is not allowed/);
});

const TRL_YAML = `# trl sft --config sft.yaml
model_name_or_path: HuggingFaceTB/SmolLM2-135M-Instruct
model_revision: main
torch_dtype: bfloat16
attn_implementation: flash_attention_2
dataset_name: trl-lib/Capybara
dataset_config: default
dataset_train_split: train
use_peft: true
lora_r: 32
lora_alpha: 16
lora_dropout: 0.1
lora_target_modules: all-linear
learning_rate: 2.0e-4
num_train_epochs: 1
per_device_train_batch_size: 2
gradient_accumulation_steps: 8
gradient_checkpointing: true
logging_steps: 25
eval_strategy: steps
eval_steps: 100
max_length: 2048
packing: true
bf16: true
report_to: tensorboard
output_dir: SmolLM2-135M-SFT
env:
  HF_HUB_ENABLE_HF_TRANSFER: 1
`;

test("a TRL YAML config file: args, model, dataset and peft apart", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "sft.yaml");
    await writeFile(path, TRL_YAML);
    const { args, model, dataset, peft, env, notes } = await loadSFTConfig(path);
    assert.equal(args.learning_rate, 2e-4);
    assert.equal(args.num_train_epochs, 1);
    assert.equal(args.per_device_train_batch_size, 2);
    assert.equal(args.gradient_accumulation_steps, 8);
    assert.equal(args.eval_steps, 100);
    assert.equal(args.max_length, 2048);
    assert.equal(args.padding_free, true);
    assert.equal(args.output_dir, "SmolLM2-135M-SFT");
    assert.equal(args.seed, 42, "defaults fill the rest");
    assert.deepEqual(model, {
      model_name_or_path: "HuggingFaceTB/SmolLM2-135M-Instruct",
      model_revision: "main",
      dtype: "bfloat16",
      trust_remote_code: false,
      attn_implementation: "flash_attention_2",
      load_in_4bit: false,
      load_in_8bit: false,
      bnb_4bit_quant_type: "nf4",
      use_bnb_nested_quant: false,
      bnb_4bit_quant_storage: null,
    });
    assert.deepEqual(dataset, {
      dataset_name: "trl-lib/Capybara",
      dataset_config: "default",
      dataset_train_split: "train",
      dataset_test_split: "test",
      dataset_streaming: false,
      datasets: null,
      test_split_size: null,
    });
    assert.deepEqual(peft, { r: 32, lora_alpha: 16, lora_dropout: 0.1, target_modules: "all-linear", use_rslora: false, bias: "none", task_type: "CAUSAL_LM" });
    assert.deepEqual(env, { HF_HUB_ENABLE_HF_TRANSFER: "1" });
    for (const re of [/^bf16=true/, /^dtype="bfloat16": bf16 storage of the frozen base weights/, /^attn_implementation="flash_attention_2": ignored/, /padding_free is turned on/]) {
      assert.ok(notes.some((n) => re.test(n)), `no note matches ${re}:\n${notes.join("\n")}`);
    }
  });
});

test("a JSON config file; TRL's ModelConfig LoRA defaults; lora keys without use_peft", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "sft.json");
    await writeFile(path, JSON.stringify({ model_name_or_path: "m", use_peft: true, lora_target_modules: ["q_proj", "v_proj"], max_steps: 50, warmup_ratio: 0.03 }, null, 2));
    const { args, peft, model, dataset } = await loadSFTConfig(path);
    assert.equal(args.max_steps, 50);
    assert.equal(args.warmup_steps, 0.03);
    assert.deepEqual(peft, { r: 16, lora_alpha: 32, lora_dropout: 0.05, target_modules: ["q_proj", "v_proj"], use_rslora: false, bias: "none", task_type: "CAUSAL_LM" });
    assert.equal(model.model_name_or_path, "m");
    assert.equal(dataset.dataset_name, null);
  });
  const full = await loadSFTConfig("lora_r: 8\nlearning_rate: 1.0e-5\n");
  assert.equal(full.peft, null);
  assert.ok(full.notes.some((n) => /^lora_r: ignored without use_peft: true/.test(n)), full.notes.join("\n"));
  assert.equal(full.args.learning_rate, 1e-5);
  // Text given directly: JSON or YAML by its look, or by `format`; an empty file is all defaults.
  assert.equal((await loadSFTConfig('{"seed": 1}')).args.seed, 1);
  assert.equal((await loadSFTConfig({ text: "seed: 2", name: "x.yaml" })).args.seed, 2);
  assert.equal((await loadSFTConfig({ text: "" }, { format: "yaml" })).args.seed, 42);
});

test("config files: errors name the file, the line and the key", async () => {
  await withTempDir(async (dir) => {
    const yamlPath = join(dir, "bad.yaml");
    await writeFile(yamlPath, "learning_rate: 2.0e-4\npacking: true\nlora_target_modules: [q_proj, v_proj\nseed: 1\n");
    await assert.rejects(loadSFTConfig(yamlPath), (e: Error) => {
      assert.ok(e instanceof SyntaxError);
      assert.match(e.message, new RegExp(`^${yamlPath.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}:4:\\d+: invalid YAML: `));
      return true;
    });
    const jsonPath = join(dir, "bad.json");
    await writeFile(jsonPath, '{\n  "learning_rate": 2e-4,\n  "packing": tru\n}\n');
    await assert.rejects(loadSFTConfig(jsonPath), /bad\.json:3:14: invalid JSON/);
    const badKeys = join(dir, "keys.yaml");
    await writeFile(badKeys, "learning_rat: 1.0e-4\nlora_rr: 8\nmodel_name_or_path: 3\n");
    await assert.rejects(loadSFTConfig(badKeys), (e: Error) => {
      assert.ok(e instanceof SFTConfigError);
      assert.match(e.message, /keys\.yaml: 3 problems/);
      assert.deepEqual(e.problems, [
        'unknown key "learning_rat" (did you mean learning_rate?)',
        'unknown key "lora_rr" (did you mean lora_r?)',
        "model_name_or_path=3 is not allowed: expected a non-empty string or null",
      ]);
      return true;
    });
    await assert.rejects(loadSFTConfig(join(dir, "missing.yaml")), /cannot read .*missing\.yaml/);
    await assert.rejects(loadSFTConfig({ text: "- a\n- b\n", name: "list.yaml" }), /list\.yaml: expected a mapping of options at the top level, got a list/);
    await assert.rejects(loadSFTConfig({ text: "use_peft: true\nuse_dora: true\n" }), /use_dora=true is not allowed: expected false \(DoRA is not supported/);
  });
});

test("dataset_kwargs: only {skip_prepare_dataset: false}; a key TRL ignores, or skipping preparation webtune cannot do, is an error", () => {
  assert.deepEqual(sftConfig({ dataset_kwargs: { skip_prepare_dataset: false } }).dataset_kwargs, { skip_prepare_dataset: false });
  assert.throws(() => sftConfig({ dataset_kwargs: { skip_prepare_dataset: true } }), /dataset_kwargs=.*webtune always prepares the dataset/);
  assert.throws(() => sftConfig({ dataset_kwargs: { add_special_tokens: false } }), /only key TRL reads is skip_prepare_dataset; "add_special_tokens" would be ignored/);
});
