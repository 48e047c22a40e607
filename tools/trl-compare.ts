// webtune against Python TRL on the same exported config: writes webtune's embedded tiny model to a directory
// and 8 of the sample facts to a JSONL file, exports a `trl sft` config for them (exportTRLConfig: the data as a
// `datasets:` mixture, LoRA as ModelConfig keys, report_to tensorboard, logging_steps 1, a checkpoint at the
// last step), runs `.venv/bin/trl sft --config sft.yaml` on the CPU and `webtune sft --config sft.yaml`
// (sftMain) on WebGPU, and compares the logged values step by step and the two checkpoints' trainer_state.json.
//
// The first step's loss, mean_token_accuracy, entropy and num_tokens must match: one batch holds all 8 rows (so
// the sample order does not matter) and LoRA's B starts at zero (so the first forward is the base model's, on
// any LoRA A). grad_norm and every later step depend on LoRA A's random init, which torch and webtune draw
// differently, so they only come close.
//
//   node --import tsx tools/trl-compare.ts [--steps 3] [--keep DIR]
//   node --import tsx tools/trl-compare.ts export < cases.json > yamls.json   (for tools/fixtures/trl_config.py:
//        [{name, input, options}] → [{name, yaml}], each exportTRLConfig(input, options))
import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import process from "node:process";
import { FACTS } from "../src/data/facts.ts";
import { tinyModelFiles } from "../src/data/tiny.ts";
import { sftMain } from "../src/trainer/cli.ts";
import { exportTRLConfig, type ExportTRLConfigOptions } from "../src/trainer/export_config.ts";
import { runIfMain } from "./cli.ts";

const ROOT = resolve(import.meta.dirname ?? ".", "..");

/** The run both sides train: LoRA on the tiny model, one batch of all rows per step. */
export function compareConfig(dir: string, steps: number): Record<string, unknown> {
  return {
    model_name_or_path: join(dir, "model"),
    dataset_name: join(dir, "facts.jsonl"),
    use_peft: true,
    lora_r: 8,
    lora_alpha: 16,
    lora_dropout: 0,
    lora_target_modules: "all-linear",
    learning_rate: 1e-2,
    max_steps: steps,
    per_device_train_batch_size: 8,
    max_length: 64,
    logging_steps: 1,
    save_strategy: "steps",
    save_steps: steps,
    gradient_checkpointing: false,
    report_to: "tensorboard",
    seed: 42,
    output_dir: join(dir, "trl-out"),
  };
}

async function exportCases(): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  const cases = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { name: string; input: Record<string, unknown>; options?: ExportTRLConfigOptions }[];
  const out = cases.map((c) => ({ name: c.name, yaml: exportTRLConfig(c.input, { ...c.options, header: false }) }));
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}

/** checkpoint-N/trainer_state.json of an output directory. */
async function trainerState(out: string, step: number): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(join(out, `checkpoint-${step}`, "trainer_state.json"), "utf8")) as Record<string, unknown>;
}

const KEYS = ["loss", "grad_norm", "learning_rate", "mean_token_accuracy", "entropy", "num_tokens", "epoch"] as const;

