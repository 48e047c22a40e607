// report_to "tensorboard": the event files a real training run writes, read back by a small reader written here
// (its own CRC-32C and protobuf decoding, not the writer's) — every record's CRCs checked, the Event protos
// decoded, and each scalar equal to the trainer's log_history at its step, under transformers' tags; the bytes
// of torch's SummaryWriter for the same calls (tools/fixtures/tensorboard_events.py); the log directory as
// transformers 5 names it; trainer_state.json in TrainerState's layout; report_to names webtune lacks.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { AutoModelForCausalLM, AutoTokenizer, FACTS, SFTTrainer, tinyModelSource } from "../../src/index.ts";
import { reportIntegrations, sftConfig } from "../../src/trainer/config.ts";
import { crc32c, SummaryWriter, TensorBoardCallback } from "../../src/trainer/tensorboard.ts";
import { setup } from "../helpers.ts";

let root = "";
before(async () => {
  await setup();
  root = await mkdtemp(join(tmpdir(), "webtune-tensorboard-"));
});
after(() => rm(root, { recursive: true, force: true }));

// ---------------------------------------------------------------------------------------------------------
// The reader: TFRecords and the few protobuf messages of an event file.

/** CRC-32C bit by bit (polynomial 0x1EDC6F41, reflected 0x82F63B78): a second implementation, not the writer's table. */
function crc32cBitwise(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}
const masked = (b: Uint8Array) => {
  const c = crc32cBitwise(b);
  return ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0;
};

/** The records of an event file; throws on a bad CRC or a truncated record. */
function readRecords(bytes: Uint8Array): Uint8Array[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Uint8Array[] = [];
  let at = 0;
  while (at < bytes.length) {
    if (at + 12 > bytes.length) throw new Error(`truncated record header at byte ${at}`);
    const len = Number(view.getBigUint64(at, true));
    if (view.getUint32(at + 8, true) !== masked(bytes.subarray(at, at + 8))) throw new Error(`bad length CRC at byte ${at}`);
    if (at + 12 + len + 4 > bytes.length) throw new Error(`truncated record at byte ${at}`);
    const data = bytes.subarray(at + 12, at + 12 + len);
    if (view.getUint32(at + 12 + len, true) !== masked(data)) throw new Error(`bad data CRC in the record at byte ${at}`);
    out.push(data);
    at += 12 + len + 4;
  }
  return out;
}

type Field = { n: number; wire: number; v: bigint | Uint8Array | DataView };
/** A protobuf message's fields in order (varint, fixed64, length-delimited, fixed32). */
function fields(b: Uint8Array): Field[] {
  const out: Field[] = [];
  let i = 0;
  const varint = () => {
    let x = 0n;
    for (let s = 0n; ; s += 7n) {
      const byte = b[i++]!;
      x |= BigInt(byte & 0x7f) << s;
      if (!(byte & 0x80)) return x;
    }
  };
  while (i < b.length) {
    const key = Number(varint());
    const [n, wire] = [key >> 3, key & 7];
    if (wire === 0) out.push({ n, wire, v: varint() });
    else if (wire === 1) (out.push({ n, wire, v: new DataView(b.buffer, b.byteOffset + i, 8) }), (i += 8));
    else if (wire === 5) (out.push({ n, wire, v: new DataView(b.buffer, b.byteOffset + i, 4) }), (i += 4));
    else if (wire === 2) {
      const len = Number(varint());
      out.push({ n, wire, v: b.subarray(i, i + len) });
      i += len;
    } else throw new Error(`wire type ${wire}`);
  }
  return out;
}
const text = (v: Field["v"]) => new TextDecoder().decode(v as Uint8Array);

interface Value { tag: string; simple_value?: number; text?: string; plugin?: string }
interface Event { wall_time: number; step: number; file_version?: string; writer?: string; values: Value[] }

/** Event {wall_time 1, step 2, file_version 3, summary 5 {value 1 {tag 1, simple_value 2, tensor 8, metadata 9}}, source_metadata 10}. */
function decodeEvent(b: Uint8Array): Event {
  const e: Event = { wall_time: 0, step: 0, values: [] };
  for (const f of fields(b)) {
    if (f.n === 1) e.wall_time = (f.v as DataView).getFloat64(0, true);
    else if (f.n === 2) e.step = Number(f.v as bigint);
    else if (f.n === 3) e.file_version = text(f.v);
    else if (f.n === 10) e.writer = text(fields(f.v as Uint8Array)[0]!.v);
    else if (f.n === 5) {
      for (const vf of fields(f.v as Uint8Array)) {
        const value: Value = { tag: "" };
        for (const g of fields(vf.v as Uint8Array)) {
          if (g.n === 1) value.tag = text(g.v);
          else if (g.n === 2) value.simple_value = (g.v as DataView).getFloat32(0, true);
          else if (g.n === 8) value.text = text(fields(g.v as Uint8Array).find((t) => t.n === 8)!.v);
          else if (g.n === 9) value.plugin = text(fields(fields(g.v as Uint8Array)[0]!.v as Uint8Array)[0]!.v);
        }
        e.values.push(value);
      }
    }
  }
  return e;
}

