// Runs in headless Chromium (bundled by trainer.test.ts): SFTTrainer with LoRA checkpointing to IndexedDB and
// resuming exactly. The model and tokenizer come from the test server (/model/). Results go to
// window.__webtune for the Node side to assert on.
//   ?db=NAME               four runs: uninterrupted (storage NAME-a); stopped after step 2 by a callback
//                          (NAME-b); a third trainer on a fresh model resuming from NAME-b's newest checkpoint;
//                          a run whose GPU device is destroyed at step 3 (NAME-c), which recovers by itself.
//   ?db=NAME&mode=reload   after a reload: NAME-b's checkpoints are still listed, and checkpoint-6 loaded with
//                          PeftModel.from_pretrained gives the logits the trained model gave.
//   ?db=NAME&mode=cleanup  deletes both databases.
import {
  AutoModelForCausalLM, AutoTokenizer, deviceInfo, FACTS, getDevice, openStorage, PeftModel, SFTTrainer, tidy,
  type LlamaForCausalLM, type PreTrainedTokenizer, type SFTConfig, type TrainerCallback,
} from "../../src/index.ts";
import { check, type Result } from "./page-check.ts";


/** One training run, as the Node side compares it. */
export interface RunReport {
  /** Step → the logged {loss, grad_norm, learning_rate} of that step. */
  steps: Record<number, { loss: number; grad_norm: number; learning_rate: number }>;
  global_step: number;
  /** Checkpoints in the run's storage when it ended. */
  checkpoints: string[];
  /** Logits of the trained model (eval mode) on PROMPT. */
  logits?: number[];
  seconds: number;
}

export interface PageReport {
  adapter?: string;
  full?: RunReport;
  stopped?: RunReport;
  resumed?: RunReport;
  /** The run whose device was destroyed at step 3 (it recovers: a new device, checkpoint-2). */
  lost?: RunReport & { recoveries: Record<string, number>[]; destroyed: number[]; warnings: string[] };
  /** Reload mode: the checkpoints listed after the reload, and the logits of checkpoint-6. */
  listed?: string[];
  reloaded_logits?: number[];
  warnings: string[];
}


const BASE = `${location.origin}/model`;
const params = new URLSearchParams(location.search);
const DB = params.get("db") ?? "webtune-test";
const ROWS = FACTS.slice(0, 16).map((r) => ({ ...r }));
const ARGS: Partial<SFTConfig> = {
  per_device_train_batch_size: 4,
  gradient_accumulation_steps: 2,
  learning_rate: 1e-2,
  logging_steps: 1,
  save_steps: 2,
  max_steps: 6,
  gradient_checkpointing: false,
  report_to: "none",
};
const LORA = { r: 4, target_modules: "all-linear" as const, lora_dropout: 0.1 };

/** The prompt whose logits compare the trained model and the adapter reloaded from IndexedDB. */
function promptIds(tok: PreTrainedTokenizer): number[] {
  return tok.encode(`${FACTS[0]!.prompt}${FACTS[0]!.completion} ${FACTS[5]!.prompt}`);
}

async function logitsOf(model: LlamaForCausalLM | PeftModel, ids: number[]): Promise<number[]> {
  model.eval();
  const t = tidy(() => model.forward({ input_ids: [ids], return_logits: true }).logits!);
  const out = Array.from(await t.toArray());
  t.dispose();
  return out;
}