async function compare(argv: string[]): Promise<void> {
  let steps = 3;
  let dir = "";
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--steps") steps = Number(argv[++i]);
    else if (argv[i] === "--keep") dir = resolve(argv[++i]!);
    else throw new Error(`trl-compare: unknown argument ${argv[i]} (--steps N, --keep DIR, or export)`);
  }
  dir ||= await mkdtemp(join(tmpdir(), "webtune-trl-compare-"));
  await mkdir(join(dir, "model"), { recursive: true });
  for (const [name, bytes] of Object.entries(tinyModelFiles())) await writeFile(join(dir, "model", name), bytes);
  await writeFile(join(dir, "facts.jsonl"), FACTS.slice(0, 8).map((r) => JSON.stringify(r)).join("\n") + "\n");
  const yamlPath = join(dir, "sft.yaml");
  await writeFile(yamlPath, exportTRLConfig(compareConfig(dir, steps)));
  console.log(`exported ${yamlPath}:\n${await readFile(yamlPath, "utf8")}`);

  const trl = join(ROOT, ".venv", "bin", "trl");
  console.log(`running ${trl} sft --config ${yamlPath} (CPU) …`);
  const t0 = performance.now();
  const r = spawnSync(trl, ["sft", "--config", yamlPath], {
    cwd: dir,
    encoding: "utf8",
    timeout: 900_000,
    env: { ...process.env, HF_HUB_OFFLINE: "1", HF_DATASETS_OFFLINE: "1", TRANSFORMERS_OFFLINE: "1", CUDA_VISIBLE_DEVICES: "", TOKENIZERS_PARALLELISM: "false" },
  });
  if (r.status !== 0) throw new Error(`trl sft failed (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
  console.log(`trl sft: done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const webOut = join(dir, "webtune-out");
  const lines: string[] = [];
  const host = { write: () => {}, log: (s: string) => lines.push(s), error: (s: string) => lines.push(s), isTTY: false };
  const code = await sftMain(["--config", yamlPath, "--output_dir", webOut], host);
  if (code !== 0) throw new Error(`webtune sft --config failed:\n${lines.join("\n")}`);

  const ts = await trainerState(join(dir, "trl-out"), steps);
  const ws = await trainerState(webOut, steps);
  const steplogs = (s: Record<string, unknown>) => (s.log_history as Record<string, number>[]).filter((l) => "loss" in l);
  const [tl, wl] = [steplogs(ts), steplogs(ws)];
  console.log(`\n${"step".padEnd(5)} ${"key".padEnd(20)} ${"TRL (torch, CPU)".padStart(18)} ${"webtune (WebGPU)".padStart(18)}   rel. diff`);
  for (let i = 0; i < Math.max(tl.length, wl.length); i++) {
    for (const k of KEYS) {
      const [a, b] = [tl[i]?.[k], wl[i]?.[k]];
      const rel = a !== undefined && b !== undefined ? Math.abs(a - b) / Math.max(Math.abs(a), 1e-12) : NaN;
      console.log(`${String(i + 1).padEnd(5)} ${k.padEnd(20)} ${String(a).padStart(18)} ${String(b).padStart(18)}   ${rel.toExponential(2)}`);
    }
  }
  const trlKeys = Object.keys(ts).sort();
  const webKeys = Object.keys(ws).sort();
  console.log(`\ntrainer_state.json keys only in TRL's: ${JSON.stringify(trlKeys.filter((k) => !webKeys.includes(k)))}; only in webtune's: ${JSON.stringify(webKeys.filter((k) => !trlKeys.includes(k)))}`);
  for (const k of trlKeys) if (k !== "log_history" && JSON.stringify(ts[k]) !== JSON.stringify(ws[k])) console.log(`  ${k}: TRL ${JSON.stringify(ts[k])}, webtune ${JSON.stringify(ws[k])}`);
  const runs = async (out: string) => {
    const d = join(out, "runs");
    return (await readdir(d)).map((x) => join(d, x));
  };
  console.log(`\nTensorBoard runs: TRL ${JSON.stringify(await runs(join(dir, "trl-out")))}\n                  webtune ${JSON.stringify(await runs(webOut))}`);
  console.log(`(check them: .venv/bin/python tools/check-tensorboard.py ${(await runs(webOut))[0]} --log-history ${join(webOut, `checkpoint-${steps}`, "trainer_state.json")} --compare ${(await runs(join(dir, "trl-out")))[0]})`);
  const first = [tl[0]?.loss, wl[0]?.loss];
  const rel = Math.abs(first[0]! - first[1]!) / first[0]!;
  console.log(`\nfirst logged loss: TRL ${first[0]}, webtune ${first[1]} (relative difference ${rel.toExponential(2)})`);
  if (!(rel < 1e-4)) throw new Error(`the first losses differ by ${rel} (relative): the configs do not mean the same run`);
}

runIfMain(import.meta, (argv) => (argv[0] === "export" ? exportCases() : compare(argv)));
