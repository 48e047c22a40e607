// Fine-tune the embedded default model on the embedded default dataset:
//   deno run -A train.ts        or        npx tsx train.ts
// Not ready yet: the model loader and SFTTrainer land in later issues. This entry point says so and exits
// with an error rather than pretending to train.
import { deviceInfo, getDevice } from "./src/index.ts";

await getDevice();
const info = deviceInfo();
const proc = (globalThis as { process?: { exit(code: number): never } }).process;
const deno = (globalThis as { Deno?: { exit(code: number): never } }).Deno;
console.error(
  `webtune: WebGPU is ready (${info.host}, ${info.adapter.description || info.adapter.vendor}), ` +
    "but training is not implemented yet (the model loader and SFTTrainer arrive in later issues). Nothing was trained.",
);
(deno ?? proc)!.exit(2);
