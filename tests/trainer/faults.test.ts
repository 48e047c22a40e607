// The fault battery's kill -9 part: a child process (tests/trainer/fault-child.ts) writes checkpoints and
// saves (save_model's writeDirectory) and is SIGKILLed at a random moment, again and again on the same
// directory; after each kill, the next listing must show only complete checkpoints, each byte-exact, every
// save must be wholly one write (never files of two), and nothing of webtune's temporary names may remain
// (a user's look-alike file stays). Then a few trials kill a real training run (tiny Llama, LoRA, save_steps
// 1): the newest complete checkpoint resumes to the same weights, bit for bit, as an uninterrupted run.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { after, before, test } from "node:test";
import { AutoModelForCausalLM, SFTTrainer } from "../../src/index.ts";
import { SAVE_RECORD } from "../../src/io/local.ts";
import { openStorage } from "../../src/trainer/storage.ts";
import { makeModel } from "../../tools/make-model.ts";
import { getDevice } from "../../src/gpu/device.ts";
import { faultFiles, faultTrainArgs, FAULT_ROWS } from "./fault-files.ts";

let root = "";
before(async () => {
  root = await mkdtemp(join(tmpdir(), "webtune-faults-"));
});
after(() => rm(root, { recursive: true, force: true }));

/** A seeded random number generator (the trials' delays), so a failure replays. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

const CHILD = join(import.meta.dirname, "fault-child.ts");
/** The child runs in this test's runtime: Deno (its fs, fsync and renames), or Node with tsx. */
const CHILD_RUN = "Deno" in globalThis ? ["run", "-A", "--no-check"] : ["--import", "tsx"];

/**
 * Starts the child, waits for `after` lines of its stdout to contain `ready` / `saved` (the trigger), then
 * SIGKILLs it after `delay` ms (unless it finished first). Resolves with whether it was killed running.
 */
function runAndKill(args: string[], delay: number, timeoutMs = 60_000, trigger = "ready", after = 1): Promise<boolean> {
  return new Promise((ok, fail) => {
    const child = spawn(process.execPath, [...CHILD_RUN, CHILD, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    let killed = false;
    const guard = setTimeout(() => {
      child.kill("SIGKILL");
      fail(new Error(`fault-child ${args.join(" ")} never got ready: ${err}`));
    }, timeoutMs);
    const count = () => out.split("\n").filter((l) => l.startsWith(trigger)).length;
    child.stdout.on("data", (d: Buffer) => {
      const had = count() >= after;
      out += d.toString();
      if (!had && count() >= after) {
        setTimeout(() => {
          killed = child.exitCode === null;
          child.kill("SIGKILL");
        }, delay);
      }
    });
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("exit", (code, signal) => {
      clearTimeout(guard);
      if (signal === "SIGKILL" || code === 0) ok(killed && signal === "SIGKILL");
      else fail(new Error(`fault-child ${args.join(" ")} exited with ${code}: ${err}`));
    });
  });
}

/** Names webtune writes only while a write is in progress. */
const TEMP = /^\.webtune-|^\.webtune_commit/;

async function assertNoTemp(dir: string): Promise<void> {
  for (const e of await readdir(dir, { recursive: true }).catch(() => [])) {
    const base = String(e).split("/").pop()!;
    assert.ok(!TEMP.test(base), `a temporary entry of webtune's is left: ${join(dir, String(e))}`);
  }
}

/** The save in `dir` is wholly write k for one k (every file, and no file of another write), or absent. */
async function assertOneSave(dir: string, label: string): Promise<number | null> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => !n.startsWith("checkpoint-") && n !== "final" && !n.startsWith(".mine"));
  } catch {
    return null;
  }
  if (!names.length) return null;
  const k = (JSON.parse(await readFile(join(dir, "adapter_config.json"), "utf8")) as { k: number }).k;
  const want = faultFiles(k, "save");
  assert.deepEqual(names.sort(), [SAVE_RECORD, ...Object.keys(want)].sort(), `${label}: the files of save ${k}`);
  for (const [name, bytes] of Object.entries(want)) {
    const got = new Uint8Array(await readFile(join(dir, name)));
    const exp = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes;
    assert.ok(Buffer.from(got).equals(Buffer.from(exp)), `${label}: ${name} is not save ${k}'s`);
  }
  return k;
}