/** Trains on a freshly loaded model; `stopAt` stops it (a callback) after that step; `resume` resumes. */
async function run(
  storage: string, tok: PreTrainedTokenizer, warnings: string[], opts: { stopAt?: number; resume?: boolean; destroyAt?: number } = {},
): Promise<RunReport & { recoveries: Record<string, number>[]; destroyed: number[] }> {
  const t0 = performance.now();
  const model = await AutoModelForCausalLM.from_pretrained(BASE);
  let trained: LlamaForCausalLM | null = null;
  const destroyed: number[] = [];
  try {
    const stop: TrainerCallback = {
      async on_step_end(_args, state, control) {
        if (opts.stopAt !== undefined && state.global_step >= opts.stopAt) control.should_training_stop = true;
        // The GPU device lost (as a driver reset or the browser reclaiming it would end it), once.
        if (state.global_step === opts.destroyAt && !destroyed.length) {
          destroyed.push(state.global_step);
          (await getDevice()).destroy();
        }
      },
    };
    const trainer = new SFTTrainer({
      model,
      args: ARGS,
      train_dataset: ROWS,
      processing_class: tok,
      peft_config: LORA,
      callbacks: [stop],
      storage,
      warn: (m) => warnings.push(m),
    });
    const out = await trainer.train({ resume_from_checkpoint: opts.resume ?? false });
    const steps: RunReport["steps"] = {};
    for (const l of trainer.state.log_history) {
      if ("loss" in l && "grad_norm" in l) steps[l.step!] = { loss: l.loss!, grad_norm: l.grad_norm!, learning_rate: l.learning_rate! };
    }
    const report = {
      steps,
      global_step: out.global_step,
      checkpoints: await trainer.storage.list(),
      seconds: 0,
      recoveries: trainer.state.log_history.filter((l) => "device_lost_recovery" in l),
      destroyed,
    } as RunReport & { recoveries: Record<string, number>[]; destroyed: number[] };
    // After a recovery the trainer holds a model loaded again on the new device.
    if (trainer.model !== model) trained = trainer.model as LlamaForCausalLM;
    if (!opts.stopAt) report.logits = await logitsOf(trainer.peft!, promptIds(tok));
    report.seconds = (performance.now() - t0) / 1000;
    return report;
  } finally {
    model.dispose();
    trained?.dispose();
  }
}

async function deleteDatabase(name: string): Promise<void> {
  await new Promise<void>((ok, fail) => {
    const r = indexedDB.deleteDatabase(name);
    r.onsuccess = () => ok();
    r.onerror = () => fail(r.error);
    r.onblocked = () => fail(new Error(`deleting ${name}: blocked by an open connection`));
  });
}

async function main(): Promise<{ results: Result[]; report: PageReport }> {
  const results: Result[] = [];
  const report: PageReport = { warnings: [] };
  if (params.get("mode") === "cleanup") {
    // A page of its own: the pages before it held the databases open (idb-keyval keeps its connection).
    await check("delete the test databases", async () => {
      await deleteDatabase(`${DB}-a`);
      await deleteDatabase(`${DB}-b`);
      await deleteDatabase(`${DB}-c`);
      const left = (await indexedDB.databases()).map((d) => d.name).filter((n) => n?.startsWith(DB));
      if (left.length) throw new Error(`left behind: ${left.join(", ")}`);
    }, results);
    return { results, report };
  }
  await getDevice();
  report.adapter = deviceInfo().adapter.description || deviceInfo().adapter.vendor;
  const tok = await AutoTokenizer.from_pretrained(BASE);

  if (params.get("mode") === "reload") {
    await check("after a reload: the checkpoints are listed; checkpoint-6 gives the trained model's logits", async () => {
      const storage = openStorage(`indexeddb:${DB}-b`);
      report.listed = await storage.list();
      const model = await AutoModelForCausalLM.from_pretrained(BASE);
      try {
        const peft = await PeftModel.from_pretrained(model, storage.source("checkpoint-6"));
        report.reloaded_logits = await logitsOf(peft, promptIds(tok));
      } finally {
        model.dispose();
      }
    }, results);
    return { results, report };
  }

  await check("an uninterrupted run of 6 steps", async () => {
    report.full = await run(`indexeddb:${DB}-a`, tok, report.warnings);
  }, results);
  await check("a run stopped by a callback after step 2", async () => {
    report.stopped = await run(`indexeddb:${DB}-b`, tok, report.warnings, { stopAt: 2 });
  }, results);
  await check("a third trainer on a fresh model resumes from the newest checkpoint", async () => {
    report.resumed = await run(`indexeddb:${DB}-b`, tok, report.warnings, { resume: true });
  }, results);
  await check("a run whose GPU device is destroyed at step 3 recovers on a new device from checkpoint-2", async () => {
    const warnings: string[] = [];
    report.lost = { ...(await run(`indexeddb:${DB}-c`, tok, warnings, { destroyAt: 3 })), warnings };
  }, results);
  return { results, report };
}

(globalThis as { __webtune?: unknown }).__webtune = main();
