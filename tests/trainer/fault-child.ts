// The child process of tests/trainer/faults.test.ts, killed with SIGKILL at a random moment:
//   fault-child.ts storage DIR   writes, in a loop, checkpoint-<k> (FileSystemStorage, rotation to 2) and a
//                                save of k into DIR (as save_model into output_dir) and into DIR/final, each
//                                file's bytes a function of k (faultFiles), from k = the newest listed + 1
//   fault-child.ts train DIR MODEL  trains the tiny model in MODEL with LoRA, save_steps 1, into DIR, then
//                                save_model (the parent resumes what it leaves and compares)
// It prints "ready" once it starts writing (storage), "saved <id>" after each checkpoint (train).
import process from "node:process";
import { writeDirectory } from "../../src/io/local.ts";
import { openStorage, rotateCheckpoints } from "../../src/trainer/storage.ts";
import { faultFiles, faultTrainArgs, FAULT_ROWS } from "./fault-files.ts";

const [mode, dir, model] = process.argv.slice(2);
if (mode === "storage") {
  const s = openStorage(dir!);
  const ids = await s.list();
  let k = Math.max(0, ...ids.map((id) => Number(/^checkpoint-(\d+)$/.exec(id)?.[1] ?? 0))) + 1;
  process.stdout.write("ready\n");
  for (;;) {
    await s.writeCheckpoint(`checkpoint-${k}`, faultFiles(k, "checkpoint"));
    await rotateCheckpoints(s, 2, `checkpoint-${k}`);
    await writeDirectory(dir!, faultFiles(k, "save"));
    await writeDirectory(`${dir}/final`, faultFiles(k, "save"));
    k++;
  }
} else if (mode === "train") {
  const { AutoModelForCausalLM, SFTTrainer } = await import("../../src/index.ts");
  const { getDevice } = await import("../../src/gpu/device.ts");
  await getDevice();
  const trainer = new SFTTrainer({
    model: await AutoModelForCausalLM.from_pretrained(model!),
    args: faultTrainArgs(dir!),
    train_dataset: [...FAULT_ROWS],
    peft_config: { r: 4, lora_alpha: 8, target_modules: ["q_proj", "v_proj"], lora_dropout: 0.1 },
    callbacks: [{ on_save: (_a, _s, _c, id) => void process.stdout.write(`saved ${id}\n`) }],
    warn: () => {},
  });
  await trainer.train();
  await trainer.save_model();
  process.stdout.write("done\n");
  process.exit(0);
} else {
  throw new Error(`fault-child.ts: unknown mode ${mode}`);
}