test("kill -9 at random points of checkpoint and save writes, 20 times: only complete checkpoints, whole saves, no temp left", async () => {
  const dir = join(root, "storage");
  await mkdir(dir, { recursive: true });
  // A user's files whose names look like the temporary names webtune 0.1 cleaned up.
  await writeFile(join(dir, ".mine.tmp-0a1b2c3d"), "user data");
  await mkdir(join(dir, ".mine.old-00ff00ff"));
  const random = rng(20261202);
  let killedMidway = 0;
  let leftovers = 0;
  let lastK = 0;
  const TRIALS = 20;
  for (let trial = 0; trial < TRIALS; trial++) {
    // Delays spread over a few writes of the loop (each checkpoint ≈ 0.8 MB, fsync'd).
    if (await runAndKill(["storage", dir], Math.floor(random() * 400))) killedMidway++;
    // What the kill left before any recovery: a write under way shows as a temporary name of webtune's.
    const entries = [...(await readdir(dir)), ...(await readdir(join(dir, "final")).catch(() => []))];
    if (entries.some((e) => TEMP.test(e))) leftovers++;
    const s = openStorage(dir);
    const ids = await s.list();
    assert.ok(ids.length <= 3, `trial ${trial}: rotation keeps 2 (3 while a write is under way): ${ids.join(", ")}`);
    for (const id of ids) {
      const k = Number(/^checkpoint-(\d+)$/.exec(id)![1]);
      const want = faultFiles(k, "checkpoint");
      assert.deepEqual(await s.files(id), Object.keys(want).sort(), `trial ${trial}: ${id}'s files`);
      for (const [name, bytes] of Object.entries(want)) {
        const exp = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes;
        assert.ok(Buffer.from(await s.read(id, name)).equals(Buffer.from(exp)), `trial ${trial}: ${id}/${name} is not write ${k}'s`);
      }
    }
    const newest = ids.length ? Number(/(\d+)$/.exec(ids[ids.length - 1]!)![1]) : 0;
    assert.ok(newest >= lastK, `trial ${trial}: the newest checkpoint went back from ${lastK} to ${newest}`);
    lastK = newest;
    // The listing recovered the save in dir; the next save recovers dir/final — here, as the child's next run would.
    const { recoverDirectory } = await import("../../src/io/local.ts");
    await recoverDirectory(join(dir, "final"));
    await assertOneSave(dir, `trial ${trial}: output_dir`);
    await assertOneSave(join(dir, "final"), `trial ${trial}: final`);
    await assertNoTemp(dir);
    assert.equal(await readFile(join(dir, ".mine.tmp-0a1b2c3d"), "utf8"), "user data", "a user's file is never removed");
    assert.ok((await readdir(dir)).includes(".mine.old-00ff00ff"));
  }
  assert.equal(killedMidway, TRIALS, "every kill hit the child while it ran");
  assert.ok(leftovers >= 3, `only ${leftovers} of ${TRIALS} kills landed mid-write (the delays are too coarse)`);
  assert.ok(lastK >= 3, `the loop made progress (${lastK})`);
});

test("kill -9 during a training run with save_steps 1, mid-step or mid-save: the newest complete checkpoint resumes exactly", async () => {
  // The plain device, as the child's (validation's error scopes would double the reference run's time).
  await getDevice();
  const modelDir = join(root, "model");
  await makeModel(modelDir, { arch: "llama", seed: 7 });
  const peft = { r: 4, lora_alpha: 8, target_modules: ["q_proj", "v_proj"], lora_dropout: 0.1 };
  const weightsOf = async (t: SFTTrainer) => new Map(await Promise.all(t.named_trainable().map(async ([n, w]) => [n, (await w.toArray()) as Float32Array] as const)));
  // Killed after its 1st or 2nd checkpoint, 0-300 ms later: in the next step or the next checkpoint's write.
  const random = rng(Date.now());
  const dir = join(root, "train");
  const saves = 1 + Math.floor(random() * 2);
  let delay = Math.floor(random() * 300);
  // On a fast machine the child may finish its last step and save within the delay: then again, from scratch,
  // with a shorter one (a third each time; 0 ms lands before the next step ends).
  let killed = false;
  for (let attempt = 0; attempt < 4 && !killed; attempt++, delay = attempt === 3 ? 0 : Math.floor(delay / 3)) {
    await rm(dir, { recursive: true, force: true });
    killed = await runAndKill(["train", dir, modelDir], delay, 120_000, "saved", saves);
  }
  assert.ok(killed, "the run was killed before it finished");
  const s = openStorage(dir);
  const ids = (await s.list()).filter((id) => id.startsWith("checkpoint-"));
  await assertNoTemp(dir);
  const newest = Number(/(\d+)$/.exec(ids[ids.length - 1]!)![1]);
  assert.ok(newest >= saves, `checkpoint-${saves} was complete when the child said so; the newest now is ${newest}`);
  // The uninterrupted run, in this process.
  const ref = new SFTTrainer({ model: await AutoModelForCausalLM.from_pretrained(modelDir), args: faultTrainArgs(join(root, "ref")), train_dataset: [...FAULT_ROWS], peft_config: peft, warn: () => {} });
  await ref.train();
  const want = await weightsOf(ref);
  ref.model.dispose();
  const t = new SFTTrainer({ model: await AutoModelForCausalLM.from_pretrained(modelDir), args: faultTrainArgs(dir), train_dataset: [...FAULT_ROWS], peft_config: peft, warn: () => {} });
  try {
    await t.train({ resume_from_checkpoint: true });
    assert.equal(t.state.log_history.filter((l) => "loss" in l).length, 3);
    const got = await weightsOf(t);
    for (const [name, w] of want) assert.ok(Buffer.from(got.get(name)!.buffer).equals(Buffer.from(w.buffer)), `killed after save ${saves} + ${delay} ms, resumed from checkpoint-${newest}: ${name} differs from the uninterrupted run's`);
  } finally {
    t.model.dispose();
  }
});
