// webtune's command line: TRL's `trl sft`, on WebGPU (the program is src/trainer/cli.ts; the package's
// `webtune sft` runs the same code).
//   deno run -A train.ts                 the embedded default: a tiny model made from a fixed seed learns
//   npx tsx train.ts                     64 made-up facts with LoRA (about a minute on a CPU adapter)
//   deno run -A train.ts --model DIR_OR_HUB_ID --dataset FILE.jsonl --output_dir out --max_steps 100 …
//   deno run -A train.ts --config sft.yaml       (the keys `trl sft --config` takes)
//   deno run -A train.ts --help
import { processArgs, sftMain } from "./src/trainer/cli.ts";

const proc = processArgs();
// Exit explicitly: a live GPU device would otherwise keep the process running.
proc.exit(await sftMain(proc.args));