// ---------------------------------------------------------------------------------------------------------

test("CRC-32C: the check value and the writer's table agree with the bitwise reader", () => {
  assert.equal(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
  const bytes = Uint8Array.from({ length: 300 }, (_, i) => (i * 37 + 11) & 0xff);
  assert.equal(crc32c(bytes), crc32cBitwise(bytes));
});

test("the writer's bytes are torch's SummaryWriter's for the same calls", async () => {
  const fx = JSON.parse(readFileSync(new URL("../fixtures/tensorboard_events.json", import.meta.url), "utf8")) as {
    wall_time: number;
    calls: [string, string, string | number, number | null][];
    bytes: string;
  };
  const w = await SummaryWriter.create(join(root, "golden"), { now: () => fx.wall_time, filesystem: false, host: "h", pid: 1 });
  for (const [kind, tag, value, step] of fx.calls) {
    if (kind === "text") w.add_text(tag, value as string, step);
    else w.add_scalar(tag, value as number, step);
  }
  const want = Uint8Array.from(atob(fx.bytes), (c) => c.charCodeAt(0));
  assert.deepEqual(w.bytes(), want);
  assert.match(w.file.name, /^events\.out\.tfevents\.1767225600\.h\.1\.\d+$/);
});

test("a training run with report_to tensorboard: the event file holds log_history under transformers' tags", async () => {
  const out = join(root, "run");
  const source = tinyModelSource();
  const model = await AutoModelForCausalLM.from_pretrained(source);
  const trainer = new SFTTrainer({
    model,
    processing_class: await AutoTokenizer.from_pretrained(source),
    train_dataset: FACTS.slice(0, 8) as unknown as Record<string, unknown>[],
    eval_dataset: FACTS.slice(8, 12) as unknown as Record<string, unknown>[],
    peft_config: { r: 4, lora_alpha: 8, target_modules: "all-linear" },
    args: {
      output_dir: out, report_to: "tensorboard", max_steps: 2, per_device_train_batch_size: 4, learning_rate: 1e-2, logging_steps: 1,
      eval_strategy: "steps", eval_steps: 2, save_strategy: "steps", save_steps: 2, gradient_checkpointing: false, max_length: 64,
    },
    warn: () => {},
  });
  await trainer.train();
  model.dispose();

  const [file, ...more] = trainer.tensorboardFiles();
  assert.ok(file && !more.length, "one event file for one train()");
  // transformers 5's default: output_dir/runs/<Mon DD_HH-MM-SS>_<host>; the same bytes on disk.
  assert.match(file.dir, new RegExp(`^${out.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}/runs/[A-Z][a-z]{2}\\d{2}_\\d{2}-\\d{2}-\\d{2}_.+$`));
  assert.deepEqual((await readdir(join(out, "runs"))).length, 1);
  assert.deepEqual(new Uint8Array(await readFile(join(file.dir, file.name))), file.bytes);

  const events = readRecords(file.bytes).map(decodeEvent);
  assert.equal(events[0]!.file_version, "brain.Event:2");
  assert.equal(events[0]!.writer, "tensorboard.summary.writer.event_file_writer");
  const texts = events.flatMap((e) => e.values.filter((v) => v.plugin === "text"));
  assert.deepEqual(texts.map((t) => t.tag), ["args/text_summary", "model_config/text_summary"]);
  const argsText = JSON.parse(texts[0]!.text!) as Record<string, unknown>;
  assert.equal(argsText.report_to, "tensorboard");
  assert.equal(argsText.eos_token, "<EOS_TOKEN>", "every *_token is masked, as TrainingArguments.to_json_string does");

  // Every scalar, as (tag, step) → value; each Event holds one, as torch writes them.
  const scalars = new Map<string, number[]>();
  for (const e of events.slice(1)) {
    for (const v of e.values) {
      if (v.plugin) continue;
      assert.equal(e.values.length, 1);
      assert.ok(e.wall_time > 1.7e9);
      const key = `${v.tag}@${e.step}`;
      scalars.set(key, [...(scalars.get(key) ?? []), v.simple_value!]);
    }
  }
  const expected = new Map<string, number[]>();
  for (const entry of trainer.state.log_history) {
    for (const [k, v] of Object.entries(entry)) {
      if (k === "step") continue;
      const tag = k.startsWith("eval_") ? `eval/${k.slice(5)}` : `train/${k}`;
      const key = `${tag}@${entry.step}`;
      expected.set(key, [...(expected.get(key) ?? []), Math.fround(v)]);
    }
  }
  assert.deepEqual([...scalars.keys()].sort(), [...expected.keys()].sort());
  for (const [key, values] of expected) assert.deepEqual(scalars.get(key), values, key);
  for (const tag of ["train/loss", "train/grad_norm", "train/learning_rate", "train/mean_token_accuracy", "train/entropy", "train/num_tokens", "train/epoch", "eval/loss", "eval/mean_token_accuracy", "train/train_loss", "train/total_flos"]) {
    assert.ok([...scalars.keys()].some((k) => k.startsWith(`${tag}@`)), `no ${tag}`);
  }
  assert.ok(!scalars.has("train/step@1"), "the step is the Event's step, not a scalar");
  assert.deepEqual(scalars.get("train/loss@1"), [Math.fround(trainer.state.log_history[0]!.loss!)]);

  // The checkpoint's trainer_state.json: transformers' TrainerState keys, sorted, nothing else.
  const state = JSON.parse(await readFile(join(out, "checkpoint-2", "trainer_state.json"), "utf8")) as Record<string, unknown>;
  assert.deepEqual(Object.keys(state), [
    "best_global_step", "best_metric", "best_model_checkpoint", "epoch", "eval_steps", "global_step", "is_hyper_param_search", "is_local_process_zero",
    "is_world_process_zero", "log_history", "logging_steps", "max_steps", "num_input_tokens_seen", "num_train_epochs", "save_steps", "stateful_callbacks",
    "total_flos", "train_batch_size", "trial_name", "trial_params",
  ]);
  assert.equal(state.global_step, 2);
  assert.equal(state.best_metric, null);
  assert.ok((state.total_flos as number) > 0);
  assert.deepEqual(state.stateful_callbacks, {
    TrainerControl: { args: { should_epoch_stop: false, should_evaluate: false, should_log: false, should_save: true, should_training_stop: true }, attributes: {} },
  });

  // The reader is a real check: any flipped byte fails a CRC.
  for (const at of [3, 10, 20, file.bytes.length - 2]) {
    const bad = file.bytes.slice();
    bad[at] = bad[at]! ^ 0x10;
    assert.throws(() => readRecords(bad), /bad (length|data) CRC|truncated/, `byte ${at}`);
  }
});

test("the log directory: logging_dir, then TENSORBOARD_LOGGING_DIR, then output_dir/runs/<date>_<host>", async () => {
  const state = { global_step: 0, is_world_process_zero: true, log_history: [] };
  const dirOf = async (args: Record<string, unknown>) => {
    const cb = new TensorBoardCallback({ host: "box", date: () => new Date(2026, 0, 2, 3, 4, 5), filesystem: false });
    await cb.on_train_begin(sftConfig(args), state);
    return cb.logging_dir;
  };
  assert.equal(await dirOf({ output_dir: "out/", report_to: "tensorboard" }), "out/runs/Jan02_03-04-05_box");
  process.env.TENSORBOARD_LOGGING_DIR = "tb-env";
  try {
    assert.equal(await dirOf({ output_dir: "out", report_to: "tensorboard" }), "tb-env");
    assert.equal(await dirOf({ output_dir: "out", report_to: "tensorboard", logging_dir: "tb-arg" }), "tb-arg");
  } finally {
    delete process.env.TENSORBOARD_LOGGING_DIR;
  }
});

test("report_to: implemented names, all, none, lists; other names are an error listing the implemented ones", () => {
  assert.deepEqual(reportIntegrations(sftConfig({ report_to: "all" }).report_to), ["tensorboard"]);
  assert.deepEqual(reportIntegrations(sftConfig({ report_to: ["tensorboard"] }).report_to), ["tensorboard"]);
  assert.deepEqual(reportIntegrations(sftConfig({ report_to: "none" }).report_to), []);
  assert.deepEqual(reportIntegrations(sftConfig({ report_to: null }).report_to), []);
  assert.deepEqual(reportIntegrations(sftConfig({}).report_to), []);
  assert.throws(() => sftConfig({ report_to: "wandb" }), /report_to="wandb" is not allowed: expected one of "tensorboard" .*"all" .*"none": webtune does not implement "wandb"/);
  assert.throws(() => sftConfig({ report_to: ["tensorboard", "mlflow", "wandb"] }), /does not implement "mlflow", "wandb"/);
  assert.throws(() => sftConfig({ report_to: 3 }), /report_to=3 is not allowed: expected a name or a list of names/);
  assert.deepEqual(sftConfig({ logging_dir: "tb", report_to: "tensorboard" }).notes, []);
  assert.match(sftConfig({ logging_dir: "tb" }).notes.join("\n"), /logging_dir="tb": unused/);
});
