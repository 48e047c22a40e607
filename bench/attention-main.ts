// The attention benchmark on its own: `node --import tsx bench/attention-main.ts` (Dawn; SwiftShader without a
// GPU) or `deno run -A bench/attention-main.ts` (wgpu; llvmpipe without a GPU).
import { benchAttention } from "./attention.ts";

await benchAttention();
// The device keeps the event loop alive.
(globalThis as { process?: { exit(code: number): void } }).process?.exit(0);
